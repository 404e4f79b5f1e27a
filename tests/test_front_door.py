"""The front door's endpoints: request models, exact files, refusals, tokens, unique IDs, atomic
writes (local and Azure), claim status and simulated processing (without the pipeline; the whole
path through the sensors is in test_front_door_flow.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from petinsure_assets import contracts, demo_data, front_door, storage
from petinsure_assets.definitions import build_definitions
from petinsure_assets.front_door import FrontDoor
from petinsure_assets.ingest import list_raw_files
from petinsure_assets.lake import Lake
from petinsure_assets.reference_api import create_app
from petinsure_assets.snapshot_client import LocalStore, SnapshotClient
from petinsure_assets.snapshots import snapshot_root
from tests.conftest import LakeFixture, _copy

WRITE = "front-door-write-token"
ADMIN = "front-door-admin-token"
AUTH = {"Authorization": f"Bearer {WRITE}"}
NOW = dt.datetime(2025, 6, 1, 10, 15, 30, 123456, tzinfo=dt.UTC)
STAMP = "20250601_101530_123456"
UPDATED_AT = "2025-06-01T10:15:30.123456"
ID = re.compile(r"(CUST|PET|POL|CLM)-[0-9A-F]{16}")

CLAIM = {
    "customer_id": "CUST-1",
    "policy_id": "POL-1",
    "pet_id": "PET-1",
    "provider_id": "PRV-1",
    "claim_type": "Illness",
    "claim_category": "Diagnostics",
    "service_date": "2025-05-20",
    "claim_amount": 200.0,
    "paid_amount": 150.5,
    "status": "Submitted",
}


@pytest.fixture(scope="module")
def book(served_lake: LakeFixture, tmp_path_factory) -> LakeFixture:
    """A copy of the small hand-made book (CUST-1, CUST-2, PET-1..3, POL-1, POL-2, PRV-1, claims
    CLM-1..3), refreshed and published: parents exist in silver, claims in the snapshot."""
    return _copy(served_lake, tmp_path_factory.mktemp("front_door") / "lake")


def door_on(lake: Lake, clock=lambda: NOW) -> FrontDoor:
    return FrontDoor(lambda: lake, clock=clock)


def app_on(lake: Lake, clock=lambda: NOW, **kwargs) -> TestClient:
    client = SnapshotClient(LocalStore(snapshot_root(lake)), ttl_seconds=0)
    kwargs.setdefault("write_token", WRITE)
    kwargs.setdefault("admin_token", ADMIN)
    return TestClient(create_app(client, door=door_on(lake, clock), **kwargs))


@pytest.fixture(scope="module")
def api(book: LakeFixture) -> TestClient:
    with app_on(book.lake) as client:
        yield client


def raw_files(lake: LakeFixture, entity: str) -> set[str]:
    """Every file of raw/<entity>/, hidden ones too."""
    folder = lake.root / "raw" / entity
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def new_file(lake: LakeFixture, entity: str, before: set[str]) -> dict:
    (name,) = raw_files(lake, entity) - before
    return {"name": name, "text": (lake.root / "raw" / entity / name).read_text()}


# ---- request models ---------------------------------------------------------------------------------


def test_request_models_are_the_contract_columns_with_silver_types_and_rules():
    """Fields: the raw columns but the key and updated_at. Required: what silver quarantines a
    record without (RULES.md: bad_date, bad_value) and the parents."""
    expected_required = {
        "customers": (),
        "pets": ("customer_id",),
        "policies": ("customer_id", "pet_id", "effective_date", "expiration_date", "status"),
        "claims": (
            "customer_id",
            "policy_id",
            "pet_id",
            "provider_id",
            "service_date",
            "claim_amount",
            "status",
        ),
    }
    for entity in front_door.ENTITIES:
        model = front_door.request_model(entity)
        assert tuple(model.model_fields) == tuple(
            c for c in entity.columns if c not in (entity.key, "updated_at")
        )
        assert front_door.required_columns(entity) == expected_required[entity.name]
        assert (
            tuple(n for n, f in model.model_fields.items() if f.is_required())
            == (expected_required[entity.name])
        )
    schema = front_door.request_model(contracts.CLAIMS).model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["ClaimStatuses"]["enum"] == list(contracts.CLAIM_STATUSES)
    assert schema["$defs"]["ClaimTypes"]["enum"] == list(contracts.CLAIM_TYPES)
    assert schema["properties"]["service_date"] == {
        "format": "date",
        "title": "Service Date",
        "type": "string",
    }
    amount = schema["properties"]["claim_amount"]["anyOf"][0]
    assert (amount["minimum"], amount["exclusiveMaximum"]) == (0.0, 1e9)
    pets = front_door.request_model(contracts.PETS).model_json_schema()
    assert pets["properties"]["weight_lbs"]["anyOf"][0] == {"minimum": 0.0, "type": "number"}
    assert pets["$defs"]["Species"]["enum"] == list(contracts.SPECIES)


def test_openapi_documents_the_ingestion_bodies(api: TestClient):
    paths = api.get("/openapi.json").json()["paths"]
    for entity in front_door.ENTITIES:
        body = paths[f"/api/{entity.name}/"]["post"]["requestBody"]
        assert body["required"] is True
    for path in (
        "/api/policies/plans/available",
        "/api/claims/{claim_id}/status",
        "/api/claims/{claim_id}/simulate-processing",
    ):
        assert path in paths


# ---- accepted records: the exact files --------------------------------------------------------------


def test_a_claim_becomes_exactly_one_file_with_the_contract_columns(
    api: TestClient, book: LakeFixture
):
    before = raw_files(book, "claims")
    response = api.post("/api/claims/", json={**CLAIM, "status": " submitted "}, headers=AUTH)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert ID.fullmatch(answer["id"]) and answer["id"].startswith("CLM-")
    claim_id = answer["id"]
    written = new_file(book, "claims", before)
    assert written["name"] == f"{claim_id}_{STAMP}.json"
    assert json.loads(written["text"]) == {
        "claim_id": claim_id,
        "claim_number": None,
        "customer_id": "CUST-1",
        "policy_id": "POL-1",
        "pet_id": "PET-1",
        "provider_id": "PRV-1",
        "claim_type": "Illness",
        "claim_category": "Diagnostics",
        "service_date": "2025-05-20",
        "claim_amount": 200.0,
        "paid_amount": 150.5,
        "status": "Submitted",  # the accepted spelling
        "processing_days": None,
        "denial_reason": None,
        "updated_at": UPDATED_AT,
        "source": "ingestion-api",
    }
    assert list(json.loads(written["text"])) == [*contracts.CLAIMS.columns, "source"]
    assert answer == {
        "id": claim_id,
        "entity": "claims",
        "event": "claim_submitted",
        "file": f"raw/claims/{claim_id}_{STAMP}.json",
        "updated_at": UPDATED_AT,
        "source": "ingestion-api",
        "record": {k: v for k, v in json.loads(written["text"]).items() if k != "source"},
        "late_parents": [],
        "message": f"accepted: written to raw/claims/{claim_id}_{STAMP}.json; silver takes it "
        "with the next run",
    }
    # The raw listing takes it as a real-time file of claims (nothing refused, no hidden leftover).
    listed = {f.source_file: f.refused for f in list_raw_files(book.lake, contracts.CLAIMS)}
    assert listed[f"raw/claims/{claim_id}_{STAMP}.json"] is None
    assert not [n for n in raw_files(book, "claims") if n.startswith(".")]


@pytest.mark.parametrize(
    ("entity", "body", "expected"),
    [
        (
            "customers",
            {
                "first_name": "Ann",
                "last_name": "Lee",
                "email": "Ann.Lee@Example.com",
                "phone": "555-010-2030",
                "state": "texas",
                "zip_code": "73301",
                "date_of_birth": "1980-02-29",
                "customer_since": "2025-06-01",
                "segment": "Family",
                "lifetime_value": 0,
            },
            {
                "first_name": "Ann",
                "last_name": "Lee",
                "email": "Ann.Lee@Example.com",  # as received: silver cleans it
                "phone": "555-010-2030",
                "address": None,
                "city": None,
                "state": "texas",
                "zip_code": "73301",
                "date_of_birth": "1980-02-29",
                "customer_since": "2025-06-01",
                "segment": "Family",
                "lifetime_value": 0.0,
            },
        ),
        (
            "pets",
            {
                "customer_id": "CUST-2",
                "pet_name": "Rex",
                "species": "dog",
                "breed": "Boxer",
                "weight_lbs": 31.5,
                "is_neutered": "yes",
                "is_active": True,
            },
            {
                "customer_id": "CUST-2",
                "pet_name": "Rex",
                "species": "Dog",
                "breed": "Boxer",
                "gender": None,
                "date_of_birth": None,
                "weight_lbs": 31.5,
                "microchip_id": None,
                "is_neutered": True,
                "vaccination_status": None,
                "pre_existing_conditions": None,
                "is_active": True,
            },
        ),
        (
            "policies",
            {
                "customer_id": "CUST-2",
                "pet_id": "PET-2",
                "plan_name": "PREMIUM",
                "monthly_premium": "53.29",
                "deductible": 250,
                "coverage_limit": 20000,
                "effective_date": "2025-06-01",
                "expiration_date": "2026-06-01",
                "status": "Active",
                "includes_dental": False,
            },
            {
                "policy_number": None,
                "customer_id": "CUST-2",
                "pet_id": "PET-2",
                "plan_name": "Premium",
                "monthly_premium": 53.29,
                "deductible": 250.0,
                "coverage_limit": 20000.0,
                "effective_date": "2025-06-01",
                "expiration_date": "2026-06-01",
                "status": "Active",
                "includes_wellness": None,
                "includes_dental": False,
                "includes_behavioral": None,
            },
        ),
    ],
)
def test_customers_pets_and_policies_become_one_file_each(
    api: TestClient, book: LakeFixture, entity: str, body: dict, expected: dict
):
    spec = contracts.BY_NAME[entity]
    before = raw_files(book, entity)
    response = api.post(f"/api/{entity}/", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    record_id = response.json()["id"]
    assert ID.fullmatch(record_id) and record_id.startswith(f"{spec.realtime_prefix}-")
    assert response.json()["event"] == front_door.EVENTS[entity]
    written = new_file(book, entity, before)
    assert written["name"] == f"{record_id}_{STAMP}.json"
    assert json.loads(written["text"]) == {
        spec.key: record_id,
        **expected,
        "updated_at": UPDATED_AT,
        "source": "ingestion-api",
    }


def test_a_claim_for_a_parent_not_there_yet_is_accepted_and_says_so(
    api: TestClient, book: LakeFixture
):
    late = api.post("/api/claims/", json={**CLAIM, "policy_id": "POL-LATE"}, headers=AUTH)
    assert late.status_code == 201, late.text
    assert late.json()["late_parents"] == [
        {"field": "policy_id", "id": "POL-LATE", "state": "not found"}
    ]
    assert late.json()["message"].endswith(
        "Not in silver yet: policy_id POL-LATE (not found). Late parents are normal: the record "
        "waits in quarantine (orphan_fk) until they arrive, then flows in by itself (an id that "
        "never arrives keeps it there: the quarantine table shows it)"
    )
    # A parent the front door wrote but no run has taken yet: received, not yet processed.
    policy = api.post(
        "/api/policies/",
        json={
            "customer_id": "CUST-1",
            "pet_id": "PET-3",
            "effective_date": "2025-06-01",
            "expiration_date": "2026-05-31",
            "status": "Active",
        },
        headers=AUTH,
    ).json()["id"]
    claim = api.post(
        "/api/claims/", json={**CLAIM, "pet_id": "PET-3", "policy_id": policy}, headers=AUTH
    )
    assert claim.json()["late_parents"] == [
        {"field": "policy_id", "id": policy, "state": "received, not yet processed"}
    ]
    status = api.get(f"/api/claims/{claim.json()['id']}/status").json()
    assert (status["state"], status["status"], status["waiting_for"]) == (
        "received, not yet processed",
        "Submitted",
        [{"field": "policy_id", "id": policy, "state": "received, not yet processed"}],
    )


# ---- refusals: 422 naming the field, nothing written ----------------------------------------------


REFUSED = [
    ("claims", {**CLAIM, "claim_amount": "abc"}, "claim_amount", "decimal_parsing"),
    ("claims", {**CLAIM, "claim_amount": [1]}, "claim_amount", "decimal_type"),
    ("claims", {**CLAIM, "status": "Pending"}, "status", "enum"),
    ("claims", {**CLAIM, "claim_type": "Dental"}, "claim_type", "enum"),
    ("claims", {**CLAIM, "claim_amount": -1}, "claim_amount", "greater_than_equal"),
    ("claims", {**CLAIM, "paid_amount": -0.01}, "paid_amount", "greater_than_equal"),
    ("claims", {**CLAIM, "claim_amount": 1e9}, "claim_amount", "less_than"),
    ("claims", {**CLAIM, "claim_amount": 10.005}, "claim_amount", "decimal_max_places"),
    ("claims", {**CLAIM, "paid_amount": 200.01}, "paid_amount", "value_error"),
    (
        "claims",
        {**CLAIM, "service_date": "2025-02-30"},
        "service_date",
        "date_from_datetime_parsing",
    ),
    ("claims", {**CLAIM, "service_date": "2099-01-01"}, "service_date", "value_error"),
    ("claims", {**CLAIM, "processing_days": -3}, "processing_days", "value_error"),
    ("claims", {**CLAIM, "denial_reason": "x" * 501}, "denial_reason", "string_too_long"),
    ("claims", {k: v for k, v in CLAIM.items() if k != "service_date"}, "service_date", "missing"),
    ("claims", {k: v for k, v in CLAIM.items() if k != "pet_id"}, "pet_id", "missing"),
    ("claims", {**CLAIM, "claim_id": "CLM-MINE"}, "claim_id", "extra_forbidden"),
    ("claims", {**CLAIM, "updated_at": "2025-01-01"}, "updated_at", "extra_forbidden"),
    ("claims", {**CLAIM, "colour": "red"}, "colour", "extra_forbidden"),
    ("customers", {"email": "ann@"}, "email", "value_error"),
    ("customers", {"phone": "12345"}, "phone", "value_error"),
    ("customers", {"state": "Atlantis"}, "state", "value_error"),
    ("customers", {"zip_code": "1234"}, "zip_code", "value_error"),
    ("customers", {"lifetime_value": "1e3x"}, "lifetime_value", "decimal_parsing"),
    ("pets", {"customer_id": "CUST-1", "weight_lbs": 0}, "weight_lbs", "value_error"),
    ("pets", {"customer_id": "CUST-1", "weight_lbs": -2}, "weight_lbs", "greater_than_equal"),
    ("pets", {"customer_id": "CUST-1", "species": "Dragon"}, "species", "enum"),
    ("pets", {"customer_id": "CUST-1", "is_active": "maybe"}, "is_active", "bool_parsing"),
    ("pets", {"customer_id": "   "}, "customer_id", "value_error"),
    (
        "policies",
        {
            "customer_id": "CUST-1",
            "pet_id": "PET-1",
            "effective_date": "2025-01-01",
            "expiration_date": "2026-01-01",
            "status": "Lapsed",
        },
        "status",
        "enum",
    ),
    (
        "policies",
        {
            "customer_id": "CUST-1",
            "pet_id": "PET-1",
            "effective_date": "2025-01-01",
            "expiration_date": "2026-01-01",
            "status": "Active",
            "monthly_premium": -5,
        },
        "monthly_premium",
        "greater_than_equal",
    ),
]


@pytest.mark.parametrize(("entity", "body", "field", "kind"), REFUSED)
def test_a_bad_body_is_refused_naming_the_field_and_nothing_is_written(
    api: TestClient, book: LakeFixture, entity: str, body: dict, field: str, kind: str
):
    before = raw_files(book, entity)
    response = api.post(f"/api/{entity}/", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", field], kind)
    assert raw_files(book, entity) == before


def test_silver_refusals_say_what_silver_would_say(api: TestClient):
    """The messages of the refusals only silver's rules make (its own SQL judged them)."""

    def message(body: dict) -> str:
        return api.post("/api/claims/", json=body, headers=AUTH).json()["detail"][0]["msg"]

    assert message({**CLAIM, "paid_amount": 200.01}) == (
        "paid_amount 200.01 > claim_amount 200.00 (overpaid)"
    )
    assert message({**CLAIM, "service_date": "2099-01-01"}) == (
        "service_date 2099-01-01 is not a date from 1900-01-01 to a year after ingestion (bad_date)"
    )
    assert message({**CLAIM, "processing_days": -3}) == (
        "-3 is not valid: silver's rules would store it as empty (docs/rules.md, soft fields)"
    )
    customer = api.post("/api/customers/", json={"email": "ann@"}, headers=AUTH)
    assert customer.json()["detail"][0]["msg"] == (
        "'ann@' is not valid (expected a lower-case email address): silver's rules would store "
        "it as empty (docs/rules.md, soft fields)"
    )


