"""Publishing API snapshots: the contract with the claims API (DESIGN.md §5, "API snapshot").

    gold/snapshots/v/<version>/<table>.parquet      one per gold table (the export, as it is)
    gold/snapshots/v/<version>/summary.json         pre-rendered hot endpoints
    gold/snapshots/v/<version>/kpis.json
    gold/snapshots/v/<version>/segments.json
    gold/snapshots/v/<version>/pipeline_status.json
    gold/snapshots/v/<version>/manifest.json        schema version, version, created_at, as_of,
                                                    Delta version of each source table, and
                                                    sha256 / bytes / rows of every file
    gold/snapshots/latest.json                      {"version", "manifest", "manifest_sha256"}

A version folder is written completely before `latest.json` is replaced (atomically: a rename
locally, one blob upload on Azure), so a reader that starts from `latest.json` sees one whole
version.
A version is never modified after it is published. Content identical to the current version
publishes nothing. Old versions beyond `retention` are deleted, never the current one; only
finished versions (with a manifest) count. A publish killed midway leaves a version folder without
a manifest, or a `.tmp` file of a local write: `remove_unfinished` deletes those once they are an
hour old (a publish that old is not running), after every publish and in the maintenance job.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from petinsure_assets.catalog import CATALOG
from petinsure_assets.gold import AS_OF_COMMIT_KEY
from petinsure_assets.lake import Lake, sql_string
from petinsure_assets.queries import session
from petinsure_assets.resources import last_write
from petinsure_assets.snapshot_client import LATEST, SCHEMA_VERSION
from petinsure_assets.storage import file_sha256

SNAPSHOT_DIR = "snapshots"
# What each gold export was made from (serving.py), outside the exports' own folders.
EXPORT_SOURCES = "gold/exports/_sources"
DEFAULT_RETENTION = 5
UNFINISHED_MIN_AGE = timedelta(hours=1)
MANIFEST = "manifest.json"
VERSION_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
# Personal data that must never leave the lake through an export or a snapshot: every column a
# table of the catalog declares as such.
PII_COLUMNS = CATALOG.pii_columns
PIPELINE_TABLES = CATALOG.pipeline_tables
GOLD_TABLES = PIPELINE_TABLES["gold"]


@dataclass
class PublishResult:
    published: bool
    version: str
    reason: str
    manifest: dict[str, Any]
    pruned: list[str]


SNAPSHOT_PREFIX = f"gold/{SNAPSHOT_DIR}"


def snapshot_root(lake: Lake) -> Path:
    """The snapshot folder of a local lake (what a `LocalStore` reads)."""
    return Path(lake.layer("gold")) / SNAPSHOT_DIR


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json_bytes(document: Any) -> bytes:
    return json.dumps(document, default=_json_default, sort_keys=True, indent=1).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _size(data: bytes | str) -> int:
    return len(data) if isinstance(data, bytes) else os.path.getsize(data)


def render_hot_endpoints(
    con: duckdb.DuckDBPyConnection, as_of: str | None, counts: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """The small JSON documents of the hot endpoints (seed 001 §9), from the gold tables
    registered in `con` under their names."""
    (summary,) = (
        con.sql(
            """
        SELECT
            (SELECT count(*) FROM customer_360_view) AS total_customers,
            (SELECT CAST(coalesce(sum(total_pets), 0) AS BIGINT) FROM customer_360_view) AS total_pets,
            (SELECT CAST(coalesce(sum(total_policies), 0) AS BIGINT) FROM customer_360_view) AS total_policies,
            (SELECT CAST(coalesce(sum(active_policies), 0) AS BIGINT) FROM customer_360_view) AS active_policies,
            (SELECT count(*) FROM claims_analytics) AS total_claims,
            (SELECT coalesce(sum(claim_amount), 0) FROM claims_analytics) AS total_claimed,
            (SELECT coalesce(sum(total_paid), 0) FROM customer_360_view) AS total_paid,
            (SELECT coalesce(sum(premium_earned), 0) FROM customer_360_view) AS premium_earned,
            (SELECT ratio(count(*) FILTER (WHERE status IN ('Approved', 'Paid')),
                          count(*) FILTER (WHERE status IN ('Approved', 'Paid', 'Denied')))
             FROM claims_analytics) AS approval_rate,
            (SELECT div_round(sum(processing_days) FILTER (WHERE status IN ('Approved', 'Paid', 'Denied')),
                              count(processing_days) FILTER (WHERE status IN ('Approved', 'Paid', 'Denied')), 2)
             FROM claims_analytics) AS avg_processing_days,
            (SELECT count(*) FROM cross_sell_recommendations) AS cross_sell_opportunities,
            (SELECT coalesce(sum(estimated_revenue), 0) FROM cross_sell_recommendations)
                AS cross_sell_revenue
        """
        )
        .to_arrow_table()
        .to_pylist()
    )
    summary["loss_ratio"] = con.sql(
        "SELECT ratio($paid, $premium)",
        params={"paid": summary["total_paid"], "premium": summary["premium_earned"]},
    ).fetchall()[0][0]
    summary["as_of"] = as_of
    segments = {
        dimension: con.sql(
            f"SELECT {dimension} AS name, count(*) AS customers, "
            f"coalesce(sum(lifetime_value), 0) AS lifetime_value "
            f"FROM customer_360_view GROUP BY 1 ORDER BY 1 NULLS LAST"
        )
        .to_arrow_table()
        .to_pylist()
        for dimension in ("segment", "value_tier", "risk_category")
    }
    kpis = con.sql("SELECT * FROM monthly_kpis ORDER BY year_month").to_arrow_table().to_pylist()
    status = {
        "layers": counts,
        "quarantined": counts.get("silver", {}).get("quarantine", 0),
    }
    return {
        "summary": summary,
        "kpis": {"months": kpis},
        "segments": segments,
        "pipeline_status": status,
    }


def read_latest(lake: Lake) -> dict[str, Any] | None:
    path = f"{SNAPSHOT_PREFIX}/{LATEST}"
    return json.loads(lake.files.read_bytes(path)) if lake.files.exists(path) else None


def publish(
    lake: Lake, *, retention: int = DEFAULT_RETENTION, now: datetime | None = None
) -> PublishResult:
    """Publish the current gold exports as a snapshot version, unless nothing changed.

    The exports are read from files (local, or downloaded once to a temporary file on Azure):
    hashed in chunks, scanned by DuckDB for the JSON documents and copied into the version
    folder, never held in memory whole (claims_analytics has a row per claim)."""
    now = now or datetime.now(UTC)
    with ExitStack() as stack:
        exports = {
            table: stack.enter_context(lake.files.local_copy(lake.export_path(table)))
            if lake.files.exists(lake.export_path(table))
            else None
            for table in GOLD_TABLES
        }
        missing = [lake.export_path(t) for t, local in exports.items() if local is None]
        if missing:
            raise FileNotFoundError(
                f"gold export {missing[0]} is missing: materialize the exports first"
            )
        return _publish(lake, exports, retention, now)


def _publish(lake: Lake, exports: dict[str, str], retention: int, now: datetime) -> PublishResult:
    files: dict[str, bytes | str] = {}  # name -> content, or the local path of an export
    rows: dict[str, int] = {}
    with session() as con:
        for table, local in exports.items():
            metadata = pq.ParquetFile(local).metadata
            leaked = PII_COLUMNS & set(metadata.schema.names)
            if leaked:
                raise ValueError(f"gold export {table} has personal-data columns {sorted(leaked)}")
            con.execute(
                f"CREATE TEMP VIEW {table} AS SELECT * FROM read_parquet({sql_string(local)})"
            )
            files[f"{table}.parquet"] = local
            rows[f"{table}.parquet"] = metadata.num_rows

        counts = {
            layer: {
                t: int(lake.delta_table(lake.table_uri(layer, t)).count())
                for t in names
                if lake.exists(lake.table_uri(layer, t))
            }
            for layer, names in PIPELINE_TABLES.items()
        }
        sources = {
            f"gold/{t}": lake.delta_table(lake.table_uri("gold", t)).version() for t in GOLD_TABLES
        }
        as_of = (last_write(lake, lake.table_uri("gold", "monthly_kpis")) or {}).get(
            AS_OF_COMMIT_KEY
        )
        documents = render_hot_endpoints(con, as_of, counts)
    for name, document in documents.items():
        files[f"{name}.json"] = to_json_bytes(document)
        rows[f"{name}.json"] = len(document["months"]) if name == "kpis" else 1

    content = {
        name: _sha256(data) if isinstance(data, bytes) else file_sha256(data)
        for name, data in sorted(files.items())
    }
    fingerprint = _sha256(json.dumps(content, sort_keys=True).encode())
    current = current_manifest(lake)
    if current and current.get("content_sha256") == fingerprint:
        return PublishResult(False, current["version"], "content unchanged", current, [])

    version = f"{now.strftime(VERSION_TIME_FORMAT)}-{fingerprint[:8]}"
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "created_at": now.isoformat(),
        "as_of": as_of,
        "content_sha256": fingerprint,
        "source_tables": sources,
        "files": {
            name: {"sha256": content[name], "bytes": _size(files[name]), "rows": rows[name]}
            for name in sorted(files)
        },
    }
    # The version's files first; nobody reads them until latest.json names the version.
    folder = f"{SNAPSHOT_PREFIX}/v/{version}"
    for name, data in files.items():
        if isinstance(data, bytes):
            lake.files.write_bytes(f"{folder}/{name}", data)
        else:
            lake.files.put_file(f"{folder}/{name}", data)
    manifest_bytes = to_json_bytes(manifest)
    lake.files.write_bytes(f"{folder}/{MANIFEST}", manifest_bytes)
    lake.files.write_bytes(
        f"{SNAPSHOT_PREFIX}/{LATEST}",
        to_json_bytes(
            {
                "version": version,
                "manifest": f"v/{version}/{MANIFEST}",
                "manifest_sha256": _sha256(manifest_bytes),
            }
        ),
    )
    return PublishResult(True, version, "published", manifest, prune(lake, retention, now))


def current_manifest(lake: Lake) -> dict[str, Any] | None:
    """The manifest of the version latest.json names (None before the first publish)."""
    latest = read_latest(lake)
    if latest is None:
        return None
    return json.loads(lake.files.read_bytes(f"{SNAPSHOT_PREFIX}/{latest['manifest']}"))


def finished_versions(lake: Lake) -> list[str]:
    """Version folders with a manifest, oldest first (the names start with their time)."""
    return [
        v
        for v in lake.files.list_dirs(f"{SNAPSHOT_PREFIX}/v")
        if lake.files.exists(f"{SNAPSHOT_PREFIX}/v/{v}/{MANIFEST}")
    ]


def prune(lake: Lake, retention: int, now: datetime | None = None) -> list[str]:
    """Delete finished versions beyond the newest `retention`, never the one latest.json names,
    and what killed publishes left (`remove_unfinished`)."""
    latest = read_latest(lake)
    current = latest["version"] if latest else None
    versions = finished_versions(lake)
    keep = set(versions[-max(retention, 1) :]) | {current}
    pruned = [v for v in versions if v not in keep]
    for v in pruned:
        lake.files.delete_prefix(f"{SNAPSHOT_PREFIX}/v/{v}")
    remove_unfinished(lake, now)
    return pruned


def _version_time(version: str) -> datetime | None:
    try:
        return datetime.strptime(version.split("-", 1)[0], VERSION_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def remove_unfinished(lake: Lake, now: datetime | None = None) -> list[str]:
    """Delete version folders without a manifest and `.tmp` files under the snapshots and the
    exports, once older than UNFINISHED_MIN_AGE (younger ones may belong to a publish that is
    still running); returns their lake paths."""
    cutoff = (now or datetime.now(UTC)) - UNFINISHED_MIN_AGE
    removed = []
    for v in lake.files.list_dirs(f"{SNAPSHOT_PREFIX}/v"):
        folder = f"{SNAPSHOT_PREFIX}/v/{v}"
        started = _version_time(v)
        if (
            not lake.files.exists(f"{folder}/{MANIFEST}")
            and started is not None
            and started < cutoff
        ):
            lake.files.delete_prefix(folder)
            removed.append(folder)
    folders = [
        SNAPSHOT_PREFIX,
        *(f"{SNAPSHOT_PREFIX}/v/{v}" for v in lake.files.list_dirs(f"{SNAPSHOT_PREFIX}/v")),
        *(lake.export_path(t).rsplit("/", 1)[0] for t in GOLD_TABLES),
        EXPORT_SOURCES,
    ]
    for folder in folders:
        for info in lake.files.list(folder):
            name = info.path.rsplit("/", 1)[-1]
            modified = datetime.fromtimestamp(info.modified_ns / 1e9, UTC)
            if name.startswith(".") and name.endswith(".tmp") and modified < cutoff:
                lake.files.delete_file(info.path)
                removed.append(info.path)
    return removed
