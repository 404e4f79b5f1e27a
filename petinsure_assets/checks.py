"""Data-quality gates: asset checks on every silver and gold table, and their history as data.

The checks of a table are derived from its spec in the catalog (catalog.py: key, parents,
accepted values, ranges, formats, totals, its own queries) and run inside the step that writes
the table, right after the write; a silver table's step also checks its rows of the quarantine.
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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pyarrow as pa

from petinsure_assets.catalog import CATALOG, QUARANTINE, Catalog, TableSpec
from petinsure_assets.lake import Lake, duckdb_cursor, sql_string
from petinsure_assets.queries import session
from petinsure_assets.resources import markdown_preview

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
    sample: pa.Table | None  # of the failing rows; None when none fail
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
    listed = ", ".join(sql_string(v) for v in values)
    null_clause = "" if nullable else f" OR {col} IS NULL"
    return Check(
        f"{col}_accepted",
        f"{col} in ({listed})" + (" or null" if nullable else ""),
        f"SELECT {_columns(key, col)} FROM t WHERE {col} NOT IN ({listed}){null_clause}",
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
        f"SELECT {_columns(key, col)} FROM t WHERE " + " OR ".join(conditions),
        kind="range",
        column=col,
    )


def matches(col: str, pattern: str, key: str, what: str) -> Check:
    return Check(
        f"{col}_format",
        f"{col} is {what} (or null)",
        f"SELECT {_columns(key, col)} FROM t WHERE NOT regexp_full_match({col}, '{pattern}')",
        kind="format",
        column=col,
    )


def _name(table: str) -> str:
    return table.replace("/", "_")


def _columns(key: str, col: str) -> str:
    """The columns a failing row is shown with: the identifying key columns, then the value."""
    return f"{key}, {col}" if key else col


# ---- the checks of each table, from its spec in the catalog ---------------------------------------

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

# Totals a gold table must agree on with silver.fact_claims (a spec's `totals` names them).
SILVER_TOTALS: dict[str, tuple[str, str]] = {
    # name: (the total over silver_fact_claims, what it is)
    "claims_count": ("count(*)", "claims"),
    "claimed": ("coalesce(sum(claim_amount), 0)", "claimed"),
    "paid": (
        "coalesce(sum(paid_amount) FILTER (WHERE status IN ('Approved', 'Paid')), 0)",
        "paid (approved claims)",
    ),
}


def _others(spec: TableSpec, column: str) -> str:
    """The key columns that identify a failing row besides `column`."""
    return ", ".join(k for k in spec.key if k != column)


def _total_equals(name: str, expression: str) -> Check:
    """A gold total equals the same total computed from silver."""
    silver, what = SILVER_TOTALS[name]
    return Check(
        f"{name}_equals_silver",
        f"{expression} = silver {what}",
        f"SELECT g.total AS gold_total, s.total AS silver_total "
        f"FROM (SELECT coalesce({expression}, 0) AS total FROM t) g, "
        f"(SELECT {silver} AS total FROM silver_fact_claims) s "
        "WHERE g.total IS DISTINCT FROM s.total",
        uses=("silver/fact_claims",),
        kind="total_equals",
    )


def _every_present(column: str, table: str) -> Check:
    return Check(
        f"every_silver_{column.removesuffix('_id')}_present",
        f"every {column.removesuffix('_id')} of silver/{table} has a row",
        f"SELECT p.{column} FROM silver_{table} p "
        f"WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.{column} = p.{column})",
        uses=(f"silver/{table}",),
        kind="every_present",
        column=column,
    )


def table_checks(spec: TableSpec) -> list[Check]:
    """The checks of a silver or gold table, every one derived from its spec: the key, the
    foreign keys to its parents, accepted values, ranges, formats, its own checks, and for gold
    the silver rows it must cover and the totals it must agree on; silver's quality score."""
    checks = primary_key(*spec.key)
    checks += [
        foreign_key(column, f"silver/{parent}", key=_others(spec, column))
        for column, parent in spec.parents.items()
    ]
    checks += [
        accepted_values(a.column, a.values, _others(spec, a.column), nullable=a.nullable)
        for a in spec.accepted
    ]
    checks += [in_range(r.column, _others(spec, r.column), r.low, r.high) for r in spec.ranges]
    checks += [matches(f.column, f.pattern, _others(spec, f.column), f.what) for f in spec.formats]
    checks += [
        Check(c.name, c.description, c.sql, uses=c.uses, kind=c.name, column=c.column)
        for c in spec.checks
    ]
    checks += [_every_present(column, table) for column, table in spec.every_present.items()]
    checks += [_total_equals(name, expression) for name, expression in spec.totals.items()]
    if spec.layer == "silver":
        checks.append(in_range("_quality_score", _others(spec, "_quality_score"), 0, 100))
    return checks


