-- silver.quarantine: every bronze record that failed a hard rule, one reason each (docs/rules.md):
-- malformed_record, missing_key, bad_date, bad_value, negative_amount, overpaid, orphan_fk.
-- Reads the *_staged temp tables the entity files created.
CREATE OR REPLACE TEMP TABLE quarantine AS
SELECT 'customers' AS entity, customer_id AS record_key, _reject_reason AS reason,
       _reject_detail AS detail, _source_file AS source_file, _source_line AS source_line,
       _ingested_at AS ingested_at, _batch_id AS batch_id, _record_hash AS record_hash,
       _rejected_record AS record
FROM customers_staged WHERE _reject_reason IS NOT NULL
UNION ALL
SELECT 'providers', provider_id, _reject_reason, _reject_detail, _source_file, _source_line,
       _ingested_at, _batch_id, _record_hash, _rejected_record
FROM providers_staged WHERE _reject_reason IS NOT NULL
UNION ALL
SELECT 'pets', pet_id, _reject_reason, _reject_detail, _source_file, _source_line,
       _ingested_at, _batch_id, _record_hash, _rejected_record
FROM pets_staged WHERE _reject_reason IS NOT NULL
UNION ALL
SELECT 'policies', policy_id, _reject_reason, _reject_detail, _source_file, _source_line,
       _ingested_at, _batch_id, _record_hash, _rejected_record
FROM policies_staged WHERE _reject_reason IS NOT NULL
UNION ALL
SELECT 'claims', claim_id, _reject_reason, _reject_detail, _source_file, _source_line,
       _ingested_at, _batch_id, _record_hash, _rejected_record
FROM claims_staged WHERE _reject_reason IS NOT NULL
ORDER BY entity, source_file, source_line;
