-- gold.risk_scoring: one row per silver customer; a 0-100 risk score from claim frequency, loss
-- ratio, pet age and pre-existing conditions (docs/rules.md; thresholds in thresholds.py).
WITH scored AS (
    SELECT
        customer_id,
        full_name,
        claims_last_12_months,
        loss_ratio,
        oldest_active_pet_age,
        has_pre_existing_condition,
        least(getvariable('risk_claim_frequency_max'),
              getvariable('risk_points_per_recent_claim') * claims_last_12_months) AS claim_frequency_score,
        CASE
            WHEN loss_ratio IS NULL OR loss_ratio < getvariable('risk_loss_ratio_low') THEN 0
            WHEN loss_ratio < getvariable('risk_loss_ratio_mid') THEN getvariable('risk_loss_ratio_points_mid')
            WHEN loss_ratio < getvariable('risk_loss_ratio_high') THEN getvariable('risk_loss_ratio_points_high')
            ELSE getvariable('risk_loss_ratio_points_max')
        END AS loss_ratio_score,
        CASE
            WHEN oldest_active_pet_age >= getvariable('risk_senior_pet_age') THEN getvariable('risk_senior_pet_points')
            WHEN oldest_active_pet_age >= getvariable('risk_mature_pet_age') THEN getvariable('risk_mature_pet_points')
            ELSE 0
        END AS pet_age_score,
        CASE WHEN has_pre_existing_condition THEN getvariable('risk_pre_existing_points') ELSE 0 END
            AS pre_existing_score
    FROM customer_metrics
), totals AS (
    SELECT *,
        CAST(least(getvariable('risk_score_max'),
                   claim_frequency_score + loss_ratio_score + pet_age_score + pre_existing_score)
             AS INTEGER) AS total_risk_score
    FROM scored
)
SELECT
    customer_id,
    full_name,
    CAST(claims_last_12_months AS INTEGER) AS claims_last_12_months,
    loss_ratio,
    CAST(oldest_active_pet_age AS INTEGER) AS oldest_active_pet_age,
    has_pre_existing_condition,
    CAST(claim_frequency_score AS INTEGER) AS claim_frequency_score,
    CAST(loss_ratio_score AS INTEGER) AS loss_ratio_score,
    CAST(pet_age_score AS INTEGER) AS pet_age_score,
    CAST(pre_existing_score AS INTEGER) AS pre_existing_score,
    total_risk_score,
    CASE
        WHEN total_risk_score >= getvariable('risk_critical_min') THEN 'Critical'
        WHEN total_risk_score >= getvariable('risk_high_min') THEN 'High'
        WHEN total_risk_score >= getvariable('risk_medium_min') THEN 'Medium'
        ELSE 'Low'
    END AS risk_category,
    CASE
        WHEN total_risk_score >= getvariable('risk_critical_min') THEN 'Manual underwriting review'
        WHEN total_risk_score >= getvariable('risk_high_min') THEN 'Review at renewal'
        WHEN total_risk_score >= getvariable('risk_medium_min') THEN 'Monitor claims'
        ELSE 'Standard renewal'
    END AS recommended_action
FROM totals
ORDER BY customer_id;
