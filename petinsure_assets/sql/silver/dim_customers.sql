-- silver.dim_customers: every bronze customers record typed, cleaned and judged by the hard rules.
-- Reads: customers_raw (bronze). Writes the temp table customers_staged: one row per bronze record
-- with _reject_reason / _reject_detail when a hard rule fails. The latest valid version per key
-- (silver.dim_customers) and the quarantine rows are taken from it as dim_customers.toml says
-- (queries.latest_versions_sql, queries.quarantine_sql).
-- Quality score: email, phone, address, city, state, zip_code, date_of_birth (7 checked fields).
CREATE OR REPLACE TEMP TABLE customers_staged AS
WITH typed AS (
    SELECT
        clean_text(customer_id) AS customer_id,
        clean_text(first_name) AS first_name,
        clean_text(last_name) AS last_name,
        clean_email(email) AS email,
        clean_phone(phone) AS phone,
        clean_text(address) AS address,
        clean_text(city) AS city,
        clean_state(state) AS state,
        clean_zip(zip_code) AS zip_code,
        bounded_date(parse_date(date_of_birth), _ingested_at, INTERVAL 1 YEAR) AS date_of_birth,
        bounded_date(parse_date(customer_since), _ingested_at, INTERVAL 1 YEAR) AS customer_since,
        clean_text(segment) AS segment,
        parse_money(lifetime_value) AS lifetime_value,
        bounded_ts(parse_ts(updated_at), _ingested_at) AS updated_at,
        _parse_error, _source_file, _source_line, _ingested_at, _batch_id, _record_hash,
        b AS _bronze
    FROM customers_raw AS b
)
SELECT
    * EXCLUDE (_parse_error, _bronze),
    CASE
        WHEN _parse_error IS NOT NULL THEN 'malformed_record'
        WHEN customer_id IS NULL THEN 'missing_key'
    END AS _reject_reason,
    _parse_error AS _reject_detail,
    quality_score(
        (email IS NOT NULL)::INT + (phone IS NOT NULL)::INT + (address IS NOT NULL)::INT
        + (city IS NOT NULL)::INT + (state IS NOT NULL)::INT + (zip_code IS NOT NULL)::INT
        + (date_of_birth IS NOT NULL)::INT, 7) AS _quality_score,
    CASE WHEN _reject_reason IS NOT NULL THEN bronze_record_text(_bronze) END AS _rejected_record
FROM typed;
