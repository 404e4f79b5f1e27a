"""Data-quality gates: asset checks on every silver and gold table, and their history as data.

Each check is a query that returns the rows that break it (keys and the offending values): no
rows, the check passes. A failing check reports how many rows fail and a sample of them. Blocking
checks (severity ERROR) stop everything downstream of their table in the same run, and the
automation conditions (automation.py) do not materialize a child after a failed blocking check.

Every evaluation of a new version of a table is also appended to the Delta table
gold/_check_history (one row per check: check, asset, the table's Delta version, passed, severity,
failing rows, run id, time), which anyone can query. A run that leaves a table as it was (nothing
new) evaluates its checks again, for the run's gate, but records nothing: the same checks on the
same version give the same outcome, and a history growing with every no-op run would be the only
table the no-op writes.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pyarrow as pa

from petinsure_assets import contracts, thresholds
from petinsure_assets.lake import Lake
from petinsure_assets.queries import prepare_session
from petinsure_assets.resources import (
    LakeResource,
    content_version,
    duckdb_config,
    markdown_preview,
)

CHECK_HISTORY_TABLE = "_check_history"
SAMPLE_ROWS = 5

CHECK_HISTORY_SCHEMA = pa.schema(
    [
        ("check_name", pa.string()),
        ("asset_key", pa.string()),
        ("passed", pa.bool_()),
        ("severity", pa.string()),
        ("blocking", pa.bool_()),
        ("failing_rows", pa.int64()),
        ("description", pa.string()),
        ("run_id", pa.string()),
        ("evaluated_at", pa.timestamp("us", tz="UTC")),
        ("delta_version", pa.int64()),  # the checked table's content version (resources.py)
    ]
)


@dataclass(frozen=True)
class Check:
    """A named query over `t` (the checked table) and any tables named in `uses` (as
    "layer/table"), returning the failing rows."""

    name: str
    description: str
    sql: str
    uses: tuple[str, ...] = ()
    blocking: bool = True
    kind: str = "custom"  # not_null, unique, foreign_key, accepted, range, format, ...
    column: str | None = None


@dataclass
class Outcome:
    check: Check
    failing_rows: int
    sample: pa.Table
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


# ---- the kinds of check ---------------------------------------------------------------------


def primary_key(*cols: str) -> list[Check]:
    key = ", ".join(cols)
    label = "_".join(cols)
    return [
        Check(
            f"{label}_not_null",
            f"{key}: never null",
            f"SELECT {key} FROM t WHERE " + " OR ".join(f"{c} IS NULL" for c in cols),
            kind="not_null",
            column=cols[0],
        ),
        Check(
            f"{label}_unique",
            f"{key}: unique",
            f"SELECT {key}, count(*) AS copies FROM t GROUP BY ALL HAVING count(*) > 1",
            kind="unique",
            column=cols[0],
        ),
    ]


def foreign_key(col: str, parent: str, parent_col: str | None = None, key: str = "") -> Check:
    parent_col = parent_col or col
    return Check(
        f"{col}_in_{parent.split('/')[-1]}",
        f"every {col} resolves to {parent}.{parent_col}",
        f"SELECT {key + ', ' if key else ''}t.{col} FROM t "
        f"WHERE NOT EXISTS (SELECT 1 FROM {_name(parent)} p WHERE p.{parent_col} = t.{col})",
        uses=(parent,),
        kind="foreign_key",
        column=col,
    )


def accepted_values(col: str, values: Iterable[str], key: str, nullable: bool = False) -> Check:
    listed = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    null_clause = "" if nullable else f" OR {col} IS NULL"
    return Check(
        f"{col}_accepted",
        f"{col} in ({listed})" + (" or null" if nullable else ""),
        f"SELECT {key}, {col} FROM t WHERE {col} NOT IN ({listed}){null_clause}",
        kind="accepted",
        column=col,
    )


def in_range(col: str, key: str, low: float | None = None, high: float | None = None) -> Check:
    conditions = []
    if low is not None:
        conditions.append(f"{col} < {low}")
    if high is not None:
        conditions.append(f"{col} > {high}")
    bounds = " and ".join([f">= {low}"] * (low is not None) + [f"<= {high}"] * (high is not None))
    return Check(
        f"{col}_range",
        f"{col} {bounds} (nulls allowed)",
        f"SELECT {key}, {col} FROM t WHERE " + " OR ".join(conditions),
        kind="range",
        column=col,
    )


def matches(col: str, pattern: str, key: str, what: str) -> Check:
    return Check(
        f"{col}_format",
        f"{col} is {what} (or null)",
        f"SELECT {key}, {col} FROM t WHERE NOT regexp_full_match({col}, '{pattern}')",
        kind="format",
        column=col,
    )


def _name(table: str) -> str:
    return table.replace("/", "_")


# ---- the checks of each table -----------------------------------------------------------------

PHONE = r"\(\d{3}\) \d{3}-\d{4}"
EMAIL = r"[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}"
STATE = r"[A-Z]{2}"
ZIP = r"[0-9]{5}"
# The hard rules of docs/rules.md, in the order they apply (first match wins).
QUARANTINE_REASONS = (
    "malformed_record",
    "missing_key",
    "bad_date",
    "bad_value",
    "negative_amount",
    "overpaid",
    "orphan_fk",
)


def quality_score(key: str) -> Check:
    return in_range("_quality_score", key, 0, 100)


def _bronze_reconciles(entity: contracts.Entity, silver: str) -> Check:
    """Bronze = silver before dedup + quarantine: no bronze record may be in neither."""
    bronze = f"bronze/{entity.bronze_table}"
    return Check(
        f"bronze_reconciles_{entity.name}",
        f"every bronze {entity.name} record is in silver/{silver} (by key) or in quarantine",
        f"""
        SELECT b._source_file, b._source_line, b._batch_id, b.{entity.key}
        FROM {_name(bronze)} b
        WHERE NOT EXISTS (
                SELECT 1 FROM t q WHERE q.entity = '{entity.name}' AND q.batch_id = b._batch_id
                  AND q.source_file = b._source_file AND q.source_line = b._source_line)
          AND NOT EXISTS (
                SELECT 1 FROM silver_{silver} s WHERE s.{entity.key} = clean_text(b.{entity.key}))
        """,
        uses=(bronze, f"silver/{silver}"),
        kind="bronze_reconciles",
        column=entity.key,
    )


def _total_equals(name: str, description: str, gold_sql: str, silver_sql: str) -> Check:
    """A gold total equals the same total computed from silver."""
    return Check(
        name,
        description,
        f"SELECT g.total AS gold_total, s.total AS silver_total "
        f"FROM ({gold_sql}) g, ({silver_sql}) s WHERE g.total IS DISTINCT FROM s.total",
        uses=("silver/fact_claims",),
        kind="total_equals",
    )


SILVER_CLAIMS_COUNT = "SELECT count(*) AS total FROM silver_fact_claims"
SILVER_CLAIMED = "SELECT coalesce(sum(claim_amount), 0) AS total FROM silver_fact_claims"
SILVER_PAID = (
    "SELECT coalesce(sum(paid_amount) FILTER (WHERE status IN ('Approved', 'Paid')), 0)"
    " AS total FROM silver_fact_claims"
)


def _every_customer_present() -> Check:
    return Check(
        "every_silver_customer_present",
        "every customer of silver/dim_customers has a row",
        "SELECT c.customer_id FROM silver_dim_customers c "
        "WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.customer_id = c.customer_id)",
        uses=("silver/dim_customers",),
        kind="every_present",
        column="customer_id",
    )


TABLE_CHECKS: dict[str, list[Check]] = {
    "silver/dim_customers": [
        *primary_key("customer_id"),
        matches("email", EMAIL, "customer_id", "a lower-case email address"),
        matches("phone", PHONE, "customer_id", "formatted (XXX) XXX-XXXX"),
        matches("state", STATE, "customer_id", "a 2-letter state code"),
        matches("zip_code", ZIP, "customer_id", "5 digits"),
        quality_score("customer_id"),
    ],
    "silver/dim_providers": [
        *primary_key("provider_id"),
        matches("phone", PHONE, "provider_id", "formatted (XXX) XXX-XXXX"),
        matches("state", STATE, "provider_id", "a 2-letter state code"),
        in_range("average_rating", "provider_id", 0, 5),
        quality_score("provider_id"),
    ],
    "silver/dim_pets": [
        *primary_key("pet_id"),
        foreign_key("customer_id", "silver/dim_customers", key="pet_id"),
        accepted_values("species", contracts.SPECIES, "pet_id", nullable=True),
        in_range("weight_lbs", "pet_id", low=0),
        quality_score("pet_id"),
    ],
    "silver/dim_policies": [
        *primary_key("policy_id"),
        foreign_key("customer_id", "silver/dim_customers", key="policy_id"),
        foreign_key("pet_id", "silver/dim_pets", key="policy_id"),
        accepted_values("status", contracts.POLICY_STATUSES, "policy_id"),
        accepted_values("plan_name", contracts.PLAN_NAMES, "policy_id", nullable=True),
        in_range("monthly_premium", "policy_id", low=0),
        quality_score("policy_id"),
    ],
    "silver/fact_claims": [
        *primary_key("claim_id"),
        foreign_key("customer_id", "silver/dim_customers", key="claim_id"),
        foreign_key("policy_id", "silver/dim_policies", key="claim_id"),
        foreign_key("pet_id", "silver/dim_pets", key="claim_id"),
        foreign_key("provider_id", "silver/dim_providers", key="claim_id"),
        accepted_values("status", contracts.CLAIM_STATUSES, "claim_id"),
        accepted_values("claim_type", contracts.CLAIM_TYPES, "claim_id", nullable=True),
        in_range("claim_amount", "claim_id", low=0),
        in_range("paid_amount", "claim_id", low=0),
        Check(
            "paid_not_above_claimed",
            "paid_amount <= claim_amount",
            "SELECT claim_id, paid_amount, claim_amount FROM t WHERE paid_amount > claim_amount",
            kind="paid_not_above_claimed",
            column="paid_amount",
        ),
        quality_score("claim_id"),
    ],
    "silver/quarantine": [
        accepted_values("reason", QUARANTINE_REASONS, "entity, source_file, source_line"),
        Check(
            "lineage_not_null",
            "entity, source_file and source_line are never null",
            "SELECT entity, source_file, source_line FROM t "
            "WHERE entity IS NULL OR source_file IS NULL OR source_line IS NULL",
            kind="not_null",
            column="source_file",
        ),
        _bronze_reconciles(contracts.CUSTOMERS, "dim_customers"),
        _bronze_reconciles(contracts.PROVIDERS, "dim_providers"),
        _bronze_reconciles(contracts.PETS, "dim_pets"),
        _bronze_reconciles(contracts.POLICIES, "dim_policies"),
        _bronze_reconciles(contracts.CLAIMS, "fact_claims"),
    ],
    "gold/customer_360_view": [
        *primary_key("customer_id"),
        _every_customer_present(),
        accepted_values("value_tier", thresholds.VALUE_TIERS, "customer_id"),
        accepted_values("risk_category", thresholds.RISK_CATEGORIES, "customer_id"),
        in_range("loss_ratio", "customer_id", low=0),
        in_range("premium_earned", "customer_id", low=0),
        _total_equals(
            "claims_count_equals_silver",
            "sum of total_claims = silver claims",
            "SELECT sum(total_claims) AS total FROM t",
            SILVER_CLAIMS_COUNT,
        ),
        _total_equals(
            "claimed_equals_silver",
            "sum of total_claimed = silver claimed",
            "SELECT sum(total_claimed) AS total FROM t",
            SILVER_CLAIMED,
        ),
        _total_equals(
            "paid_equals_silver",
            "sum of total_paid = silver paid (approved claims)",
            "SELECT sum(total_paid) AS total FROM t",
            SILVER_PAID,
        ),
    ],
    "gold/risk_scoring": [
        *primary_key("customer_id"),
        _every_customer_present(),
        accepted_values("risk_category", thresholds.RISK_CATEGORIES, "customer_id"),
        in_range("total_risk_score", "customer_id", 0, 100),
        in_range("loss_ratio", "customer_id", low=0),
    ],
    "gold/claims_analytics": [
        *primary_key("claim_id"),
        in_range("claim_amount", "claim_id", low=0),
        in_range("reimbursement_rate", "claim_id", 0, 1),
        _total_equals(
            "claims_count_equals_silver",
            "row count = silver claims",
            "SELECT count(*) AS total FROM t",
            SILVER_CLAIMS_COUNT,
        ),
        _total_equals(
            "claimed_equals_silver",
            "sum of claim_amount = silver claimed",
            "SELECT coalesce(sum(claim_amount), 0) AS total FROM t",
            SILVER_CLAIMED,
        ),
        _total_equals(
            "paid_equals_silver",
            "sum of paid on approved claims = silver paid",
            "SELECT coalesce(sum(paid_amount) FILTER (WHERE status IN ('Approved', 'Paid')), 0)"
            " AS total FROM t",
            SILVER_PAID,
        ),
    ],
    "gold/monthly_kpis": [
        *primary_key("year_month"),
        Check(
            "no_missing_month",
            "every month between the first and the last is present",
            "SELECT strftime(m, '%Y-%m') AS missing_month FROM (SELECT unnest(generate_series("
            "min(strptime(year_month, '%Y-%m')), max(strptime(year_month, '%Y-%m')), "
            "INTERVAL 1 MONTH)) AS m FROM t) WHERE strftime(m, '%Y-%m') NOT IN "
            "(SELECT year_month FROM t)",
            kind="no_missing_month",
            column="year_month",
        ),
        in_range("approval_rate", "year_month", 0, 1),
        in_range("loss_ratio", "year_month", low=0),
        in_range("total_claims", "year_month", low=0),
        _total_equals(
            "claims_count_equals_silver",
            "sum of total_claims = silver claims",
            "SELECT sum(total_claims) AS total FROM t",
            SILVER_CLAIMS_COUNT,
        ),
        _total_equals(
            "claimed_equals_silver",
            "sum of total_claimed = silver claimed",
            "SELECT coalesce(sum(total_claimed), 0) AS total FROM t",
            SILVER_CLAIMED,
        ),
        _total_equals(
            "paid_equals_silver",
            "sum of total_paid = silver paid (approved claims)",
            "SELECT coalesce(sum(total_paid), 0) AS total FROM t",
            SILVER_PAID,
        ),
    ],
    "gold/provider_performance": [
        *primary_key("provider_id"),
        Check(
            "every_silver_provider_present",
            "every provider of silver/dim_providers has a row",
            "SELECT p.provider_id FROM silver_dim_providers p "
            "WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.provider_id = p.provider_id)",
            uses=("silver/dim_providers",),
            kind="every_present",
            column="provider_id",
        ),
        in_range("approval_rate", "provider_id", 0, 1),
        in_range("total_claimed", "provider_id", low=0),
        _total_equals(
            "claims_count_equals_silver",
            "sum of total_claims = silver claims",
            "SELECT sum(total_claims) AS total FROM t",
            SILVER_CLAIMS_COUNT,
        ),
    ],
    "gold/cross_sell_recommendations": [
        *primary_key("customer_id", "recommendation"),
        foreign_key("customer_id", "silver/dim_customers", key="recommendation"),
        accepted_values("recommendation", thresholds.CROSS_SELL_RECOMMENDATIONS, "customer_id"),
        accepted_values(
            "priority", thresholds.CROSS_SELL_PRIORITIES, "customer_id, recommendation"
        ),
        in_range("estimated_revenue", "customer_id, recommendation", low=0),
    ],
}


# ---- evaluation -------------------------------------------------------------------------------


def evaluate(lake: Lake, table: str, checks: Iterable[Check]) -> list[Outcome]:
    """Run `checks` against the Delta table `table` ("layer/name") of `lake`."""
    checks = list(checks)
    con = duckdb.connect(config=duckdb_config())
    try:
        prepare_session(con)
        layer, name = table.split("/")
        lake.register(con, "t", lake.table_uri(layer, name))
        for used in sorted({u for c in checks for u in c.uses}):
            used_layer, used_name = used.split("/")
            lake.register(con, _name(used), lake.table_uri(used_layer, used_name))
        outcomes = []
        for check in checks:
            # Once per check: the failing rows (usually none) are kept for their count and sample.
            con.execute(f"CREATE OR REPLACE TEMP TABLE failing AS SELECT * FROM ({check.sql})")
            (count,) = con.sql("SELECT count(*) FROM failing").fetchall()[0]
            sample = con.sql(f"SELECT * FROM failing LIMIT {SAMPLE_ROWS}").to_arrow_table()
            outcomes.append(Outcome(check, int(count), sample))
        return outcomes
    finally:
        con.close()


def record_history(
    lake: Lake, table: str, version: int, outcomes: list[Outcome], run_id: str
) -> int:
    """Append the outcomes of checks not yet recorded for this version of `table`; returns how
    many rows were appended (0: no commit)."""
    uri = lake.table_uri("gold", CHECK_HISTORY_TABLE)
    recorded: set[str] = set()
    if lake.exists(uri) and "delta_version" in lake.delta_table(uri).schema().to_arrow().names:
        con = duckdb.connect()
        try:
            lake.register(con, "history", uri)
            recorded = {
                name
                for (name,) in con.execute(
                    "SELECT DISTINCT check_name FROM history WHERE asset_key = $table "
                    "AND delta_version = $version",
                    {"table": table, "version": version},
                ).fetchall()
            }
        finally:
            con.close()
    now = datetime.now(UTC)
    rows = [
        {
            "check_name": o.check.name,
            "asset_key": table,
            "passed": o.passed,
            "severity": "ERROR" if o.check.blocking else "WARN",
            "blocking": o.check.blocking,
            "failing_rows": o.failing_rows,
            "description": o.check.description,
            "run_id": run_id,
            "evaluated_at": now,
            "delta_version": version,
        }
        for o in outcomes
        if o.check.name not in recorded
    ]
    if rows:
        lake.write(uri, pa.Table.from_pylist(rows, schema=CHECK_HISTORY_SCHEMA), mode="append")
    return len(rows)


def result(table: str, outcome: Outcome) -> dg.AssetCheckResult:
    metadata: dict = {"failing_rows": dg.MetadataValue.int(outcome.failing_rows)}
    if not outcome.passed:
        metadata["sample"] = dg.MetadataValue.md(markdown_preview(outcome.sample))
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(table.split("/")),
        check_name=outcome.check.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR
        if outcome.check.blocking
        else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=outcome.check.description,
    )


def _table_checks(table: str, checks: list[Check]) -> dg.AssetChecksDefinition:
    key = dg.AssetKey(table.split("/"))
    specs = [
        dg.AssetCheckSpec(
            c.name,
            asset=key,
            description=c.description,
            blocking=c.blocking,
            additional_deps=[dg.AssetKey(u.split("/")) for u in c.uses if u != table],
        )
        for c in checks
    ]

    @dg.multi_asset_check(specs=specs, name=f"{table.replace('/', '_')}_checks", can_subset=True)
    def _checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        selected = {k.name for k in context.selected_asset_check_keys}
        the_lake = lake.lake()
        layer, name = table.split("/")
        version = content_version(the_lake, the_lake.table_uri(layer, name))
        outcomes = evaluate(the_lake, table, [c for c in checks if c.name in selected])
        record_history(the_lake, table, version, outcomes, context.run.run_id)
        failed = [o.check.name for o in outcomes if not o.passed]
        context.log.info(
            f"{table}: {len(outcomes) - len(failed)}/{len(outcomes)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
        for outcome in outcomes:
            yield result(table, outcome)

    return _checks


asset_checks = [_table_checks(table, checks) for table, checks in TABLE_CHECKS.items()]
