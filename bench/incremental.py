"""The incremental path on a refreshed lake, through the real sensors, to an updated API snapshot,
for three raw drops: a new file of 1,000 claims, a file of newer versions of 1,000 existing claims,
and the late customer, pet and policy of 10 quarantined claims (which they release). Run in a
process of its own on a lake that a full refresh built.

    .venv/bin/python -m bench.incremental --lake /tmp/lake --as-of 2026-01-31 --out incr.json

Stages, each timed: raw sensor tick -> the run it requests (changed bronze tables and everything
downstream) -> exports sensor tick -> snapshot run -> the snapshot client reading the claims the
drop brings (with their new amounts, for the updates).
The sensors' polling interval (30 s) is not included. The raw sensor's first tick (which only
records the current listing as its cursor) and the process start-up are not timed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

BATCH = 1_000  # claims in the new file and in the file of updates
ORPHANS = 10  # claims of the late parents' customer, quarantined until their parents arrive


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


def _claim(claim_id: str, parent: dict, service_date: str, updated_at: str, amount: str) -> dict:
    return {
        "claim_id": claim_id,
        "claim_number": f"N-{claim_id}",
        **parent,
        "claim_type": "Illness",
        "claim_category": "Diagnostics",
        "service_date": service_date,
        "claim_amount": amount,
        "paid_amount": "100.00",
        "status": "Paid",
        "processing_days": "3",
        "updated_at": updated_at,
    }


def _jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def new_claims(lake, raw: Path, as_of: str, tag: str) -> set[str]:
    """A batch file of BATCH new valid claims of existing customers, policies, pets and
    providers (spread over the book), serviced in the as-of month."""
    parents = lake.read(
        lake.table_uri("silver", "fact_claims"),
        "SELECT customer_id, policy_id, pet_id, provider_id FROM t "
        f"USING SAMPLE {BATCH} ROWS (reservoir, 7)",
    ).to_pylist()
    ids = [f"CLM-BENCH-{tag}-{i:05d}" for i in range(len(parents))]
    _jsonl(
        raw / "claims" / f"claims_bench_{tag}.jsonl",
        [_claim(i, p, as_of, f"{as_of}T12:00:00", "123.45") for i, p in zip(ids, parents)],
    )
    return set(ids)


def updated_claims(lake, raw: Path, as_of: str, tag: str) -> set[str]:
    """A batch file of newer versions of BATCH existing claims (a new amount, the same
    service date): each replaces its claim in silver and in gold."""
    rows = lake.read(
        lake.table_uri("silver", "fact_claims"),
        "SELECT claim_id, customer_id, policy_id, pet_id, provider_id, "
        "CAST(service_date AS VARCHAR) AS service_date FROM t "
        f"USING SAMPLE {BATCH} ROWS (reservoir, 11)",
    ).to_pylist()
    records = [
        _claim(
            r.pop("claim_id"),
            {k: r[k] for k in ("customer_id", "policy_id", "pet_id", "provider_id")},
            r["service_date"],
            f"{as_of}T23:59:59",
            "321.00",
        )
        for r in rows
    ]
    _jsonl(raw / "claims" / f"claims_bench_{tag}.jsonl", records)
    return {r["claim_id"] for r in records}


def late_parents(tag: str) -> list[tuple[str, str, dict]]:
    """(entity, id, record) of a customer, pet and policy that arrive after their claims."""
    customer, pet, policy = f"CUST-BENCH-{tag}", f"PET-BENCH-{tag}", f"POL-BENCH-{tag}"
    parents = [
        (
            "customers",
            customer,
            {
                "customer_id": customer,
                "first_name": "Late",
                "last_name": "Parent",
                "customer_since": "2020-01-01",
                "segment": "Family",
                "updated_at": "2020-01-01T00:00:00",
            },
        ),
        (
            "pets",
            pet,
            {
                "pet_id": pet,
                "customer_id": customer,
                "pet_name": "Late",
                "species": "Dog",
                "is_active": "true",
                "updated_at": "2020-01-01T00:00:00",
            },
        ),
        (
            "policies",
            policy,
            {
                "policy_id": policy,
                "policy_number": f"PN-{policy}",
                "customer_id": customer,
                "pet_id": pet,
                "plan_name": "Basic",
                "monthly_premium": "20.00",
                "effective_date": "2020-01-01",
                "expiration_date": "2030-12-31",
                "status": "Active",
                "updated_at": "2020-01-01T00:00:00",
            },
        ),
    ]
    return parents


def measure(lake_root: str, as_of: str, home: str) -> dict:
    """The three scenarios, one after the other on the same lake, each from its raw drop to the
    snapshot client answering with the claims it brings."""
    import dagster as dg
    import pyarrow as pa
    import pyarrow.compute as pc

    from petinsure_assets.definitions import build_definitions
    from petinsure_assets.lake import Lake
    from petinsure_assets.snapshot_client import LocalStore, SnapshotClient
    from petinsure_assets.snapshots import snapshot_root

    lake = Lake(root=lake_root)
    raw = Path(lake_root, "raw")
    defs = build_definitions(lake_root)
    os.environ["DAGSTER_HOME"] = home
    instance = dg.DagsterInstance.from_config(home)
    cursors = {
        "raw": tick(defs, "raw_files_sensor", instance).cursor,
        "exports": tick(defs, "exports_sensor", instance).cursor,
    }
    stamp = as_of.replace("-", "")
    provider = (
        lake.read(lake.table_uri("silver", "dim_providers"), "SELECT min(provider_id) AS p FROM t")
        .column("p")[0]
        .as_py()
    )

    def through_the_sensors(
        drop, expected: dict[str, float] | None = None, snapshot: bool = True
    ) -> dict:
        """Drop raw files (`drop()` returns the claim ids to find; `expected`, the amounts they
        must have), then raw sensor -> run -> exports sensor -> snapshot run -> client read
        (only the first two when not `snapshot`: a drop that changes no gold table)."""
        client = SnapshotClient(LocalStore(snapshot_root(lake)), ttl_seconds=0)
        previous = client.status()["version"] if client.snapshot() else None
        stages: dict[str, float] = {}
        start = time.perf_counter()
        wanted = drop()

        def timed(stage: str, work):
            mark = time.perf_counter()
            result = work()
            stages[stage] = time.perf_counter() - mark
            return result

        tick_raw = timed(
            "raw sensor tick", lambda: tick(defs, "raw_files_sensor", instance, cursors["raw"])
        )
        if not tick_raw.run_requests:
            raise SystemExit("the raw sensor requested no run for the new files")
        cursors["raw"] = tick_raw.cursor
        timed(
            "refresh run (bronze to exports)",
            lambda: launch(defs, instance, tick_raw.run_requests[0], "refresh_all", as_of),
        )
        if not snapshot:
            return {"stages": stages, "total_s": time.perf_counter() - start}
        tick_exports = timed(
            "exports sensor tick",
            lambda: tick(defs, "exports_sensor", instance, cursors["exports"]),
        )
        if not tick_exports.run_requests:
            raise SystemExit("the exports sensor requested no snapshot after the refresh")
        cursors["exports"] = tick_exports.cursor
        timed(
            "snapshot run",
            lambda: launch(
                defs, instance, tick_exports.run_requests[0], "publish_api_snapshot", as_of
            ),
        )

        def read_claims() -> None:
            # The client's first read of claims_analytics (read and verified whole), then the
            # claims of the drop found in it with Arrow compute (no Python objects per row).
            table = client.snapshot().tables["claims_analytics"]
            found = table.filter(pc.is_in(table.column("claim_id"), pa.array(sorted(wanted))))
            if found.num_rows != len(wanted):
                raise SystemExit(f"{len(wanted) - found.num_rows} claims are not in the snapshot")
            if expected:
                amounts = dict(
                    zip(
                        found.column("claim_id").to_pylist(),
                        found.column("claim_amount").to_pylist(),
                        strict=True,
                    )
                )
                if any(float(amounts[c]) != v for c, v in expected.items()):
                    raise SystemExit("the updated claims do not have their new amounts")

        timed("snapshot client cold read", read_claims)
        total = time.perf_counter() - start
        if client.status()["version"] == previous:
            raise SystemExit("no new snapshot version was published")
        return {"stages": stages, "total_s": total}

    scenarios = {}
    scenarios["new claim file"] = through_the_sensors(lambda: new_claims(lake, raw, as_of, "NEW"))
    updates: dict[str, float] = {}

    def drop_updates() -> set[str]:
        ids = updated_claims(lake, raw, as_of, "UPDATE")
        updates.update({i: 321.0 for i in ids})
        return ids

    scenarios["file of updates"] = through_the_sensors(drop_updates, updates)

    # The orphans first (not timed): quarantined, waiting for their customer, pet and policy.
    parents = late_parents("LATE")
    customer, pet, policy = (record_id for _, record_id, _ in parents)
    orphans = [
        _claim(
            f"CLM-BENCH-LATE-{i:03d}",
            {"customer_id": customer, "policy_id": policy, "pet_id": pet, "provider_id": provider},
            as_of,
            f"{as_of}T12:00:00",
            "155.00",
        )
        for i in range(ORPHANS)
    ]
    _jsonl(raw / "claims" / "claims_bench_orphans.jsonl", orphans)
    through_the_sensors(lambda: set(), snapshot=False)

    def drop_parents() -> set[str]:
        for entity, record_id, record in parents:
            path = raw / entity / f"{record_id}_{stamp}_120000_000000.json"
            path.write_text(json.dumps(record))
        return {c["claim_id"] for c in orphans}

    scenarios["late parent releasing orphans"] = through_the_sensors(drop_parents)
    return {"scenarios": scenarios}


def main() -> None:
    from bench.probe import measure_main

    measure_main(measure, __doc__.split("\n")[0], "the DAGSTER_HOME of the full refresh")


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
