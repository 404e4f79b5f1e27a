"""Where the lake lives and how tables are read and written: the one place that touches storage.

Layout (DESIGN.md §3): the lake root's top folders are the storage account's containers.

    <root>/raw/<entity>/...                  landing zone (batch files, real-time JSON files)
    <root>/bronze/<table>                    Delta tables, append-only, plus bronze/_file_ledger
    <root>/silver/<table>                    Delta tables (quarantine too), merged from new bronze rows
    <root>/gold/<table>                      Delta tables
    <root>/gold/exports/<table>/             plain Parquet (no Delta log) for outside readers
    <root>/gold/snapshots/                   API snapshots

On Azure the four layers are containers of the storage account and tables are `az://<container>/
<table>` (the same as `abfss://<container>@<account>.dfs.core.windows.net/<table>`); files (raw,
exports, snapshots) go through `storage.py`.

Reading Delta: always through DuckDB (`Lake.register`). deltalake resolves the table's current
version to its list of data files; on a local lake DuckDB's own Parquet reader scans them (three
times faster than scanning `to_pyarrow_dataset()`, and it reads only the columns a query uses);
a partitioned table's partition columns (a spec's `partition_by`), which its data files do not
hold, come from the `col=value` folders of their paths. On Azure, where DuckDB cannot reach the
files (its azure extension cannot be downloaded here), it scans `to_pyarrow_dataset()`. delta-rs
writes no deletion vectors or column mapping, so the file list is the table. `DeltaTable.to_pyarrow_table()` and
`dataset.to_table()` abort the interpreter at exit at random with deltalake 1.6 (DESIGN.md §8);
nothing here uses them.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake

from petinsure_assets.storage import LocalFiles, delta_transient, with_retries

LAYERS = ("raw", "bronze", "silver", "gold")
LAKE_ROOT_ENV = "PETINSURE_LAKE_ROOT"
DEFAULT_LAKE_ROOT = "./lake"
EXPORT_FILE = "part-0.parquet"

# Parquet files of a sensible size for Spark/Databricks readers; zstd like Databricks' default.
TARGET_FILE_SIZE = 256 * 1024 * 1024
WRITER_PROPERTIES = WriterProperties(compression="ZSTD", compression_level=3)
# Every table keeps a change feed: incremental runs read what changed since the version they last
# consumed (Lake.changes), e.g. the bronze rows appended or the silver rows a merge replaced.
CHANGE_FEED = "delta.enableChangeDataFeed"
TABLE_CONFIGURATION = {CHANGE_FEED: "true"}
# Commit metadata of a commit that records cursors alone (a merge with nothing to merge): not a
# change of the table's rows (resources.content_version skips it).
CURSOR_ONLY_COMMIT_KEY = "petinsure.cursor_only"
# A merge source's rows with this column true delete their match instead of upserting it.
DELETE_COLUMN = "_delete"


# ---- DuckDB: one in-memory database per process, a cursor per session ---------------------------

DUCKDB_MEMORY_LIMIT_ENV = "PETINSURE_DUCKDB_MEMORY_LIMIT"
DUCKDB_SPILL_DIR_ENV = "PETINSURE_DUCKDB_SPILL_DIR"


def duckdb_config() -> dict[str, Any]:
    """Every core; a memory limit past which DuckDB spills to disk (joins, sorts and temp tables
    of silver at 10M claims do not fit otherwise); no insertion order where none is asked for."""
    return {
        "threads": os.cpu_count() or 2,
        "preserve_insertion_order": False,
        "memory_limit": os.environ.get(DUCKDB_MEMORY_LIMIT_ENV, "4GB"),
        "temp_directory": os.environ.get(
            DUCKDB_SPILL_DIR_ENV, os.path.join(tempfile.gettempdir(), "petinsure-duckdb-spill")
        ),
    }


_DATABASES: dict[str, duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


def sql_string(value: object) -> str:
    """A value as a SQL string literal (quotes doubled), for where a statement takes no
    parameters."""
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_cursor(
    name: str = "",
    config: dict[str, Any] | None = None,
    setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A new session (cursor) of the process's in-memory DuckDB database `name`, created once with
    `config` (DuckDB's defaults when None) and `setup` (e.g. the catalog's macros, which its
    sessions then share). Opening a database costs about 20 ms, a cursor well under 1 ms; a
    cursor's temp tables and views are its own, and a memory limit holds for all the sessions of
    the database together. Close it."""
    with _DATABASES_LOCK:
        database = _DATABASES.get(name)
        if database is None:
            database = duckdb.connect(config=config or {})
            if setup is not None:
                setup(database)
            _DATABASES[name] = database
    return database.cursor()


