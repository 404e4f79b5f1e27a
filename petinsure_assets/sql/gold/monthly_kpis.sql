-- gold.monthly_kpis: one row per service month from the first to the last month with claims, gaps
-- filled with zeros - claims, approvals, amounts, processing days, new customers, policies in
-- force, premium earned, loss ratio and month-over-month claims growth.
WITH claim_months AS (
    SELECT month_index(service_date) AS m,
           count(*) AS total_claims,
           count(*) FILTER (WHERE is_approved) AS approved_claims,
           count(*) FILTER (WHERE status = 'Denied') AS denied_claims,
           count(*) FILTER (WHERE is_decided) AS decided_claims,
           sum(claim_amount) AS total_claimed,
           count(claim_amount) AS claims_with_amount,
           sum(approved_paid) AS total_paid,
           sum(processing_days) FILTER (WHERE is_decided) AS decided_processing_days,
           count(processing_days) FILTER (WHERE is_decided) AS decided_with_days
    FROM claim_facts GROUP BY 1
), months AS (
    SELECT unnest(range(min(m), max(m) + 1)) AS m FROM claim_months
), new_customers AS (
    SELECT month_index(customer_since) AS m, count(*) AS new_customers
    FROM dim_customers WHERE customer_since IS NOT NULL GROUP BY 1
), force_changes AS (
    -- Policies in force per month as a running sum of starts (+) and ends (-) per month.
    SELECT m, sum(policies) AS policies, sum(premium) AS premium FROM (
        SELECT first_month_in_force AS m, 1 AS policies, monthly_premium AS premium
        FROM policy_facts WHERE earns AND last_month_in_force >= first_month_in_force
        UNION ALL
        SELECT last_month_in_force + 1, -1, -monthly_premium
        FROM policy_facts WHERE earns AND last_month_in_force >= first_month_in_force
    ) GROUP BY m
), in_force AS (
    SELECT m,
           sum(policies) OVER (ORDER BY m) AS policies_in_force,
           sum(premium) OVER (ORDER BY m) AS premium_earned
    FROM (SELECT m, policies, premium FROM force_changes
          UNION ALL SELECT m, 0, 0 FROM months)
), in_force_by_month AS (
    SELECT m, max(policies_in_force) AS policies_in_force, max(premium_earned) AS premium_earned
    FROM in_force GROUP BY m
), joined AS (
    SELECT
        mo.m,
        coalesce(c.total_claims, 0) AS total_claims,
        coalesce(c.approved_claims, 0) AS approved_claims,
        coalesce(c.denied_claims, 0) AS denied_claims,
        c.decided_claims,
        coalesce(c.total_claimed, 0) AS total_claimed,
        c.claims_with_amount,
        coalesce(c.total_paid, 0) AS total_paid,
        c.decided_processing_days,
        c.decided_with_days,
        coalesce(n.new_customers, 0) AS new_customers,
        coalesce(f.policies_in_force, 0) AS policies_in_force,
        coalesce(f.premium_earned, 0) AS premium_earned,
        lag(coalesce(c.total_claims, 0)) OVER (ORDER BY mo.m) AS previous_claims
    FROM months AS mo
    LEFT JOIN claim_months AS c USING (m)
    LEFT JOIN new_customers AS n USING (m)
    LEFT JOIN in_force_by_month AS f USING (m)
)
SELECT
    printf('%04d-%02d', m // 12, m % 12 + 1) AS year_month,
    CAST(total_claims AS INTEGER) AS total_claims,
    CAST(approved_claims AS INTEGER) AS approved_claims,
    CAST(denied_claims AS INTEGER) AS denied_claims,
    ratio(approved_claims, decided_claims) AS approval_rate,
    CAST(total_claimed AS DECIMAL(18, 2)) AS total_claimed,
    CAST(total_paid AS DECIMAL(18, 2)) AS total_paid,
    money_div(total_claimed, claims_with_amount) AS avg_claim_amount,
    div_round(decided_processing_days, decided_with_days, 2) AS avg_processing_days,
    CAST(new_customers AS INTEGER) AS new_customers,
    CAST(policies_in_force AS INTEGER) AS policies_in_force,
    CAST(premium_earned AS DECIMAL(18, 2)) AS premium_earned,
    ratio(total_paid, premium_earned) AS loss_ratio,
    pct((total_claims - previous_claims) * 100, previous_claims) AS claims_growth_pct
FROM joined
ORDER BY m;
