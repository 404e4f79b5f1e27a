"""Silver: one step per table, built from the catalog (catalog.py, sql/silver/).

Each step reads its bronze table and the keys of its parents' silver tables, runs the table's SQL
file (typing, cleaning, the hard rules of docs/rules.md), and writes two assets:

- `silver/<table>`: the valid records, the latest version of each key (the spec's `sequence_by`);
- `silver/quarantine/<entity>`: the records that failed a hard rule, with reason and lineage. All
  five are rows of the one Delta table silver/quarantine; each step replaces its entity's rows.

Then it runs the checks of both (derived from the spec, blocking) on what it wrote. The quarantine
rows are written first and the table last: the table's commit records what it was computed from
(resources.py, "inputs fingerprints") and the quarantine version written with it, so a step
interrupted between the two writes does both again in the next run, and a run whose inputs are
unchanged writes nothing.
"""

import dagster as dg

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
from petinsure_assets.lake import DeltaSource, TableWrite
from petinsure_assets.queries import (
    latest_versions_sql,
    quarantine_sql,
    session,
    silver_statements,
    staged_table,
)
from petinsure_assets.resources import (
    LakeResource,
    Unchanged,
    content_version,
    inputs_commit_metadata,
    last_write,
    unchanged_version,
)

# Commit metadata of a silver table: the version of silver/quarantine its step wrote with it.
QUARANTINE_VERSION_KEY = "petinsure.quarantine_version"


def _silver_asset(spec: TableSpec, catalog: Catalog) -> dg.AssetsDefinition:
    entity = spec.entity
    table = Target(spec.path, spec.path)
    quarantine = quarantine_target(spec)
    checks, rejected_checks = table_checks(spec), quarantine_checks(spec)
    ins = {"bronze": dg.AssetIn(key=["bronze", entity.bronze_table])}
    ins.update({parent: dg.AssetIn(key=["silver", parent]) for parent in spec.parent_tables})

    @dg.multi_asset(
        name=f"silver_{spec.name}",
        ins=ins,
        outs={
            "quarantine": dg.AssetOut(
                key=quarantine.asset_key,
                group_name="silver",
                kinds={"delta", "duckdb"},
                owners=[OWNER],
                description=f"The bronze {entity.name} records that failed a hard rule, each with "
                "its reason code, detail, key, source file and line: the rows of "
                f"silver/{QUARANTINE} where entity = '{entity.name}'.",
            ),
            "table": dg.AssetOut(
                key=["silver", spec.name],
                group_name="silver",
                kinds={"delta", "duckdb"},
                owners=[OWNER],
                description=spec.description,
            ),
        },
        check_specs=check_specs(table, checks) + check_specs(quarantine, rejected_checks),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        **sources: DeltaSource,
    ):
        the_lake = lake.lake()
        uri = the_lake.table_uri("silver", spec.name)
        inputs = inputs_commit_metadata(
            sources,
            [spec.path],
            generated=[latest_versions_sql(spec), quarantine_sql(spec)],
            catalog=catalog,
            partition_by=",".join(spec.partition_by),
        )
        version = unchanged_version(the_lake, uri, inputs)
        with session(catalog=catalog) as con:
            if version is not None:
                context.log.info(
                    f"{spec.name}: bronze, its parents and its SQL are as at version {version}; "
                    "nothing to do"
                )
                written = last_write(the_lake, uri) or {}
                quarantine_version = int(
                    written.get(QUARANTINE_VERSION_KEY)
                    or content_version(the_lake, the_lake.table_uri("silver", QUARANTINE))
                )
                # Outputs (not none) so that gold still runs: it may have a new as-of date.
                yield dg.Output(Unchanged(quarantine_version), output_name="quarantine")
                yield dg.Output(Unchanged(version), output_name="table")
            else:
                sources["bronze"].register(con, entity.bronze_table)
                for parent in spec.parent_tables:
                    sources[parent].register(con, parent)
                for statement in silver_statements(spec, catalog):
                    con.execute(statement)
                yield _quarantine_output(context, con, spec)
                quarantine_version = the_lake.delta_table(
                    the_lake.table_uri("silver", QUARANTINE)
                ).version()
                yield _table_output(context, con, spec, inputs, quarantine_version)
            yield from run_checks(
                context,
                the_lake,
                [
                    (table, checks, content_version(the_lake, uri)),
                    (quarantine, rejected_checks, quarantine_version),
                ],
                con,
            )

    return _asset


def _quarantine_output(context, con, spec: TableSpec) -> dg.Output:
    by_reason = dict(
        con.sql(
            f"SELECT _reject_reason, count(*) FROM {staged_table(spec)} "
            "WHERE _reject_reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    return dg.Output(
        TableWrite(
            con.sql(f"{quarantine_sql(spec)}\nORDER BY source_file, source_line").to_arrow_reader(),
            where=f"entity = '{spec.entity.name}'",
            commit_metadata={"petinsure.entity": spec.entity.name},
        ),
        output_name="quarantine",
        metadata={
            "quarantined_by_reason": dg.MetadataValue.json(by_reason),
            **{f"quarantined_{reason}": dg.MetadataValue.int(n) for reason, n in by_reason.items()},
        },
    )


def _table_output(context, con, spec: TableSpec, inputs: dict, quarantine_version: int):
    ((bronze_rows, valid, rejected),) = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE _reject_reason IS NULL), "
        f"count(*) FILTER (WHERE _reject_reason IS NOT NULL) FROM {staged_table(spec)}"
    ).fetchall()
    ((rows, mean),) = con.sql(
        f"SELECT count(*), coalesce(avg(_quality_score), 0) FROM {spec.name}"
    ).fetchall()
    quality = con.sql(
        f"SELECT _quality_score // 10 * 10, count(*) FROM {spec.name} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    context.log.info(
        f"{spec.name}: {bronze_rows} bronze rows -> {valid} valid ({rows} latest versions), "
        f"{rejected} quarantined"
    )
    return dg.Output(
        TableWrite(
            con.sql(f"SELECT * FROM {spec.name}").to_arrow_reader(),
            commit_metadata={**inputs, QUARANTINE_VERSION_KEY: str(quarantine_version)},
            partition_by=spec.partition_by,
        ),
        output_name="table",
        metadata={
            "bronze_rows": dg.MetadataValue.int(bronze_rows),
            "valid_before_dedup": dg.MetadataValue.int(valid),
            "quarantined": dg.MetadataValue.int(rejected),
            "duplicates_removed": dg.MetadataValue.int(valid - rows),
            "quality_score_mean": dg.MetadataValue.float(round(float(mean), 2)),
            "quality_score_distribution": dg.MetadataValue.json(
                {f"{band}-{min(band + 9, 100)}": n for band, n in quality}
            ),
        },
    )


def silver_assets(catalog: Catalog = CATALOG) -> list[dg.AssetsDefinition]:
    return [_silver_asset(spec, catalog) for spec in catalog.silver]
