"""Every business threshold behind a gold number, in one place (docs/rules.md, "Gold").

The gold SQL reads them as DuckDB variables: `getvariable('tier_platinum_min')`. Change a value
here and every table that uses it follows; nothing is repeated in the SQL.
"""

from __future__ import annotations

from petinsure_assets import contracts

THRESHOLDS: dict[str, int | float] = {
    # customer_360_view.value_tier from lifetime_value: Platinum >= 3000 > Gold >= 1500 > Silver >= 500 > Bronze
    "tier_platinum_min": 3000,
    "tier_gold_min": 1500,
    "tier_silver_min": 500,
    # risk_scoring.claim_frequency_score = min(40, 10 x claims in the last 12 months)
    "risk_points_per_recent_claim": 10,
    "risk_claim_frequency_max": 40,
    # risk_scoring.loss_ratio_score: 0 below 0.5 (or no ratio), 10 below 0.8, 20 below 1.0, else 30
    "risk_loss_ratio_low": 0.5,
    "risk_loss_ratio_mid": 0.8,
    "risk_loss_ratio_high": 1.0,
    "risk_loss_ratio_points_mid": 10,
    "risk_loss_ratio_points_high": 20,
    "risk_loss_ratio_points_max": 30,
    # risk_scoring.pet_age_score: 15 if the oldest active pet is >= 10 years, 10 if >= 7
    "risk_senior_pet_age": 10,
    "risk_senior_pet_points": 15,
    "risk_mature_pet_age": 7,
    "risk_mature_pet_points": 10,
    # risk_scoring.pre_existing_score
    "risk_pre_existing_points": 15,
    "risk_score_max": 100,
    # risk_category: Low < 25 <= Medium < 50 <= High < 75 <= Critical
    "risk_medium_min": 25,
    "risk_high_min": 50,
    "risk_critical_min": 75,
    # cross_sell_recommendations
    "cross_sell_wellness_revenue": 120,
    "cross_sell_dental_revenue": 96,
    "cross_sell_dental_min_pet_age": 3,
    "cross_sell_upgrade_revenue": 180,
    "cross_sell_upgrade_min_recent_claims": 2,
    "cross_sell_priority_high_min": 200,
    "cross_sell_priority_medium_min": 100,
}

# The labels gold's SQL gives (the CASE branches of the thresholds above); the gold checks and the
# API's filters accept exactly these.
VALUE_TIERS = ("Platinum", "Gold", "Silver", "Bronze")
RISK_CATEGORIES = ("Low", "Medium", "High", "Critical")
CROSS_SELL_RECOMMENDATIONS = (
    "Insure Additional Pet",
    "Wellness Add-on",
    "Dental Coverage",
    "Plan Upgrade",
)
CROSS_SELL_PRIORITIES = ("High", "Medium", "Low")

# Every named list of values a check in the table catalog (sql/*/*.toml, `accepted`) may name.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "claim_statuses": contracts.CLAIM_STATUSES,
    "policy_statuses": contracts.POLICY_STATUSES,
    "plan_names": contracts.PLAN_NAMES,
    "claim_types": contracts.CLAIM_TYPES,
    "species": contracts.SPECIES,
    "value_tiers": VALUE_TIERS,
    "risk_categories": RISK_CATEGORIES,
    "cross_sell_recommendations": CROSS_SELL_RECOMMENDATIONS,
    "cross_sell_priorities": CROSS_SELL_PRIORITIES,
}

# The value lists the silver SQL maps onto, as DuckDB variables (`getvariable('accepted_species')`).
ACCEPTED_VALUES: dict[str, tuple[str, ...]] = {
    f"accepted_{name}": VOCABULARIES[name]
    for name in ("claim_statuses", "policy_statuses", "plan_names", "claim_types", "species")
}
