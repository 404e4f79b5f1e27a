"""Where the lake lives and how tables are read and written: the one place that touches storage.

Layout (DESIGN.md §3): the lake root's top folders are the storage account's containers.

    <root>/raw/<entity>/...                  landing zone (batch files, real-time JSON files)
    <root>/bronze/<table>                    Delta tables, append-only, plus bronze/_file_ledger
    <root>/silver/<table>                    Delta tables, rebuilt from all of bronze
    <root>/gold/<table>                      Delta tables
    <root>/gold/exports/<table>/             plain Parquet (no Delta log) for outside readers

Reading Delta: always through DuckDB over `DeltaTable.to_pyarrow_dataset()` (or handing the dataset
to DuckDB in the caller). `DeltaTable.to_pyarrow_table()` and `dataset.to_table()` abort the
interpreter at exit at random with deltalake 1.6 (DESIGN.md §8); nothing here uses them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake

LAYERS = ("raw", "bronze", "silver", "gold")
LAKE_ROOT_ENV = "PETINSURE_LAKE_ROOT"
DEFAULT_LAKE_ROOT = "./lake"

# Parquet files of a sensible size for Spark/Databricks readers; zstd like Databricks' default.
TARGET_FILE_SIZE = 256 * 1024 * 1024
WRITER_PROPERTIES = WriterProperties(compression="ZSTD", compression_level=3)


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


@dataclass(frozen=True)
class Lake:
    """A lake root and the paths of everything in it."""

    root: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Lake":
        return cls(root=str(Path(os.environ.get(LAKE_ROOT_ENV, DEFAULT_LAKE_ROOT)).resolve()))

    def layer(self, layer: str) -> str:
        if layer not in LAYERS:
            raise ValueError(f"unknown lake layer {layer!r}; expected one of {LAYERS}")
        return f"{self.root}/{layer}"

    def raw_dir(self, entity: str) -> str:
        return f"{self.layer('raw')}/{entity}"

    def table_uri(self, layer: str, table: str) -> str:
        return f"{self.layer(layer)}/{table}"

    def export_dir(self, table: str) -> str:
        return f"{self.layer('gold')}/exports/{table}"

    # ---- Delta -------------------------------------------------------------------------------

    def exists(self, uri: str) -> bool:
        return DeltaTable.is_deltatable(uri, storage_options=self.storage_options or None)

    def delta_table(self, uri: str) -> DeltaTable:
        return DeltaTable(uri, storage_options=self.storage_options or None)

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
    ) -> int:
        """Write Arrow data (table or record-batch stream) as one Delta commit; returns the version."""
        write_deltalake(
            uri,
            data,
            mode=mode,
            schema_mode="overwrite" if mode == "overwrite" else "merge",
            storage_options=self.storage_options or None,
            target_file_size=TARGET_FILE_SIZE,
            writer_properties=WRITER_PROPERTIES,
            commit_properties=CommitProperties(custom_metadata=commit_metadata)
            if commit_metadata
            else None,
        )
        return self.delta_table(uri).version()

    def read(self, uri: str, sql: str = "SELECT * FROM t") -> pa.Table:
        """Read a Delta table (or a query over it, the table being `t`) into Arrow via DuckDB."""
        con = duckdb.connect()
        try:
            con.register("t", self.dataset(uri))
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()
