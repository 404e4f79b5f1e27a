-- gold.cross_sell_recommendations: one row per (customer, recommendation) that fires, with the
-- reason, estimated annual revenue and priority (docs/rules.md; amounts in thresholds.py).
WITH active_policy_by_pet AS (
    SELECT pet_id,
           count(*) AS active_policies,
           bool_or(coalesce(includes_dental, false)) AS any_dental
    FROM policy_facts WHERE is_active_policy GROUP BY pet_id
), book AS (
    SELECT sum(monthly_premium) * 12 AS annual_premium, count(*) AS active_policies
    FROM policy_facts WHERE is_active_policy
), pet_flags AS (
    SELECT pe.customer_id,
           count(*) FILTER (WHERE pe.is_active_pet AND ap.pet_id IS NULL) AS uninsured_active_pets,
           count(*) FILTER (WHERE pe.is_active_pet AND ap.pet_id IS NOT NULL AND NOT ap.any_dental
                              AND pe.age_years >= getvariable('cross_sell_dental_min_pet_age'))
               AS pets_without_dental
    FROM pet_facts AS pe
    LEFT JOIN active_policy_by_pet AS ap ON ap.pet_id = pe.pet_id
    GROUP BY pe.customer_id
), policy_flags AS (
    SELECT customer_id,
           count(*) FILTER (WHERE is_active_policy AND NOT coalesce(includes_wellness, false))
               AS policies_without_wellness,
           count(*) FILTER (WHERE is_active_policy AND plan_name = 'Basic') AS active_basic_policies
    FROM policy_facts GROUP BY customer_id
), wellness AS (
    SELECT customer_id, count(*) AS wellness_claims
    FROM claim_facts WHERE claim_type = 'Wellness' GROUP BY customer_id
), per_customer AS (
    SELECT
        m.customer_id,
        m.full_name,
        m.active_policies,
        m.annual_premium,
        m.claims_last_12_months,
        coalesce(pf.uninsured_active_pets, 0) AS uninsured_active_pets,
        coalesce(pf.pets_without_dental, 0) AS pets_without_dental,
        coalesce(w.wellness_claims, 0) AS wellness_claims,
        coalesce(po.policies_without_wellness, 0) AS policies_without_wellness,
        coalesce(po.active_basic_policies, 0) AS active_basic_policies
    FROM customer_metrics AS m
    LEFT JOIN pet_flags AS pf ON pf.customer_id = m.customer_id
    LEFT JOIN policy_flags AS po ON po.customer_id = m.customer_id
    LEFT JOIN wellness AS w ON w.customer_id = m.customer_id
), recommendations AS (
    SELECT customer_id, full_name, 'Insure Additional Pet' AS recommendation,
           uninsured_active_pets || ' active pet(s) without an active policy' AS reason,
           CASE WHEN active_policies > 0
                THEN money_div(uninsured_active_pets * annual_premium, active_policies)
                -- An empty book (no active policy at all) estimates 0, never null.
                ELSE coalesce(money_div(uninsured_active_pets * (SELECT annual_premium FROM book),
                                        (SELECT active_policies FROM book)), CAST(0 AS DECIMAL(18, 2))) END
               AS estimated_revenue
    FROM per_customer WHERE uninsured_active_pets > 0
    UNION ALL
    SELECT customer_id, full_name, 'Wellness Add-on',
           wellness_claims || ' wellness claim(s) filed and ' || policies_without_wellness
               || ' active policy(ies) without wellness cover',
           CAST(getvariable('cross_sell_wellness_revenue') * policies_without_wellness AS DECIMAL(18, 2))
    FROM per_customer WHERE wellness_claims > 0 AND policies_without_wellness > 0
    UNION ALL
    SELECT customer_id, full_name, 'Dental Coverage',
           pets_without_dental || ' active pet(s) aged ' || getvariable('cross_sell_dental_min_pet_age')
               || '+ whose active policy lacks dental cover',
           CAST(getvariable('cross_sell_dental_revenue') * pets_without_dental AS DECIMAL(18, 2))
    FROM per_customer WHERE pets_without_dental > 0
    UNION ALL
    SELECT customer_id, full_name, 'Plan Upgrade',
           claims_last_12_months || ' claims in the last 12 months on ' || active_basic_policies
               || ' active Basic policy(ies)',
           CAST(getvariable('cross_sell_upgrade_revenue') * active_basic_policies AS DECIMAL(18, 2))
    FROM per_customer
    WHERE active_basic_policies > 0
      AND claims_last_12_months >= getvariable('cross_sell_upgrade_min_recent_claims')
)
SELECT
    customer_id,
    full_name,
    recommendation,
    reason,
    estimated_revenue,
    CASE
        WHEN estimated_revenue >= getvariable('cross_sell_priority_high_min') THEN 'High'
        WHEN estimated_revenue >= getvariable('cross_sell_priority_medium_min') THEN 'Medium'
        ELSE 'Low'
    END AS priority
FROM recommendations
ORDER BY customer_id, recommendation;
