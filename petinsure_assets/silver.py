"""Silver: one step per table, built from the catalog (catalog.py, sql/silver/).

Each step writes two assets:

- `silver/<table>`: the valid records, the latest version of each key (the spec's `sequence_by`);
- `silver/quarantine/<entity>`: the records that failed a hard rule, with reason and lineage. All
  five are rows of the one Delta table silver/quarantine.

**Incremental by default.** A step reads only the bronze rows appended since the bronze version it
last consumed (the change feed of the bronze table; the cursor is a Delta application
transaction committed with the table), runs the table's SQL file on them (typing, cleaning, the
hard rules of docs/rules.md) and merges the valid ones by key: a new version replaces the row of
its key only if it is later in the dedup order, as a full rebuild would pick it. When a parent
table changed, the quarantined orphans of the entity are judged again: those whose parents now
exist move to the table, and leave the quarantine in the commit that follows. The table is
written first and the quarantine after it, each with its own cursor, and both merges are
idempotent: a step interrupted between them starts again from the older cursor and ends in the
same state (the equivalence with a full rebuild is tested over random sequences of raw drops).

**Full rebuild** (every bronze row judged again, both assets replaced) when the table is new,
when its code version changed (its SQL, the macros, thresholds, layout or ENGINE_VERSION:
resources.code_version, Dagster's `code_version`), when the bronze changes since the cursor
cannot be read (vacuumed, or written before the change feed), or when the run asks for it (the
tag `petinsure/full_refresh`). The metadata says which and why.

Then the step runs the checks of both assets (derived from the spec, blocking): on an incremental
run they examine the changed rows against the whole table (the new keys' uniqueness, foreign
keys, ranges; the new bronze rows' reconciliation), on a full one everything.
"""

from dataclasses import dataclass

import dagster as dg
import duckdb

from petinsure_assets.bronze import OWNER
from petinsure_assets.catalog import CATALOG, QUARANTINE, Catalog, TableSpec
from petinsure_assets.checks import (
    Target,
    check_specs,
    quarantine_checks,
    quarantine_target,
    run_checks,
    table_checks,
)
from petinsure_assets.engines import DUCKDB, EngineResource, engine_kinds, run_metadata
from petinsure_assets.lake import DELETE_COLUMN, ChangesUnavailable, DeltaSource, Lake, TableWrite
from petinsure_assets.queries import (
    latest_versions_sql,
    merge_predicate,
    quarantine_sql,
    session,
    silver_statements,
    staged_table,
)
from petinsure_assets.resources import (
    CODE_VERSION_COMMIT_KEY,
    PART_COMMIT_KEY,
    LakeResource,
    Unchanged,
    code_version,
    content_version,
    full_checks_asked,
    full_refresh_asked,
    inputs_commit_metadata,
    last_write,
)

# Cursors (Delta application transactions): on a silver table, the bronze version and each
# parent's content version it consumed; on the quarantine, the bronze version of each entity.
BRONZE_CURSOR = "petinsure.bronze"
QUARANTINE_DONE_CURSOR = "petinsure.quarantine_done"  # the quarantine had nothing to change


def parent_cursor(parent: str) -> str:
    return f"petinsure.parent.{parent}"


def quarantine_cursor(entity: str) -> str:
    return f"petinsure.quarantine.{entity}"


def silver_code_version(spec: TableSpec, catalog: Catalog) -> str:
    return code_version(
        [spec.path],
        generated=[latest_versions_sql(spec), quarantine_sql(spec)],
        catalog=catalog,
        partition_by=",".join(spec.partition_by),
    )


@dataclass(frozen=True)
class Plan:
    """What a silver step does: "unchanged", "incremental" (from bronze version `start`,
    replaying the orphans or not) or "full", and why."""

    mode: str
    reason: str
    start: int = -1
    replay: bool = False