def quarantine_checks(spec: TableSpec) -> list[Check]:
    """The checks of a silver table's rows of the quarantine (`t` holds only them)."""
    entity = spec.entity
    return [
        accepted_values("reason", QUARANTINE_REASONS, "source_file, source_line"),
        Check(
            "lineage_not_null",
            "source_file and source_line are never null",
            "SELECT source_file, source_line FROM t "
            "WHERE source_file IS NULL OR source_line IS NULL",
            kind="not_null",
            column="source_file",
        ),
        Check(
            "bronze_reconciles",
            f"every bronze {entity.name} record is in silver/{spec.name} (by key) or in quarantine",
            f"""
            SELECT b._source_file, b._source_line, b._batch_id, b.{entity.key}
            FROM bronze_{entity.bronze_table} b
            WHERE NOT EXISTS (
                    SELECT 1 FROM t q WHERE q.batch_id = b._batch_id
                      AND q.source_file = b._source_file AND q.source_line = b._source_line)
              AND NOT EXISTS (
                    SELECT 1 FROM silver_{spec.name} s
                    WHERE s.{entity.key} = clean_text(b.{entity.key}))
            """,
            uses=(f"bronze/{entity.bronze_table}", spec.path),
            kind="bronze_reconciles",
            column=entity.key,
        ),
    ]


