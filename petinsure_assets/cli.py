"""`petinsure`: the main job headless with a short summary at the end (refresh), the demo raw data
(generate), the reference API and its front door (api).

    petinsure refresh                 # ./lake; generates 15,000 demo claims if raw/ is empty
    petinsure refresh --claims 1000000 --as-of 2025-12-31 --lake /data/lake
    petinsure generate --claims 15000 # only the demo raw data
    petinsure refresh --full-refresh  # rebuild silver and gold from all of bronze
    petinsure refresh --lock-wait 0   # refuse at once (exit 75) if another writer holds the lake
    petinsure api --port 8000         # the API: snapshots, and the front door into raw/ (uvicorn)

Runs are recorded in the Dagster instance of DAGSTER_HOME (default ./.dagster_home), so they show
up in the UI opened on the same folder.
"""

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import dagster as dg

from petinsure_assets import contracts
from petinsure_assets.catalog import CATALOG
from petinsure_assets.entry_point import run_and_exit
from petinsure_assets.ingest import LEDGER_TABLE
from petinsure_assets.lake import DEFAULT_LAKE_ROOT, LAKE_ROOT_ENV, Lake
from petinsure_assets.lock import LOCK_WAIT_ENV, LakeBusyError, lock_wait_seconds, writer_lock
from petinsure_assets.resources import FULL_REFRESH_TAG
from petinsure_assets.snapshot_client import DEMO_SNAPSHOT_DIR
from petinsure_assets.snapshots import read_latest, snapshot_root
from petinsure_assets.storage import StorageError

DEFAULT_DAGSTER_HOME = ".dagster_home"
DEFAULT_DEMO_CLAIMS = 15_000
DEFAULT_DEMO_SEED = 42
EXIT_LAKE_BUSY = 75  # EX_TEMPFAIL: another writer holds the lake; try again later
SUMMARY_TABLES = [
    (layer, table) for layer, tables in CATALOG.pipeline_tables.items() for table in tables
]


@dataclass
class RefreshSummary:
    success: bool
    run_id: str
    wall_seconds: float
    peak_rss_mib: float
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    lake_bytes: int = 0
    failures: list[str] = field(default_factory=list)
    snapshot_version: str | None = None
    # Raw files of this run that were not simply ingested (failed, refused, duplicate) or were
    # ingested with a note, from the bronze file ledger: "<file>: <status>: <reason>".
    files: list[str] = field(default_factory=list)
    # Delta version of every table of the lake after the run, and those the run wrote.
    versions: dict[str, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"refresh_all {'succeeded' if self.success else 'FAILED'} (run {self.run_id})"]
        # Not after a failure: a run that stopped early wrote nothing for another reason.
        if self.success and self.versions:
            if not self.written:
                lines.append("  nothing new in raw: no table written")
            elif not any(t.startswith("bronze.") for t in self.written):
                lines.append("  nothing new in raw; rebuilt: " + ", ".join(self.written))

        def version(name: str) -> str:
            if name not in self.versions:
                return ""
            return (
                f"  version {self.versions[name]}"
                if name in self.written
                else f"  unchanged since version {self.versions[name]}"
            )

        lines += [f"  {name:<42} {n:>12,} rows{version(name)}" for name, n in self.rows.items()]
        if self.quarantined:
            lines.append("  quarantined by reason:")
            lines += [f"    {reason:<40} {n:>12,}" for reason, n in self.quarantined.items()]
        if self.snapshot_version:
            lines.append(f"  API snapshot: gold/snapshots/v/{self.snapshot_version}")
        lines.append(
            f"  wall time {self.wall_seconds:.1f} s, peak memory {self.peak_rss_mib:,.0f} MiB, "
            f"lake {self.lake_bytes / 2**20:,.1f} MiB"
        )
        if self.files:
            lines.append("  raw files needing a look (bronze/_file_ledger):")
            lines += [f"    {f}" for f in self.files]
        lines += [f"  failed: {f}" for f in self.failures]
        return "\n".join(lines)


def raw_zone_is_empty(lake: Lake) -> bool:
    return not any(lake.files.list(f"raw/{e.name}") for e in contracts.ENTITIES)


def generate_into(lake: Lake, claims: int, seed: int) -> None:
    """Write the demo raw zone into the lake (generated locally, then uploaded on Azure)."""
    import tempfile

    from petinsure_assets.demo_data import generate as generate_demo

    print(f"generating demo raw data: {claims:,} claims into {lake.layer('raw')}")
    if not lake.is_azure:
        generate_demo(lake.layer("raw"), claims=claims, seed=seed)
        return
    with tempfile.TemporaryDirectory(prefix="petinsure-raw-") as tmp:
        generate_demo(tmp, claims=claims, seed=seed)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                lake.files.put_file(f"raw/{path.relative_to(tmp).as_posix()}", str(path))