def plan(
    lake: Lake,
    spec: TableSpec,
    code: str,
    bronze_version: int,
    parents: dict[str, int],
    full_refresh: bool,
) -> Plan:
    uri = lake.table_uri("silver", spec.name)
    quarantine = lake.table_uri("silver", QUARANTINE)
    if full_refresh:
        return Plan("full", "a full refresh was asked for")
    if not lake.exists(uri) or not lake.exists(quarantine):
        return Plan("full", "first build")
    written = (last_write(lake, uri) or {}).get(CODE_VERSION_COMMIT_KEY)
    if written != code:
        return Plan("full", f"code version {written} -> {code}")
    recorded = lake.cursors(
        uri, [BRONZE_CURSOR, QUARANTINE_DONE_CURSOR, *(parent_cursor(p) for p in parents)]
    )
    table_cursor = recorded[BRONZE_CURSOR]
    entity_cursor = quarantine_cursor(spec.entity.name)
    done = [
        c
        for c in (
            lake.cursors(quarantine, [entity_cursor])[entity_cursor],
            recorded[QUARANTINE_DONE_CURSOR],
        )
        if c is not None
    ]
    if table_cursor is None or not done:
        return Plan("full", "no cursor recorded (written before incremental runs)")
    quarantine_at = max(done)
    start = min(table_cursor, quarantine_at)
    if start > bronze_version:
        return Plan("full", f"bronze is at version {bronze_version}, before the cursor {start}")
    parents_changed = [p for p, v in parents.items() if recorded[parent_cursor(p)] != v]
    interrupted = quarantine_at < table_cursor
    if start == bronze_version and not parents_changed and not interrupted:
        return Plan("unchanged", f"bronze and parents as at bronze version {bronze_version}")
    reason = f"bronze versions {start + 1}..{bronze_version}"
    if parents_changed:
        reason += "; orphans judged again (" + ", ".join(parents_changed) + " changed)"
    if interrupted:
        reason += "; the previous run stopped before its quarantine commit"
    return Plan("incremental", reason, start, bool(parents_changed) or interrupted)


def _silver_asset(spec: TableSpec, catalog: Catalog, engine: str) -> dg.AssetsDefinition:
    entity = spec.entity
    table = Target(spec.path, spec.path)
    quarantine = quarantine_target(spec)
    checks, rejected_checks = table_checks(spec), quarantine_checks(spec)
    ins = {"bronze": dg.AssetIn(key=["bronze", entity.bronze_table])}
    ins.update({parent: dg.AssetIn(key=["silver", parent]) for parent in spec.parent_tables})
    code = silver_code_version(spec, catalog)

    @dg.multi_asset(
        name=f"silver_{spec.name}",
        ins=ins,
        outs={
            "table": dg.AssetOut(
                key=["silver", spec.name],
                group_name="silver",
                kinds=engine_kinds(engine),
                owners=[OWNER],
                description=spec.description,
                code_version=code,
            ),
            "quarantine": dg.AssetOut(
                key=quarantine.asset_key,
                group_name="silver",
                kinds=engine_kinds(engine),
                owners=[OWNER],
                description=f"The bronze {entity.name} records that failed a hard rule, each with "
                "its reason code, detail, key, source file and line: the rows of "
                f"silver/{QUARANTINE} where entity = '{entity.name}'.",
                code_version=code,
            ),
        },
        check_specs=check_specs(table, checks) + check_specs(quarantine, rejected_checks),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        engine: EngineResource,
        **sources: DeltaSource,
    ):
        yield from engine.run_step(
            context,
            lake,
            spec.path,
            catalog,
            lambda: silver_step(context, lake.lake(), spec, catalog, sources),
        )

    return _asset


