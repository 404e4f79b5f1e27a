-- gold.customer_360_view: one row per silver customer - profile (no email, phone, street address
-- or date of birth), pets, policies, premium earned, claims, loss ratio, lifetime value and value
-- tier, risk score and category (from gold.risk_scoring).
SELECT
    m.customer_id,
    m.full_name,
    m.first_name,
    m.last_name,
    m.city,
    m.state,
    m.segment,
    m.customer_since,
    CAST(whole_months(m.customer_since, getvariable('as_of')) AS INTEGER) AS tenure_months,
    CAST(m.total_pets AS INTEGER) AS total_pets,
    CAST(m.active_pets AS INTEGER) AS active_pets,
    CAST(m.total_policies AS INTEGER) AS total_policies,
    CAST(m.active_policies AS INTEGER) AS active_policies,
    CAST(m.annual_premium AS DECIMAL(18, 2)) AS annual_premium,
    CAST(m.premium_earned AS DECIMAL(18, 2)) AS premium_earned,
    CAST(m.total_claims AS INTEGER) AS total_claims,
    CAST(m.total_claimed AS DECIMAL(18, 2)) AS total_claimed,
    CAST(m.total_paid AS DECIMAL(18, 2)) AS total_paid,
    m.loss_ratio,
    CAST(m.premium_earned AS DECIMAL(18, 2)) AS lifetime_value,
    CASE
        WHEN m.premium_earned >= getvariable('tier_platinum_min') THEN 'Platinum'
        WHEN m.premium_earned >= getvariable('tier_gold_min') THEN 'Gold'
        WHEN m.premium_earned >= getvariable('tier_silver_min') THEN 'Silver'
        ELSE 'Bronze'
    END AS value_tier,
    r.total_risk_score AS risk_score,
    r.risk_category,
    m.last_claim_date
FROM customer_metrics AS m
LEFT JOIN risk_scoring AS r USING (customer_id)
ORDER BY m.customer_id;
