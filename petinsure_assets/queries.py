"""Running the SQL files of `sql/` in a DuckDB session: macros, variables, the files themselves."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from petinsure_assets.thresholds import ACCEPTED_VALUES, THRESHOLDS

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql_text(name: str) -> str:
    """The text of sql/<name>.sql, e.g. sql_text("silver/dim_customers")."""
    return (SQL_DIR / f"{name}.sql").read_text()


def prepare_session(con: duckdb.DuckDBPyConnection, as_of: dt.date | None = None) -> None:
    """Create the shared macros and set the variables every SQL file may read."""
    con.execute("SET enable_progress_bar = false")
    # Dates taken from timestamps (a record's ingestion date bounds its dates) are UTC dates on
    # every machine, whatever its local time zone.
    con.execute("SET TimeZone = 'UTC'")
    con.execute(sql_text("macros"))
    for name, values in ACCEPTED_VALUES.items():
        con.execute(f"SET VARIABLE {name} = $v", {"v": list(values)})
    for name, value in THRESHOLDS.items():
        con.execute(f"SET VARIABLE {name} = $v", {"v": value})
    if as_of is not None:
        con.execute("SET VARIABLE as_of = $v", {"v": as_of})


@cache
def output_schemas() -> dict[str, pa.Schema]:
    """The Arrow schema of every silver and gold table, found by running their SQL files on
    empty bronze tables: the column schema the UI shows before anything is materialized comes
    from the same SQL that builds the tables."""
    from petinsure_assets import contracts
    from petinsure_assets.gold import GOLD_TABLES
    from petinsure_assets.ingest import bronze_schema
    from petinsure_assets.silver import SILVER_TABLES

    con = duckdb.connect()
    try:
        prepare_session(con, dt.date(2000, 1, 1))
        for entity in contracts.ENTITIES:
            con.register(entity.bronze_table, bronze_schema(entity).empty_table())
        for name in SILVER_TABLES:
            con.execute(sql_text(f"silver/{name}"))
        con.execute(sql_text("silver/quarantine"))
        schemas = {
            f"silver/{name}": con.sql(f"SELECT * FROM {name}").to_arrow_table().schema
            for name in [*SILVER_TABLES, "quarantine"]
        }
        for spec in GOLD_TABLES:
            for view in spec.views:
                con.execute(sql_text(f"gold/views/{view}"))
            table = con.sql(sql_text(f"gold/{spec.name}")).to_arrow_table()
            schemas[f"gold/{spec.name}"] = table.schema
            con.register(spec.name, pa.table({f.name: pa.array([], f.type) for f in table.schema}))
        return schemas
    finally:
        con.close()
