"""Sensors, snapshots, the snapshot client and the reference API."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from petinsure_assets.catalog import CATALOG
from petinsure_assets.cli import run_refresh
from petinsure_assets.definitions import build_definitions
from petinsure_assets.lake import Lake
from petinsure_assets.reference_api import create_app
from petinsure_assets.snapshot_client import (
    LocalStore,
    SnapshotClient,
    SnapshotError,
    load_snapshot,
)
from petinsure_assets.snapshots import publish, read_latest, snapshot_root
from tests.conftest import LakeFixture
from tests.test_checks import GOOD_CLAIMS
from tests.test_pipeline import AS_OF, claim, write_base

ADMIN = "s3cret-admin-token"


@pytest.fixture(scope="session")
def served(served_lake: LakeFixture) -> LakeFixture:
    """The small hand-made book (see test_checks): 2 customers, 3 pets, 2 policies, 3 claims;
    built once per session (conftest's `served_lake`, with `add_uninsured_pet`). Read only: the
    tests that publish work on a copy."""
    return served_lake


@pytest.fixture(scope="module")
def api(served: LakeFixture) -> TestClient:
    client = SnapshotClient(LocalStore(snapshot_root(served.lake)))
    return TestClient(create_app(client, admin_token=ADMIN))


# ---- the raw sensor -----------------------------------------------------------------------------


def _tick(defs: dg.Definitions, name: str, instance, cursor=None):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        return sensor.evaluate_tick(context)


def test_raw_sensor_ticks(lake: LakeFixture):
    write_base(lake, GOOD_CLAIMS)
    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        first = _tick(defs, "raw_files_sensor", instance)
        (request,) = first.run_requests
        keys = {k.to_user_string() for k in request.asset_selection}
        assert {
            f"bronze/{e}_raw" for e in ("customers", "pets", "policies", "claims", "providers")
        } <= keys
        assert "gold/exports/monthly_kpis" in keys and "gold/api_snapshot" not in keys

        quiet = _tick(defs, "raw_files_sensor", instance, first.cursor)
        assert (
            quiet.run_requests == []
            and "no new or changed files among the 5 files" in quiet.skip_message
        )

        lake.write_raw(
            "claims",
            "CLM-7_20250501_000000_000000.json",
            claim("CLM-7", "2025-05-01", "10.00", "5.00"),
        )
        new = _tick(defs, "raw_files_sensor", instance, quiet.cursor)
        (request,) = new.run_requests
        keys = {k.to_user_string() for k in request.asset_selection}
        assert "bronze/claims_raw" in keys and "silver/fact_claims" in keys
        assert not keys & {"bronze/customers_raw", "bronze/pets_raw", "gold/api_snapshot"}
        assert request.tags["petinsure/entities"] == "claims"

        customers = lake.root / "raw" / "customers" / "customers.csv"
        customers.write_text(customers.read_text().replace("Ann", "Anne"))
        changed = _tick(defs, "raw_files_sensor", instance, new.cursor)
        assert changed.run_requests[0].tags["petinsure/entities"] == "customers"

        # A repeated tick (same cursor) asks for nothing; with its cursor lost, it asks again
        # under the same run key, which the daemon does not launch twice.
        assert _tick(defs, "raw_files_sensor", instance, changed.cursor).run_requests == []
        again = _tick(defs, "raw_files_sensor", instance, new.cursor)
        assert again.run_requests[0].run_key == changed.run_requests[0].run_key


_OPENED: list[list[str]] = []  # the recorders of _opened_files, innermost last


def _audit(event: str, args: tuple) -> None:
    if _OPENED and event == "open" and isinstance(args[0], str):
        _OPENED[-1].append(os.path.abspath(args[0]))


@contextlib.contextmanager
def _opened_files():
    """Every file the process opens meanwhile (by any means: an audit hook sees them all)."""
    if not getattr(sys, "_petinsure_test_audit", False):  # an audit hook cannot be removed
        sys.addaudithook(_audit)
        sys._petinsure_test_audit = True
    _OPENED.append([])
    try:
        yield _OPENED[-1]
    finally:
        _OPENED.pop()


def test_raw_sensor_tick_is_fast_with_thousands_of_files(lake: LakeFixture):
    write_base(lake, GOOD_CLAIMS)
    for i in range(3000):
        lake.write_raw("claims", f"CLM-{i:05d}_20250501_000000_000000.json", "{}")
    defs = build_definitions(str(lake.root))
    raw = str(lake.root / "raw") + os.sep
    with dg.instance_for_test() as instance:
        first = _tick(defs, "raw_files_sensor", instance)
        with _opened_files() as opened:
            quiet = _tick(defs, "raw_files_sensor", instance, first.cursor)
    assert quiet.run_requests == []
    assert "3005 files" in quiet.skip_message
    # Not a timing target (bench/ has those); a tick that lists 3,000 files must not crawl: it
    # lists names, sizes and modification times, and opens none of the files.
    assert [path for path in opened if path.startswith(raw)] == []


def test_exports_sensor_requests_one_snapshot_per_refresh(lake: LakeFixture):
    write_base(lake, GOOD_CLAIMS)
    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        assert _tick(defs, "exports_sensor", instance).run_requests == []
        run_refresh(
            str(lake.root), as_of=AS_OF, instance=instance, snapshot=False, log_level="WARNING"
        )
        tick = _tick(defs, "exports_sensor", instance)
        (request,) = tick.run_requests
        assert request.run_key.startswith("snapshot-")
        assert _tick(defs, "exports_sensor", instance, tick.cursor).run_requests == []


# ---- publishing ---------------------------------------------------------------------------------


def test_snapshot_layout_manifest_and_no_personal_data(served: LakeFixture):
    root = snapshot_root(served.lake)
    latest = read_latest(served.lake)
    manifest = json.loads((root / latest["manifest"]).read_text())
    assert manifest["schema_version"] == 1 and manifest["version"] == latest["version"]
    assert manifest["as_of"] == AS_OF
    assert set(manifest["files"]) == {
        "customer_360_view.parquet",
        "risk_scoring.parquet",
        "claims_analytics.parquet",
        "monthly_kpis.parquet",
        "provider_performance.parquet",
        "cross_sell_recommendations.parquet",
        "summary.json",
        "kpis.json",
        "segments.json",
        "pipeline_status.json",
    }
    assert manifest["files"]["claims_analytics.parquet"]["rows"] == 3
    assert set(manifest["source_tables"]) == {spec.path for spec in CATALOG.gold}
    folder = root / "v" / latest["version"]
    for name in manifest["files"]:
        if name.endswith(".parquet"):
            names = set(pq.read_schema(folder / name).names)
            assert not names & {"email", "phone", "address", "date_of_birth"}, name
        else:
            text = (folder / name).read_text()
            assert "@example.com" not in text and "Main St" not in text


def test_unchanged_content_publishes_nothing_and_old_versions_are_pruned(
    served: LakeFixture, tmp_path: Path
):
    copy = tmp_path / "lake"
    shutil.copytree(served.root, copy)
    lake = Lake(root=str(copy))
    root = snapshot_root(lake)
    before = read_latest(lake)["version"]
    again = publish(lake)
    assert not again.published and again.reason == "content unchanged"
    assert read_latest(lake)["version"] == before

    versions = [before]
    for _ in range(3):  # three real changes: the claims export loses a row each time
        path = Path(lake.root) / lake.export_path("claims_analytics")
        table = pq.read_table(path)
        pq.write_table(table.slice(0, table.num_rows - 1), path)
        result = publish(lake, retention=2)
        assert result.published
        versions.append(result.version)
    assert sorted(p.name for p in (root / "v").iterdir()) == versions[-2:]
    assert read_latest(lake)["version"] == versions[-1]


def test_reader_polling_while_publishing_never_sees_a_mix(served: LakeFixture, tmp_path: Path):
    copy = tmp_path / "lake"
    shutil.copytree(served.root, copy)
    lake = Lake(root=str(copy))
    store = LocalStore(snapshot_root(lake))
    export = Path(lake.root) / lake.export_path("claims_analytics")
    full = pq.read_table(export)
    stop = threading.Event()
    seen: list[tuple[str, int, int]] = []
    errors: list[str] = []

    def reader():
        while not stop.is_set():
            try:
                snap = load_snapshot(store, "live")
                rows = snap.tables["claims_analytics"].num_rows  # read when first asked for
            except SnapshotError as e:  # a version pruned between latest.json and its files
                errors.append(str(e))
                continue
            seen.append((snap.version, snap.documents["summary"]["total_claims"], rows))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(12):
            pq.write_table(full.slice(0, 1 + i % 3), export)
            publish(lake, retention=3)
    finally:
        stop.set()
        thread.join()
    assert len({v for v, _, _ in seen}) >= 2, "the reader should have seen several versions"
    assert all(summary == rows for _, summary, rows in seen)
    assert all("cannot read" in e for e in errors), errors  # never a checksum failure


def test_corrupted_file_is_rejected_and_the_last_good_version_kept(
    served: LakeFixture, tmp_path: Path
):
    copy = tmp_path / "lake"
    shutil.copytree(served.root, copy)
    lake = Lake(root=str(copy))
    now = [time.time()]
    client = SnapshotClient(LocalStore(snapshot_root(lake)), ttl_seconds=10, clock=lambda: now[0])
    good = client.snapshot()
    assert good.source == "live"

    path = Path(lake.root) / lake.export_path("monthly_kpis")
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 1), path)
    bad = publish(lake)
    target = snapshot_root(lake) / "v" / bad.version / "monthly_kpis.parquet"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")

    # Tables are read when first asked for: the new version is taken, and its damaged table is
    # found when an endpoint first needs it. That request fails (SnapshotError, a 503 from the
    # API); the client then serves the last good version again and counts a failure, as when a
    # damaged JSON document is found on loading.
    now[0] += 11
    taken = client.snapshot()
    assert taken.version == bad.version
    with pytest.raises(SnapshotError, match="monthly_kpis.parquet: content does not match"):
        taken.tables["monthly_kpis"]
    served_now = client.snapshot()
    assert served_now is good and served_now.source == "live"
    assert served_now.tables["monthly_kpis"].num_rows == table.num_rows  # the good version's
    status = client.status()
    assert status["consecutive_failures"] == 1
    assert "monthly_kpis.parquet: content does not match the manifest" in status["last_error"]
    now[0] += 11  # latest.json still names the damaged version: still the good one
    assert client.snapshot() is good and client.status()["consecutive_failures"] == 2


# ---- the client ---------------------------------------------------------------------------------


class CountingStore(LocalStore):
    def __init__(self, root):
        super().__init__(root)
        self.reads = 0
        self.paths: list[str] = []
        self.broken = False

    def read(self, path: str) -> bytes:
        self.reads += 1
        self.paths.append(path)
        if self.broken:
            raise SnapshotError("storage unavailable")
        return super().read(path)


def test_client_reads_a_table_when_an_endpoint_first_needs_it(served: LakeFixture, tmp_path):
    copy = tmp_path / "lake"
    shutil.copytree(served.root, copy)
    lake = Lake(root=str(copy))
    store = CountingStore(snapshot_root(lake))
    now = [time.time()]
    client = SnapshotClient(store, ttl_seconds=10, clock=lambda: now[0])
    first = client.snapshot()
    folder = f"v/{first.version}"
    documents = sorted(n for n in first.manifest["files"] if n.endswith(".json"))
    assert documents == ["kpis.json", "pipeline_status.json", "segments.json", "summary.json"]
    # The first answer: latest.json, the manifest and the JSON documents; no table.
    assert store.paths == ["latest.json", f"{folder}/manifest.json"] + [
        f"{folder}/{d}" for d in documents
    ]
    assert first.tables.loaded == [] and len(first.tables) == 6
    reads = store.reads
    assert first.tables["risk_scoring"].num_rows == 2
    assert first.tables["risk_scoring"] is first.tables["risk_scoring"]  # read once, then kept
    assert store.paths[reads:] == [f"{folder}/risk_scoring.parquet"]
    assert first.tables.loaded == ["risk_scoring"]

    # A newer version is published and this one pruned before its other tables were read.
    path = Path(lake.root) / lake.export_path("claims_analytics")
    pq.write_table(pq.read_table(path).slice(0, 1), path)
    newer = publish(lake, retention=1)
    assert newer.pruned == [first.version]
    with pytest.raises(SnapshotError, match="cannot read"):
        first.tables["claims_analytics"]
    # The client reads latest.json again at once (not after its TTL) and serves the new version.
    served_now = client.snapshot()
    assert served_now.version == newer.version
    assert served_now.tables["claims_analytics"].num_rows == 1
    assert client.status()["consecutive_failures"] == 0

    # Through the API: a request that meets a table whose version is gone gets a 503 to retry;
    # the next one is served from the version latest.json names now.
    api = TestClient(create_app(client, admin_token=ADMIN))
    assert api.get("/api/insights/summary").json()["version"] == newer.version  # no table read
    original = Path(served.root) / served.lake.export_path("claims_analytics")
    pq.write_table(pq.read_table(original).slice(0, 2), path)
    newest = publish(lake, retention=1)
    assert newest.pruned == [newer.version]
    # provider_performance of the version the client holds was never read: now it cannot be.
    failed = api.get("/api/insights/providers")
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert "snapshot table unavailable, try again: cannot read" in failed.json()["detail"]
    again = api.get("/api/insights/providers")
    assert again.status_code == 200 and again.json()["version"] == newest.version


def test_client_cache_breaker_fallback_and_status(served: LakeFixture):
    now = [time.time()]
    store = CountingStore(snapshot_root(served.lake))
    client = SnapshotClient(store, ttl_seconds=300, clock=lambda: now[0])
    live = client.snapshot()
    assert live.source == "live"
    reads = store.reads
    assert client.snapshot() is live and store.reads == reads  # within the TTL: no I/O

    now[0] += 301  # TTL expired: latest.json only, the files are not read again
    assert client.snapshot() is live and store.reads == reads + 1
    status = client.status()
    assert status["source"] == "live" and status["version"] == live.version
    assert status["circuit_breaker"] == "closed" and status["consecutive_failures"] == 0
    assert status["last_sync"] is not None and status["data_age_seconds"] > 0

    store.broken = True
    for failures in (1, 2):  # the first two failures serve the last good snapshot
        now[0] += 301
        assert client.snapshot() is live
        assert client.status()["consecutive_failures"] == failures
    now[0] += 301
    demo = client.snapshot()  # the third opens the breaker: the bundled demo snapshot
    assert demo.source == "demo"
    status = client.status()
    assert status["source"] == "demo" and status["circuit_breaker"] == "open"
    assert status["last_error"] == "storage unavailable"

    store.broken = False
    now[0] += 299  # still open: demo, and the store is not even asked
    reads = store.reads
    assert client.snapshot().source == "demo" and store.reads == reads
    now[0] += 2  # 5 minutes later the breaker closes on a successful read
    assert client.snapshot().source == "live"
    assert client.status()["circuit_breaker"] == "closed"


def test_client_serves_the_bundled_demo_snapshot_without_a_store():
    client = SnapshotClient(None)
    snap = client.snapshot()
    assert snap.source == "demo"
    assert snap.documents["summary"]["total_claims"] == snap.tables["claims_analytics"].num_rows > 0
    assert client.status()["source"] == "demo"


# ---- the reference API (values worked out by hand from the fixture) -----------------------------


def test_api_summary_kpis_segments_and_pipeline(api: TestClient):
    summary = api.get("/api/insights/summary").json()
    # premium earned: CUST-1 40.00 x 6 months (Jan-Jun 2025) = 240; CUST-2 25.00 x 6 = 150
    # paid: CLM-1 150 + CLM-2 80 (CLM-3 denied); loss ratio 230 / 390 = 0.58974 -> 0.5897
    assert {
        k: summary[k]
        for k in (
            "total_customers",
            "total_pets",
            "total_policies",
            "active_policies",
            "total_claims",
            "total_claimed",
            "total_paid",
            "premium_earned",
            "loss_ratio",
            "approval_rate",
            "avg_processing_days",
            "cross_sell_opportunities",
            "cross_sell_revenue",
            "as_of",
            "source",
        )
    } == {
        "total_customers": 2,
        "total_pets": 3,
        "total_policies": 2,
        "active_policies": 2,
        "total_claims": 3,
        "total_claimed": 390.0,
        "total_paid": 230.0,
        "premium_earned": 390.0,
        "loss_ratio": 0.5897,
        "approval_rate": 0.6667,
        "avg_processing_days": 4.0,
        "cross_sell_opportunities": 1,
        "cross_sell_revenue": 480.0,
        "as_of": AS_OF,
        "source": "live",
    }

    months = api.get("/api/insights/kpis").json()["months"]
    assert [(m["year_month"], m["total_claims"], m["total_paid"]) for m in months] == [
        ("2025-02", 1, 150.0),
        ("2025-03", 1, 80.0),
        ("2025-04", 1, 0.0),
    ]
    assert [
        m["year_month"]
        for m in api.get("/api/insights/kpis?from=2025-03&to=2025-03").json()["months"]
    ] == ["2025-03"]

    segments = api.get("/api/insights/segments").json()
    assert segments["segment"] == [
        {"name": "Budget", "customers": 1, "lifetime_value": 150.0},
        {"name": "Family", "customers": 1, "lifetime_value": 240.0},
    ]
    assert segments["value_tier"] == [{"name": "Bronze", "customers": 2, "lifetime_value": 390.0}]
    # CUST-1: 2 claims in 12 months (20) + loss ratio 0.625 (10) + 7-year-old pet (10) = 40 Medium
    # CUST-2: 1 claim (10) + loss ratio 0.5333 (10) = 20 Low
    assert [(s["name"], s["customers"]) for s in segments["risk_category"]] == [
        ("Low", 1),
        ("Medium", 1),
    ]

    pipeline = api.get("/api/pipeline/status").json()
    assert pipeline["layers"]["bronze"]["claims_raw"] == 4
    assert pipeline["layers"]["silver"]["fact_claims"] == 3
    assert pipeline["layers"]["gold"]["customer_360_view"] == 2
    assert pipeline["quarantined"] == 1


def test_api_lists_with_filters_and_pagination(api: TestClient):
    customers = api.get("/api/insights/customers").json()
    assert customers["total"] == 2
    assert [
        (c["customer_id"], c["premium_earned"], c["loss_ratio"], c["risk_score"])
        for c in customers["items"]
    ] == [("CUST-1", 240.0, 0.625, 40), ("CUST-2", 150.0, 0.5333, 20)]
    assert "email" not in customers["items"][0]
    page = api.get("/api/insights/customers?limit=1&offset=1").json()
    assert (page["total"], [c["customer_id"] for c in page["items"]]) == (2, ["CUST-2"])
    assert (
        api.get("/api/insights/customers?risk_category=Medium").json()["items"][0]["customer_id"]
        == "CUST-1"
    )
    assert api.get("/api/insights/customers?limit=0").status_code == 422

    one = api.get("/api/insights/customers/CUST-1").json()
    assert (one["full_name"], one["total_pets"], one["active_policies"]) == ("Ann Lee", 2, 1)
    assert one["risk"]["risk_category"] == "Medium"
    assert [
        (x["recommendation"], x["estimated_revenue"], x["priority"]) for x in one["cross_sell"]
    ] == [("Insure Additional Pet", 480.0, "High")]  # PET-3 uninsured; 12 x 40.00
    assert api.get("/api/insights/customers/CUST-404").status_code == 404

    claims = api.get("/api/insights/claims?status=Paid").json()
    assert [(c["claim_id"], c["reimbursement_rate"]) for c in claims["items"]] == [
        ("CLM-1", 0.75),
        ("CLM-2", 0.8),
    ]
    assert (
        api.get("/api/insights/claims?customer_id=CUST-1&service_month=2025-04").json()["items"][0][
            "claim_id"
        ]
        == "CLM-3"
    )

    providers = api.get("/api/insights/providers?is_in_network=true").json()["items"]
    assert [
        (
            p["provider_id"],
            p["total_claims"],
            p["total_paid"],
            p["approval_rate"],
            p["unique_customers"],
        )
        for p in providers
    ] == [("PRV-1", 3, 230.0, 0.6667, 2)]
    assert api.get("/api/insights/providers?is_in_network=false").json()["total"] == 0

    risks = api.get("/api/insights/risks?risk_category=Low").json()["items"]
    assert [(r["customer_id"], r["total_risk_score"], r["recommended_action"]) for r in risks] == [
        ("CUST-2", 20, "Standard renewal")
    ]
    cross = api.get("/api/insights/cross-sell?priority=High").json()
    assert cross["total"] == 1 and cross["items"][0]["customer_id"] == "CUST-1"


def test_api_health_data_source_status_and_toggle(served: LakeFixture):
    client = SnapshotClient(LocalStore(snapshot_root(served.lake)))
    api = TestClient(create_app(client, admin_token=ADMIN))
    assert api.get("/health").json()["status"] == "ok"
    status = api.get("/api/v1/data-source/status").json()
    assert status["source"] == "live" and status["use_live"] is True

    assert api.put("/api/v1/data-source/toggle").status_code == 401
    assert (
        api.put("/api/v1/data-source/toggle", headers={"Authorization": "Bearer wrong"}).status_code
        == 403
    )
    toggled = api.put(
        "/api/v1/data-source/toggle",
        json={"use_live": False},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert toggled.status_code == 200 and toggled.json()["source"] == "demo"
    assert api.get("/api/insights/summary").json()["source"] == "demo"
    back = api.put("/api/v1/data-source/toggle", headers={"Authorization": f"Bearer {ADMIN}"})
    assert back.json()["source"] == "live"

    disabled = TestClient(create_app(client, admin_token=""))
    assert (
        disabled.put(
            "/api/v1/data-source/toggle", headers={"Authorization": f"Bearer {ADMIN}"}
        ).status_code
        == 503
    )


def test_api_enumerated_filters_match_whatever_the_case(api: TestClient):
    def ids(url: str, key: str = "customer_id") -> list[str]:
        response = api.get(url)
        assert response.status_code == 200, response.json()
        return [item[key] for item in response.json()["items"]]

    assert ids("/api/insights/claims?status=paid", "claim_id") == ["CLM-1", "CLM-2"]
    assert ids("/api/insights/claims?status=%20DENIED%20", "claim_id") == ["CLM-3"]
    assert ids("/api/insights/claims?claim_type=illness", "claim_id") == ["CLM-1", "CLM-2", "CLM-3"]
    assert ids("/api/insights/customers?value_tier=bronze") == ["CUST-1", "CUST-2"]
    assert ids("/api/insights/customers?risk_category=medium") == ["CUST-1"]
    assert ids("/api/insights/risks?risk_category=LOW") == ["CUST-2"]
    assert ids("/api/insights/cross-sell?priority=high") == ["CUST-1"]
    assert ids("/api/insights/cross-sell?recommendation=insure%20additional%20pet") == ["CUST-1"]
    assert (
        ids("/api/insights/cross-sell?recommendation=Plan%20Upgrade") == []
    )  # accepted, none fires


@pytest.mark.parametrize(
    "url, field, value, accepted",
    [
        (
            "/api/insights/claims?status=approvedd",
            "status",
            "approvedd",
            "'Submitted', 'Under Review', 'Approved', 'Denied' or 'Paid'",
        ),
        (
            "/api/insights/claims?claim_type=Dental",
            "claim_type",
            "Dental",
            "'Accident', 'Illness', 'Wellness' or 'Emergency'",
        ),
        (
            "/api/insights/customers?risk_category=Nope",
            "risk_category",
            "Nope",
            "'Low', 'Medium', 'High' or 'Critical'",
        ),
        (
            "/api/insights/customers?value_tier=Diamond",
            "value_tier",
            "Diamond",
            "'Platinum', 'Gold', 'Silver' or 'Bronze'",
        ),
        (
            "/api/insights/risks?risk_category=",
            "risk_category",
            "",
            "'Low', 'Medium', 'High' or 'Critical'",
        ),
        (
            "/api/insights/cross-sell?priority=Urgent",
            "priority",
            "Urgent",
            "'High', 'Medium' or 'Low'",
        ),
        (
            "/api/insights/cross-sell?recommendation=Upgrade",
            "recommendation",
            "Upgrade",
            "'Insure Additional Pet', 'Wellness Add-on', 'Dental Coverage' or 'Plan Upgrade'",
        ),
    ],
)
def test_api_refuses_an_unknown_enumerated_value_naming_the_accepted_ones(
    api: TestClient, url: str, field: str, value: str, accepted: str
):
    response = api.get(url)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "enum",
                "loc": ["query", field],
                "msg": f"Input should be {accepted}",
                "input": value,
                "ctx": {"expected": accepted},
            }
        ]
    }


@pytest.mark.parametrize(
    "url, field, value",
    [
        ("/api/insights/claims?service_month=abc", "service_month", "abc"),
        ("/api/insights/claims?service_month=2025-13", "service_month", "2025-13"),
        ("/api/insights/claims?service_month=2025-4", "service_month", "2025-4"),
        ("/api/insights/claims?service_month=2025-04-10", "service_month", "2025-04-10"),
        ("/api/insights/kpis?from=zzz", "from", "zzz"),
        ("/api/insights/kpis?to=2025-00", "to", "2025-00"),
    ],
)
def test_api_month_filters_must_be_yyyy_mm(api: TestClient, url: str, field: str, value: str):
    response = api.get(url)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "value_error",
                "loc": ["query", field],
                "msg": "Value error, expected a month as YYYY-MM, e.g. 2025-03",
                "input": value,
                "ctx": {"error": {}},
            }
        ]
    }


def test_api_kpis_refuses_a_range_that_ends_before_it_starts(api: TestClient):
    response = api.get("/api/insights/kpis?from=2025-04&to=2025-02")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "value_error",
                "loc": ["query", "from"],
                "input": "2025-04",
                "msg": "from (2025-04) is after to (2025-02)",
            }
        ]
    }
    one = api.get("/api/insights/kpis?from=2025-04&to=2025-04").json()["months"]
    assert [(m["year_month"], m["total_claims"]) for m in one] == [("2025-04", 1)]


def test_api_free_text_filters_match_whatever_the_case_and_ids_exactly(api: TestClient):
    assert [
        c["customer_id"] for c in api.get("/api/insights/customers?state=nv").json()["items"]
    ] == ["CUST-2"]
    assert [
        c["customer_id"] for c in api.get("/api/insights/customers?segment=FAMILY").json()["items"]
    ] == ["CUST-1"]
    providers = api.get("/api/insights/providers?provider_type=general%20practice&state=tx").json()
    assert [p["provider_id"] for p in providers["items"]] == ["PRV-1"]
    assert api.get("/api/insights/claims?customer_id=cust-1").json()["total"] == 0


def test_api_toggle_refuses_a_non_ascii_token(served: LakeFixture):
    api = TestClient(
        create_app(SnapshotClient(LocalStore(snapshot_root(served.lake))), admin_token=ADMIN)
    )
    wrong = api.put(
        "/api/v1/data-source/toggle",
        headers={"Authorization": "Bearer s3cret-ädmin".encode("latin-1")},
    )
    assert (wrong.status_code, wrong.json()) == (403, {"detail": "not an admin token"})
    scheme = api.put(
        "/api/v1/data-source/toggle", headers={"Authorization": "Bëarer x".encode("latin-1")}
    )
    assert (scheme.status_code, scheme.json()) == (
        401,
        {"detail": "admin token required (Authorization: Bearer <token>)"},
    )
    non_ascii_admin = TestClient(
        create_app(
            SnapshotClient(LocalStore(snapshot_root(served.lake))), admin_token="clé-secrète"
        )
    )
    utf8 = non_ascii_admin.put(
        "/api/v1/data-source/toggle",
        json={"use_live": False},
        headers={"Authorization": "Bearer clé-secrète".encode()},
    )
    assert utf8.status_code == 200 and utf8.json()["source"] == "demo"


def test_api_responses_carry_no_server_path(served: LakeFixture, tmp_path: Path):
    root = snapshot_root(served.lake)
    api = TestClient(create_app(SnapshotClient(LocalStore(root)), admin_token=ADMIN))
    status = api.get("/api/v1/data-source/status").json()
    assert status["store"] == "local folder" and status["source"] == "live"
    texts = [
        api.get(url).text
        for url in (
            "/health",
            "/api/insights/summary",
            "/api/insights/kpis",
            "/api/insights/customers",
            "/api/insights/customers/CUST-1",
            "/api/insights/claims",
            "/api/insights/providers",
            "/api/insights/risks",
            "/api/insights/cross-sell",
            "/api/insights/segments",
            "/api/pipeline/status",
            "/api/v1/data-source/status",
        )
    ]
    texts.append(
        api.put("/api/v1/data-source/toggle", headers={"Authorization": f"Bearer {ADMIN}"}).text
    )
    assert [t for t in texts if str(served.root) in t or str(root) in t] == []

    missing = tmp_path / "no-snapshots-here"
    broken = TestClient(create_app(SnapshotClient(LocalStore(missing)), admin_token=ADMIN))
    status = broken.get("/api/v1/data-source/status").json()
    assert (status["source"], status["store"], status["last_error"]) == (
        "demo",
        "local folder",
        "cannot read latest.json: No such file or directory",
    )
    assert str(tmp_path) not in broken.get("/api/v1/data-source/status").text


# ---- end to end ---------------------------------------------------------------------------------


def _run(defs: dg.Definitions, instance, request: dg.RunRequest, job: str) -> None:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        asset_selection=request.asset_selection,
        tags=request.tags,
        run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}}},
    )
    assert result.success


def test_new_raw_claim_reaches_the_api_through_the_sensors(lake: LakeFixture):
    write_base(lake, GOOD_CLAIMS)
    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        raw = _tick(defs, "raw_files_sensor", instance)
        _run(defs, instance, raw.run_requests[0], "refresh_all")
        exports = _tick(defs, "exports_sensor", instance)
        _run(defs, instance, exports.run_requests[0], "publish_api_snapshot")
        api = TestClient(
            create_app(
                SnapshotClient(LocalStore(snapshot_root(lake.lake)), ttl_seconds=0),
                admin_token=ADMIN,
            )
        )
        assert api.get("/api/insights/claims?customer_id=CUST-2").json()["total"] == 1

        lake.write_raw(
            "claims",
            "CLM-8_20250515_120000_000000.json",
            claim(
                "CLM-8",
                "2025-05-15",
                "75.00",
                "60.00",
                customer="CUST-2",
                policy="POL-2",
                pet="PET-2",
            ),
        )
        raw = _tick(defs, "raw_files_sensor", instance, raw.cursor)
        _run(defs, instance, raw.run_requests[0], "refresh_all")
        exports = _tick(defs, "exports_sensor", instance, exports.cursor)
        _run(defs, instance, exports.run_requests[0], "publish_api_snapshot")

        claims = api.get("/api/insights/claims?customer_id=CUST-2").json()
        assert [c["claim_id"] for c in claims["items"]] == ["CLM-2", "CLM-8"]
        assert claims["items"][1]["paid_amount"] == 60.0
        assert api.get("/api/insights/summary").json()["total_claims"] == 4
