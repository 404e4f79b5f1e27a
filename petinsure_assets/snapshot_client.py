"""The snapshot reader the claims API embeds. Needs pyarrow only (no Dagster).

    client = SnapshotClient(LocalStore("lake/gold/snapshots"))   # or any store with read(path)
    snap = client.snapshot()          # a verified Snapshot: .tables (Arrow), .documents (JSON)
    client.status()                   # what GET /api/v1/data-source/status returns

- Reads `latest.json`, then that version's `manifest.json` (its sha256 is in latest.json) and
  its small JSON documents (the hot endpoints); a table's Parquet file is read when it is first
  asked for (`snapshot.tables["claims_analytics"]`), so a snapshot with a big claims table
  answers its first request as fast as a small one. Every file is checked against its sha256
  and size, and all come from the version folder the manifest names: a reader never mixes two
  versions and never serves a damaged file. A table that can no longer be read (its version was
  pruned, its file damaged) raises SnapshotError, and the client reads `latest.json` again on
  the next call.
- Caches for `ttl_seconds` (default 300, `DATA_CACHE_TTL`). After the TTL it re-reads
  `latest.json` only; files are loaded again only when the version changed.
- Circuit breaker: after 3 consecutive failures it serves the bundled demo snapshot for 5 minutes,
  then tries the live store again. Before that, a failure serves the last good snapshot.
- `set_live(False)` serves the demo snapshot (the admin toggle of the API).

Verify a snapshot store from the command line (exit 0 and its version, or 1 and what is wrong):

    python -m petinsure_assets.snapshot_client [FOLDER | --demo]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from petinsure_assets.entry_point import run_and_exit

SCHEMA_VERSION = 1
LATEST = "latest.json"
DEMO_SNAPSHOT_DIR = Path(__file__).parent / "demo_snapshot"
DEFAULT_SNAPSHOT_DIR = "./lake/gold/snapshots"
DEFAULT_TTL_SECONDS = 300.0
FAILURE_THRESHOLD = 3
COOLDOWN_SECONDS = 300.0


class SnapshotError(Exception):
    """The live snapshot could not be read or did not verify."""


class SnapshotDamaged(SnapshotError):
    """A file of the snapshot does not match its manifest (size or sha256)."""


class SnapshotStore(Protocol):
    def read(self, path: str) -> bytes: ...

    def describe(self) -> str: ...


class LocalStore:
    """Snapshots in a local folder (the `gold/snapshots` folder of a local lake)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def read(self, path: str) -> bytes:
        try:
            return (self.root / path).read_bytes()
        except OSError as e:
            raise SnapshotError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None

    def describe(self) -> str:
        return "local folder"  # its absolute path is the server's business, not the API's


class AzureBlobStore:
    """Snapshots in the `gold` container of an Azure storage account, read with a read-only
    container SAS (seed 000: `az storage container generate-sas --permissions r`). Needs the
    azure-storage-blob package. Errors never carry the SAS."""

    def __init__(
        self,
        account: str,
        sas_token: str,
        *,
        container: str = "gold",
        prefix: str = "snapshots",
        endpoint: str = "",
    ):
        from azure.storage.blob import ContainerClient, LinearRetry

        url = endpoint.rstrip("/") if endpoint else f"https://{account}.blob.core.windows.net"
        self.account, self.container, self.prefix = account, container, prefix.strip("/")
        # One quick retry: the client's circuit breaker handles an unavailable store.
        self._client = ContainerClient(
            url,
            container,
            credential=sas_token.lstrip("?"),
            connection_timeout=10,
            retry_policy=LinearRetry(backoff=0.5, random_jitter_range=0, retry_total=1),
        )

    @classmethod
    def from_env(cls) -> AzureBlobStore:
        """AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_SAS_TOKEN, AZURE_GOLD_CONTAINER (default gold),
        AZURE_STORAGE_BLOB_ENDPOINT (optional)."""
        return cls(
            os.environ["AZURE_STORAGE_ACCOUNT"],
            os.environ["AZURE_STORAGE_SAS_TOKEN"],
            container=os.environ.get("AZURE_GOLD_CONTAINER", "gold"),
            endpoint=os.environ.get("AZURE_STORAGE_BLOB_ENDPOINT", ""),
        )

    def read(self, path: str) -> bytes:
        name = f"{self.prefix}/{path}" if self.prefix else path
        try:
            return self._client.download_blob(name).readall()
        except Exception as e:  # the SDK's message can hold the signed URL: not passed on
            code = getattr(e, "error_code", None) or getattr(e, "status_code", None) or ""
            raise SnapshotError(
                f"cannot read {self.container}/{name}: {type(e).__name__} {code}".rstrip()
            ) from None

    def describe(self) -> str:
        return f"container {self.container} of storage account {self.account}"


