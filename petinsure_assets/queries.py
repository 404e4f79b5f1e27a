"""Running the SQL files of `sql/` in a DuckDB session: macros, variables, the files themselves."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import duckdb

from petinsure_assets.thresholds import ACCEPTED_VALUES, THRESHOLDS

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql_text(name: str) -> str:
    """The text of sql/<name>.sql, e.g. sql_text("silver/dim_customers")."""
    return (SQL_DIR / f"{name}.sql").read_text()


def prepare_session(con: duckdb.DuckDBPyConnection, as_of: dt.date | None = None) -> None:
    """Create the shared macros and set the variables every SQL file may read."""
    con.execute("SET enable_progress_bar = false")
    con.execute(sql_text("macros"))
    for name, values in ACCEPTED_VALUES.items():
        con.execute(f"SET VARIABLE {name} = $v", {"v": list(values)})
    for name, value in THRESHOLDS.items():
        con.execute(f"SET VARIABLE {name} = $v", {"v": value})
    if as_of is not None:
        con.execute("SET VARIABLE as_of = $v", {"v": as_of})
