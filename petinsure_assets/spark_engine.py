"""The product's step code on Spark: a session with the part of a DuckDB connection's API that
the silver and gold steps use (`execute`, `sql`, `register`, and `register_delta` for the lake's
tables), each statement translated from DuckDB SQL to Spark SQL by spark_sql.py as it comes.

So the Databricks task (databricks_task.py) runs `silver.silver_step` and `gold.gold_step`
themselves: the same plan (unchanged, incremental, full), the same SQL files, the same staging
and merges, the same checks. DuckDB's temp tables become temp views over an eager local
checkpoint (data with a leaf plan, as spark_sql.run_on_spark does); temp views stay views.

Delta tables are read through the file list of their current version (delta-rs writes no
deletion vectors, so those files are the table; DESIGN.md section 8). What a step writes comes
back to the driver as Arrow, conformed to the table's schema, and is committed by delta-rs like
any other write of the product (`resources.store`), with the same commit metadata and cursors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from petinsure_assets.catalog import CATALOG, Catalog
from petinsure_assets.spark_sql import READ, to_spark, variables

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession


class SparkRelation:
    """A query's result, as a DuckDB relation offers it."""

    def __init__(self, frame: DataFrame):
        self.frame = frame

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self.frame.collect()]

    def to_arrow_table(self) -> pa.Table:
        return self.frame.toArrow()

    def to_arrow_reader(self) -> pa.RecordBatchReader:
        return self.to_arrow_table().to_reader()


class SparkConnection:
    """One step's Spark session (its own temp views: `SparkSession.newSession`) that runs the
    DuckDB statements of the product's steps."""

    def __init__(self, spark: SparkSession, as_of: dt.date | None, catalog: Catalog = CATALOG):
        self.spark = spark.newSession()
        self.values = variables(as_of)
        self.catalog = catalog

    def _spark_sql(self, tree: exp.Expression) -> str:
        return to_spark(tree, self.values, self.catalog)

    def execute(self, sql: str) -> SparkConnection:
        for tree in sqlglot.parse(sql, read=READ):
            if tree is None:
                continue
            if (
                isinstance(tree, exp.Create)
                and tree.kind in ("TABLE", "VIEW")
                and isinstance(tree.expression, exp.Query)
            ):
                frame = self.spark.sql(self._spark_sql(tree.expression))
                if tree.kind == "TABLE":
                    frame = frame.localCheckpoint(eager=True)
                frame.createOrReplaceTempView(tree.this.name)
            elif isinstance(tree, exp.Query):
                self.spark.sql(self._spark_sql(tree)).collect()
            else:
                raise NotImplementedError(
                    f"a {type(tree).__name__} statement is not run on Spark: {tree.sql()[:80]}"
                )
        return self

    def sql(self, query: str) -> SparkRelation:
        trees = [t for t in sqlglot.parse(query, read=READ) if t is not None]
        if len(trees) != 1 or not isinstance(trees[0], exp.Query):
            raise ValueError(f"one query expected: {query[:80]}")
        return SparkRelation(self.spark.sql(self._spark_sql(trees[0])))

    def register(self, name: str, data: Any) -> None:
        """Arrow data (a table, a reader, a dataset) as the temp view `name`."""
        if isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        elif not isinstance(data, pa.Table):
            data = data.to_table()
        frame = self.spark.createDataFrame(_spark_compatible(data))
        frame.createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def register_delta(self, name: str, table: DeltaTable) -> None:
        """A Delta table's current version as the temp view `name`: its data files read with
        the table's schema, partition values from the `col=value` folders."""
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = _spark_compatible_schema(pa.schema(table.schema().to_arrow()))
        spark_schema = from_arrow_schema(schema)
        files = table.file_uris()
        if files:
            frame = (
                self.spark.read.option("basePath", table.table_uri)
                .schema(spark_schema)
                .parquet(*files)
                .select(*[f"`{n}`" for n in schema.names])
            )
        else:
            frame = self.spark.createDataFrame([], spark_schema)
        frame.createOrReplaceTempView(name)

    def close(self) -> None:
        for view in self.spark.catalog.listTables():
            if view.isTemporary:
                self.spark.catalog.dropTempView(view.name)


def _spark_compatible_schema(schema: pa.Schema) -> pa.Schema:
    """Arrow types Spark reads: view and large strings as strings, unsigned integers (a change
    feed's `_commit_version`) as BIGINT."""

    def spark_type(t: pa.DataType) -> pa.DataType:
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_unsigned_integer(t):
            return pa.int64()
        return t

    return pa.schema([f.with_type(spark_type(f.type)) for f in schema])


def _spark_compatible(table: pa.Table) -> pa.Table:
    return table.cast(_spark_compatible_schema(table.schema))


def conform(data: pa.Table | pa.RecordBatchReader, schema: pa.Schema) -> pa.Table:
    """What Spark computed, in the column order and types of the table it goes to (`schema`;
    a merge's `_delete` column kept): Spark's decimals, timestamps and integers differ in width
    or unit from DuckDB's, and a cast that would lose a value fails."""
    if isinstance(data, pa.RecordBatchReader):
        data = data.read_all()
    fields = [schema.field(n).with_nullable(True) for n in schema.names]
    fields += [f for f in data.schema if f.name not in schema.names]
    missing = [f.name for f in fields if f.name not in data.column_names]
    if missing:
        raise ValueError(f"Spark's result has no column {', '.join(missing)}")
    return data.select([f.name for f in fields]).cast(pa.schema(fields))


def session_opener(spark: SparkSession):
    """What the steps call as `open_session(as_of, catalog)`: a SparkConnection of `spark`."""

    @contextmanager
    def open_session(
        as_of: dt.date | None = None, catalog: Catalog = CATALOG
    ) -> Iterator[SparkConnection]:
        con = SparkConnection(spark, as_of, catalog)
        try:
            yield con
        finally:
            con.close()

    return open_session
