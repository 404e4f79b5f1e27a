"""Gold: the business tables, one SQL file each in sql/gold/ (formulas: docs/rules.md, "Gold").

Each asset registers its silver (and gold) inputs in a DuckDB session, creates the shared views it
uses (sql/gold/views/), sets the as-of date and thresholds as variables and runs its file.

Every gold commit records its inputs (the versions of the tables read, the as-of date, a hash of
the SQL); a run with the same inputs writes nothing and reports the table unchanged, while a new
as-of date or SQL rebuilds it even with nothing new in raw (resources.py, "inputs fingerprints").
"""

from dataclasses import dataclass

import dagster as dg
from dagster_duckdb import DuckDBResource

from petinsure_assets.bronze import OWNER
from petinsure_assets.lake import DeltaSource, TableWrite
from petinsure_assets.queries import prepare_session, sql_text
from petinsure_assets.resources import (
    LakeResource,
    ReportingDate,
    Unchanged,
    inputs_commit_metadata,
    unchanged_version,
)

# Gold commits carry the as-of date they were computed for (snapshots publish it).
AS_OF_COMMIT_KEY = "petinsure.as_of"
_CUSTOMER_VIEWS = ("policy_facts", "claim_facts", "pet_facts", "customer_metrics")
_CUSTOMER_INPUTS = ("dim_customers", "dim_pets", "dim_policies", "fact_claims")


@dataclass(frozen=True)
class GoldTable:
    name: str
    key: tuple[str, ...]  # the primary key; exports and snapshots are ordered by it
    description: str
    silver: tuple[str, ...]
    views: tuple[str, ...]
    gold: tuple[str, ...] = ()


GOLD_TABLES: tuple[GoldTable, ...] = (
    GoldTable(
        "risk_scoring",
        ("customer_id",),
        "Per customer, a 0-100 risk score = min(100, claim frequency (10 per claim in the last 12 "
        "months, max 40) + loss-ratio band (0/10/20/30 at 0.5/0.8/1.0, on the ratio rounded to 4 "
        "decimals) + oldest active pet age "
        "(15 if >= 10 y, 10 if >= 7 y) + 15 if an active pet has a pre-existing condition); "
        "category Low < 25 <= Medium < 50 <= High < 75 <= Critical, with a recommended action.",
        _CUSTOMER_INPUTS,
        _CUSTOMER_VIEWS,
    ),
    GoldTable(
        "customer_360_view",
        ("customer_id",),
        "One row per customer: pets, policies, annual premium (12 x monthly premium of active "
        "policies), premium earned (monthly premium x months in force), claims, loss ratio = paid "
        "on approved claims / premium earned, lifetime value = premium earned, value tier "
        "(Platinum >= 3000 > Gold >= 1500 > Silver >= 500 > Bronze), risk score and category. "
        "No email, phone, street address or date of birth.",
        _CUSTOMER_INPUTS,
        _CUSTOMER_VIEWS,
        gold=("risk_scoring",),
    ),
    GoldTable(
        "claims_analytics",
        ("claim_id",),
        "Every claim with customer, pet, plan and provider attributes, service month (YYYY-MM) "
        "and reimbursement rate = paid / claimed for approved (Approved or Paid) claims (a null "
        "paid amount counts as 0). E-mail addresses and phone numbers in denial_reason are "
        "masked as [email] and [phone].",
        ("dim_customers", "dim_pets", "dim_policies", "dim_providers", "fact_claims"),
        ("claim_facts",),
    ),
    GoldTable(
        "monthly_kpis",
        ("year_month",),
        "Per service month, first to last with no gaps: claims, approval rate = approved / "
        "(approved + denied), claimed, paid (approved claims), average claim, average processing "
        "days (decided claims), new customers, policies in force, premium earned (sum of monthly "
        "premiums in force), loss ratio = paid / premium earned, claims growth % vs the month before.",
        ("dim_customers", "dim_policies", "fact_claims"),
        ("policy_facts", "claim_facts"),
    ),
    GoldTable(
        "provider_performance",
        ("provider_id",),
        "Every provider, zero-claim ones included: claims, claimed, paid (approved claims), "
        "average claim, approval rate = approved / decided, average processing days, distinct "
        "customers, rating and network.",
        ("dim_providers", "fact_claims"),
        ("claim_facts",),
    ),
    GoldTable(
        "cross_sell_recommendations",
        ("customer_id", "recommendation"),
        "One row per (customer, recommendation) that fires: Insure Additional Pet (active pet "
        "without an active policy; customer's average annual premium per pet, else the book's, 0 "
        "for an empty book), Wellness Add-on (wellness claims and active policies without "
        "wellness: 120 each), Dental Coverage (active pets aged 3+ none of whose active policies "
        "includes dental: 96 each), Plan Upgrade (active Basic policies and "
        ">= 2 claims in 12 months: 180 each); priority High >= 200 > Medium >= 100 > Low.",
        _CUSTOMER_INPUTS,
        _CUSTOMER_VIEWS,
    ),
)


def _gold_asset(spec: GoldTable) -> dg.AssetsDefinition:
    ins = {t: dg.AssetIn(key=["silver", t]) for t in spec.silver}
    ins.update({t: dg.AssetIn(key=["gold", t]) for t in spec.gold})

    @dg.asset(
        key=["gold", spec.name],
        ins=ins,
        group_name="gold",
        kinds={"delta", "duckdb"},
        owners=[OWNER],
        description=spec.description,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        duckdb: DuckDBResource,
        reporting_date: ReportingDate,
        lake: LakeResource,
        **tables: DeltaSource,
    ):
        as_of = reporting_date.date()
        the_lake = lake.lake()
        export = {"export": dg.MetadataValue.path(the_lake.export_path(spec.name))}
        inputs = inputs_commit_metadata(
            tables,
            [*(f"gold/views/{v}" for v in spec.views), f"gold/{spec.name}"],
            as_of=as_of.isoformat(),
        )
        version = unchanged_version(the_lake, the_lake.table_uri("gold", spec.name), inputs)
        if version is not None:
            context.log.info(
                f"{spec.name}: inputs and as-of date {as_of} as at version {version}; nothing to do"
            )
            yield dg.Output(Unchanged(version), metadata={"as_of": as_of.isoformat(), **export})
            return
        with duckdb.get_connection() as con:
            prepare_session(con, as_of)
            for name, source in tables.items():
                source.register(con, name)
            for view in spec.views:
                con.execute(sql_text(f"gold/views/{view}"))
            context.log.info(f"{spec.name}: computing as of {as_of}")
            yield dg.Output(
                TableWrite(
                    con.sql(sql_text(f"gold/{spec.name}")).to_arrow_reader(),
                    commit_metadata={AS_OF_COMMIT_KEY: as_of.isoformat(), **inputs},
                ),
                metadata={"as_of": as_of.isoformat(), **export},
            )

    return _asset


gold_assets = [_gold_asset(spec) for spec in GOLD_TABLES]
GOLD_BY_NAME = {spec.name: spec for spec in GOLD_TABLES}
