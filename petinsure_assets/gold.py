"""Gold: the business tables, one asset per table of the catalog (catalog.py, sql/gold/; formulas:
docs/rules.md, "Gold").

Each asset's inputs are the tables its SQL reads (found by the catalog). Its step registers them in
a DuckDB session, creates the shared views it uses (sql/gold/views/), sets the as-of date and
thresholds as variables, runs its file, writes the table and runs its checks (derived from its
spec, blocking) on what it wrote.

Every gold commit records its inputs (the versions of the tables read, the as-of date, a hash of
the SQL); a run with the same inputs writes nothing and reports the table unchanged, while a new
as-of date or SQL rebuilds it even with nothing new in raw (resources.py, "inputs fingerprints").
"""

import dagster as dg

from petinsure_assets.bronze import OWNER
from petinsure_assets.catalog import CATALOG, Catalog, TableSpec
from petinsure_assets.checks import Target, check_specs, run_checks, table_checks
from petinsure_assets.lake import DeltaSource, TableWrite
from petinsure_assets.queries import session
from petinsure_assets.resources import (
    LakeResource,
    ReportingDate,
    Unchanged,
    code_version,
    content_version,
    inputs_commit_metadata,
    unchanged_version,
)

# Gold commits carry the as-of date they were computed for (snapshots publish it).
AS_OF_COMMIT_KEY = "petinsure.as_of"


def _gold_asset(spec: TableSpec, catalog: Catalog) -> dg.AssetsDefinition:
    gold = {s.name for s in catalog.gold}
    ins = {t: dg.AssetIn(key=["gold" if t in gold else "silver", t]) for t in spec.inputs}
    target = Target(spec.path, spec.path)
    checks = table_checks(spec)
    code = code_version(
        [*(f"gold/views/{v}" for v in spec.views), spec.path],
        catalog=catalog,
        partition_by=",".join(spec.partition_by),
    )

    @dg.asset(
        key=["gold", spec.name],
        ins=ins,
        group_name="gold",
        kinds={"delta", "duckdb"},
        owners=[OWNER],
        description=spec.description,
        check_specs=check_specs(target, checks),
        code_version=code,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        reporting_date: ReportingDate,
        lake: LakeResource,
        **tables: DeltaSource,
    ):
        as_of = reporting_date.date()
        the_lake = lake.lake()
        export = {"export": dg.MetadataValue.path(the_lake.export_path(spec.name))}
        inputs = inputs_commit_metadata(tables, code, as_of=as_of.isoformat())
        uri = the_lake.table_uri("gold", spec.name)
        version = unchanged_version(the_lake, uri, inputs)
        with session(as_of, catalog) as con:
            if version is not None:
                context.log.info(
                    f"{spec.name}: inputs and as-of date {as_of} as at version {version}; "
                    "nothing to do"
                )
                yield dg.Output(Unchanged(version), metadata={"as_of": as_of.isoformat(), **export})
            else:
                for name, source in tables.items():
                    source.register(con, name)
                for view in spec.views:
                    con.execute(catalog.sql(f"gold/views/{view}"))
                context.log.info(f"{spec.name}: computing as of {as_of}")
                yield dg.Output(
                    TableWrite(
                        con.sql(catalog.sql(spec.path)).to_arrow_reader(),
                        commit_metadata={AS_OF_COMMIT_KEY: as_of.isoformat(), **inputs},
                        partition_by=spec.partition_by,
                    ),
                    metadata={"as_of": as_of.isoformat(), **export},
                )
            yield from run_checks(
                context, the_lake, [(target, checks, content_version(the_lake, uri))], con
            )

    return _asset


def gold_assets(catalog: Catalog = CATALOG) -> list[dg.AssetsDefinition]:
    return [_gold_asset(spec, catalog) for spec in catalog.gold]
