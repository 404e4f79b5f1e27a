-- View pet_facts (reads dim_pets); shared by several gold tables. getvariable('as_of')
-- is the run's as-of date.
-- An active pet: is_active true.
CREATE OR REPLACE TEMP VIEW pet_facts AS
SELECT
    pe.*,
    coalesce(pe.is_active, false) AS is_active_pet,
    age_years(pe.date_of_birth, getvariable('as_of')) AS age_years,
    coalesce(lower(pe.pre_existing_conditions) <> 'none', false) AS has_pre_existing_condition
FROM dim_pets AS pe;
