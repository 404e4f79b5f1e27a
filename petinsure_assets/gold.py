"""Gold: the business tables, one asset per table of the catalog (catalog.py, sql/gold/; formulas:
docs/rules.md, "Gold").

Each asset's inputs are the tables its SQL reads (found by the catalog). Its step registers them in
a DuckDB session, creates the shared views it uses (sql/gold/views/), sets the as-of date and
thresholds as variables, runs its file, writes the table and runs its checks (derived from its
spec, blocking) on what it wrote.

Every gold commit records its inputs (their content versions, the as-of date, the table's code
version). Then:

- **unchanged**: the same inputs as the last write: nothing is written;
- **incremental** (a spec with `[incremental]`): the inputs' change feeds since the versions
  recorded give the values of the table's `incremental.key` (customers, providers, claims) the
  change touches; the SQL runs on the inputs restricted to those values and the table's rows of
  them are replaced (a merge: new rows, changed rows, and rows that no longer exist deleted). The
  checks examine those rows, against the same restricted inputs;
- **full**: the first build, a new as-of date, a new code version (SQL, macros, thresholds,
  layout, ENGINE_VERSION), a change of an input in `incremental.rebuild_on`, a change feed that
  cannot be read, a change touching more than half of a table of 10,000 rows or more, a spec without `[incremental]`
  (monthly_kpis: every month depends on the months before it), or a run tagged
  `petinsure/full_refresh`. The metadata says which and why.
"""

import datetime as dt
import json
from dataclasses import dataclass, field

import dagster as dg
import duckdb

from petinsure_assets.bronze import OWNER
from petinsure_assets.catalog import CATALOG, Catalog, TableSpec
from petinsure_assets.checks import Target, check_specs, run_checks, table_checks
from petinsure_assets.engines import DUCKDB, EngineResource, engine_kinds, run_metadata
from petinsure_assets.lake import DELETE_COLUMN, ChangesUnavailable, DeltaSource, Lake, TableWrite
from petinsure_assets.queries import merge_predicate, session
from petinsure_assets.resources import (
    INPUTS_COMMIT_KEY,
    LakeResource,
    ReportingDate,
    Unchanged,
    code_version,
    content_version,
    full_checks_asked,
    full_refresh_asked,
    inputs_commit_metadata,
    last_write,
    unchanged_version,
)

# Gold commits carry the as-of date they were computed for (snapshots publish it).
AS_OF_COMMIT_KEY = "petinsure.as_of"
# An incremental run touching more than this share of a table's rows rebuilds it instead, when
# the table is large enough for the difference to matter.
REBUILD_SHARE, REBUILD_MIN_ROWS = 0.5, 10_000


@dataclass
class Plan:
    mode: str  # unchanged | incremental | full
    reason: str
    since: dict[str, int] = field(default_factory=dict)  # changed input -> version last read


def plan(
    lake: Lake,
    spec: TableSpec,
    uri: str,
    sources: dict[str, DeltaSource],
    inputs: dict[str, str],
    full_refresh: bool,
) -> Plan:
    version = unchanged_version(lake, uri, inputs)
    if version is not None and not full_refresh:
        return Plan("unchanged", f"inputs and as-of date as at version {version}")
    if full_refresh:
        return Plan("full", "a full refresh was asked for")
    if not lake.exists(uri):
        return Plan("full", "first build")
    if spec.incremental is None:
        return Plan("full", f"{spec.name} is rebuilt whenever an input changes")
    written = json.loads(
        (last_write(lake, uri, rows_changed=False) or {}).get(INPUTS_COMMIT_KEY) or "{}"
    )
    now = json.loads(inputs[INPUTS_COMMIT_KEY])
    for what in ("code_version", "as_of"):
        if written.get(what) != now[what]:
            return Plan("full", f"{what.replace('_', ' ')} {written.get(what)} -> {now[what]}")
    before = written.get("tables", {})
    changed = {t: before.get(t) for t, v in now["tables"].items() if before.get(t) != v}
    if None in changed.values():
        return Plan("full", "an input was not recorded by the last write")
    rebuild = sorted(set(changed) & set(spec.incremental.rebuild_on))
    if rebuild:
        return Plan("full", f"{', '.join(rebuild)} changed (a book-wide figure depends on it)")
    rewritten = [t for t, since in changed.items() if _rewritten_since(lake, sources[t], since)]
    if rewritten:
        return Plan("full", f"{', '.join(sorted(rewritten))} rebuilt in full since the last write")
    return Plan("incremental", "changed: " + ", ".join(sorted(changed)), changed)