# ---- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a set of checks examines: a Delta table ("layer/table"), or the rows of it that
    `where` selects (a silver table's rows of the quarantine); `asset` names it in Dagster and in
    the check history."""

    table: str
    asset: str
    where: str | None = None

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey(self.asset.split("/"))


def evaluate(
    lake: Lake,
    target: Target | str,
    checks: Iterable[Check],
    con: duckdb.DuckDBPyConnection | None = None,
    scope: dict[str, str] | None = None,
) -> list[Outcome]:
    """Run `checks` against the target (or the Delta table "layer/name") of `lake`, in `con` (a
    session with the macros, e.g. the step's own) or in a session of its own. `scope` replaces
    tables the checks use ("layer/table") by relations of `con` (an incremental step's new
    bronze rows)."""
    if isinstance(target, str):
        target = Target(target, target)
    if con is not None:
        return _evaluate(con, lake, target, list(checks), scope or {})
    with session() as own:
        return _evaluate(own, lake, target, list(checks), scope or {})


def _evaluate(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    target: Target,
    checks: list[Check],
    scope: dict[str, str],
) -> list[Outcome]:
    layer, name = target.table.split("/")
    lake.register(con, "t_table", lake.table_uri(layer, name))
    relation = "t_table"
    if target.where:  # some rows (a part, the changed rows): read once, then checked
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE t_rows AS SELECT * FROM t_table WHERE {target.where}"
        )
        relation = "t_rows"
    con.execute(f"CREATE OR REPLACE TEMP VIEW t AS SELECT * FROM {relation}")
    for used in sorted({u for c in checks for u in c.uses}):
        if used in scope:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {_name(used)} AS SELECT * FROM {scope[used]}")
            continue
        used_layer, used_name = used.split("/")
        lake.register(con, _name(used), lake.table_uri(used_layer, used_name))
    if not checks:
        return []
    # Every check's failing rows counted in one query (on Spark, one job instead of one per
    # check); a sample is read only of the checks that fail (usually none).
    counts = dict(
        con.sql(
            " UNION ALL ".join(
                f"SELECT {i} AS i, count(*) AS n FROM ({check.sql})"
                for i, check in enumerate(checks)
            )
        ).fetchall()
    )
    outcomes = []
    for i, check in enumerate(checks):
        count = int(counts[i])
        sample = (
            con.sql(f"SELECT * FROM ({check.sql}) LIMIT {SAMPLE_ROWS}").to_arrow_table()
            if count
            else None
        )
        outcomes.append(Outcome(check, count, sample))
    return outcomes


def record_history(
    lake: Lake, evaluations: list[tuple[str, int, list[Outcome]]], run_id: str
) -> int:
    """Append, in one commit, the outcomes of checks not yet recorded for their table's version;
    `evaluations` are (asset "layer/name", its content version, outcomes). Returns how many rows
    were appended (0: no commit)."""
    uri = lake.table_uri("gold", CHECK_HISTORY_TABLE)
    recorded: set[tuple[str, int, str]] = set()
    if lake.exists(uri) and "delta_version" in lake.delta_table(uri).schema().to_arrow().names:
        con = duckdb_cursor()
        try:
            lake.register(con, "history", uri)
            con.register(
                "evaluated",
                pa.table(
                    {
                        "asset_key": [asset for asset, _, _ in evaluations],
                        "delta_version": pa.array([v for _, v, _ in evaluations], pa.int64()),
                    }
                ),
            )
            recorded = set(
                con.execute(
                    "SELECT DISTINCT h.asset_key, h.delta_version, h.check_name FROM history h "
                    "JOIN evaluated USING (asset_key, delta_version)"
                ).fetchall()
            )
        finally:
            con.close()
    now = datetime.now(UTC)
    rows = [
        {
            "check_name": o.check.name,
            "asset_key": asset,
            "passed": o.passed,
            "severity": "ERROR" if o.check.blocking else "WARN",
            "blocking": o.check.blocking,
            "failing_rows": o.failing_rows,
            "description": o.check.description,
            "run_id": run_id,
            "evaluated_at": now,
            "delta_version": version,
        }
        for asset, version, outcomes in evaluations
        for o in outcomes
        if (asset, version, o.check.name) not in recorded
    ]
    if rows:
        lake.write(uri, pa.Table.from_pylist(rows, schema=CHECK_HISTORY_SCHEMA), mode="append")
    return len(rows)


def result(target: Target, outcome: Outcome) -> dg.AssetCheckResult:
    metadata: dict = {"failing_rows": dg.MetadataValue.int(outcome.failing_rows)}
    if not outcome.passed:
        metadata["sample"] = dg.MetadataValue.md(markdown_preview(outcome.sample))
    return dg.AssetCheckResult(
        asset_key=target.asset_key,
        check_name=outcome.check.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR
        if outcome.check.blocking
        else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=outcome.check.description,
    )


def check_specs(target: Target, checks: list[Check]) -> list[dg.AssetCheckSpec]:
    """The checks as Dagster declares them on the asset whose step runs them."""
    return [
        dg.AssetCheckSpec(
            c.name,
            asset=target.asset_key,
            description=c.description,
            blocking=c.blocking,
            additional_deps=[
                dg.AssetKey(u.split("/")) for u in c.uses if u not in (target.table, target.asset)
            ],
        )
        for c in checks
    ]


def run_checks(
    context: dg.AssetExecutionContext,
    lake: Lake,
    gates: list[tuple[Target, list[Check], int]],
    con: duckdb.DuckDBPyConnection,
    scope: dict[str, str] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate each target's checks on it as it is now (`gates`: target, checks, its content
    version) in the step's session `con`, record them in the check history (one commit) and
    yield their results: called by the step that wrote the targets, right after writing them,
    so a failing blocking check stops everything downstream."""
    evaluated = [
        (target, version, evaluate(lake, target, checks, con, scope))
        for target, checks, version in gates
    ]
    record_history(
        lake, [(t.asset, v, outcomes) for t, v, outcomes in evaluated], context.run.run_id
    )
    for target, _, outcomes in evaluated:
        failed = [o.check.name for o in outcomes if not o.passed]
        context.log.info(
            f"{target.asset}: {len(outcomes) - len(failed)}/{len(outcomes)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
        for outcome in outcomes:
            yield result(target, outcome)


def all_checks(catalog: Catalog = CATALOG) -> list[tuple[Target, list[Check]]]:
    """Every check of the catalog's tables, with what it examines: each table, and each silver
    table's rows of the quarantine (the asset silver/quarantine/<entity>)."""
    checks = [(Target(spec.path, spec.path), table_checks(spec)) for spec in catalog.tables]
    checks += [(quarantine_target(spec), quarantine_checks(spec)) for spec in catalog.silver]
    return checks


def quarantine_target(spec: TableSpec) -> Target:
    """A silver table's rows of the quarantine table, as an asset of their own."""
    return Target(
        f"silver/{QUARANTINE}",
        f"silver/{QUARANTINE}/{spec.entity.name}",
        where=f"entity = '{spec.entity.name}'",
    )
