"""Spark baseline: the product's Databricks engine on Spark in local mode (local[2]) over the lake's
bronze tables.

    .venv/bin/python -m bench.baselines.spark_local --lake ./lake --as-of 2026-01-31 --out /tmp/sg

`main` (what `make bench` runs) copies the lake's bronze into a lake of its own under --out and
runs every silver and gold step there through the Databricks task's entry point
(`petinsure_assets.databricks_task.step_results`: the same step code, translated SQL, delta-rs
commits and checks as on a cluster, without the Pipes transport), then writes each gold table as
Parquet for the comparison with the product's. `run` is the whole program as one translated
script in one session (`spark_sql.run_on_spark`), which tests/test_spark_sql.py compares table by
table on hostile inputs.

Bronze is Delta (delta-rs). The Delta Lake jars cannot be loaded here (no Maven access), so Spark
reads the Parquet data files of each table's current version, listed from the Delta log by
`deltalake` (metadata only: never `to_pyarrow_table()`, which aborts the interpreter at exit at
random, DESIGN.md section 8). Bronze is append-only (no deletion vectors), so the current
version's active files are the whole table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time

from petinsure_assets import contracts
from petinsure_assets.lake import Lake
from petinsure_assets.spark_sql import output_tables, run_on_spark

# A 2-core, 24 GiB machine: both cores for one local executor (the driver), a third of the memory
# for its heap, few shuffle partitions (hundreds of tiny tasks cost more than they parallelise).
SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.driver.memory": "8g",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.warehouse.dir": os.path.join(os.environ.get("TMPDIR", "/tmp"), "spark-warehouse"),
}


def spark_session(app_name: str = "petinsure-spark-baseline"):
    """A local Spark session configured for this machine (the existing one if already started)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no hostname lookup, no warning about it
    builder = SparkSession.builder.appName(app_name)
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def bronze_files(lake_root: str) -> dict[str, list[str]]:
    """{bronze table: [Parquet data file URI, ...]} of each bronze Delta table's current version."""
    lake = Lake(root=lake_root)
    out: dict[str, list[str]] = {}
    for entity in contracts.ENTITIES:
        uri = lake.table_uri("bronze", entity.bronze_table)
        out[entity.bronze_table] = lake.delta_table(uri).file_uris() if lake.exists(uri) else []
    return out


def run(lake_root: str, as_of: dt.date, out_dir: str, spark=None) -> dict[str, int]:
    """Run the product's silver+gold SQL on Spark local mode (local[2]) over the lake's bronze tables, write each
    gold table as Parquet under out_dir/<table>/, return {table: rows} for silver and gold tables."""
    from pyspark.sql import SparkSession

    own_session = spark is None and SparkSession.getActiveSession() is None
    spark = spark or spark_session()
    try:
        frames = run_on_spark(spark, bronze_files(lake_root), as_of)
        silver, gold = output_tables()
        rows: dict[str, int] = {}
        for name in silver:
            rows[name] = frames[name].count()
        for name in gold:
            frames[name].write.mode("overwrite").parquet(os.path.join(out_dir, name))
            rows[name] = frames[name].count()
        return rows
    finally:
        if own_session:
            spark.stop()


def run_engine(lake_root: str, as_of: dt.date, out_dir: str, spark=None) -> dict[str, int]:
    """Every silver and gold step through the Databricks task on a copy of the lake's bronze
    (a full refresh, in catalog order); each gold table written as <out_dir>/<table>.parquet.
    Returns {table: rows}."""
    import logging
    import shutil

    import dagster as dg
    import pyarrow.parquet as pq

    from petinsure_assets.catalog import CATALOG
    from petinsure_assets.databricks_task import step_results, task_context
    from petinsure_assets.resources import FULL_REFRESH_TAG

    own = Lake(root=os.path.join(out_dir, "lake"))
    shutil.copytree(os.path.join(lake_root, "bronze"), own.layer("bronze"), dirs_exist_ok=True)
    spark = spark or spark_session()
    context = task_context(logging.getLogger("spark-baseline"), "bench", {FULL_REFRESH_TAG: "true"})
    rows: dict[str, int] = {}
    for spec in (*CATALOG.silver, *CATALOG.gold):
        for item in step_results(spark, own, CATALOG, spec.path, as_of, context):
            if isinstance(item, dg.AssetCheckResult) and not item.passed:
                raise RuntimeError(f"{spec.path}: check {item.check_name} failed on Spark")
        uri = own.table_uri(spec.layer, spec.name)
        rows[spec.name] = own.delta_table(uri).count()
        if spec.layer == "gold":
            pq.write_table(own.read(uri), os.path.join(out_dir, f"{spec.name}.parquet"))
    shutil.rmtree(own.root)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="lake root (a folder with bronze/)")
    parser.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        default=dt.datetime.now(dt.UTC).date(),
        help="YYYY-MM-DD",
    )
    parser.add_argument("--out", required=True, help="folder for the gold Parquet output")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run_engine(args.lake, args.as_of, args.out)
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2), "rows": rows}, indent=2))


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
