-- silver.dim_providers: typed, cleaned vet providers, validated, then the latest version per key.
-- Reads: providers_raw. Writes temp tables providers_staged and dim_providers.
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

CREATE OR REPLACE TEMP TABLE dim_providers AS
SELECT * EXCLUDE (_reject_reason, _reject_detail, _rejected_record)
FROM providers_staged
WHERE _reject_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY provider_id
    ORDER BY updated_at DESC NULLS LAST, _ingested_at DESC, _source_file DESC, _source_line DESC
) = 1;