def test_bodies_over_the_limit_and_not_json_are_refused(api: TestClient, book: LakeFixture):
    before = raw_files(book, "claims")
    big = json.dumps({**CLAIM, "denial_reason": "x" * front_door.MAX_BODY_BYTES}).encode()
    response = api.post(
        "/api/claims/", content=big, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "too_long",
            "loc": ["body"],
            "msg": f"the body is {len(big)} bytes or more; the limit is 65536",
            "input": None,
        }
    ]

    broken = api.post(
        "/api/claims/",
        content=b'{"customer_id": ',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert (broken.status_code, broken.json()["detail"][0]["type"]) == (422, "json_invalid")
    assert raw_files(book, "claims") == before


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit():
    """No Content-Length (chunked): the middleware stops reading at the chunk that passes the
    limit; the application never runs."""
    import asyncio

    pulled, sent, called = [], [], []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 8192, "more_body": len(pulled) < 20}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        called.append(scope)

    scope = {"type": "http", "method": "POST", "path": "/api/claims/", "headers": []}
    asyncio.run(front_door.BodyLimit(app)(scope, receive, send))
    assert (len(pulled), called) == (9, [])  # 9 x 8192 = 73728 > 65536
    assert sent[0]["status"] == 422
    assert json.loads(sent[1]["body"])["detail"][0]["msg"] == (
        "the body is 73728 bytes or more; the limit is 65536"
    )


