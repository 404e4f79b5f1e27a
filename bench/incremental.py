"""The incremental path: one new real-time claim file on a refreshed lake, through the real sensors,
to an updated API snapshot. Run in a process of its own on a lake that a full refresh built.

    .venv/bin/python -m bench.incremental --lake /tmp/lake --as-of 2026-01-31 --out incr.json

Stages, each timed: raw sensor tick -> the run it requests (changed bronze table and everything
downstream) -> exports sensor tick -> snapshot run -> the snapshot client reading the new claim.
The sensors' polling interval (30 s) is not included. The raw sensor's first tick (which only
records the current listing as its cursor) and the process start-up are not timed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

NEW_CLAIM_ID = "CLM-BENCH-INCREMENTAL-1"


def tick(defs, name: str, instance, cursor: str | None = None):
    import dagster as dg

    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        return sensor.evaluate_tick(context)


def launch(defs, instance, request, job: str, as_of: str) -> None:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        asset_selection=request.asset_selection,
        tags=request.tags,
        run_config={
            "resources": {"reporting_date": {"config": {"as_of": as_of}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
    )
    if not result.success:
        raise SystemExit(f"{job} failed in the incremental run")


def new_claim(lake, service_date: str) -> dict:
    """A valid claim for an existing customer, policy, pet and provider of silver."""
    parent = lake.read(
        lake.table_uri("silver", "fact_claims"),
        "SELECT customer_id, policy_id, pet_id, provider_id FROM t ORDER BY claim_id LIMIT 1",
    ).to_pylist()[0]
    return {
        "claim_id": NEW_CLAIM_ID,
        "claim_number": "N-BENCH",
        **parent,
        "claim_type": "Illness",
        "claim_category": "Diagnostics",
        "service_date": service_date,
        "claim_amount": "123.45",
        "paid_amount": "100.00",
        "status": "Paid",
        "processing_days": "3",
        "updated_at": f"{service_date}T12:00:00",
    }


def measure(lake_root: str, as_of: str, home: str) -> dict:
    import dagster as dg

    from petinsure_assets.definitions import build_definitions
    from petinsure_assets.lake import Lake
    from petinsure_assets.snapshot_client import LocalStore, SnapshotClient
    from petinsure_assets.snapshots import snapshot_root

    lake = Lake(root=lake_root)
    defs = build_definitions(lake_root)
    stages: dict[str, float] = {}
    os.environ["DAGSTER_HOME"] = home
    instance = dg.DagsterInstance.from_config(home)
    raw = tick(defs, "raw_files_sensor", instance)
    exports = tick(defs, "exports_sensor", instance)
    claim = new_claim(lake, as_of)
    client = SnapshotClient(LocalStore(snapshot_root(lake)), ttl_seconds=0)
    previous_version = client.status()["version"] if client.snapshot() else None

    start = time.perf_counter()
    Path(
        lake_root, "raw", "claims", f"{NEW_CLAIM_ID}_{as_of.replace('-', '')}_120000_000000.json"
    ).write_text(json.dumps(claim))

    def timed(stage: str, work):
        mark = time.perf_counter()
        result = work()
        stages[stage] = time.perf_counter() - mark
        return result

    raw = timed("raw sensor tick", lambda: tick(defs, "raw_files_sensor", instance, raw.cursor))
    if not raw.run_requests:
        raise SystemExit("the raw sensor requested no run for the new claim file")
    timed(
        "refresh run (bronze to exports)",
        lambda: launch(defs, instance, raw.run_requests[0], "refresh_all", as_of),
    )
    exports = timed(
        "exports sensor tick", lambda: tick(defs, "exports_sensor", instance, exports.cursor)
    )
    if not exports.run_requests:
        raise SystemExit("the exports sensor requested no snapshot after the refresh")
    timed(
        "snapshot run",
        lambda: launch(defs, instance, exports.run_requests[0], "publish_api_snapshot", as_of),
    )

    def read_new_claim() -> None:
        claims = client.snapshot().tables["claims_analytics"].column("claim_id").to_pylist()
        if NEW_CLAIM_ID not in claims:
            raise SystemExit("the new claim is not in the published snapshot")

    timed("snapshot client cold read", read_new_claim)
    total = time.perf_counter() - start
    version = client.status()["version"]
    if version == previous_version:
        raise SystemExit("no new snapshot version was published")
    return {"stages": stages, "total_s": total}


def main() -> None:
    from bench.probe import measure_main

    measure_main(measure, __doc__.split("\n")[0], "the DAGSTER_HOME of the full refresh")


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
