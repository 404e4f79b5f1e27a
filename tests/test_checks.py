"""Data-quality gates: every check passes on good data and fails, with the right count, on bad."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from petinsure_assets import contracts
from petinsure_assets.catalog import CATALOG
from petinsure_assets.checks import CHECK_HISTORY_TABLE, Check, Target, all_checks, evaluate
from petinsure_assets.cli import run_refresh
from petinsure_assets.definitions import build_definitions
from petinsure_assets.lake import Lake
from tests.conftest import LakeFixture
from tests.test_pipeline import AS_OF, add_uninsured_pet, claim, write_base

ALL_CHECKS = [(target, check) for target, checks in all_checks() for check in checks]


GOOD_CLAIMS = [
    claim("CLM-1", "2025-02-10", "200.00", "150.00"),
    claim("CLM-2", "2025-03-10", "100.00", "80.00", customer="CUST-2", policy="POL-2", pet="PET-2"),
    claim("CLM-3", "2025-04-10", "90.00", "0.00", status="Denied"),
    "{not json",  # so that quarantine has a row to check
]


@pytest.fixture(scope="module")
def good_lake(tmp_path_factory) -> LakeFixture:
    lake = LakeFixture(tmp_path_factory.mktemp("checks") / "lake")
    write_base(lake, GOOD_CLAIMS)
    add_uninsured_pet(lake)  # a cross-sell recommendation to check
    # A record without its key for every other entity: each silver table's quarantine rows
    # have one to check ("{not json" is the claims').
    for entity in ("customers", "pets", "policies"):
        prefix = contracts.BY_NAME[entity].realtime_prefix
        lake.write_raw(entity, f"{prefix}-X_20250101_000000_000000.json", '{"updated_at": "x"}')
    columns = contracts.PROVIDERS.columns
    lake.write_raw(
        "providers",
        "providers_2.csv",
        ",".join(columns) + "\n," + "Nameless" + "," * (len(columns) - 2) + "\n",
    )
    lake.refresh(as_of=AS_OF)
    assert all(lake.rows("gold", t) for t in ("cross_sell_recommendations", "monthly_kpis"))
    assert sorted((q["entity"], q["reason"]) for q in lake.rows("silver", "quarantine")) == [
        ("claims", "malformed_record"),
        *((e, "missing_key") for e in ("customers", "pets", "policies", "providers")),
    ]
    return lake


def test_every_check_passes_on_good_data(good_lake: LakeFixture):
    for target, checks in all_checks():
        failed = [
            (o.check.name, o.failing_rows)
            for o in evaluate(good_lake.lake, target, checks)
            if not o.passed
        ]
        assert failed == [], target.asset


def _rewrite(lake: Lake, table: str, sql: str, where: str = "true") -> None:
    """Replace a Delta table by `sql` over its current content (`t`, with a row number `rn`
    that starts on the rows `where` selects)."""
    layer, name = table.split("/")
    uri = lake.table_uri(layer, name)
    numbered = f"SELECT *, row_number() OVER (ORDER BY NOT ({where})) AS rn FROM t"
    data = lake.read(
        uri,
        f"SELECT * EXCLUDE (rn) FROM ({sql}) ORDER BY ALL".replace("FROM t", f"FROM ({numbered})"),
    )
    lake.write(uri, data, mode="overwrite")


def _break(lake: Lake, target: Target, check: Check) -> str:
    """Damage the data so that exactly one row (or one comparison) of the target fails `check`;
    returns the table that was changed."""
    c, table = check.column, target.table
    if check.kind == "not_null":
        _rewrite(
            lake,
            table,
            f"SELECT * REPLACE (CASE WHEN rn = 1 THEN NULL ELSE {c} END AS {c}) FROM t",
            target.where or "true",
        )
    elif check.kind == "unique":
        _rewrite(lake, table, "SELECT * FROM t UNION ALL (SELECT * FROM t WHERE rn = 1)")
    elif check.kind in ("foreign_key", "accepted", "format"):
        _rewrite(
            lake,
            table,
            f"SELECT * REPLACE (CASE WHEN rn = 1 THEN 'BOGUS-1' ELSE {c} END AS {c}) FROM t",
            target.where or "true",
        )
    elif check.kind == "range":
        _rewrite(
            lake, table, f"SELECT * REPLACE (CASE WHEN rn = 1 THEN -1 ELSE {c} END AS {c}) FROM t"
        )
    elif check.kind == "paid_not_above_claimed":
        _rewrite(
            lake,
            table,
            "SELECT * REPLACE (CASE WHEN rn = 1 THEN claim_amount + 1 ELSE paid_amount END"
            " AS paid_amount) FROM t",
        )
    elif check.kind == "no_missing_month":
        _rewrite(lake, table, "SELECT * FROM t WHERE year_month <> '2025-03'")
    elif check.kind == "every_present":
        _rewrite(lake, table, f"SELECT * FROM t WHERE {c} <> (SELECT min({c}) FROM t)")
    elif check.kind == "bronze_reconciles":
        silver = [u for u in check.uses if u.startswith("silver/")][0]
        _rewrite(lake, silver, f"SELECT * FROM t WHERE {c} <> (SELECT min({c}) FROM t)")
        return silver
    elif check.kind == "total_equals":
        # One paid claim less in silver: counts, claimed and paid all differ from gold.
        _rewrite(lake, "silver/fact_claims", "SELECT * FROM t WHERE claim_id <> 'CLM-1'")
        return "silver/fact_claims"
    else:
        raise AssertionError(f"no way to break a {check.kind} check")
    return table


@pytest.mark.parametrize(
    "target,check", ALL_CHECKS, ids=[f"{t.asset}:{c.name}" for t, c in ALL_CHECKS]
)
def test_each_check_fails_on_data_that_breaks_it(
    good_lake: LakeFixture, tmp_path: Path, target: Target, check: Check
):
    copy = tmp_path / "lake"
    shutil.copytree(good_lake.root, copy, ignore=shutil.ignore_patterns("raw"))
    lake = Lake(root=str(copy))
    changed = _break(lake, target, check)

    (outcome,) = evaluate(lake, target, [check])
    assert not outcome.passed, f"{check.name} passed after {changed} was broken"
    assert outcome.failing_rows == 1
    assert outcome.sample.num_rows == 1


def _latest_check(instance: dg.DagsterInstance, asset: list[str], name: str):
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(asset), name)]
    ).get(dg.AssetCheckKey(dg.AssetKey(asset), name))
    return record.event.dagster_event.event_specific_data if record else None


def _silver_forgets_to_map_claim_statuses(monkeypatch) -> None:
    """No raw record can fail a silver check (a status "Lost" is quarantined as bad_value): the
    checks guard the code. So the defect that trips one is in the code: silver passes claim
    statuses through unmapped, and "Lost" reaches silver/fact_claims."""
    from petinsure_assets import catalog

    read = catalog._read
    mapped = "canonical(status, getvariable('accepted_claim_statuses')) AS status"
    assert mapped in read(catalog.SQL_DIR / "silver" / "fact_claims.sql")
    monkeypatch.setattr(
        catalog,
        "_read",
        lambda path: read(path).replace(mapped, "clean_text(status) AS status"),
    )


def test_failed_silver_check_blocks_gold_in_the_run_and_in_automation(
    lake: LakeFixture, monkeypatch
):
    _silver_forgets_to_map_claim_statuses(monkeypatch)
    write_base(lake, [claim("CLM-1", "2025-02-10", "200.00", "150.00", status="Lost")])
    instance = dg.DagsterInstance.ephemeral()
    summary = run_refresh(str(lake.root), as_of=AS_OF, instance=instance, log_level="WARNING")
    monkeypatch.undo()

    assert not summary.success
    assert "status_accepted" in summary.failures[0]
    assert "silver.fact_claims" in summary.rows
    assert not any(name.startswith("gold.") for name in summary.rows)  # gold never ran
    evaluation = _latest_check(instance, ["silver", "fact_claims"], "status_accepted")
    assert not evaluation.passed and evaluation.metadata["failing_rows"].value == 1

    defs = build_definitions(str(lake.root))
    blocked = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert blocked.total_requested == 0

    # The code is fixed and a later version of the claim arrives; bronze and silver (and their
    # checks) are refreshed, the gate passes, and automation now asks for the gold tables.
    lake.write_raw(
        "claims",
        "CLM-1_20250301_000000_000000.json",
        json.dumps(
            {
                **json.loads(claim("CLM-1", "2025-02-10", "200.00", "150.00")),
                "updated_at": "2025-03-01T00:00:00",
            }
        ),
    )
    job = defs.resolve_job_def("refresh_all")
    fixed = job.execute_in_process(
        instance=instance,
        asset_selection=[
            k
            for k in defs.resolve_asset_graph().get_all_asset_keys()
            if k.path[0] in ("bronze", "silver")
        ],
        run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}}},
    )
    assert fixed.success
    assert _latest_check(instance, ["silver", "fact_claims"], "status_accepted").passed
    released = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=blocked.cursor
    )
    requested = {
        k.to_user_string()
        for k in defs.resolve_asset_graph().get_all_asset_keys()
        if released.get_num_requested(k)
    }
    # Every gold table and its export: those whose parents are requested in the same tick come
    # after them in the same run, where their parents' blocking checks (run in their parents'
    # steps) still gate them.
    gold = {spec.name for spec in CATALOG.gold}
    assert {k for k in requested if k.startswith("gold/")} == {
        *(f"gold/{t}" for t in gold),
        *(f"gold/exports/{t}" for t in gold),
    }


def test_orphan_claim_replays_into_silver_when_its_parent_arrives(lake: LakeFixture):
    write_base(
        lake,
        [
            claim("CLM-1", "2025-02-10", "200.00", "150.00"),
            claim(
                "CLM-9",
                "2025-02-12",
                "60.00",
                "50.00",
                customer="CUST-3",
                policy="POL-3",
                pet="PET-3",
            ),
        ],
    )
    lake.refresh(as_of=AS_OF)
    quarantined = [(q["record_key"], q["reason"]) for q in lake.rows("silver", "quarantine")]
    assert quarantined == [("CLM-9", "orphan_fk")]

    # The parents arrive later, in real-time files.
    lake.write_raw(
        "customers",
        "CUST-3_20250301_000000_000000.json",
        json.dumps(
            {
                "customer_id": "CUST-3",
                "first_name": "Cy",
                "last_name": "Day",
                "email": "cy@example.com",
                "phone": "5550001111",
                "address": "5 Pine",
                "city": "Boise",
                "state": "ID",
                "zip_code": "83702",
                "date_of_birth": "1990-01-01",
                "customer_since": "2025-01-01",
                "segment": "Standard",
                "lifetime_value": "0",
                "updated_at": "2025-03-01T00:00:00",
            }
        ),
    )
    lake.write_raw(
        "pets",
        "PET-3_20250301_000000_000000.json",
        json.dumps(
            {
                "pet_id": "PET-3",
                "customer_id": "CUST-3",
                "pet_name": "Ace",
                "species": "Dog",
                "breed": "Pug",
                "gender": "Male",
                "date_of_birth": "2020-01-01",
                "weight_lbs": "20",
                "microchip_id": "123456789012399",
                "is_neutered": "true",
                "vaccination_status": "Current",
                "pre_existing_conditions": "None",
                "is_active": "true",
                "updated_at": "2025-03-01T00:00:00",
            }
        ),
    )
    lake.write_raw(
        "policies",
        "POL-3_20250301_000000_000000.json",
        json.dumps(
            {
                "policy_id": "POL-3",
                "policy_number": "PN-3",
                "customer_id": "CUST-3",
                "pet_id": "PET-3",
                "plan_name": "Basic",
                "monthly_premium": "20.00",
                "deductible": "250",
                "coverage_limit": "3000",
                "effective_date": "2025-01-01",
                "expiration_date": "2025-12-31",
                "status": "Active",
                "includes_wellness": "false",
                "includes_dental": "false",
                "includes_behavioral": "false",
                "updated_at": "2025-03-01T00:00:00",
            }
        ),
    )
    lake.refresh(as_of=AS_OF)

    assert lake.rows("silver", "quarantine") == []
    assert [r["claim_id"] for r in lake.rows("silver", "fact_claims", "claim_id")] == [
        "CLM-1",
        "CLM-9",
    ]
    assert len(lake.rows("bronze", "claims_raw")) == 2  # replayed from bronze, not re-ingested


def test_every_asset_has_its_specs_or_its_layers_freshness_policy():
    from petinsure_assets.automation import FRESHNESS_WINDOWS

    graph = build_definitions("/nonexistent-lake").resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_executable:  # the raw landing zone: nothing to keep fresh
            assert node.freshness_policy is None, key
            continue
        if key.path[0] in ("silver", "gold") and key.path[1] not in ("exports", "api_snapshot"):
            # A catalog table's from its spec; a silver table's quarantine rows follow the table.
            name = key.path[1]
            if name == "quarantine":
                name = next(s.name for s in CATALOG.silver if s.entity.name == key.path[2])
            spec = CATALOG.table(name)
            warn, fail = spec.freshness.warn, spec.freshness.fail
            hours = {"silver": (25, 27), "gold": (25, 28)}[key.path[0]]  # as the specs say today
            assert (warn, fail) == tuple(timedelta(hours=h) for h in hours), key
        else:
            layer = "snapshot" if key.path[-1] == "api_snapshot" else node.group_name
            warn, fail = FRESHNESS_WINDOWS[layer]
        policy = node.freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), key
        assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (
            warn,
            fail,
        ), key


def test_check_history_records_each_table_version_once(lake: LakeFixture):
    write_base(lake, GOOD_CLAIMS)
    lake.refresh(as_of=AS_OF)
    first = lake.rows("gold", CHECK_HISTORY_TABLE)
    total = len(ALL_CHECKS)
    assert len(first) == total
    assert {(r["asset_key"], r["check_name"]) for r in first} == {
        (t.asset, c.name) for t, c in ALL_CHECKS
    }
    assert all(r["passed"] and r["failing_rows"] == 0 for r in first)

    # Nothing new: the same versions are not checked into the history again.
    lake.refresh(as_of=AS_OF)
    assert len(lake.rows("gold", CHECK_HISTORY_TABLE)) == total

    # A new as-of date rewrites gold only: its checks are recorded for the new versions.
    summary = lake.refresh(as_of="2025-07-31")
    gold = sum(1 for t, _ in ALL_CHECKS if t.asset.startswith("gold/"))
    second = [r for r in lake.rows("gold", CHECK_HISTORY_TABLE) if r["run_id"] == summary.run_id]
    assert len(lake.rows("gold", CHECK_HISTORY_TABLE)) == total + gold
    assert {(r["asset_key"].split("/")[0], r["delta_version"]) for r in second} == {("gold", 1)}
    assert len(second) == gold


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def webhook():
    _Recorder.received = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/alerts", _Recorder.received
    finally:
        server.shutdown()
        server.server_close()


def test_failed_run_alerts_through_the_sensor_to_the_webhook(
    lake: LakeFixture, webhook, monkeypatch
):
    url, received = webhook
    monkeypatch.setenv("PETINSURE_ALERT_WEBHOOK_URL", url)
    _silver_forgets_to_map_claim_statuses(monkeypatch)
    write_base(lake, [claim("CLM-1", "2025-02-10", "200.00", "150.00", status="Lost")])
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(str(lake.root))
    sensor = defs.resolve_sensor_def("alert_on_run_failure")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        first = sensor.evaluate_tick(context)  # the first tick only sets the cursor
    assert received == []

    summary = run_refresh(str(lake.root), as_of=AS_OF, instance=instance, log_level="WARNING")
    assert not summary.success
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources, cursor=first.cursor
    ) as context:
        sensor.evaluate_tick(context)

    assert len(received) == 1
    alert = received[0]
    assert alert["kind"] == "run_failure"
    assert alert["run_id"] == summary.run_id
    assert alert["failed_checks"] == [
        {"asset": "silver/fact_claims", "check": "status_accepted", "failing_rows": 1}
    ]
    assert url not in json.dumps(alert)


def test_every_check_passes_on_the_demo_data(demo_lake: LakeFixture):
    """The session's demo lake (tests/conftest.py: 2,000 claims, seed 42, as of 2026-01-31)."""
    history = demo_lake.rows("gold", CHECK_HISTORY_TABLE)
    assert len(history) == len(ALL_CHECKS)
    assert [(r["asset_key"], r["check_name"]) for r in history if not r["passed"]] == []


