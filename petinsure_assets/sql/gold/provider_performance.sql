-- gold.provider_performance: every silver provider, zero-claim ones included - claim volume and
-- amounts, approval rate, processing days, distinct customers, rating and network.
WITH cl AS (
    SELECT provider_id,
           count(*) AS total_claims,
           sum(claim_amount) AS total_claimed,
           sum(approved_paid) AS total_paid,
           count(claim_amount) AS claims_with_amount,
           count(*) FILTER (WHERE is_approved) AS approved_claims,
           count(*) FILTER (WHERE is_decided) AS decided_claims,
           sum(processing_days) FILTER (WHERE is_decided) AS decided_processing_days,
           count(processing_days) FILTER (WHERE is_decided) AS decided_with_days,
           count(DISTINCT customer_id) AS unique_customers
    FROM claim_facts GROUP BY provider_id
)
SELECT
    p.provider_id,
    p.provider_name,
    p.provider_type,
    p.city,
    p.state,
    CAST(coalesce(cl.total_claims, 0) AS INTEGER) AS total_claims,
    CAST(coalesce(cl.total_claimed, 0) AS DECIMAL(18, 2)) AS total_claimed,
    CAST(coalesce(cl.total_paid, 0) AS DECIMAL(18, 2)) AS total_paid,
    money_div(cl.total_claimed, cl.claims_with_amount) AS avg_claim_amount,
    ratio(cl.approved_claims, cl.decided_claims) AS approval_rate,
    div_round(cl.decided_processing_days, cl.decided_with_days, 2) AS avg_processing_days,
    CAST(coalesce(cl.unique_customers, 0) AS INTEGER) AS unique_customers,
    p.average_rating,
    p.is_in_network
FROM dim_providers AS p
LEFT JOIN cl USING (provider_id)
ORDER BY p.provider_id;