def silver_step(
    context,
    the_lake: Lake,
    spec: TableSpec,
    catalog: Catalog,
    sources: dict[str, DeltaSource],
    open_session=session,
    engine: str = DUCKDB,
):
    """A silver step (on either engine): plan, stage, write both assets, run their checks.
    `context` needs `.log` and `.run` (tags, run_id); `open_session(catalog=...)` gives the SQL
    session (DuckDB here, Spark in the Databricks task); the Outputs are written by the caller
    (the IO manager, or the task through `resources.store`)."""
    entity = spec.entity
    table = Target(spec.path, spec.path)
    quarantine = quarantine_target(spec)
    checks, rejected_checks = table_checks(spec), quarantine_checks(spec)
    code = silver_code_version(spec, catalog)
    uri = the_lake.table_uri("silver", spec.name)
    quarantine_uri = the_lake.table_uri("silver", QUARANTINE)
    bronze = sources["bronze"]
    # Its last version that appended rows: compaction of bronze gives silver nothing to do.
    bronze_version = content_version(the_lake, bronze.uri)
    parents = {p: content_version(the_lake, sources[p].uri) for p in spec.parent_tables}
    step = plan(the_lake, spec, code, bronze_version, parents, full_refresh_asked(context.run))
    context.log.info(f"{spec.name}: {step.mode} ({step.reason})")
    cursors = {BRONZE_CURSOR: bronze_version}
    cursors.update({parent_cursor(p): v for p, v in parents.items()})
    inputs = inputs_commit_metadata(sources, code, partition_by=",".join(spec.partition_by))
    run = run_metadata(step.mode, step.reason, engine)
    with open_session(catalog=catalog) as con:
        if step.mode == "incremental":
            try:
                changed = _stage_changes(
                    con, the_lake, spec, catalog, sources, step, bronze_version
                )
            except ChangesUnavailable as e:
                step = Plan("full", str(e))
                context.log.info(f"{spec.name}: full ({step.reason})")
                run = run_metadata("full", step.reason, engine)
        if step.mode == "unchanged":
            yield dg.Output(Unchanged(content_version(the_lake, uri)), output_name="table")
            yield dg.Output(
                Unchanged(content_version(the_lake, quarantine_uri, entity.name)),
                output_name="quarantine",
            )
            gates = [(table, checks), (quarantine, rejected_checks)]
            scope = {}
        elif step.mode == "full":
            sources["bronze"].register(con, entity.bronze_table)
            for parent in spec.parent_tables:
                sources[parent].register(con, parent)
            for statement in silver_statements(spec, catalog):
                con.execute(statement)
            yield _table_output(context, con, spec, inputs, cursors, run, merge=False)
            yield _quarantine_output(con, spec, bronze_version, run, merge=False)
            gates = [(table, checks), (quarantine, rejected_checks)]
            scope = {}
        else:
            quarantine_empty = _quarantine_changes(con, spec) == 0
            if quarantine_empty:
                cursors[QUARANTINE_DONE_CURSOR] = bronze_version
            yield _table_output(context, con, spec, inputs, cursors, run, merge=True)
            if quarantine_empty:
                yield dg.Output(
                    Unchanged(content_version(the_lake, quarantine_uri, entity.name)),
                    output_name="quarantine",
                )
            else:
                yield _quarantine_output(con, spec, bronze_version, run, merge=True)
            key = ", ".join(spec.key)
            gates = [
                (
                    Target(
                        table.table, table.asset, f"({key}) IN (SELECT {key} FROM changed_keys)"
                    ),
                    checks,
                ),
                (
                    Target(
                        quarantine.table,
                        quarantine.asset,
                        f"{quarantine.where} AND (batch_id, source_file, source_line) IN "
                        "(SELECT _batch_id, _source_file, _source_line FROM restaged)",
                    ),
                    rejected_checks,
                ),
            ]
            scope = {f"bronze/{entity.bronze_table}": "restaged"}
            if full_checks_asked(context.run):
                gates = [(table, checks), (quarantine, rejected_checks)]
                scope = {}
                context.log.info(f"{spec.name}: {changed} keys changed; checks examine all")
            else:
                context.log.info(
                    f"{spec.name}: {changed} keys changed; checks examine those rows and the "
                    "restaged bronze rows"
                )
        yield from run_checks(
            context,
            the_lake,
            [
                (gate, gate_checks, version)
                for (gate, gate_checks), version in zip(
                    gates,
                    [
                        content_version(the_lake, uri),
                        content_version(the_lake, quarantine_uri, entity.name),
                    ],
                    strict=True,
                )
            ],
            con,
            scope,
        )