# ---- tokens -------------------------------------------------------------------------------------------


def test_writes_need_the_write_token_and_reads_do_not(book: LakeFixture):
    before = raw_files(book, "claims")
    with app_on(book.lake) as api:
        assert api.post("/api/claims/", json=CLAIM).json() == {
            "detail": "write token required (Authorization: Bearer <token>)"
        }
        admin = api.post("/api/claims/", json=CLAIM, headers={"Authorization": f"Bearer {ADMIN}"})
        assert (admin.status_code, admin.json()) == (403, {"detail": "not a write token"})
        simulated = api.post(
            "/api/claims/CLM-1/simulate-processing", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert simulated.status_code == 403
        # The write token does not open the admin toggle.
        toggle = api.put("/api/v1/data-source/toggle", headers=AUTH)
        assert (toggle.status_code, toggle.json()) == (403, {"detail": "not an admin token"})
        assert api.get("/api/claims/CLM-1/status").status_code == 200
        assert api.get("/api/policies/plans/available").status_code == 200
    with app_on(book.lake, write_token="") as api:
        disabled = api.post("/api/claims/", json=CLAIM, headers=AUTH)
        assert (disabled.status_code, disabled.json()) == (
            503,
            {"detail": "writes are disabled: PETINSURE_WRITE_TOKEN is not set"},
        )
    with pytest.raises(ValueError, match="PETINSURE_WRITE_TOKEN must differ from"):
        app_on(book.lake, write_token=ADMIN)
    assert raw_files(book, "claims") == before


# ---- unique IDs, never an overwrite -------------------------------------------------------------------


def test_ids_are_unique_under_concurrent_requests(book: LakeFixture):
    before = raw_files(book, "claims")
    with app_on(book.lake, clock=lambda: dt.datetime.now(dt.UTC)) as api:

        def post(_):
            return api.post("/api/claims/", json=CLAIM, headers=AUTH)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(40)))
    assert [a.status_code for a in answers] == [201] * 40
    ids = {a.json()["id"] for a in answers}
    files = raw_files(book, "claims") - before
    assert len(ids) == 40
    assert {f.split("_", 1)[0] for f in files} == ids
    assert len(files) == 40


