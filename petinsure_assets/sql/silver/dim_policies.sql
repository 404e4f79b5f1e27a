-- silver.dim_policies: every bronze policies record typed, cleaned and judged by the hard rules.
-- Reads: policies_raw, dim_customers, dim_pets (foreign keys). Writes the temp table
-- policies_staged: one row per bronze record with _reject_reason / _reject_detail when a hard rule
-- fails. The latest valid version per key (silver.dim_policies) and the quarantine rows are taken
-- from it as dim_policies.toml says (queries.latest_versions_sql, queries.quarantine_sql).
-- Hard rules (docs/rules.md, first match wins): malformed_record, missing_key, bad_date
-- (effective_date, expiration_date), bad_value (status), negative_amount (monthly_premium),
-- orphan_fk (customer_id, pet_id).
-- Quality score: plan_name (accepted value), monthly_premium, deductible, coverage_limit.
CREATE OR REPLACE TEMP TABLE policies_staged AS
WITH typed AS (
    SELECT
        clean_text(policy_id) AS policy_id,
        clean_text(policy_number) AS policy_number,
        clean_text(customer_id) AS customer_id,
        clean_text(pet_id) AS pet_id,
        canonical(plan_name, getvariable('accepted_plan_names')) AS plan_name,
        parse_amount(monthly_premium) AS monthly_premium,
        CASE WHEN parse_amount(deductible) >= 0 THEN parse_amount(deductible) END AS deductible,
        CASE WHEN parse_amount(coverage_limit) > 0 THEN parse_amount(coverage_limit) END AS coverage_limit,
        bounded_date(parse_date(effective_date), _ingested_at, INTERVAL 10 YEAR) AS effective_date,
        bounded_date(parse_date(expiration_date), _ingested_at, INTERVAL 10 YEAR) AS expiration_date,
        canonical(status, getvariable('accepted_policy_statuses')) AS status,
        parse_bool(includes_wellness) AS includes_wellness,
        parse_bool(includes_dental) AS includes_dental,
        parse_bool(includes_behavioral) AS includes_behavioral,
        bounded_ts(parse_ts(updated_at), _ingested_at) AS updated_at,
        _parse_error, _source_file, _source_line, _ingested_at, _batch_id, _record_hash,
        b AS _bronze
    FROM policies_raw AS b
)
SELECT
    t.* EXCLUDE (_parse_error, _bronze),
    CASE
        WHEN _parse_error IS NOT NULL THEN 'malformed_record'
        WHEN t.policy_id IS NULL THEN 'missing_key'
        WHEN t.effective_date IS NULL OR t.expiration_date IS NULL THEN 'bad_date'
        WHEN t.status IS NULL THEN 'bad_value'
        WHEN t.monthly_premium < 0 THEN 'negative_amount'
        WHEN c.customer_id IS NULL OR p.pet_id IS NULL THEN 'orphan_fk'
    END AS _reject_reason,
    CASE
        WHEN _parse_error IS NOT NULL THEN _parse_error
        WHEN t.policy_id IS NULL THEN NULL
        WHEN t.effective_date IS NULL THEN 'effective_date ' || coalesce(clean_text(t._bronze.effective_date), '(empty)') || ' is not a date from 1900-01-01 to 10 years after ingestion'
        WHEN t.expiration_date IS NULL THEN 'expiration_date ' || coalesce(clean_text(t._bronze.expiration_date), '(empty)') || ' is not a date from 1900-01-01 to 10 years after ingestion'
        WHEN t.status IS NULL
            THEN 'status ' || coalesce(clean_text(t._bronze.status), '(empty)') || ' is not one of '
                 || array_to_string(getvariable('accepted_policy_statuses'), ', ')
        WHEN t.monthly_premium < 0 THEN 'monthly_premium ' || CAST(t.monthly_premium AS VARCHAR) || ' < 0'
        ELSE concat_ws('; ',
            CASE WHEN c.customer_id IS NULL THEN 'customer_id ' || coalesce(t.customer_id, '(empty)') || ' not in dim_customers' END,
            CASE WHEN p.pet_id IS NULL THEN 'pet_id ' || coalesce(t.pet_id, '(empty)') || ' not in dim_pets' END)
    END AS _reject_detail,
    quality_score(
        (plan_name IS NOT NULL)::INT + (monthly_premium IS NOT NULL)::INT
        + (deductible IS NOT NULL)::INT + (coverage_limit IS NOT NULL)::INT, 4) AS _quality_score,
    CASE WHEN _reject_reason IS NOT NULL THEN bronze_record_text(_bronze) END AS _rejected_record
FROM typed AS t
LEFT JOIN (SELECT customer_id FROM dim_customers) AS c ON c.customer_id = t.customer_id
LEFT JOIN (SELECT pet_id FROM dim_pets) AS p ON p.pet_id = t.pet_id;