@dataclass
class TableWrite:
    """What a table asset returns: Arrow data plus how to commit it.

    `on_commit(version)` runs after the Delta commit succeeded and returns extra metadata for the
    materialization (bronze uses it to update its file ledger)."""

    data: Any  # pa.Table | pa.RecordBatchReader
    mode: str = "overwrite"
    commit_metadata: dict[str, str] | None = None
    on_commit: Callable[[int], dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    # Replace only the rows this predicate selects (the data must satisfy it), not the table.
    where: str | None = None
    # The Delta table's partition columns (a whole-table overwrite sets them; None: as it is).
    partition_by: tuple[str, ...] | None = None
    # Merge by this predicate (target `t`, source `s`) instead of writing (Lake.merge).
    merge_on: str | None = None
    # Delta application transactions committed with the write: cursor name -> version consumed.
    cursors: dict[str, int] | None = None


@dataclass(frozen=True)
class Lake:
    """A lake and the paths of everything in it: a local folder (`Lake(root=...)`), or an Azure
    storage account (`Lake.azure(...)`, one container per layer)."""

    root: str
    storage_options: dict[str, str] = field(default_factory=dict)
    files: Any = None  # storage.LocalFiles | storage.AzureFiles
    containers: dict[str, str] | None = None  # Azure: layer -> container

    def __post_init__(self):
        if self.files is None:
            object.__setattr__(self, "files", LocalFiles(self.root))

    @property
    def is_azure(self) -> bool:
        return self.containers is not None

    def layer(self, layer: str) -> str:
        """The layer's location: a folder, or `az://<container>` on Azure."""
        if layer not in LAYERS:
            raise ValueError(f"unknown lake layer {layer!r}; expected one of {LAYERS}")
        return f"az://{self.containers[layer]}" if self.is_azure else f"{self.root}/{layer}"

    def table_uri(self, layer: str, table: str) -> str:
        return f"{self.layer(layer)}/{table}"

    def export_path(self, table: str) -> str:
        """Lake-relative path of a gold table's Parquet export."""
        return f"gold/exports/{table}/{EXPORT_FILE}"

    def describe(self) -> str:
        return self.files.describe()

    # ---- Delta -------------------------------------------------------------------------------

    def _delta(self, what: str, fn):
        return with_retries(what, fn, transient=delta_transient)

    def exists(self, uri: str) -> bool:
        return self._delta(
            f"opening {uri}",
            lambda: DeltaTable.is_deltatable(uri, storage_options=self.storage_options or None),
        )

    def delta_table(self, uri: str) -> DeltaTable:
        return self._delta(
            f"opening {uri}", lambda: DeltaTable(uri, storage_options=self.storage_options or None)
        )

    def dataset(self, uri: str) -> pads.Dataset:
        """A lazy Arrow dataset over the table's current version, for DuckDB to scan."""
        return self.delta_table(uri).to_pyarrow_dataset()

    def write(
        self,
        uri: str,
        data: Any,
        *,
        mode: str,
        commit_metadata: dict[str, str] | None = None,
        where: str | None = None,
        partition_by: tuple[str, ...] | None = None,
        cursors: dict[str, int] | None = None,
    ) -> int:
        """Write Arrow data (table or record-batch stream) as one Delta commit; returns the version.
        With `where` (overwrite only), the rows the predicate selects are replaced by `data` and
        the others kept; on a new table it is a plain write. `partition_by` lays out a table that
        is overwritten whole (an empty tuple: no partitions).

        A commit is atomic: a write that fails leaves the table as it was. Only a whole table
        (not a stream, which cannot be replayed) is retried after a transient failure."""
        if partition_by is not None and (mode != "overwrite" or where is not None):
            raise ValueError("only a whole-table overwrite sets the partition columns")
        if where is not None:
            if mode != "overwrite":
                raise ValueError("a predicate replaces rows: it needs mode='overwrite'")
            if not self.exists(uri):
                where = None
        self.keep_change_feed(uri)

        def run():
            write_deltalake(
                uri,
                data,
                mode=mode,
                predicate=where,
                partition_by=list(partition_by) if partition_by is not None else None,
                # A predicate overwrite keeps other rows: their schema must stay.
                schema_mode="overwrite" if mode == "overwrite" and where is None else "merge",
                storage_options=self.storage_options or None,
                target_file_size=TARGET_FILE_SIZE,
                writer_properties=WRITER_PROPERTIES,
                configuration=TABLE_CONFIGURATION,
                commit_properties=_commit_properties(commit_metadata, cursors),
            )
            return DeltaTable(uri, storage_options=self.storage_options or None).version()

        if isinstance(data, pa.Table):
            return self._delta(f"writing {uri}", run)
        return with_retries(f"writing {uri}", run, transient=delta_transient, attempts=1)

    def merge(
        self,
        uri: str,
        data: Any,
        *,
        on: str,
        commit_metadata: dict[str, str] | None = None,
        cursors: dict[str, int] | None = None,
    ) -> int:
        """Merge Arrow data into an existing Delta table in one commit; returns the version. A
        source row matching a target row by `on` (target `t`, source `s`; name the partitions
        touched there, as literals, or the merge reads every file) replaces it, or deletes it
        when the source has a true `_delete`; an unmatched one is inserted (unless a delete).
        Only the files holding matched rows are rewritten, and the change feed records the
        rows before and after."""
        self.keep_change_feed(uri)
        source = data if isinstance(data, pa.Table) else data.read_all()
        if source.num_rows == 0:  # nothing to merge: commit the cursors alone (an empty append)
            empty = self.delta_table(uri).schema().to_arrow()
            return self.write(
                uri,
                pa.schema(empty).empty_table(),
                mode="append",
                commit_metadata={**(commit_metadata or {}), CURSOR_ONLY_COMMIT_KEY: "true"},
                cursors=cursors,
            )
        deletes = DELETE_COLUMN in source.column_names
        if not deletes:
            source = source.append_column(DELETE_COLUMN, pa.nulls(source.num_rows, pa.bool_()))

        def run():
            table = DeltaTable(uri, storage_options=self.storage_options or None)
            (
                table.merge(
                    source,
                    on,
                    source_alias="s",
                    target_alias="t",
                    writer_properties=WRITER_PROPERTIES,
                    commit_properties=_commit_properties(commit_metadata, cursors),
                )
                .when_matched_delete(predicate=f"s.{DELETE_COLUMN} IS TRUE")
                .when_matched_update_all(
                    predicate=f"s.{DELETE_COLUMN} IS NOT TRUE", except_cols=[DELETE_COLUMN]
                )
                .when_not_matched_insert_all(
                    predicate=f"s.{DELETE_COLUMN} IS NOT TRUE", except_cols=[DELETE_COLUMN]
                )
                .execute()
            )
            return DeltaTable(uri, storage_options=self.storage_options or None).version()

        return self._delta(f"merging into {uri}", run)

    def cursors(self, uri: str, names: list[str]) -> dict[str, int | None]:
        """The versions recorded under `names` by the newest writes of the table that carried
        them (Delta application transactions), None for a name never recorded."""
        table = self.delta_table(uri)
        return {name: table.transaction_version(name) for name in names}

    def keep_change_feed(self, uri: str) -> None:
        """Turn the change feed on for a table written before it was (one metadata commit);
        incremental runs read changes only from versions after that."""
        if self.exists(uri):
            table = self.delta_table(uri)
            if table.metadata().configuration.get(CHANGE_FEED) != "true":
                self._delta(
                    f"enabling the change feed of {uri}",
                    lambda: table.alter.set_table_properties(TABLE_CONFIGURATION),
                )

    def changes(
        self, uri: str, after: int, until: int, columns: list[str] | None = None
    ) -> pa.Table:
        """The change feed of a table from version `after` (excluded) to `until`: its rows as
        inserted, deleted, and before and after update (`_change_type`, `_commit_version`).
        Raises ChangesUnavailable when those versions hold no change feed (written before it was
        on, or their files vacuumed)."""
        if until <= after:
            return pa.table({})
        try:
            reader = self.delta_table(uri).load_cdf(
                starting_version=after + 1, ending_version=until, columns=columns
            )
            changes = pa.table(reader.read_all())
        except Exception as e:  # deltalake raises DeltaError / OSError subclasses here
            raise ChangesUnavailable(f"changes of {uri} after version {after}: {e}") from None
        # The feed's text columns are string_view: as plain strings, like every other read (DuckDB
        # pushes filters built from them into Arrow scans of tables, which cannot compare the two).
        return changes.cast(
            pa.schema(
                f.with_type(pa.string()) if f.type == pa.string_view() else f
                for f in changes.schema
            )
        )

    def register(self, con: duckdb.DuckDBPyConnection, name: str, uri: str) -> None:
        """Make the Delta table's current version the view `name` of a DuckDB session (or of a
        Spark one: spark_engine.SparkConnection reads its file list)."""
        table = self.delta_table(uri)
        if hasattr(con, "register_delta"):
            con.register_delta(name, table)
            return
        schema = table.schema().to_arrow()
        con.execute(f'DROP VIEW IF EXISTS temp.main."{name}"')  # registered before, either way
        hive = None if self.is_azure else _hive_types(table, pa.schema(schema))
        if hive is None:
            con.register(name, table.to_pyarrow_dataset())
            return
        columns = ", ".join(f'"{c}"' for c in pa.schema(schema).names)
        paths = ", ".join(sql_string(f) for f in table.file_uris())  # a view takes no parameters
        if not paths:
            con.register(name, pa.schema(schema).empty_table())
            return
        options = f", hive_partitioning = true, hive_types = {hive}" if hive else ""
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {columns} FROM "
            f"read_parquet([{paths}], union_by_name = true{options})"
        )

    def read(self, uri: str, sql: str = "SELECT * FROM t") -> pa.Table:
        """Read a Delta table (or a query over it, the table being `t`) into Arrow via DuckDB."""
        return self.read_all(uri, [sql])[0]

    def read_all(self, uri: str, queries: list[str]) -> list[pa.Table]:
        """Several queries over one Delta table (`t`), in one DuckDB session."""
        con = duckdb_cursor()
        try:
            self.register(con, "t", uri)
            return [con.sql(sql).to_arrow_table() for sql in queries]
        finally:
            con.close()


