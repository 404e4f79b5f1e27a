"""The Databricks task: one silver or gold step on Spark, opened by Dagster Pipes.

Submitted by the Databricks engine (databricks.py) as a `spark_python_task` running this file on a
cluster (or serverless) where the package wheel is installed:

    databricks_task.py --pipes-io dbfs|volumes [the Pipes bootstrap arguments]

It reads what to do from the Pipes context's extras (`step`: "silver/<table>" or "gold/<table>",
the lake's location, the as-of date, the run's refresh tags), runs the product's own step
(`silver.silver_step`, `gold.gold_step`) in a Spark session (spark_engine.py), commits each
table with delta-rs like the DuckDB engine does (`resources.store`: the same commit metadata and
cursors, so incremental runs carry over between engines), and reports every materialization and
check result back through Pipes. A blocking check that fails is reported as failed, and the
orchestrator stops downstream exactly as with DuckDB.

The lake's credential is never passed by the orchestrator: the task takes it from the cluster's
environment (a job cluster's `spark_env_vars` name Databricks secrets; see the README), or, when
the extras name a secret scope and the environment has none, from `dbutils.secrets`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg
import dagster_pipes as pipes

from petinsure_assets.catalog import CATALOG, QUARANTINE, Catalog, load_catalog
from petinsure_assets.checks import quarantine_target
from petinsure_assets.engines import DATABRICKS
from petinsure_assets.gold import gold_inputs, gold_step
from petinsure_assets.lake import DeltaSource, Lake, TableWrite
from petinsure_assets.queries import output_schemas
from petinsure_assets.resources import AZURE_ENV, store
from petinsure_assets.silver import silver_step
from petinsure_assets.spark_engine import conform, session_opener

# Where the driver mounts DBFS (the Pipes files of a job cluster): /dbfs on Databricks.
DBFS_MOUNT_ENV = "PETINSURE_DBFS_MOUNT"
PIPES_IO = ("dbfs", "volumes")


class _DbfsContextLoader(pipes.PipesContextLoader):
    """dagster_pipes.PipesDbfsContextLoader, with the mount point from DBFS_MOUNT_ENV."""

    @contextmanager
    def load_context(self, params: pipes.PipesParams) -> Iterator[pipes.PipesContextData]:
        with pipes.PipesUnityCatalogVolumesContextLoader().load_context(
            {"path": _dbfs_local(params["path"])}
        ) as context:
            yield context


class _DbfsMessageWriter(pipes.PipesDbfsMessageWriter):
    """dagster_pipes.PipesDbfsMessageWriter, with the mount point from DBFS_MOUNT_ENV."""

    def make_channel(self, params: pipes.PipesParams):
        return pipes.PipesBufferedFilesystemMessageWriterChannel(
            path=_dbfs_local(params["path"]), interval=self.interval
        )


def _dbfs_local(path: str) -> str:
    return os.path.join(
        os.environ.get(DBFS_MOUNT_ENV, "/dbfs"), path.removeprefix("dbfs:").lstrip("/")
    )


def _pipes_io(kind: str) -> tuple[pipes.PipesContextLoader, pipes.PipesMessageWriter]:
    if kind == "dbfs":  # a job cluster or an existing cluster: PipesDatabricksClient
        return _DbfsContextLoader(), _DbfsMessageWriter()
    # serverless: PipesDatabricksServerlessClient, files in a Unity Catalog volume
    return (
        pipes.PipesUnityCatalogVolumesContextLoader(),
        pipes.PipesUnityCatalogVolumesMessageWriter(),
    )


@dataclass
class _Run:
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _TaskContext:
    """What a step needs of Dagster's context: a logger and the run (id, tags)."""

    log: logging.Logger
    run: _Run


def task_context(log: logging.Logger, run_id: str, tags: dict[str, str]) -> _TaskContext:
    """What a step run outside Dagster is given for its context."""
    return _TaskContext(log, _Run(run_id, dict(tags)))


def task_lake(location: dict[str, str], secret_scope: str = "") -> Lake:
    """The lake the orchestrator named (`location`: a local root, or an ADLS account with its
    endpoint and containers), with the credential of the cluster's environment."""
    from petinsure_assets.resources import LakeResource, credential_from_env

    if location.get("root"):
        return Lake(root=location["root"])
    if secret_scope:
        _secrets_to_env(secret_scope)
    return LakeResource(
        storage_account=location["storage_account"],
        credential=credential_from_env(resolve=True),
        blob_endpoint=location.get("blob_endpoint", ""),
        **{k: v for k, v in location.items() if k.endswith("_container")},
    ).lake()


def _secrets_to_env(scope: str) -> None:
    """Serverless compute has no environment of its own: the credential comes from the
    workspace's secret scope, by the same names (README, "Databricks")."""
    from databricks.sdk.runtime import dbutils  # present on Databricks compute only

    names = {k.key for k in dbutils.secrets.list(scope)}
    for var in AZURE_ENV.values():
        if var in names and not os.environ.get(var):
            os.environ[var] = dbutils.secrets.get(scope, var)


