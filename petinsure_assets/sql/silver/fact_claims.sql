-- silver.fact_claims: every bronze claims record typed, cleaned and judged by the hard rules.
-- Reads: claims_raw, dim_customers, dim_policies, dim_pets, dim_providers (foreign keys). Writes
-- the temp table claims_staged: one row per bronze record with _reject_reason / _reject_detail when
-- a hard rule fails. The latest valid version per key (silver.fact_claims) and the quarantine rows
-- are taken from it as fact_claims.toml says (queries.latest_versions_sql, queries.quarantine_sql).
-- Hard rules (docs/rules.md, first match wins): malformed_record, missing_key, bad_date
-- (service_date), bad_value (claim_amount, status), negative_amount (claim_amount, paid_amount),
-- overpaid (paid_amount > claim_amount), orphan_fk (customer, policy, pet, provider).
-- Quality score: claim_type (accepted value), claim_category, paid_amount, processing_days (>= 0).
CREATE OR REPLACE TEMP TABLE claims_staged AS
WITH typed AS (
    SELECT
        clean_text(claim_id) AS claim_id,
        clean_text(claim_number) AS claim_number,
        clean_text(customer_id) AS customer_id,
        clean_text(policy_id) AS policy_id,
        clean_text(pet_id) AS pet_id,
        clean_text(provider_id) AS provider_id,
        canonical(claim_type, getvariable('accepted_claim_types')) AS claim_type,
        clean_text(claim_category) AS claim_category,
        bounded_date(parse_date(service_date), _ingested_at, INTERVAL 1 YEAR) AS service_date,
        parse_amount(claim_amount) AS claim_amount,
        parse_amount(paid_amount) AS paid_amount,
        canonical(status, getvariable('accepted_claim_statuses')) AS status,
        CASE WHEN parse_int(processing_days) >= 0 THEN parse_int(processing_days) END AS processing_days,
        clean_text(denial_reason) AS denial_reason,
        bounded_ts(parse_ts(updated_at), _ingested_at) AS updated_at,
        _parse_error, _source_file, _source_line, _ingested_at, _batch_id, _record_hash,
        b AS _bronze
    FROM claims_raw AS b
)
SELECT
    t.* EXCLUDE (_parse_error, _bronze),
    strftime(t.service_date, '%Y-%m') AS service_month,  -- the table's partition
    CASE
        WHEN _parse_error IS NOT NULL THEN 'malformed_record'
        WHEN t.claim_id IS NULL THEN 'missing_key'
        WHEN t.service_date IS NULL THEN 'bad_date'
        WHEN t.claim_amount IS NULL OR t.status IS NULL THEN 'bad_value'
        WHEN t.claim_amount < 0 OR t.paid_amount < 0 THEN 'negative_amount'
        WHEN t.paid_amount > t.claim_amount THEN 'overpaid'
        WHEN c.customer_id IS NULL OR po.policy_id IS NULL OR pe.pet_id IS NULL
             OR pr.provider_id IS NULL THEN 'orphan_fk'
    END AS _reject_reason,
    CASE
        WHEN _parse_error IS NOT NULL THEN _parse_error
        WHEN t.claim_id IS NULL THEN NULL
        WHEN t.service_date IS NULL
            THEN 'service_date ' || coalesce(clean_text(t._bronze.service_date), '(empty)')
                 || ' is not a date from 1900-01-01 to a year after ingestion'
        WHEN t.claim_amount IS NULL
            THEN 'claim_amount ' || coalesce(clean_text(t._bronze.claim_amount), '(empty)')
                 || ' is not a number below 10^9 in magnitude'
        WHEN t.status IS NULL
            THEN 'status ' || coalesce(clean_text(t._bronze.status), '(empty)') || ' is not one of '
                 || array_to_string(getvariable('accepted_claim_statuses'), ', ')
        WHEN t.claim_amount < 0 OR t.paid_amount < 0
            THEN 'claim_amount ' || coalesce(CAST(t.claim_amount AS VARCHAR), 'null')
                 || ', paid_amount ' || coalesce(CAST(t.paid_amount AS VARCHAR), 'null')
        WHEN t.paid_amount > t.claim_amount
            THEN 'paid_amount ' || CAST(t.paid_amount AS VARCHAR) || ' > claim_amount '
                 || CAST(t.claim_amount AS VARCHAR)
        ELSE concat_ws('; ',
            CASE WHEN c.customer_id IS NULL THEN 'customer_id ' || coalesce(t.customer_id, '(empty)') || ' not in dim_customers' END,
            CASE WHEN po.policy_id IS NULL THEN 'policy_id ' || coalesce(t.policy_id, '(empty)') || ' not in dim_policies' END,
            CASE WHEN pe.pet_id IS NULL THEN 'pet_id ' || coalesce(t.pet_id, '(empty)') || ' not in dim_pets' END,
            CASE WHEN pr.provider_id IS NULL THEN 'provider_id ' || coalesce(t.provider_id, '(empty)') || ' not in dim_providers' END)
    END AS _reject_detail,
    quality_score(
        (claim_type IS NOT NULL)::INT + (claim_category IS NOT NULL)::INT
        + (t.paid_amount IS NOT NULL)::INT + (processing_days IS NOT NULL)::INT, 4) AS _quality_score,
    CASE WHEN _reject_reason IS NOT NULL THEN bronze_record_text(_bronze) END AS _rejected_record
FROM typed AS t
LEFT JOIN (SELECT customer_id FROM dim_customers) AS c ON c.customer_id = t.customer_id
LEFT JOIN (SELECT policy_id FROM dim_policies) AS po ON po.policy_id = t.policy_id
LEFT JOIN (SELECT pet_id FROM dim_pets) AS pe ON pe.pet_id = t.pet_id
LEFT JOIN (SELECT provider_id FROM dim_providers) AS pr ON pr.provider_id = t.provider_id;
