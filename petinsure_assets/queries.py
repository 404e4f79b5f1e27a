"""Running the catalog's SQL in a DuckDB session: macros, variables, the files themselves, and
the statements every silver table shares, generated from its spec (the latest version per key,
its quarantine rows) so that they are written once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import duckdb
import pyarrow as pa

from petinsure_assets.catalog import CATALOG, QUARANTINE, Catalog, TableSpec
from petinsure_assets.lake import duckdb_config, duckdb_cursor, sql_string
from petinsure_assets.thresholds import ACCEPTED_VALUES, THRESHOLDS

# The columns of a silver file's `<entity>_staged` table that say why a record was rejected.
REJECT_COLUMNS = ("_reject_reason", "_reject_detail", "_rejected_record")


def prepare_session(
    con: duckdb.DuckDBPyConnection, as_of: dt.date | None = None, catalog: Catalog = CATALOG
) -> None:
    """Create the shared macros and set the variables every SQL file may read, in a connection of
    its own (`session()` gives one with the macros already there)."""
    _create_macros(con, catalog)
    _set_variables(con, as_of)


@contextmanager
def session(
    as_of: dt.date | None = None, catalog: Catalog = CATALOG
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB session for the catalog's SQL: a cursor of the process's database of the catalog
    (created once, with its macros and duckdb_config()), the variables set."""
    con = duckdb_cursor(
        f"catalog:{catalog.root}", duckdb_config(), lambda db: _create_macros(db, catalog)
    )
    try:
        _set_variables(con, as_of)
        yield con
    finally:
        con.close()


def _create_macros(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
    """The macros, and the time zone of every session of the database (GLOBAL: a cursor does
    not inherit its parent's session settings)."""
    # Dates taken from timestamps (a record's ingestion date bounds its dates) are UTC dates on
    # every machine, whatever its local time zone.
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    con.execute(catalog.sql("macros"))


def _set_variables(con: duckdb.DuckDBPyConnection, as_of: dt.date | None) -> None:
    con.execute("SET enable_progress_bar = false")
    for name, values in ACCEPTED_VALUES.items():
        con.execute(f"SET VARIABLE {name} = $v", {"v": list(values)})
    for name, value in THRESHOLDS.items():
        con.execute(f"SET VARIABLE {name} = $v", {"v": value})
    if as_of is not None:
        con.execute("SET VARIABLE as_of = $v", {"v": as_of})


# ---- generated from a silver table's spec -----------------------------------------------------------


def staged_table(spec: TableSpec) -> str:
    """The temp table a silver file creates: every bronze record, with its reject reason."""
    return f"{spec.entity.name}_staged"


def latest_versions_sql(spec: TableSpec) -> str:
    """The silver table: the valid records of its staged table, the latest version of each key
    (the greatest `sequence_by`, nulls lowest)."""
    order = ", ".join(f"{c} DESC NULLS LAST" for c in spec.sequence_by)
    return (
        f"CREATE OR REPLACE TEMP TABLE {spec.name} AS\n"
        f"SELECT * EXCLUDE ({', '.join(REJECT_COLUMNS)})\n"
        f"FROM {staged_table(spec)}\n"
        "WHERE _reject_reason IS NULL\n"
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(spec.key)} ORDER BY {order}) = 1"
    )


def quarantine_sql(spec: TableSpec) -> str:
    """The quarantine rows of one silver table: each rejected record with its entity, key,
    reason, detail, lineage and original text, in file and line order."""
    return (
        f"SELECT '{spec.entity.name}' AS entity, {spec.key[0]} AS record_key, "
        "_reject_reason AS reason, _reject_detail AS detail, _source_file AS source_file, "
        "_source_line AS source_line, _ingested_at AS ingested_at, _batch_id AS batch_id, "
        "_record_hash AS record_hash, _rejected_record AS record\n"
        f"FROM {staged_table(spec)}\n"
        "WHERE _reject_reason IS NOT NULL"
    )


def quarantine_union_sql(catalog: Catalog = CATALOG) -> str:
    """The whole quarantine table in one statement (the Spark program and the schemas use it)."""
    return (
        f"CREATE OR REPLACE TEMP TABLE {QUARANTINE} AS\n"
        + "\nUNION ALL\n".join(quarantine_sql(s) for s in catalog.silver)
        + "\nORDER BY entity, source_file, source_line"
    )


def silver_statements(spec: TableSpec, catalog: Catalog = CATALOG) -> list[str]:
    """What builds a silver table in a session holding its bronze table and its parents: its file
    (the staged table), then its latest versions."""
    return [catalog.sql(spec.path), latest_versions_sql(spec)]


def merge_predicate(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    source: str = "changes",
    existing: str = "table_rows",
) -> str:
    """How an incremental step merges `source` (its new rows) into the table: match on the key;
    in a partitioned table, only in the partitions the source's rows are in and those `existing`
    (the table's current rows of the same keys) are in now, as literals (delta-rs prunes files
    only by a literal partition predicate)."""
    key = ", ".join(spec.key)
    on = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
    for column in spec.partition_by:
        values = con.sql(
            f"SELECT DISTINCT CAST({column} AS VARCHAR) FROM (SELECT {column} FROM {source} "
            f"UNION ALL SELECT {column} FROM {existing} WHERE ({key}) IN "
            f"(SELECT {key} FROM {source})) ORDER BY 1"
        ).fetchall()
        listed = ", ".join(sql_string(v) for (v,) in values) or "NULL"
        on += f" AND t.{column} IN ({listed})"
    return on


@cache
def output_schemas(catalog: Catalog = CATALOG) -> dict[str, pa.Schema]:
    """The Arrow schema of every silver and gold table ("layer/name"), found by running their
    SQL on empty bronze tables: the column schema the UI shows before anything is materialized
    comes from the same SQL that builds the tables."""
    from petinsure_assets import contracts
    from petinsure_assets.ingest import bronze_schema

    con = duckdb.connect()
    try:
        prepare_session(con, dt.date(2000, 1, 1), catalog)
        for entity in contracts.ENTITIES:
            con.register(entity.bronze_table, bronze_schema(entity).empty_table())
        schemas = {}
        for spec in catalog.silver:
            for statement in silver_statements(spec, catalog):
                con.execute(statement)
            schemas[spec.path] = con.sql(f"SELECT * FROM {spec.name}").to_arrow_table().schema
        con.execute(quarantine_union_sql(catalog))
        schemas[f"silver/{QUARANTINE}"] = (
            con.sql(f"SELECT * FROM {QUARANTINE}").to_arrow_table().schema
        )
        for spec in catalog.gold:
            for view in spec.views:
                con.execute(catalog.sql(f"gold/views/{view}"))
            table = con.sql(catalog.sql(spec.path)).to_arrow_table()
            schemas[spec.path] = table.schema
            con.register(spec.name, pa.table({f.name: pa.array([], f.type) for f in table.schema}))
        return schemas
    finally:
        con.close()
