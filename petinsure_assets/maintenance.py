"""Table maintenance: the job `maintain_lake` and its weekly schedule.

For every Delta table of the lake:

- **compaction** (`optimize.compact`): small files (appends to bronze, the ledger and the check
  history; many refreshes) are rewritten into files of up to 256 MiB. The rows are the same; the
  commit is an OPTIMIZE, which the inputs fingerprints ignore (resources.py), so nothing downstream
  is rebuilt because of it.
- **vacuum**: data files no longer part of the table for longer than the retention
  (`vacuum_retention_hours`, default 168 h = 7 days, Delta's own default) are deleted, so time
  travel reaches back at least that far. The versions the current API snapshot's manifest names
  (`source_tables`) are always kept whole, whatever their age: the snapshot can be traced back to
  exactly the rows it was published from. Only tables with something to delete get a vacuum
  commit.

And for the API snapshots: version folders without a manifest and `.tmp` files left by a publish
killed midway are deleted (snapshots.remove_unfinished), and old versions beyond the retention
pruned.

Vacuum deletes files; the run takes the same resources as every other job, so whatever guards
the lake against two writers guards it too.
"""

import os
from dataclasses import dataclass, field

import dagster as dg
from pydantic import Field

from petinsure_assets.checks import CHECK_HISTORY_TABLE
from petinsure_assets.ingest import LEDGER_TABLE
from petinsure_assets.lake import TARGET_FILE_SIZE, WRITER_PROPERTIES, Lake
from petinsure_assets.resources import LakeResource
from petinsure_assets.snapshots import (
    DEFAULT_RETENTION,
    PIPELINE_TABLES,
    SNAPSHOT_PREFIX,
    current_manifest,
    prune,
    remove_unfinished,
)

DEFAULT_VACUUM_RETENTION_HOURS = 7 * 24
MAINTENANCE_CRON_ENV = "PETINSURE_MAINTENANCE_CRON"

# Every Delta table of the lake, as (layer, table).
DELTA_TABLES: tuple[tuple[str, str], ...] = (
    *((layer, t) for layer, tables in PIPELINE_TABLES.items() for t in tables),
    ("bronze", LEDGER_TABLE),
    ("gold", CHECK_HISTORY_TABLE),
)


@dataclass
class TableMaintenance:
    table: str  # layer/name
    files_before: int
    files_after: int
    files_compacted: int = 0
    files_vacuumed: int = 0
    kept_versions: list[int] = field(default_factory=list)


def protected_versions(lake: Lake) -> dict[str, list[int]]:
    """Per table ("layer/name"), the versions the current snapshot manifest names."""
    manifest = current_manifest(lake)
    if manifest is None:
        return {}
    return {table: [int(version)] for table, version in manifest.get("source_tables", {}).items()}


def maintain_table(
    lake: Lake, layer: str, name: str, *, retention_hours: int, keep_versions: list[int]
) -> TableMaintenance:
    uri = lake.table_uri(layer, name)
    table = lake.delta_table(uri)
    before = len(table.file_uris())
    metrics = table.optimize.compact(
        target_size=TARGET_FILE_SIZE, writer_properties=WRITER_PROPERTIES
    )
    table = lake.delta_table(uri)
    vacuum = dict(
        retention_hours=retention_hours,
        enforce_retention_duration=False,
        keep_versions=keep_versions or None,
    )
    # A dry run first: vacuum commits even when it deletes nothing, and it lists again files an
    # earlier vacuum deleted (their tombstones stay in the log), so only files still there count.
    to_delete = [
        p for p in table.vacuum(dry_run=True, **vacuum) if _still_there(lake, layer, name, uri, p)
    ]
    if to_delete:
        table.vacuum(dry_run=False, **vacuum)
    after = len(lake.delta_table(uri).file_uris())
    return TableMaintenance(
        f"{layer}/{name}",
        before,
        after,
        files_compacted=int(metrics.get("numFilesRemoved", 0)),
        files_vacuumed=len(to_delete),
        kept_versions=keep_versions,
    )


def _still_there(lake: Lake, layer: str, name: str, uri: str, path: str) -> bool:
    if path.startswith(uri + "/"):
        path = path[len(uri) + 1 :]
    elif "://" in path or path.startswith("/"):
        return True  # a form we do not map back to the lake: let vacuum decide
    return lake.files.exists(f"{layer}/{name}/{path}")


def maintain(
    lake: Lake,
    *,
    retention_hours: int = DEFAULT_VACUUM_RETENTION_HOURS,
    snapshot_retention: int = DEFAULT_RETENTION,
    log=print,
) -> tuple[list[TableMaintenance], list[str]]:
    """Compact and vacuum every Delta table, then clean the snapshots; returns what was done per
    table and the snapshot paths removed."""
    if retention_hours < 0:
        raise ValueError(f"vacuum retention must be >= 0 hours, got {retention_hours}")
    keep = protected_versions(lake)
    done = []
    for layer, name in DELTA_TABLES:
        if not lake.exists(lake.table_uri(layer, name)):
            continue
        result = maintain_table(
            lake,
            layer,
            name,
            retention_hours=retention_hours,
            keep_versions=keep.get(f"{layer}/{name}", []),
        )
        log(
            f"{result.table}: {result.files_before} -> {result.files_after} data files, "
            f"{result.files_compacted} compacted, {result.files_vacuumed} vacuumed"
            + (
                f", versions {result.kept_versions} kept for the API snapshot"
                if result.kept_versions
                else ""
            )
        )
        done.append(result)
    removed = remove_unfinished(lake)
    pruned = prune(lake, snapshot_retention)
    log(
        f"snapshots: {len(removed)} unfinished version folder(s) or temporary file(s) removed, "
        f"{len(pruned)} old version(s) pruned"
    )
    return done, removed + [f"{SNAPSHOT_PREFIX}/v/{v}" for v in pruned]


class MaintenanceConfig(dg.Config):
    vacuum_retention_hours: int = Field(
        default=DEFAULT_VACUUM_RETENTION_HOURS,
        description="Data files removed from a table longer ago than this are deleted (time "
        "travel reaches back at least this far). The current API snapshot's versions are always "
        "kept.",
    )
    snapshot_retention: int = Field(
        default=DEFAULT_RETENTION, description="Finished API snapshot versions kept."
    )


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Compacts and vacuums every Delta table of the lake; cleans the API snapshots.",
)
def maintain_lake_op(context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource):
    done, removed = maintain(
        lake.lake(),
        retention_hours=config.vacuum_retention_hours,
        snapshot_retention=config.snapshot_retention,
        log=context.log.info,
    )
    return dg.Output(
        None,
        metadata={
            "tables": dg.MetadataValue.int(len(done)),
            "files_compacted": dg.MetadataValue.int(sum(t.files_compacted for t in done)),
            "files_vacuumed": dg.MetadataValue.int(sum(t.files_vacuumed for t in done)),
            "snapshot_paths_removed": dg.MetadataValue.int(len(removed)),
        },
    )


@dg.job(
    name="maintain_lake",
    executor_def=dg.in_process_executor,
    description="Table maintenance: compaction of small files and vacuum of every Delta table "
    "(never a version the current API snapshot names), and cleanup of unfinished snapshots.",
)
def maintain_lake():
    maintain_lake_op()


weekly_maintenance = dg.ScheduleDefinition(
    name="weekly_maintenance",
    job=maintain_lake,
    cron_schedule=os.environ.get(MAINTENANCE_CRON_ENV, "0 4 * * 0"),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"maintain_lake every Sunday at 04:00 UTC (cron from {MAINTENANCE_CRON_ENV}).",
)