def test_a_name_in_use_is_never_overwritten(book: LakeFixture, monkeypatch):
    """Same clock, and the ID generator giving the same ID twice: the second request gets a new
    ID; the first file keeps its bytes."""
    door = door_on(book.lake)
    ids = iter(["CLM-0000000000000AAA", "CLM-0000000000000AAA", "CLM-0000000000000BBB"])
    monkeypatch.setattr(door, "new_id", lambda entity: next(ids))
    model = front_door.request_model(contracts.CLAIMS)
    first = door.submit(contracts.CLAIMS, model(**CLAIM))
    kept = (book.root / first.file).read_bytes()
    second = door.submit(contracts.CLAIMS, model(**{**CLAIM, "claim_amount": 199}))
    assert (first.id, second.id) == ("CLM-0000000000000AAA", "CLM-0000000000000BBB")
    assert (book.root / first.file).read_bytes() == kept
    assert json.loads((book.root / second.file).read_bytes())["claim_amount"] == 199.0
    with pytest.raises(FileExistsError):
        book.lake.files.create(first.file, b"{}")
    assert (book.root / first.file).read_bytes() == kept


# ---- atomicity --------------------------------------------------------------------------------------


def test_a_write_failing_midway_leaves_nothing_and_says_so(book: LakeFixture, monkeypatch):
    before = raw_files(book, "claims")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with app_on(book.lake) as api:
        response = api.post("/api/claims/", json=CLAIM, headers=AUTH)
    assert response.status_code == 503
    assert re.fullmatch(
        r"nothing was written: raw/claims/CLM-[0-9A-F]{16}_20250601_101530_123456\.json could "
        r"not be written: No space left on device",
        response.json()["detail"],
    )
    assert str(book.root) not in response.text
    assert raw_files(book, "claims") == before  # not even the temporary file


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from petinsure_assets import contracts, front_door
    from petinsure_assets.lake import Lake

    real_fsync = os.fsync

    def stall(fd):  # the bytes are in the temporary file; the name does not exist yet
        print("midway", flush=True)
        time.sleep(600)

    os.fsync = stall
    door = front_door.FrontDoor(lambda: Lake(root=sys.argv[1]))
    model = front_door.request_model(contracts.CLAIMS)
    door.submit(contracts.CLAIMS, model(**{body}))
    """
)


def test_a_writer_killed_midway_leaves_no_file_the_sensor_would_pick_up(
    served_lake: LakeFixture, tmp_path: Path
):
    lake = _copy(served_lake, tmp_path / "lake")
    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        sensor = defs.resolve_sensor_def("raw_files_sensor")

        def tick(cursor=None):
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
            ) as context:
                return sensor.evaluate_tick(context)

        first = tick()
        assert first.run_requests == []  # everything there is already in bronze
        before = raw_files(lake, "claims")
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER.format(body=repr(CLAIM)), str(lake.root)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout.readline() == "midway\n"
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        (left,) = raw_files(lake, "claims") - before
        assert re.fullmatch(
            r"\.CLM-[0-9A-F]{16}_\d{8}_\d{6}_\d{6}\.json\.[0-9a-f]{32}\.tmp", left
        )  # the temporary file: hidden
        after = tick(first.cursor)
        assert after.run_requests == []
        assert after.skip_message.startswith("no new or changed files among the ")
        assert left not in {
            f.source_file.rsplit("/", 1)[-1] for f in list_raw_files(lake.lake, contracts.CLAIMS)
        }


def test_azure_writes_are_one_upload_that_never_overwrites(azurite, book: LakeFixture):
    from dagster_azure.adls2 import ADLS2Key

    from petinsure_assets.azure import azure_lake

    lake = azure_lake(azurite.name, ADLS2Key(key=azurite.key), endpoint=azurite.endpoint)
    door = door_on(lake)
    accepted = door.submit(contracts.CLAIMS, front_door.request_model(contracts.CLAIMS)(**CLAIM))
    blob = f"claims/{accepted.id}_{STAMP}.json"
    container = azurite.service().get_container_client("raw")
    assert [b.name for b in container.list_blobs()] == [blob]
    data = container.download_blob(blob).readall()
    assert json.loads(data)["claim_id"] == accepted.id
    assert [f.path for f in lake.files.find("raw/claims", f"{accepted.id}_")] == [f"raw/{blob}"]
    # The same bytes again (a retry whose first upload landed): done, nothing changes.
    lake.files.create(f"raw/{blob}", data)
    with pytest.raises(FileExistsError):
        lake.files.create(f"raw/{blob}", b"{}")
    assert container.download_blob(blob).readall() == data
    status = door.latest_received(contracts.CLAIMS, accepted.id)
    assert (status["status"], status["_file"]) == ("Submitted", f"raw/{blob}")


# ---- status, simulated processing, plans --------------------------------------------------------------


def test_claim_status_from_the_snapshot_or_received_or_unknown(api: TestClient):
    processed = api.get("/api/claims/CLM-2/status").json()
    assert {k: processed[k] for k in ("claim_id", "status", "state", "customer_id")} == {
        "claim_id": "CLM-2",
        "status": "Paid",
        "state": "processed",
        "customer_id": "CUST-2",
    }
    assert (processed["claim_amount"], processed["paid_amount"]) == (100.0, 80.0)
    unknown = api.get("/api/claims/CLM-NOPE/status")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": "claim CLM-NOPE is neither in the snapshot nor in raw/"},
    )
    claim_id = api.post("/api/claims/", json=CLAIM, headers=AUTH).json()["id"]
    received = api.get(f"/api/claims/{claim_id}/status").json()
    assert {k: received[k] for k in ("status", "state", "received_at", "waiting_for")} == {
        "status": "Submitted",
        "state": "received, not yet processed",
        "received_at": UPDATED_AT,
        "waiting_for": [],
    }


def test_simulated_processing_writes_newer_versions_until_a_final_status(book: LakeFixture):
    moments = iter(NOW + dt.timedelta(days=d) for d in range(10))
    with app_on(book.lake, clock=lambda: next(moments)) as api:
        claim_id = api.post("/api/claims/", json=CLAIM, headers=AUTH).json()["id"]
        steps = []
        for body in (None, {"status": "Approved", "paid_amount": 120}, None):
            r = api.post(f"/api/claims/{claim_id}/simulate-processing", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            steps.append(
                (r.json()["previous_status"], r.json()["record"]["status"], r.json()["file"])
            )
        assert [s[:2] for s in steps] == [
            ("Submitted", "Under Review"),
            ("Under Review", "Approved"),
            ("Approved", "Paid"),
        ]
        files = sorted(f for f in raw_files(book, "claims") if f.startswith(claim_id))
        assert files == [
            f"{claim_id}_20250601_101530_123456.json",
            f"{claim_id}_20250602_101530_123456.json",
            f"{claim_id}_20250603_101530_123456.json",
            f"{claim_id}_20250604_101530_123456.json",
        ]
        approved = json.loads((book.root / "raw" / "claims" / files[2]).read_text())
        assert (approved["paid_amount"], approved["processing_days"]) == (120.0, 2)
        final = api.post(f"/api/claims/{claim_id}/simulate-processing", headers=AUTH)
        assert (final.status_code, final.json()) == (
            409,
            {"detail": f"claim {claim_id} is Paid, a final status"},
        )
        wrong = api.post(
            "/api/claims/CLM-3/simulate-processing", json={"status": "Paid"}, headers=AUTH
        )
        assert (wrong.status_code, wrong.json()) == (
            409,
            {"detail": "claim CLM-3 is Denied, a final status"},
        )
        # A batch claim's next version starts from its silver row.
        second = api.post(
            "/api/claims/CLM-2/simulate-processing", json={"status": "Denied"}, headers=AUTH
        )
        assert second.status_code == 409  # Paid is final
        missing = api.post("/api/claims/CLM-NOPE/simulate-processing", headers=AUTH)
        assert (missing.status_code, missing.json()) == (
            404,
            {"detail": "claim CLM-NOPE is neither in silver nor in raw/"},
        )


def test_denied_in_simulation_clears_the_paid_amount(book: LakeFixture):
    with app_on(book.lake) as api:
        claim_id = api.post("/api/claims/", json=CLAIM, headers=AUTH).json()["id"]
        r = api.post(
            f"/api/claims/{claim_id}/simulate-processing",
            json={"status": "Denied", "denial_reason": "Pre-existing condition"},
            headers=AUTH,
        )
    assert r.status_code == 201, r.text
    record = r.json()["record"]
    assert (record["status"], record["paid_amount"], record["denial_reason"]) == (
        "Denied",
        None,
        "Pre-existing condition",
    )
    # Same clock: the new version is one microsecond later, so dedup picks it.
    assert record["updated_at"] == "2025-06-01T10:15:30.123457"


def test_available_plans_are_the_generators_plan_table(api: TestClient):
    plans = api.get("/api/policies/plans/available").json()["plans"]
    assert plans == demo_data.plan_catalog()
    assert [p["plan_name"] for p in plans] == list(contracts.PLAN_NAMES)
    assert plans[0] == {
        "plan_name": "Basic",
        "base_monthly_premium": 25.0,
        "species_premium_factor": {
            "Dog": 1.0,
            "Cat": 0.8,
            "Bird": 0.5,
            "Rabbit": 0.6,
            "Other": 0.6,
        },
        "deductible_options": [500, 750, 1000],
        "coverage_limit": 5000,
        "wellness": "not available",
        "dental": "not available",
        "behavioral": "not available",
    }
    assert (plans[3]["deductible_options"], plans[3]["wellness"], plans[2]["dental"]) == (
        [0, 100],
        "included",
        "optional",
    )


def test_a_file_vanishing_while_raw_is_listed_is_not_listed(lake: LakeFixture, monkeypatch):
    """A writer's temporary file renamed away between the folder's read and the file's stat (what
    40 concurrent writers did to each other's listings): skipped, not an error."""
    import petinsure_assets.storage as storage

    for name in ("a.json", ".a.json.tmp", "b.json"):
        lake.write_raw("claims", name, "{}")
    real_scandir = os.scandir

    class Vanishing:
        def __init__(self, folder):
            self.inner = real_scandir(folder)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def __iter__(self):
            for entry in self.inner:
                if entry.name == ".a.json.tmp":
                    os.unlink(entry.path)
                yield entry

    monkeypatch.setattr(storage.os, "scandir", Vanishing)
    listed = sorted(f.path for f in lake.lake.files.list("raw/claims"))
    assert listed == ["raw/claims/a.json", "raw/claims/b.json"]
    assert [f.path for f in lake.lake.files.find("raw/claims", "b")] == ["raw/claims/b.json"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "PETINSURE_EVENTS_POLL_SECONDS must be a number of seconds, got 'abc'"),
        ("0", "PETINSURE_EVENTS_POLL_SECONDS must be a number of seconds above 0, got 0.0"),
        ("-2", "PETINSURE_EVENTS_POLL_SECONDS must be a number of seconds above 0, got -2.0"),
        ("inf", "PETINSURE_EVENTS_POLL_SECONDS must be a number of seconds above 0, got inf"),
    ],
)
def test_a_bad_events_poll_interval_stops_the_api_naming_the_variable(
    book: LakeFixture, monkeypatch, value: str, message: str
):
    monkeypatch.setenv("PETINSURE_EVENTS_POLL_SECONDS", value)
    with pytest.raises(ValueError) as refused:
        app_on(book.lake)
    assert str(refused.value) == message
    monkeypatch.setenv("PETINSURE_EVENTS_POLL_SECONDS", "0.25")
    assert front_door.events_poll_seconds() == 0.25


