-- gold.claims_analytics: every silver claim with its customer, pet, plan and provider attributes,
-- service month and reimbursement rate (paid / claimed, approved claims only, a null paid amount
-- counting as 0). denial_reason is free text: contact data in it is masked (exports promise none).
SELECT
    c.claim_id,
    c.claim_number,
    c.customer_id,
    c.policy_id,
    c.pet_id,
    c.provider_id,
    c.claim_type,
    c.claim_category,
    c.service_date,
    c.claim_amount,
    c.paid_amount,
    c.status,
    c.processing_days,
    mask_contacts(c.denial_reason) AS denial_reason,
    full_name(cu.first_name, cu.last_name) AS customer_name,
    pe.pet_name,
    pe.species,
    pe.breed,
    po.plan_name,
    pr.provider_name,
    pr.provider_type,
    pr.is_in_network,
    strftime(c.service_date, '%Y-%m') AS service_month,
    ratio(c.approved_paid, c.claim_amount) AS reimbursement_rate
FROM claim_facts AS c
LEFT JOIN dim_customers AS cu ON cu.customer_id = c.customer_id
LEFT JOIN dim_pets AS pe ON pe.pet_id = c.pet_id
LEFT JOIN dim_policies AS po ON po.policy_id = c.policy_id
LEFT JOIN dim_providers AS pr ON pr.provider_id = c.provider_id
ORDER BY c.claim_id;