def _stage_changes(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    spec: TableSpec,
    catalog: Catalog,
    sources: dict[str, DeltaSource],
    step: Plan,
    bronze_version: int,
) -> int:
    """Stage what is new for an incremental step in `con`: the bronze rows appended after
    `step.start` and, when replaying, the bronze rows of the entity's quarantined orphans
    (`restaged`, registered as the bronze table for the SQL file); the winners among their valid
    versions against the table's current rows (`changes`: only those that replace or add a row)
    and the keys they touch (`changed_keys`). Returns the number of changed keys."""
    entity = spec.entity
    bronze = sources["bronze"]
    feed = lake.changes(bronze.uri, step.start, bronze_version)
    cdf_columns = ["_change_type", "_commit_version", "_commit_timestamp"]
    if feed.num_columns:
        kinds = set(feed.column("_change_type").unique().to_pylist())
        if kinds - {"insert"}:
            raise ChangesUnavailable(
                f"bronze {entity.bronze_table} rows were {sorted(kinds - {'insert'})} after "
                f"version {step.start}, not only appended"
            )
        feed = feed.drop_columns(cdf_columns)
    else:
        feed = lake.read(bronze.uri, "SELECT * FROM t LIMIT 0")
    con.register("new_bronze_rows", feed)
    columns = ", ".join(f'"{c}"' for c in feed.column_names)
    con.execute(f"CREATE OR REPLACE TEMP TABLE appended AS SELECT {columns} FROM new_bronze_rows")
    con.unregister("new_bronze_rows")
    lake.register(con, "quarantine_now", lake.table_uri("silver", QUARANTINE))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE replayed AS SELECT batch_id, source_file, source_line "
        f"FROM quarantine_now WHERE entity = '{entity.name}' AND reason = 'orphan_fk'"
        + ("" if step.replay else " AND false")
    )
    if con.sql("SELECT count(*) FROM replayed").fetchall()[0][0]:
        bronze.register(con, "bronze_all")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE restaged AS SELECT {columns} FROM appended "
            f"UNION ALL SELECT {columns} FROM bronze_all b "
            "WHERE (b._batch_id, b._source_file, b._source_line) IN "
            "(SELECT batch_id, source_file, source_line FROM replayed) "
            "AND (b._batch_id, b._source_file, b._source_line) NOT IN "
            "(SELECT _batch_id, _source_file, _source_line FROM appended)"
        )
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW restaged AS SELECT * FROM appended")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {entity.bronze_table} AS SELECT * FROM restaged")
    for parent in spec.parent_tables:
        sources[parent].register(con, parent)
    for statement in silver_statements(spec, catalog):
        con.execute(statement)
    # The winners among the new valid versions and the table's rows of the same keys: those
    # that are new replace or add a row. On a tie (the same record staged again after an
    # interrupted run) the table's row stays.
    key = ", ".join(spec.key)
    order = ", ".join(f"{c} DESC NULLS LAST" for c in spec.sequence_by)
    lake.register(con, "table_now", lake.table_uri("silver", spec.name))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE table_rows AS SELECT * FROM table_now "
        f"WHERE ({key}) IN (SELECT {key} FROM {spec.name})"
    )
    columns = ", ".join(con.sql(f"SELECT * FROM {spec.name}").columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE changes AS SELECT {columns} FROM ("
        f"SELECT {columns}, true AS _is_new FROM {spec.name} "
        f"UNION ALL SELECT {columns}, false AS _is_new FROM table_rows) "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}, _is_new) = 1 "
        "AND _is_new"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE changed_keys AS SELECT DISTINCT {key} FROM changes")
    return con.sql("SELECT count(*) FROM changed_keys").fetchall()[0][0]