def step_results(
    spark, lake: Lake, catalog: Catalog, path: str, as_of: dt.date | None, context: Any
) -> Iterator[tuple[dg.AssetKey, dict] | dg.AssetCheckResult]:
    """Run the step of `path` on Spark: (asset key, materialization metadata) for each table it
    wrote (committed by then), and its check results."""
    layer, name = path.split("/")
    spec = catalog.table(name)
    open_session = session_opener(spark)
    if layer == "silver":
        sources = {"bronze": DeltaSource(lake, lake.table_uri("bronze", spec.entity.bronze_table))}
        sources.update(
            {p: DeltaSource(lake, lake.table_uri("silver", p)) for p in spec.parent_tables}
        )
        outputs = {
            "table": (dg.AssetKey(["silver", name]), spec.path),
            "quarantine": (quarantine_target(spec).asset_key, f"silver/{QUARANTINE}"),
        }
        items = silver_step(context, lake, spec, catalog, sources, open_session, DATABRICKS)
    else:
        tables = {
            t: DeltaSource(lake, lake.table_uri(*where.split("/")))
            for t, where in gold_inputs(spec, catalog).items()
        }
        outputs = {"result": (dg.AssetKey(["gold", name]), spec.path)}
        items = gold_step(context, lake, spec, catalog, tables, as_of, open_session, DATABRICKS)
    schemas = output_schemas(catalog)
    for item in items:
        if not isinstance(item, dg.Output):
            yield item
            continue
        key, table = outputs[item.output_name]
        value = item.value
        if isinstance(value, TableWrite):
            value = replace(value, data=conform(value.data, schemas[table]))
        yield key, {**item.metadata, **store(lake, key, value, context.log)}


def pipes_metadata(metadata: dict[str, Any]) -> dict[str, pipes.PipesMetadataValue]:
    """Dagster metadata values as Pipes sends them (typed raw values)."""
    out: dict[str, pipes.PipesMetadataValue] = {}
    for name, value in metadata.items():
        if isinstance(value, str):
            value = dg.MetadataValue.text(value)
        elif isinstance(value, dg.TableSchema):
            value = dg.MetadataValue.table_schema(value)
        if isinstance(value, dg.TableSchemaMetadataValue):
            columns = [{"name": c.name, "type": c.type} for c in value.schema.columns]
            out[name] = {"raw_value": {"columns": columns}, "type": "table_schema"}
            continue
        kind = {
            dg.IntMetadataValue: "int",
            dg.FloatMetadataValue: "float",
            dg.TextMetadataValue: "text",
            dg.BoolMetadataValue: "bool",
            dg.JsonMetadataValue: "json",
            dg.MarkdownMetadataValue: "md",
            dg.PathMetadataValue: "path",
            dg.UrlMetadataValue: "url",
        }.get(type(value))
        if kind is None:
            raise TypeError(f"metadata {name!r}: {type(value).__name__} is not sent through Pipes")
        out[name] = {"raw_value": value.value, "type": kind}
    return out


def run(context: pipes.PipesContext, spark) -> None:
    """The step the extras name, its results reported through `context`."""
    extras = context.extras
    catalog = load_catalog(Path(extras["catalog"])) if extras.get("catalog") else CATALOG
    lake = task_lake(extras["lake"], extras.get("secret_scope", ""))
    as_of = dt.date.fromisoformat(extras["as_of"]) if extras.get("as_of") else None
    step_context = task_context(context.log, context.run_id, extras.get("tags", {}))
    context.log.info(f"{extras['step']} on Spark {spark.version}")
    for item in step_results(spark, lake, catalog, extras["step"], as_of, step_context):
        if isinstance(item, dg.AssetCheckResult):
            context.report_asset_check(
                item.check_name,
                item.passed,
                severity=item.severity.value,
                metadata=pipes_metadata(dict(item.metadata)),
                asset_key=item.asset_key.to_user_string(),
            )
        else:
            key, metadata = item
            context.report_asset_materialization(
                metadata=pipes_metadata(metadata), asset_key=key.to_user_string()
            )


def main(argv: list[str] | None = None) -> None:
    from pyspark.sql import SparkSession

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="One petinsure step on Spark, through Pipes.")
    parser.add_argument("--pipes-io", choices=PIPES_IO, required=True)
    args, _ = parser.parse_known_args(argv)  # the rest: the Pipes bootstrap arguments
    spark = SparkSession.builder.getOrCreate()  # on Databricks: the cluster's own session
    loader, writer = _pipes_io(args.pipes_io)
    params = (
        pipes.PipesCliArgsParamsLoader()
        if "--dagster-pipes-context" in argv
        else pipes.PipesEnvVarParamsLoader()
    )
    with pipes.open_dagster_pipes(
        context_loader=loader, message_writer=writer, params_loader=params
    ) as context:
        run(context, spark)


if __name__ == "__main__":
    # Not entry_point.run_and_exit: on Databricks this file runs inside the driver's Python
    # process, which reports the task's outcome itself and is not the task's to end.
    main()
