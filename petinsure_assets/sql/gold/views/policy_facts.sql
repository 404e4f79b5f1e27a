-- View policy_facts (reads dim_policies); shared by several gold tables. getvariable('as_of')
-- is the run's as-of date.
-- A policy earns premium when Active or Expired; it is in force in every calendar month from its
-- effective month to its expiration month, but not after the as-of month.
CREATE OR REPLACE TEMP VIEW policy_facts AS
SELECT
    p.*,
    p.status IN ('Active', 'Expired') AS earns,
    p.status = 'Active' AND p.effective_date <= getvariable('as_of')
        AND getvariable('as_of') <= p.expiration_date AS is_active_policy,
    month_index(p.effective_date) AS first_month_in_force,
    least(month_index(p.expiration_date), month_index(getvariable('as_of'))) AS last_month_in_force,
    CASE WHEN p.status IN ('Active', 'Expired')
         THEN greatest(0, least(month_index(p.expiration_date), month_index(getvariable('as_of')))
                          - month_index(p.effective_date) + 1)
         ELSE 0 END AS months_in_force
FROM dim_policies AS p;