def store_from_env() -> SnapshotStore:
    """The gold container of AZURE_STORAGE_ACCOUNT when AZURE_STORAGE_SAS_TOKEN is set, else the
    folder PETINSURE_SNAPSHOT_DIR (default: gold/snapshots of PETINSURE_LAKE_ROOT, ./lake)."""
    if os.environ.get("AZURE_STORAGE_SAS_TOKEN"):
        return AzureBlobStore.from_env()
    lake_root = os.environ.get("PETINSURE_LAKE_ROOT")
    default = f"{lake_root}/gold/snapshots" if lake_root else DEFAULT_SNAPSHOT_DIR
    return LocalStore(os.environ.get("PETINSURE_SNAPSHOT_DIR") or default)


class LazyTables(Mapping[str, pa.Table]):
    """The Parquet tables of one snapshot version, each read and verified when first asked for,
    then kept. `on_failure` is told when a table cannot be read (the client then checks
    latest.json again)."""

    def __init__(self, store: SnapshotStore, folder: str, files: dict[str, dict]):
        self._store, self._folder = store, folder
        self._files = {name.rsplit(".", 1)[0]: (name, f) for name, f in files.items()}
        self._loaded: dict[str, pa.Table] = {}
        self._lock = threading.Lock()
        self.on_failure: Callable[[LazyTables, SnapshotError], None] | None = None

    def __getitem__(self, name: str) -> pa.Table:
        with self._lock:
            if name not in self._loaded:
                if name not in self._files:
                    raise KeyError(name)
                file, expected = self._files[name]
                try:
                    data = _verified(self._store, f"{self._folder}/{file}", expected)
                except SnapshotError as e:
                    if self.on_failure is not None:
                        self.on_failure(self, e)
                    raise
                # Single-threaded: reading Parquet from memory with pyarrow's thread pool aborts
                # the interpreter at exit now and then (pyarrow 26: 3 in 30 from a buffer, 6 in
                # 12 from io.BytesIO).
                self._loaded[name] = pq.read_table(pa.BufferReader(data), use_threads=False)
            return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def loaded(self) -> list[str]:
        """The tables read so far."""
        with self._lock:
            return sorted(self._loaded)


@dataclass
class Snapshot:
    version: str
    manifest: dict[str, Any]
    tables: LazyTables
    documents: dict[str, Any]
    source: str  # "live" or "demo"
    loaded_at: float = 0.0

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])


def load_snapshot(
    store: SnapshotStore, source: str, latest: dict[str, Any] | None = None
) -> Snapshot:
    """Read and verify the version `latest.json` names (`latest`: its content, if already read)."""
    latest = latest if latest is not None else _json(store.read(LATEST), LATEST)
    manifest_bytes = store.read(latest["manifest"])
    if _sha256(manifest_bytes) != latest.get("manifest_sha256"):
        raise SnapshotError(f"{latest['manifest']}: sha256 does not match latest.json")
    manifest = _json(manifest_bytes, latest["manifest"])
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise SnapshotError(
            f"snapshot schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}"
        )
    folder = latest["manifest"].rsplit("/", 1)[0]
    files = manifest["files"]
    documents = {
        name.rsplit(".", 1)[0]: _json(_verified(store, f"{folder}/{name}", expected), name)
        for name, expected in files.items()
        if name.endswith(".json")
    }
    tables = LazyTables(store, folder, {n: f for n, f in files.items() if n.endswith(".parquet")})
    return Snapshot(manifest["version"], manifest, tables, documents, source)