def _rewritten_since(lake: Lake, source: DeltaSource, since: int) -> bool:
    """Whether a commit after `since` overwrote the whole table (a full rebuild: its change feed
    is every row twice, and everything downstream is rebuilt instead)."""
    table = lake.delta_table(source.uri)
    for commit in table.history(max(1, table.version() - since)):
        parameters = commit.get("operationParameters") or {}
        if (
            commit["version"] > since
            and commit.get("operation") in ("WRITE", "CREATE TABLE", "CREATE OR REPLACE TABLE")
            and parameters.get("mode") == "Overwrite"
            and not parameters.get("predicate")
        ):
            return True
    return False


def gold_code_version(spec: TableSpec, catalog: Catalog) -> str:
    return code_version(
        [*(f"gold/views/{v}" for v in spec.views), spec.path],
        catalog=catalog,
        partition_by=",".join(spec.partition_by),
    )


def gold_inputs(spec: TableSpec, catalog: Catalog) -> dict[str, str]:
    """The tables a gold table reads: input name -> "layer/table"."""
    gold = {s.name for s in catalog.gold}
    return {t: f"{'gold' if t in gold else 'silver'}/{t}" for t in spec.inputs}


def _gold_asset(spec: TableSpec, catalog: Catalog, engine: str) -> dg.AssetsDefinition:
    ins = {t: dg.AssetIn(key=path.split("/")) for t, path in gold_inputs(spec, catalog).items()}
    target = Target(spec.path, spec.path)

    @dg.asset(
        key=["gold", spec.name],
        ins=ins,
        group_name="gold",
        kinds=engine_kinds(engine),
        owners=[OWNER],
        description=spec.description,
        check_specs=check_specs(target, table_checks(spec)),
        code_version=gold_code_version(spec, catalog),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        reporting_date: ReportingDate,
        lake: LakeResource,
        engine: EngineResource,
        **tables: DeltaSource,
    ):
        as_of = reporting_date.date()
        yield from engine.run_step(
            context,
            lake,
            spec.path,
            catalog,
            lambda: gold_step(context, lake.lake(), spec, catalog, tables, as_of),
            as_of=as_of,
        )

    return _asset


def gold_step(
    context,
    the_lake: Lake,
    spec: TableSpec,
    catalog: Catalog,
    tables: dict[str, DeltaSource],
    as_of: dt.date,
    open_session=session,
    engine: str = DUCKDB,
):
    """A gold step (on either engine): plan, compute, write the table, run its checks; the
    contract of `silver.silver_step`."""
    target = Target(spec.path, spec.path)
    checks = table_checks(spec)
    code = gold_code_version(spec, catalog)
    export = {"export": dg.MetadataValue.path(the_lake.export_path(spec.name))}
    inputs = inputs_commit_metadata(tables, code, as_of=as_of.isoformat())
    uri = the_lake.table_uri("gold", spec.name)
    step = plan(the_lake, spec, uri, tables, inputs, full_refresh_asked(context.run))
    with open_session(as_of, catalog) as con:
        gate, scope = target, {}
        if step.mode == "incremental":
            try:
                touched = _touched(con, the_lake, spec, tables, step)
                rows = the_lake.delta_table(uri).count()
                if touched > REBUILD_SHARE * rows and rows >= REBUILD_MIN_ROWS:
                    step = Plan("full", f"the change touches {touched} of {rows} rows")
            except ChangesUnavailable as e:
                step = Plan("full", str(e))
        context.log.info(f"{spec.name}: {step.mode} ({step.reason})")
        run = run_metadata(step.mode, step.reason, engine)
        if step.mode == "unchanged":
            yield dg.Output(
                Unchanged(content_version(the_lake, uri)),
                metadata={"as_of": as_of.isoformat(), **export, **run},
            )
        else:
            incremental = step.mode == "incremental"
            key = spec.incremental.key if incremental else None
            for name, source in tables.items():
                if incremental and name not in spec.incremental.rebuild_on:
                    scope.update(_restrict(con, name, source, key, catalog))
                else:
                    source.register(con, name)
            for view in spec.views:
                con.execute(catalog.sql(f"gold/views/{view}"))
            context.log.info(f"{spec.name}: computing as of {as_of}")
            commit = {AS_OF_COMMIT_KEY: as_of.isoformat(), **inputs}
            if incremental:
                write, counts = _merge(con, the_lake, spec, uri, commit, catalog)
                gate = Target(target.table, target.asset, f"{key} IN (SELECT {key} FROM touched)")
                run.update({k: dg.MetadataValue.int(v) for k, v in counts.items()})
            else:
                write = TableWrite(
                    con.sql(catalog.sql(spec.path)).to_arrow_reader(),
                    commit_metadata=commit,
                    partition_by=spec.partition_by,
                )
            yield dg.Output(write, metadata={"as_of": as_of.isoformat(), **export, **run})
        if full_checks_asked(context.run):  # the inputs whole, as the checks read them
            scope = {}
        yield from run_checks(
            context, the_lake, [(gate, checks, content_version(the_lake, uri))], con, scope
        )


