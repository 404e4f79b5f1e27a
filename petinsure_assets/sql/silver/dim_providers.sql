-- silver.dim_providers: every bronze vet providers record typed, cleaned and judged by the hard
-- rules. Reads: providers_raw (bronze). Writes the temp table providers_staged: one row per bronze
-- record with _reject_reason / _reject_detail when a hard rule fails. The latest valid version per
-- key (silver.dim_providers) and the quarantine rows are taken from it as dim_providers.toml says
-- (queries.latest_versions_sql, queries.quarantine_sql).
-- Quality score: address, phone, state, average_rating (0-5) (4 checked fields).
CREATE OR REPLACE TEMP TABLE providers_staged AS
WITH typed AS (
    SELECT
        clean_text(provider_id) AS provider_id,
        clean_text(provider_name) AS provider_name,
        clean_text(provider_type) AS provider_type,
        clean_text(address) AS address,
        clean_text(city) AS city,
        clean_state(state) AS state,
        clean_zip(zip_code) AS zip_code,
        clean_phone(phone) AS phone,
        parse_bool(is_in_network) AS is_in_network,
        CASE WHEN parse_double(average_rating) BETWEEN 0 AND 5
             THEN parse_double(average_rating) END AS average_rating,
        clean_text(specialties) AS specialties,
        bounded_ts(parse_ts(updated_at), _ingested_at) AS updated_at,
        _parse_error, _source_file, _source_line, _ingested_at, _batch_id, _record_hash,
        b AS _bronze
    FROM providers_raw AS b
)
SELECT
    * EXCLUDE (_parse_error, _bronze),
    CASE
        WHEN _parse_error IS NOT NULL THEN 'malformed_record'
        WHEN provider_id IS NULL THEN 'missing_key'
    END AS _reject_reason,
    _parse_error AS _reject_detail,
    quality_score(
        (address IS NOT NULL)::INT + (phone IS NOT NULL)::INT + (state IS NOT NULL)::INT
        + (average_rating IS NOT NULL)::INT, 4) AS _quality_score,
    CASE WHEN _reject_reason IS NOT NULL THEN bronze_record_text(_bronze) END AS _rejected_record
FROM typed;