def _verified(store: SnapshotStore, path: str, expected: dict) -> bytes:
    data = store.read(path)
    if len(data) != expected["bytes"] or _sha256(data) != expected["sha256"]:
        raise SnapshotDamaged(f"{path}: content does not match the manifest")
    return data


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise SnapshotError(f"{name} is not valid JSON: {e}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _State:
    live: Snapshot | None = None
    checked_at: float | None = None  # when latest.json was last confirmed
    last_sync: float | None = None  # when a live snapshot was last loaded or confirmed
    failures: int = 0
    open_until: float | None = None
    last_error: str | None = None
    served: str = "demo"
    previous: Snapshot | None = None  # the live snapshot before the current one
    # A version with a file that did not verify when first read, and why.
    damaged: tuple[str, str] | None = None


class SnapshotClient:
    def __init__(
        self,
        store: SnapshotStore | None,
        *,
        ttl_seconds: float = float(os.environ.get("DATA_CACHE_TTL", DEFAULT_TTL_SECONDS)),
        failure_threshold: int = FAILURE_THRESHOLD,
        cooldown_seconds: float = COOLDOWN_SECONDS,
        demo_store: SnapshotStore | None = None,
        use_live: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.ttl = ttl_seconds
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown_seconds
        self.clock = clock
        self.use_live = use_live and store is not None
        self._demo_store = demo_store or LocalStore(DEMO_SNAPSHOT_DIR)
        self._demo: Snapshot | None = None
        self._state = _State()
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The snapshot to serve now: live when possible, else the last good one or the demo."""
        with self._lock:
            now = self.clock()
            state = self._state
            if not self.use_live:
                return self._serve_demo()
            if state.live and state.checked_at is not None and now - state.checked_at < self.ttl:
                state.served = "live"
                return state.live
            if state.open_until is not None:
                if now < state.open_until:
                    return self._serve_demo()
                # Half-open: one more try; one more failure opens the breaker again.
                state.open_until = None
                state.failures = self.failure_threshold - 1
            try:
                self._refresh_live(now)
            except SnapshotError as e:
                state.failures += 1
                state.last_error = str(e)
                if state.failures >= self.failure_threshold:
                    state.open_until = now + self.cooldown
                    state.failures = 0
                    return self._serve_demo()
                if state.live is not None:
                    state.served = "live"
                    return state.live
                return self._serve_demo()
            state.failures, state.last_error, state.served = 0, None, "live"
            return state.live

    def _refresh_live(self, now: float) -> None:
        state = self._state
        latest = _json(self.store.read(LATEST), LATEST)
        if state.damaged is not None and latest.get("version") == state.damaged[0]:
            raise SnapshotError(state.damaged[1])
        if state.live is None or latest.get("version") != state.live.version:
            snap = load_snapshot(self.store, "live", latest)
            snap.loaded_at = now
            snap.tables.on_failure = self._table_failed
            state.previous, state.live = state.live, snap
        state.checked_at = state.last_sync = now

    def _table_failed(self, tables: LazyTables, error: SnapshotError) -> None:
        """A table of the live snapshot could not be read when first asked for. Its file did
        not verify: the version is damaged, so serve the one before it again (as if the damage
        had been found when the version was loaded). It could not be read: a newer version may
        have replaced and pruned this one. Either way, read latest.json on the next call."""
        with self._lock:
            state = self._state
            state.checked_at = None
            state.last_error = str(error)
            if isinstance(error, SnapshotDamaged) and state.live and state.live.tables is tables:
                state.damaged = (state.live.version, str(error))
                state.live, state.previous = state.previous, None

    def _serve_demo(self) -> Snapshot:
        if self._demo is None:
            self._demo = load_snapshot(self._demo_store, "demo")
        self._state.served = "demo"
        return self._demo

    # -- control and status ---------------------------------------------------------------------

    def set_live(self, live: bool) -> None:
        with self._lock:
            self.use_live = live and self.store is not None
            self._state.checked_at = None

    def status(self) -> dict[str, Any]:
        """GET /api/v1/data-source/status: what is served, which version, how old."""
        with self._lock:
            state, now = self._state, self.clock()
            served = state.live if state.served == "live" and state.live else self._demo
            created = served.created_at.timestamp() if served else None
            return {
                "source": state.served,
                "use_live": self.use_live,
                "store": self.store.describe() if self.store else None,
                "version": served.version if served else None,
                "as_of": served.manifest.get("as_of") if served else None,
                "created_at": served.manifest["created_at"] if served else None,
                "last_sync": _iso(state.last_sync),
                "data_age_seconds": round(now - created, 3) if created is not None else None,
                "cache_ttl_seconds": self.ttl,
                "circuit_breaker": "open"
                if state.open_until and now < state.open_until
                else "closed",
                "breaker_open_until": _iso(state.open_until)
                if state.open_until and now < state.open_until
                else None,
                "consecutive_failures": state.failures,
                "last_error": state.last_error,
            }


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m petinsure_assets.snapshot_client",
        description="Read and verify the snapshot latest.json names; print its version and files.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "folder",
        nargs="?",
        help="a snapshot folder (default: as the API, "
        f"PETINSURE_SNAPSHOT_DIR or {DEFAULT_SNAPSHOT_DIR}, or Azure)",
    )
    where.add_argument(
        "--demo", action="store_true", help="the demo snapshot bundled with the package"
    )
    args = parser.parse_args(argv)
    store = (
        LocalStore(DEMO_SNAPSHOT_DIR)
        if args.demo
        else LocalStore(args.folder)
        if args.folder
        else store_from_env()
    )
    try:
        snap = load_snapshot(store, "demo" if args.demo else "live")
        for name in snap.tables:  # every file verified, not only those an endpoint needs
            snap.tables[name]
    except SnapshotError as e:
        print(f"snapshot_client: {e}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "version": snap.version,
                "as_of": snap.manifest.get("as_of"),
                "created_at": snap.manifest["created_at"],
                "rows": {name: f["rows"] for name, f in snap.manifest["files"].items()},
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    run_and_exit(main)