def _touched(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    spec: TableSpec,
    tables: dict[str, DeltaSource],
    step: Plan,
) -> int:
    """The values of the table's incremental key that the inputs' changes since the versions
    last read touch (`touched`, a temp table of `con`); returns how many."""
    key = spec.incremental.key
    selects = [f"SELECT CAST(NULL AS VARCHAR) AS {key} WHERE false"]
    registered = False
    for name, since in step.since.items():
        source = tables[name]
        changes = lake.changes(source.uri, since, content_version(lake, source.uri))
        if not changes.num_rows:
            continue
        con.register("changes", changes)
        if name in spec.incremental.touches:
            if not registered:  # the inputs the `touches` queries read, registered once
                for other, other_source in tables.items():
                    other_source.register(con, other)
                registered = True
            select = spec.incremental.touches[name]
        elif key in changes.column_names:
            select = "SELECT * FROM changes"
        else:
            raise ChangesUnavailable(f"{name} changed and names no {key}")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE touched_by_{name} AS SELECT {key} FROM ({select})"
        )
        con.unregister("changes")
        selects.append(f"SELECT {key} FROM touched_by_{name}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT {key} FROM ("
        + " UNION ALL ".join(selects)
        + ")"
    )
    return con.sql("SELECT count(*) FROM touched").fetchall()[0][0]


def _restrict(
    con: duckdb.DuckDBPyConnection, name: str, source: DeltaSource, key: str, catalog: Catalog
) -> dict[str, str]:
    """Register an input; one holding the incremental key as the view of its rows of the touched
    values. Returns the check scope entry (the checks read the same rows)."""
    source.register(con, f"{name}_whole")
    columns = con.sql(f"SELECT * FROM {name}_whole").columns
    restricted = f" WHERE {key} IN (SELECT {key} FROM touched)" if key in columns else ""
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_whole{restricted}")
    if not restricted:
        return {}
    layer = "gold" if name in {s.name for s in catalog.gold} else "silver"
    return {f"{layer}/{name}": name}


def _merge(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    spec: TableSpec,
    uri: str,
    commit: dict[str, str],
    catalog: Catalog,
) -> tuple[TableWrite, dict[str, int]]:
    """The merge replacing the table's rows of the touched values: the SQL's rows for them, and a
    delete for each current row of them that the SQL no longer gives."""
    key = spec.incremental.key
    full_key = ", ".join(spec.key)
    query = catalog.sql(spec.path).strip().removesuffix(";")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE recomputed AS SELECT * FROM ({query}) "
        f"WHERE {key} IN (SELECT {key} FROM touched)"
    )
    lake.register(con, "table_now", uri)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE table_rows AS SELECT * FROM table_now "
        f"WHERE {key} IN (SELECT {key} FROM touched)"
    )
    columns = con.sql("SELECT * FROM recomputed").columns
    kept = [*spec.key, *(c for c in spec.partition_by if c not in spec.key)]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE changes AS SELECT {', '.join(columns)}, "
        f"false AS {DELETE_COLUMN} FROM recomputed UNION ALL SELECT "
        + "".join(f"{c if c in kept else 'NULL'} AS {c}, " for c in columns)
        + f"true AS {DELETE_COLUMN} FROM table_rows WHERE ({full_key}) NOT IN "
        f"(SELECT {full_key} FROM recomputed)"
    )
    ((touched, upserts, deletes),) = con.sql(
        f"SELECT (SELECT count(*) FROM touched), count(*) FILTER (WHERE NOT {DELETE_COLUMN}), "
        f"count(*) FILTER (WHERE {DELETE_COLUMN}) FROM changes"
    ).fetchall()
    write = TableWrite(
        con.sql("SELECT * FROM changes").to_arrow_table(),
        commit_metadata=commit,
        merge_on=merge_predicate(con, spec),
    )
    return write, {"keys_touched": touched, "rows_replaced": upserts, "rows_deleted": deletes}


def gold_assets(catalog: Catalog = CATALOG, engine: str = DUCKDB) -> list[dg.AssetsDefinition]:
    return [_gold_asset(spec, catalog, engine) for spec in catalog.gold]