# Partition values DuckDB reads back from a data file's path exactly as the log holds them.
_PLAIN_PARTITION_VALUE = re.compile(r"[A-Za-z0-9_.-]+")
_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.date32(): "DATE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.bool_(): "BOOLEAN",
}


def _hive_types(table: DeltaTable, schema: pa.Schema) -> str | None:
    """How DuckDB reads a local table's partition columns from its file paths: "" for none,
    the `hive_types` struct, or None when a value or type would not come back exactly (then the
    Arrow dataset, which takes them from the log, is scanned)."""
    columns = table.metadata().partition_columns
    if not columns:
        return ""
    types = {c: _DUCKDB_TYPES.get(schema.field(c).type) for c in columns}
    if None in types.values():
        return None
    actions = pa.table(table.get_add_actions(flatten=True))
    for c in columns:
        values = actions.column(f"partition.{c}").cast(pa.string()).to_pylist()
        if not all(v is not None and _PLAIN_PARTITION_VALUE.fullmatch(v) for v in values):
            return None
    return "{" + ", ".join(f"'{c}': {t}" for c, t in types.items()) + "}"


class ChangesUnavailable(Exception):
    """A table's change feed cannot be read for the versions asked: rebuild in full instead."""


def _commit_properties(
    metadata: dict[str, str] | None, cursors: dict[str, int] | None
) -> CommitProperties | None:
    if not metadata and not cursors:
        return None
    return CommitProperties(
        custom_metadata=metadata,
        app_transactions=[Transaction(app_id, v) for app_id, v in (cursors or {}).items()] or None,
    )


@dataclass(frozen=True)
class DeltaSource:
    """What a table asset hands its children: a Delta table to scan in their DuckDB session."""

    lake: Lake
    uri: str

    def register(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        self.lake.register(con, name, self.uri)
