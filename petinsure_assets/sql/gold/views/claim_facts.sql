-- View claim_facts (reads fact_claims); shared by several gold tables. getvariable('as_of')
-- is the run's as-of date.
-- Approved = Approved or Paid; decided = approved or Denied; paid counts only when approved, and a
-- null paid amount counts as 0.
-- Last 12 months: as_of - 12 months < service_date <= as_of.
CREATE OR REPLACE TEMP VIEW claim_facts AS
SELECT
    c.*,
    c.status IN ('Approved', 'Paid') AS is_approved,
    c.status IN ('Approved', 'Paid', 'Denied') AS is_decided,
    CASE WHEN c.status IN ('Approved', 'Paid') THEN coalesce(c.paid_amount, 0) END AS approved_paid,
    c.service_date > CAST(getvariable('as_of') - INTERVAL 12 MONTH AS DATE)
        AND c.service_date <= getvariable('as_of') AS in_last_12_months
FROM fact_claims AS c;