def dagster_instance() -> dg.DagsterInstance:
    """The instance of DAGSTER_HOME, created under ./.dagster_home when it is not set."""
    home = os.environ.setdefault("DAGSTER_HOME", str(Path(DEFAULT_DAGSTER_HOME).resolve()))
    Path(home).mkdir(parents=True, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    if not config.exists():  # the project's instance settings (one run at a time)
        template = Path(__file__).resolve().parents[1] / "dagster.yaml"
        config.write_text(template.read_text() if template.exists() else "")
    return dg.DagsterInstance.get()


def run_refresh(
    lake_root: str | None,
    *,
    as_of: str = "",
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    snapshot: bool = True,
    full_refresh: bool = False,
) -> RefreshSummary:
    """Materialize the whole graph in this process (refresh_all, then publish_api_snapshot, as
    the exports sensor would) and summarize what the lake holds after it. Each run holds the
    lake's writer lock (lock.py); `main` holds it across both. `full_refresh` rebuilds every
    silver and gold table from all of bronze instead of merging what is new."""
    from petinsure_assets.definitions import build_definitions
    from petinsure_assets.resources import lake_resource_from_env

    lake_root = os.path.abspath(lake_root) if lake_root else None
    lake = lake_resource_from_env(lake_root, resolve=True).lake()  # None: from the environment
    defs = build_definitions(lake_root)
    instance = instance or dg.DagsterInstance.ephemeral()
    try:
        before = delta_versions(lake)
    except StorageError:  # the run will say why the lake cannot be read
        before = {}
    start = time.perf_counter()
    results = []
    for job_name in ("refresh_all", "publish_api_snapshot") if snapshot else ("refresh_all",):
        results.append(
            defs.resolve_job_def(job_name).execute_in_process(
                instance=instance,
                run_config={
                    "resources": {"reporting_date": {"config": {"as_of": as_of}}},
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
                raise_on_error=False,
                tags={FULL_REFRESH_TAG: "true"}
                if full_refresh and job_name == "refresh_all"
                else None,
            )
        )
        if not results[-1].success:
            break
    summary = RefreshSummary(
        success=all(r.success for r in results),
        run_id=results[0].run_id,
        wall_seconds=time.perf_counter() - start,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        failures=[
            f"{e.step_key or e.event_type_value}: {e.event_specific_data.error.message.strip()}"
            for r in results
            for e in r.all_events
            if e.is_step_failure or e.event_type_value == "RESOURCE_INIT_FAILURE"
        ],
    )
    try:
        _describe_lake(lake, summary)
        summary.versions = delta_versions(lake)
        summary.written = [t for t, v in summary.versions.items() if before.get(t) != v]
    except StorageError as e:  # the lake cannot be read (the run has said why): say so, go on
        summary.failures.append(f"summary: {e}")
    return summary


def _warn(message: str) -> None:
    print(f"petinsure: {message}", file=sys.stderr, flush=True)


def delta_versions(lake: Lake) -> dict[str, int]:
    """The current version of every Delta table of the lake, as {"layer.table": version}."""
    from petinsure_assets.maintenance import DELTA_TABLES

    return {
        f"{layer}.{table}": lake.delta_table(lake.table_uri(layer, table)).version()
        for layer, table in DELTA_TABLES
        if lake.exists(lake.table_uri(layer, table))
    }


def _describe_lake(lake: Lake, summary: RefreshSummary) -> None:
    latest = read_latest(lake)
    summary.snapshot_version = latest["version"] if latest else None
    for layer, table in SUMMARY_TABLES:
        uri = lake.table_uri(layer, table)
        if lake.exists(uri):
            summary.rows[f"{layer}.{table}"] = int(lake.delta_table(uri).count())
    quarantine = lake.table_uri("silver", "quarantine")
    if lake.exists(quarantine):
        summary.quarantined = _quarantine_counts(lake, quarantine)
    ledger = lake.table_uri("bronze", LEDGER_TABLE)
    if lake.exists(ledger):
        rows = lake.read(
            ledger,
            "SELECT source_file || ': ' || status || ': ' || error AS line "
            f"FROM t WHERE batch_id = '{summary.run_id}' AND error IS NOT NULL "
            "ORDER BY source_file",
        )
        summary.files = rows.column("line").to_pylist()
    summary.lake_bytes = lake.files.total_bytes()


def _quarantine_counts(lake: Lake, uri: str) -> dict[str, int]:
    rows = lake.read(
        uri, "SELECT entity || '.' || reason AS k, count(*) AS n FROM t GROUP BY 1 ORDER BY 1"
    )
    return dict(zip(rows.column("k").to_pylist(), rows.column("n").to_pylist()))


DEMO_SNAPSHOT_CLAIMS = 300
DEMO_SNAPSHOT_AS_OF = "2026-01-31"


def build_demo_snapshot() -> str:
    """Rebuild petinsure_assets/demo_snapshot/: 300 demo claims as of 2026-01-31, one version."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(root=tmp)
        generate_into(lake, DEMO_SNAPSHOT_CLAIMS, 42)
        summary = run_refresh(lake.root, as_of=DEMO_SNAPSHOT_AS_OF, log_level="WARNING")
        if not summary.success:
            raise RuntimeError(summary.render())
        source = snapshot_root(lake)
        shutil.rmtree(DEMO_SNAPSHOT_DIR, ignore_errors=True)
        shutil.copytree(
            source / "v" / summary.snapshot_version,
            DEMO_SNAPSHOT_DIR / "v" / summary.snapshot_version,
        )
        shutil.copy(source / "latest.json", DEMO_SNAPSHOT_DIR / "latest.json")
        return summary.snapshot_version


def _as_of_date(text: str) -> str:
    """--as-of checked as the run will check it, so that a typo stops before anything runs."""
    from petinsure_assets.resources import ReportingDate

    try:
        ReportingDate(as_of=text).date()
    except dg.Failure as e:
        raise argparse.ArgumentTypeError(e.description) from None
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="petinsure", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    refresh = sub.add_parser(
        "refresh", help="generate demo data if raw/ is empty, then run refresh_all"
    )
    generate = sub.add_parser("generate", help="write the demo raw landing zone")
    for p in (refresh, generate):
        p.add_argument(
            "--lake",
            default=None,
            help=f"lake root folder (default ${LAKE_ROOT_ENV} or {DEFAULT_LAKE_ROOT}; "
            "with AZURE_STORAGE_ACCOUNT set and no --lake, the Azure account)",
        )
        # None = not given: a refresh on a raw zone that holds data says it ignores them.
        p.add_argument(
            "--claims",
            type=int,
            default=None,
            help=f"demo data size in claims (default {DEFAULT_DEMO_CLAIMS:,})",
        )
        p.add_argument(
            "--seed", type=int, default=None, help=f"demo data seed (default {DEFAULT_DEMO_SEED})"
        )
    refresh.add_argument(
        "--as-of",
        default="",
        type=_as_of_date,
        help="gold as-of date YYYY-MM-DD (default today UTC)",
    )
    refresh.add_argument(
        "--lock-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait while another writer holds the lake (default "
        f"${LOCK_WAIT_ENV} or 600); then exit {EXIT_LAKE_BUSY}. 0: refuse at once",
    )
    refresh.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every silver and gold table from all of bronze (default: only what changed)",
    )
    sub.add_parser("demo-snapshot", help="rebuild the demo snapshot bundled with snapshot_client")
    api = sub.add_parser(
        "api",
        help="serve the reference API over the snapshots and its front door, which writes new "
        "records into raw/ (see reference_api, front_door)",
    )
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--uds", default=None, help="listen on this Unix socket instead of host:port")
    args = parser.parse_args(argv)

    if args.command == "demo-snapshot":
        print(f"demo snapshot {build_demo_snapshot()} written to {DEMO_SNAPSHOT_DIR}")
        return 0
    if args.command == "api":
        from petinsure_assets.reference_api import serve

        return serve(host=args.host, port=args.port, uds=args.uds)
    from petinsure_assets.resources import lake_resource_from_env

    claims = DEFAULT_DEMO_CLAIMS if args.claims is None else args.claims
    seed = DEFAULT_DEMO_SEED if args.seed is None else args.seed
    try:
        lock_wait = lock_wait_seconds(getattr(args, "lock_wait", None))
    except ValueError as e:
        parser.error(str(e))
    try:
        lake = lake_resource_from_env(args.lake and os.path.abspath(args.lake), resolve=True).lake()
        if lake.is_azure:
            from petinsure_assets.azure import verify

            verify(lake)
        if args.command == "generate":  # the landing zone only, like any producer: no lock
            generate_into(lake, claims, seed)
            return 0
        # One lock from the demo data to the snapshot: a second refresh neither generates nor
        # ingests alongside this one.
        with writer_lock(lake, "petinsure refresh", wait=lock_wait, log=_warn):
            if raw_zone_is_empty(lake):
                generate_into(lake, claims, seed)
            else:
                ignored = " ".join(
                    f"--{name} {value}"
                    for name, value in (("claims", args.claims), ("seed", args.seed))
                    if value is not None
                )
                if ignored:
                    print(
                        f"petinsure: {lake.layer('raw')} already holds data; {ignored} ignored, the "
                        "lake is refreshed as it is. To generate new demo data, pass --lake <new "
                        "folder> or delete the lake first (`make clean` deletes ./lake).",
                        file=sys.stderr,
                    )
            summary = run_refresh(
                args.lake and os.path.abspath(args.lake),
                as_of=args.as_of,
                instance=dagster_instance(),
                full_refresh=args.full_refresh,
            )
    except LakeBusyError as e:
        print(f"petinsure: {e}", file=sys.stderr)
        return EXIT_LAKE_BUSY
    except (StorageError, OSError) as e:
        print(f"petinsure: {e}", file=sys.stderr)
        return 2
    print(summary.render())
    return 0 if summary.success else 1


def run() -> NoReturn:
    """The `petinsure` command and `python -m petinsure_assets`: main(), then the exit of
    entry_point (the true status, whatever the interpreter's teardown would do)."""
    run_and_exit(main)


if __name__ == "__main__":
    run_and_exit(main)