def _quarantine_changes(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> int:
    """The quarantine merge of an incremental step (`quarantine_changes`): the restaged records
    that failed a rule (new, or orphans again), and a delete for each replayed orphan that now
    passes. Returns its number of rows."""
    replayed = {"entity": f"'{spec.entity.name}'", "batch_id": "r.batch_id"}
    replayed.update(source_file="r.source_file", source_line="r.source_line")
    columns = con.sql(quarantine_sql(spec)).columns
    con.execute(
        "CREATE OR REPLACE TEMP TABLE quarantine_changes AS "
        f"SELECT {', '.join(columns)}, false AS {DELETE_COLUMN} FROM ({quarantine_sql(spec)}) "
        "UNION ALL SELECT "
        + "".join(f"{replayed.get(c, 'NULL')} AS {c}, " for c in columns)
        + f"true AS {DELETE_COLUMN} FROM replayed r WHERE NOT EXISTS ("
        f"SELECT 1 FROM {staged_table(spec)} s WHERE s._reject_reason IS NOT NULL "
        "AND s._batch_id = r.batch_id AND s._source_file = r.source_file "
        "AND s._source_line = r.source_line)"
    )
    return con.sql("SELECT count(*) FROM quarantine_changes").fetchall()[0][0]


def _quarantine_output(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, bronze_version: int, run: dict, *, merge: bool
) -> dg.Output:
    by_reason = dict(
        con.sql(
            f"SELECT _reject_reason, count(*) FROM {staged_table(spec)} "
            "WHERE _reject_reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    entity = spec.entity.name
    if merge:
        data = con.sql("SELECT * FROM quarantine_changes ORDER BY source_file, source_line")
        released = con.sql(
            f"SELECT count(*) FROM quarantine_changes WHERE {DELETE_COLUMN}"
        ).fetchall()[0][0]
        counts = {"orphans_released": dg.MetadataValue.int(released)}
    else:
        data = con.sql(f"{quarantine_sql(spec)}\nORDER BY source_file, source_line")
        counts = {}
    return dg.Output(
        TableWrite(
            data.to_arrow_table() if merge else data.to_arrow_reader(),
            where=f"entity = '{entity}'",
            merge_on=(
                f"t.entity = '{entity}' AND t.batch_id = s.batch_id "
                "AND t.source_file = s.source_file AND t.source_line = s.source_line"
            )
            if merge
            else None,
            commit_metadata={PART_COMMIT_KEY: entity},
            cursors={quarantine_cursor(entity): bronze_version},
        ),
        output_name="quarantine",
        metadata={
            **run,
            **counts,
            "quarantined_by_reason": dg.MetadataValue.json(by_reason),
            **{f"quarantined_{reason}": dg.MetadataValue.int(n) for reason, n in by_reason.items()},
        },
    )


def _table_output(
    context, con, spec: TableSpec, inputs: dict, cursors: dict, run: dict, *, merge: bool
) -> dg.Output:
    ((bronze_rows, valid, rejected),) = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE _reject_reason IS NULL), "
        f"count(*) FILTER (WHERE _reject_reason IS NOT NULL) FROM {staged_table(spec)}"
    ).fetchall()
    written = "changes" if merge else spec.name
    ((rows, mean),) = con.sql(
        f"SELECT count(*), coalesce(avg(_quality_score), 0) FROM {written}"
    ).fetchall()
    quality = con.sql(
        f"SELECT _quality_score // 10 * 10, count(*) FROM {written} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    context.log.info(
        f"{spec.name}: {bronze_rows} bronze rows -> {valid} valid, {rejected} quarantined; "
        + (f"{rows} rows added or replaced" if merge else f"{rows} latest versions")
    )
    return dg.Output(
        TableWrite(
            con.sql(f"SELECT * FROM {written}").to_arrow_table()
            if merge
            else con.sql(f"SELECT * FROM {written}").to_arrow_reader(),
            commit_metadata=inputs,
            partition_by=None if merge else spec.partition_by,
            merge_on=merge_predicate(con, spec) if merge else None,
            cursors=cursors,
        ),
        output_name="table",
        metadata={
            **run,
            "bronze_rows_read": dg.MetadataValue.int(bronze_rows),
            "valid_before_dedup": dg.MetadataValue.int(valid),
            "quarantined": dg.MetadataValue.int(rejected),
            ("rows_changed" if merge else "duplicates_removed"): dg.MetadataValue.int(
                rows if merge else valid - rows
            ),
            "quality_score_mean" + ("_of_changed" if merge else ""): dg.MetadataValue.float(
                round(float(mean), 2)
            ),
            "quality_score_distribution" + ("_of_changed" if merge else ""): dg.MetadataValue.json(
                {f"{band}-{min(band + 9, 100)}": n for band, n in quality}
            ),
        },
    )


def silver_assets(catalog: Catalog = CATALOG, engine: str = DUCKDB) -> list[dg.AssetsDefinition]:
    return [_silver_asset(spec, catalog, engine) for spec in catalog.silver]
