"""The local Dagster instance's SQLite storage without an fsync per event.

Dagster's SQLite storage opens a connection and commits once per event; with SQLite's default
`synchronous = FULL` every commit waits for the disk, 15-20 ms each here, and a full refresh
writes hundreds of events (90 checks alone write 90 evaluations, each mirrored into the index
database): seconds of a 15,000-claim refresh were spent waiting for fsync, and more when the lake's
own writes keep the disk busy. With `synchronous = OFF` a commit costs about 3 ms. A crash of
Dagster or of this process loses nothing (the data is in the operating system's cache); a power
cut or kernel crash can lose or damage the run history of the last seconds, never the lake, whose
Delta commits are unaffected. Production instances use Postgres (README), which this does not
touch. `PETINSURE_SQLITE_SYNCHRONOUS=FULL` (or NORMAL) restores the default.

Only connections to SQLite files under DAGSTER_HOME are changed.
"""

from __future__ import annotations

import os
import sqlite3

SYNCHRONOUS_ENV = "PETINSURE_SQLITE_SYNCHRONOUS"
_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
_installed = False


def _on_connect(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return
    level = os.environ.get(SYNCHRONOUS_ENV, "OFF").upper()
    if level not in _LEVELS:
        raise ValueError(f"{SYNCHRONOUS_ENV} must be one of {', '.join(_LEVELS)}, got {level!r}")
    path = next(
        (row[2] for row in dbapi_connection.execute("PRAGMA database_list") if row[1] == "main"), ""
    )
    if path and os.path.abspath(path).startswith(os.path.abspath(home) + os.sep):
        dbapi_connection.execute(f"PRAGMA synchronous = {level}")


def relax_sqlite_durability() -> None:
    """Install the connect hook (once per process) for every SQLAlchemy engine."""
    global _installed
    if _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _on_connect)
    _installed = True
