-- View customer_metrics (reads dim_customers and the views policy_facts, claim_facts, pet_facts); shared by several gold tables. getvariable('as_of')
-- is the run's as-of date.
-- Per customer: the measures that customer_360_view, risk_scoring and cross-sell share.
CREATE OR REPLACE TEMP VIEW customer_metrics AS
WITH pol AS (
    SELECT customer_id,
           count(*) AS total_policies,
           count(*) FILTER (WHERE is_active_policy) AS active_policies,
           coalesce(sum(monthly_premium) FILTER (WHERE is_active_policy), 0) AS active_monthly_premium,
           coalesce(sum(monthly_premium * months_in_force) FILTER (WHERE earns), 0) AS premium_earned
    FROM policy_facts GROUP BY customer_id
), cl AS (
    SELECT customer_id,
           count(*) AS total_claims,
           coalesce(sum(claim_amount), 0) AS total_claimed,
           coalesce(sum(approved_paid), 0) AS total_paid,
           count(*) FILTER (WHERE in_last_12_months) AS claims_last_12_months,
           max(service_date) AS last_claim_date
    FROM claim_facts GROUP BY customer_id
), pe AS (
    SELECT customer_id,
           count(*) AS total_pets,
           count(*) FILTER (WHERE is_active_pet) AS active_pets,
           max(age_years) FILTER (WHERE is_active_pet) AS oldest_active_pet_age,
           coalesce(bool_or(has_pre_existing_condition) FILTER (WHERE is_active_pet), false)
               AS has_pre_existing_condition
    FROM pet_facts GROUP BY customer_id
)
SELECT
    cu.*,
    full_name(cu.first_name, cu.last_name) AS full_name,
    coalesce(pe.total_pets, 0) AS total_pets,
    coalesce(pe.active_pets, 0) AS active_pets,
    pe.oldest_active_pet_age,
    coalesce(pe.has_pre_existing_condition, false) AS has_pre_existing_condition,
    coalesce(pol.total_policies, 0) AS total_policies,
    coalesce(pol.active_policies, 0) AS active_policies,
    coalesce(pol.active_monthly_premium, 0) * 12 AS annual_premium,
    coalesce(pol.premium_earned, 0) AS premium_earned,
    coalesce(cl.total_claims, 0) AS total_claims,
    coalesce(cl.total_claimed, 0) AS total_claimed,
    coalesce(cl.total_paid, 0) AS total_paid,
    coalesce(cl.claims_last_12_months, 0) AS claims_last_12_months,
    cl.last_claim_date,
    ratio(coalesce(cl.total_paid, 0), pol.premium_earned) AS loss_ratio
FROM dim_customers AS cu
LEFT JOIN pol USING (customer_id)
LEFT JOIN cl USING (customer_id)
LEFT JOIN pe USING (customer_id);
