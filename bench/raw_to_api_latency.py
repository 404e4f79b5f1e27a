"""Latency from a new raw claim file to the reference API serving it, through the real sensors.

    .venv/bin/python bench/raw_to_api_latency.py --claims 15000

Builds a demo lake of the given size (full refresh first, not timed), then times, for one new
real-time claim file: raw sensor tick -> refresh run -> exports sensor tick -> snapshot run ->
the API answering with the claim. The sensors' polling interval (30 s) is not included.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import dagster as dg
from fastapi.testclient import TestClient

from petinsure_assets.cli import run_refresh
from petinsure_assets.definitions import build_definitions
from petinsure_assets.demo_data import generate
from petinsure_assets.lake import Lake
from petinsure_assets.reference_api import create_app
from petinsure_assets.snapshot_client import LocalStore, SnapshotClient
from petinsure_assets.snapshots import snapshot_root

AS_OF = "2026-01-31"


def tick(defs, name, instance, cursor=None):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                 resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


def launch(defs, instance, request, job):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, asset_selection=request.asset_selection, tags=request.tags,
        run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    assert result.success


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=15_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test() as instance:
        lake = Lake(root=tmp)
        generate(lake.layer("raw"), claims=args.claims, seed=42)
        defs = build_definitions(lake.root)
        raw = tick(defs, "raw_files_sensor", instance)
        exports = tick(defs, "exports_sensor", instance)
        assert run_refresh(lake.root, as_of=AS_OF, instance=instance, log_level="WARNING").success
        raw = tick(defs, "raw_files_sensor", instance, raw.cursor)
        exports = tick(defs, "exports_sensor", instance, exports.cursor)
        api = TestClient(create_app(SnapshotClient(LocalStore(snapshot_root(lake)), ttl_seconds=0)))
        customer = api.get("/api/insights/customers?limit=1").json()["items"][0]["customer_id"]
        claims = api.get(f"/api/insights/claims?customer_id={customer}&limit=1").json()["items"]
        template = claims[0]

        new_id = "CLM-LATENCY-1"
        stages = {}
        start = time.perf_counter()
        Path(lake.raw_dir("claims"), f"{new_id}_20260120_120000_000000.json").write_text(json.dumps({
            "claim_id": new_id, "claim_number": "N-LAT", "customer_id": customer,
            "policy_id": template["policy_id"], "pet_id": template["pet_id"],
            "provider_id": template["provider_id"], "claim_type": "Illness",
            "claim_category": "Diagnostics", "service_date": "2026-01-20", "claim_amount": 123.45,
            "paid_amount": 100.0, "status": "Paid", "processing_days": 3,
            "updated_at": "2026-01-20T12:00:00"}))
        mark = time.perf_counter()
        raw = tick(defs, "raw_files_sensor", instance, raw.cursor)
        stages["raw sensor tick"] = time.perf_counter() - mark
        mark = time.perf_counter()
        launch(defs, instance, raw.run_requests[0], "refresh_all")
        stages["refresh run (bronze to exports)"] = time.perf_counter() - mark
        mark = time.perf_counter()
        exports = tick(defs, "exports_sensor", instance, exports.cursor)
        stages["exports sensor tick"] = time.perf_counter() - mark
        mark = time.perf_counter()
        launch(defs, instance, exports.run_requests[0], "publish_api_snapshot")
        stages["snapshot run"] = time.perf_counter() - mark
        mark = time.perf_counter()
        found = api.get(f"/api/insights/claims?customer_id={customer}&limit=1000").json()["items"]
        assert new_id in [c["claim_id"] for c in found]
        stages["API read (cache cold)"] = time.perf_counter() - mark
        total = time.perf_counter() - start
        print(f"raw claim file -> API at {args.claims:,} claims")
        for name, seconds in stages.items():
            print(f"  {name:<34} {seconds:6.2f} s")
        print(f"  {'total':<34} {total:6.2f} s")


if __name__ == "__main__":
    main()