def test_injected_faults_fail_the_right_checks(demo_lake: LakeFixture, tmp_path: Path):
    copy = tmp_path / "lake"
    shutil.copytree(demo_lake.root, copy, ignore=shutil.ignore_patterns("raw"))
    lake = Lake(root=str(copy))
    lost = (
        lake.read(
            lake.table_uri("silver", "fact_claims"),
            "SELECT claim_id FROM t WHERE status IN ('Approved', 'Paid') AND paid_amount > 0 "
            "ORDER BY claim_id LIMIT 3",
        )
        .column("claim_id")
        .to_pylist()
    )
    listed = ", ".join(f"'{c}'" for c in lost)
    # Fault 1: three claims vanish from silver after gold was built.
    _rewrite(lake, "silver/fact_claims", f"SELECT * FROM t WHERE claim_id NOT IN ({listed})")
    # Fault 2: a customer appears twice in customer_360_view.
    _rewrite(
        lake, "gold/customer_360_view", "SELECT * FROM t UNION ALL (SELECT * FROM t WHERE rn = 1)"
    )

    # Independently: how many bronze records carry those keys and are not quarantined.
    bronze = lake.read(
        lake.table_uri("bronze", "claims_raw"),
        f"SELECT _batch_id, _source_file, _source_line FROM t WHERE trim(claim_id) IN ({listed})",
    )
    quarantined = {
        (r["batch_id"], r["source_file"], r["source_line"])
        for r in lake.read(
            lake.table_uri("silver", "quarantine"), "SELECT * FROM t WHERE entity = 'claims'"
        ).to_pylist()
    }
    expected_lost = sum(
        1
        for r in bronze.to_pylist()
        if (r["_batch_id"], r["_source_file"], r["_source_line"]) not in quarantined
    )
    assert expected_lost >= 3

    failed = {}
    for target, checks in all_checks():
        for outcome in evaluate(lake, target, checks):
            if not outcome.passed:
                failed[f"{target.asset}:{outcome.check.name}"] = outcome.failing_rows
    totals = {
        f"gold/{t}:{c}": 1
        for t in ("customer_360_view", "claims_analytics", "monthly_kpis")
        for c in ("claims_count_equals_silver", "claimed_equals_silver", "paid_equals_silver")
    }
    assert failed == {
        "silver/quarantine/claims:bronze_reconciles": expected_lost,
        "gold/customer_360_view:customer_id_unique": 1,
        "gold/provider_performance:claims_count_equals_silver": 1,
        **totals,
    }