def test_a_broken_real_time_file_of_another_producer_is_passed_over(
    api: TestClient, book: LakeFixture
):
    """The claim's status and its next step come from its newest readable version."""
    claim_id = api.post("/api/claims/", json=CLAIM, headers=AUTH).json()["id"]
    book.write_raw("claims", f"{claim_id}_20250601_101531_000000.json", '{"claim_id": "')
    book.write_raw("claims", f"{claim_id}_20250601_101532_000000.json", "[1, 2]")
    status = api.get(f"/api/claims/{claim_id}/status").json()
    assert (status["state"], status["status"], status["file"]) == (
        "received, not yet processed",
        "Submitted",
        f"raw/claims/{claim_id}_{STAMP}.json",
    )
    step = api.post(f"/api/claims/{claim_id}/simulate-processing", headers=AUTH)
    assert (step.status_code, step.json()["record"]["status"]) == (201, "Under Review")


def test_a_subscription_the_snapshots_cannot_answer_gets_an_error_without_secrets():
    """The store failing mid-subscription: an `error` event with the reason (secrets cut), the
    connection stays open, and the next subscription works once the store answers again."""
    storage.register_secret("front-door-account-key")
    failure = RuntimeError("GET https://lake/latest.json?sig=abc123 with front-door-account-key")
    answers = iter([failure])

    class Snap:  # a published snapshot with one claim of CUST-9
        version = "v1"
        tables = {
            "claims_analytics": pa.table(
                {"claim_id": ["CLM-9"], "customer_id": ["CUST-9"], "status": ["Paid"]}
            )
        }

    def snapshot():
        answer = next(answers, None)
        if isinstance(answer, Exception):
            raise answer
        return Snap()

    events = front_door.Events()
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(client: WebSocket):
        await events.serve(client, snapshot)

    subscribe = {"event": "subscribe_claims", "data": {"customer_id": "CUST-9"}}
    with TestClient(app).websocket_connect("/ws") as ws_client:
        assert ws_client.receive_json()["event"] == "connect"
        ws_client.send_json(subscribe)
        assert ws_client.receive_json() == {
            "event": "error",
            "data": {
                "message": "claim statuses unavailable: RuntimeError: GET "
                "https://lake/latest.json?sig=*** with ***"
            },
        }
        ws_client.send_json(subscribe)
        assert ws_client.receive_json() == {
            "event": "subscribed",
            "data": {"customer_id": "CUST-9", "claims": {"CLM-9": "Paid"}},
        }
