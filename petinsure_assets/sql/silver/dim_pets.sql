-- silver.dim_pets: every bronze pets record typed, cleaned and judged by the hard rules. Reads:
-- pets_raw, dim_customers (foreign key). Writes the temp table pets_staged: one row per bronze
-- record with _reject_reason / _reject_detail when a hard rule fails. The latest valid version per
-- key (silver.dim_pets) and the quarantine rows are taken from it as dim_pets.toml says
-- (queries.latest_versions_sql, queries.quarantine_sql).
-- Quality score: breed, gender, date_of_birth, weight_lbs (> 0), microchip_id (15 digits).
CREATE OR REPLACE TEMP TABLE pets_staged AS
WITH typed AS (
    SELECT
        clean_text(pet_id) AS pet_id,
        clean_text(customer_id) AS customer_id,
        clean_text(pet_name) AS pet_name,
        canonical(species, getvariable('accepted_species')) AS species,
        clean_text(breed) AS breed,
        canonical(gender, ['Male', 'Female']) AS gender,
        bounded_date(parse_date(date_of_birth), _ingested_at, INTERVAL 1 YEAR) AS date_of_birth,
        -- > 0 and below 10^9 (which also leaves out inf and NaN: NaN sorts above every number).
        CASE WHEN parse_double(weight_lbs) > 0 AND parse_double(weight_lbs) < 1000000000
             THEN parse_double(weight_lbs) END AS weight_lbs,
        CASE WHEN regexp_full_match(clean_text(microchip_id), '[0-9]{15}')
             THEN clean_text(microchip_id) END AS microchip_id,
        parse_bool(is_neutered) AS is_neutered,
        clean_text(vaccination_status) AS vaccination_status,
        clean_text(pre_existing_conditions) AS pre_existing_conditions,
        parse_bool(is_active) AS is_active,
        bounded_ts(parse_ts(updated_at), _ingested_at) AS updated_at,
        _parse_error, _source_file, _source_line, _ingested_at, _batch_id, _record_hash,
        b AS _bronze
    FROM pets_raw AS b
)
SELECT
    t.* EXCLUDE (_parse_error, _bronze),
    CASE
        WHEN _parse_error IS NOT NULL THEN 'malformed_record'
        WHEN t.pet_id IS NULL THEN 'missing_key'
        WHEN c.customer_id IS NULL THEN 'orphan_fk'
    END AS _reject_reason,
    CASE
        WHEN _parse_error IS NOT NULL THEN _parse_error
        WHEN t.pet_id IS NULL THEN NULL
        WHEN c.customer_id IS NULL THEN 'customer_id ' || coalesce(t.customer_id, '(empty)') || ' not in dim_customers'
    END AS _reject_detail,
    quality_score(
        (breed IS NOT NULL)::INT + (gender IS NOT NULL)::INT + (t.date_of_birth IS NOT NULL)::INT
        + (weight_lbs IS NOT NULL)::INT + (microchip_id IS NOT NULL)::INT, 5) AS _quality_score,
    CASE WHEN _reject_reason IS NOT NULL THEN bronze_record_text(_bronze) END AS _rejected_record
FROM typed AS t
LEFT JOIN (SELECT customer_id FROM dim_customers) AS c ON c.customer_id = t.customer_id;
