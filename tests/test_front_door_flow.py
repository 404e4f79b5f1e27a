"""The front door end to end: a real uvicorn server of `create_app` on a Unix socket (no TCP port),
real WebSocket clients (`websockets`), HTTP writes (httpx over the same socket), and the pipeline
driven in process as the daemon drives it (raw sensor tick -> refresh_all run -> exports sensor
tick -> publish_api_snapshot run, a DagsterInstance for test), on copies of the small hand-made
book (conftest `served_lake`: CUST-1 with CLM-1 Paid and CLM-3 Denied, CUST-2 with CLM-2 Paid).

1. Events: `connect`, `subscribed` with the customer's claims, one event per accepted write to
   every client with exactly EVENT_FIELDS, then `claim_status_update` to the subscribers of the
   customers whose claims a new snapshot changed, and to nobody else.
2. A claim POSTed reaches the insights and its status; a claim with a late parent waits in
   quarantine and flows in when the parent arrives.
3. Versions of a claim: simulated processing steps and a batch file's newer version; the newest
   wins in silver, the snapshot, the claim's status and the next simulated step.
4. A subscription made while the watcher handles a new snapshot.

Nothing waits by sleeping: the server is waited for until it has started, the snapshot watcher
until it has read its first snapshot and until it reports a published version handled (its log
line, with how many updates it sent), and a client's stream is drained up to a barrier (a message
the server answers at once with an `error`: everything the server sent that client before it is
read by then). Timeouts are safety nets against hanging, never timing assertions. The front door's
clock is the test's where file names and updated_at are asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import httpx
import pyarrow as pa
import pytest
import uvicorn
from websockets.sync.client import ClientConnection, unix_connect

from petinsure_assets.definitions import build_definitions
from petinsure_assets.front_door import EVENT_FIELDS, RECEIVED, FrontDoor
from petinsure_assets.lake import Lake
from petinsure_assets.reference_api import create_app
from petinsure_assets.snapshot_client import LocalStore, SnapshotClient
from petinsure_assets.snapshots import read_latest, snapshot_root
from tests.conftest import LakeFixture, _copy
from tests.test_pipeline import AS_OF
from tests.test_serving import _run, _tick

WRITER = "front-door-flow-write-token"
ADMIN = "front-door-flow-admin-token"
HANG_GUARD = 60  # seconds: a safety net against a hang, never a timing assertion
POLL_SECONDS = 0.05  # how often the watcher asks the snapshot client (ttl 0: latest.json each time)
ALL_EVENTS = ["customer_created", "pet_added", "policy_created", "claim_submitted"]
BARRIER_REPLY = {
    "event": "error",
    "data": {
        "message": 'expected {"event": "subscribe_claims", "data": {"customer_id": "CUST-..."}}'
    },
}
WATCHER_LOG = "snapshot %s: %d claim status update(s) sent"  # front_door.watch_snapshots


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a condition of another thread that has no event to wait on (a safety net only)."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {HANG_GUARD} s"
        time.sleep(0.01)


class Clock:
    """The front door's clock, set by the test: file names and updated_at are known exactly."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


# ---- the server, its clients and its watcher ----------------------------------------------------


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.ready = threading.Event()  # set once startup is over, whether it worked or not

    def run_until_stopped(self) -> None:
        try:
            self.run()
        finally:
            self.ready.set()

    async def startup(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class Watched(logging.Handler):
    """The watcher's report of each new snapshot version it handled: version -> updates sent."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.told: dict[str, int] = {}
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == WATCHER_LOG:
            with self.changed:
                self.told[record.args[0]] = record.args[1]
                self.changed.notify_all()

    def wait(self, version: str) -> int:
        """How many claim_status_update messages the watcher sent for `version`, once it has
        sent them all."""
        with self.changed:
            handled = self.changed.wait_for(lambda: version in self.told, timeout=HANG_GUARD)
        assert handled, f"the watcher reported no snapshot {version} (seen: {self.told})"
        return self.told[version]


class Api:
    """`create_app` served by uvicorn on a Unix socket in a thread of the test process."""

    def __init__(self, lake: LakeFixture, sock: Path, clock, client, poll: float):
        door = FrontDoor(lambda: Lake(root=str(lake.root)), **({"clock": clock} if clock else {}))
        self.app = create_app(
            client or SnapshotClient(LocalStore(snapshot_root(lake.lake)), ttl_seconds=0),
            admin_token=ADMIN,
            write_token=WRITER,
            door=door,
            events_poll_seconds=poll,
        )
        self.sock = sock
        self.server = _Server(uvicorn.Config(self.app, uds=str(sock), log_config=None))
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)),
            base_url="http://front-door",
            timeout=HANG_GUARD,
        )

    @property
    def events(self):
        return self.app.state.events

    def post(self, path: str, body: dict | None = None, token: str | None = WRITER):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(path, json=body, headers=headers)

    def get(self, path: str) -> dict:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Listener]:
        """A WebSocket client of /ws, past its `connect` message; closed after."""
        with unix_connect(str(self.sock), uri="ws://front-door/ws") as ws:
            listener = Listener(ws)
            assert listener.next() == {
                "event": "connect",
                "data": {"events": [*ALL_EVENTS, "claim_status_update"]},
            }
            yield listener


class Listener:
    """A WebSocket client of /ws."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    def next(self) -> dict:
        return json.loads(self.ws.recv(timeout=HANG_GUARD))

    def send(self, event: str, data: Any) -> None:
        self.ws.send(json.dumps({"event": event, "data": data}))

    def subscribe(self, customer: str) -> dict:
        """Subscribe to a customer's claims; the `subscribed` answer's data."""
        self.send("subscribe_claims", {"customer_id": customer})
        answer = self.next()
        assert answer["event"] == "subscribed", answer
        return answer["data"]

    def drain(self) -> list[dict]:
        """Every message the server sent this client so far: up to the answer to a message it
        refuses at once (which changes nothing on the server)."""
        self.send("ping", {})
        received = []
        while (message := self.next()) != BARRIER_REPLY:
            received.append(message)
        return received


@contextlib.contextmanager
def serving(
    lake: LakeFixture, sock: Path, clock=None, client=None, poll: float = POLL_SECONDS
) -> Iterator[tuple[Api, Watched]]:
    """The API on `sock` (the front door writing into `lake`, its clock `clock`; snapshots from
    `client`, by default the lake's with ttl 0), started and its snapshot watcher past its first
    read; stopped after."""
    assert len(str(sock)) < 100, f"{sock}: too long for a Unix socket path"
    watched = Watched()
    logger = logging.getLogger("petinsure.front_door")
    level = logger.level
    logger.addHandler(watched)
    logger.setLevel(logging.INFO)
    api = Api(lake, sock, clock, client, poll)
    thread = threading.Thread(target=api.server.run_until_stopped, name="uvicorn", daemon=True)
    thread.start()
    try:
        assert api.server.ready.wait(HANG_GUARD), "uvicorn did not start"
        assert api.server.started, "uvicorn could not start (see the log)"
        first = read_latest(lake.lake)["version"]
        wait_until(lambda: api.events.version is not None, "the watcher's first snapshot")
        assert api.events.version == first
        yield api, watched
    finally:
        api.http.close()
        api.server.should_exit = True
        thread.join(HANG_GUARD)
        logger.removeHandler(watched)
        logger.setLevel(level)
    assert not thread.is_alive(), "uvicorn did not stop"


# ---- the pipeline, as the daemon runs it --------------------------------------------------------


class Pipeline:
    """The raw sensor, its refresh_all run, the exports sensor and its publish_api_snapshot run,
    in process with a DagsterInstance for test (as test_serving's end-to-end test)."""

    def __init__(self, lake: LakeFixture, instance: dg.DagsterInstance):
        self.lake = lake
        self.defs = build_definitions(str(lake.root))
        self.instance = instance
        self.raw_cursor: str | None = None
        self.exports_cursor: str | None = None

    def round(self, entities: str) -> str:
        """One round for new raw files of `entities` (the run's tag); the new snapshot version."""
        before = read_latest(self.lake.lake)["version"]
        raw = _tick(self.defs, "raw_files_sensor", self.instance, self.raw_cursor)
        (request,) = raw.run_requests
        assert request.tags["petinsure/entities"] == entities
        self.raw_cursor = raw.cursor
        _run(self.defs, self.instance, request, "refresh_all")
        exports = _tick(self.defs, "exports_sensor", self.instance, self.exports_cursor)
        (publish,) = exports.run_requests
        self.exports_cursor = exports.cursor
        _run(self.defs, self.instance, publish, "publish_api_snapshot")
        after = read_latest(self.lake.lake)["version"]
        assert after != before
        return after


@pytest.fixture
def book(served_lake: LakeFixture, tmp_path: Path) -> LakeFixture:
    """A copy of the session's small hand-made book, refreshed and published as of AS_OF."""
    return _copy(served_lake, tmp_path / "lake")


@pytest.fixture
def pipeline(book: LakeFixture) -> Iterator[Pipeline]:
    with dg.instance_for_test() as instance:
        yield Pipeline(book, instance)


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def event(entity: str, accepted: dict) -> dict:
    """The event every client gets for an accepted write: EVENT_FIELDS of the written record."""
    return {
        "event": accepted["event"],
        "data": {c: accepted["record"][c] for c in EVENT_FIELDS[entity]},
    }


def update(claim_id: str, customer: str, status: str, previous: str | None, version: str) -> dict:
    return {
        "event": "claim_status_update",
        "data": {
            "claim_id": claim_id,
            "customer_id": customer,
            "status": status,
            "previous_status": previous,
            "snapshot_version": version,
        },
    }


def by_claim(messages: list[dict]) -> list[dict]:
    return sorted(messages, key=lambda m: m["data"]["claim_id"])


# ---- 1. events ----------------------------------------------------------------------------------


CUSTOMER = {
    "first_name": "Cy",
    "last_name": "Moe",
    "email": "cy.moe@example.com",
    "phone": "5550001111",
    "address": "9 Elm St",
    "city": "Austin",
    "state": "TX",
    "zip_code": "78702",
    "date_of_birth": "1990-04-05",
    "customer_since": "2025-05-01",
    "segment": "Young Professional",
}


def pet_of(customer: str) -> dict:
    return {
        "customer_id": customer,
        "pet_name": "Dot",
        "species": "dog",
        "breed": "Beagle",
        "gender": "Female",
        "date_of_birth": "2022-02-02",
        "weight_lbs": 22.5,
        "is_active": True,
    }


def policy_of(customer: str, pet: str) -> dict:
    return {
        "customer_id": customer,
        "pet_id": pet,
        "plan_name": "premium",
        "monthly_premium": "55.00",
        "deductible": "100.00",
        "coverage_limit": "10000.00",
        "effective_date": "2025-05-01",
        "expiration_date": "2026-04-30",
        "status": "Active",
    }


def claim_of(customer: str, policy: str, pet: str, **values) -> dict:
    return {
        "customer_id": customer,
        "policy_id": policy,
        "pet_id": pet,
        "provider_id": "PRV-1",
        "claim_type": "Illness",
        "service_date": "2025-06-02",
        "claim_amount": "64.00",
        "status": "Submitted",
        **values,
    }


def test_events_of_writes_and_claim_status_updates_of_new_snapshots(
    book: LakeFixture, pipeline: Pipeline, tmp_path: Path
):
    with (
        serving(book, tmp_path / "api.sock") as (api, watched),
        api.connect() as a,
        api.connect() as b,
        api.connect() as c,
    ):
        assert a.subscribe("CUST-2") == {"customer_id": "CUST-2", "claims": {"CLM-2": "Paid"}}
        assert c.subscribe("CUST-1") == {
            "customer_id": "CUST-1",
            "claims": {"CLM-1": "Paid", "CLM-3": "Denied"},
        }
        # b subscribes to nothing: it gets the events of the writes, no status update
        listening = [a, b, c]

        def write(entity: str, body: dict, name: str) -> dict:
            accepted = created(api.post(f"/api/{entity}/", body))
            prefix = {"customers": "CUST", "pets": "PET", "policies": "POL", "claims": "CLM"}
            assert re.fullmatch(f"{prefix[entity]}-[0-9A-F]{{16}}", accepted["id"]), accepted
            expected = event(entity, accepted)
            assert expected["event"] == name
            assert [x.drain() for x in listening] == [[expected]] * len(listening)
            return accepted

        customer = write("customers", CUSTOMER, "customer_created")
        new = customer["id"]
        # exactly the non-personal fields: no name, email, phone, address or date of birth
        assert event("customers", customer)["data"] == {
            "customer_id": new,
            "segment": "Young Professional",
            "state": "TX",
            "customer_since": "2025-05-01",
        }
        with api.connect() as gone:  # follows the new customer while its claim is written
            listening.append(gone)
            assert gone.subscribe(new) == {"customer_id": new, "claims": {}}
            pet = write("pets", pet_of(new), "pet_added")
            assert event("pets", pet)["data"] == {
                "pet_id": pet["id"],
                "customer_id": new,
                "species": "Dog",
                "breed": "Beagle",
            }
            policy = write("policies", policy_of(new, pet["id"]), "policy_created")
            assert event("policies", policy)["data"] == {
                "policy_id": policy["id"],
                "customer_id": new,
                "pet_id": pet["id"],
                "plan_name": "Premium",
                "status": "Active",
                "effective_date": "2025-05-01",
            }
            assert policy["late_parents"] == [
                {"field": "customer_id", "id": new, "state": RECEIVED},
                {"field": "pet_id", "id": pet["id"], "state": RECEIVED},
            ]
            mine = write(
                "claims",
                claim_of(
                    new,
                    policy["id"],
                    pet["id"],
                    claim_type="accident",
                    service_date="2025-06-01",
                    claim_amount="120.00",
                ),
                "claim_submitted",
            )
            assert event("claims", mine)["data"] == {
                "claim_id": mine["id"],
                "customer_id": new,
                "policy_id": policy["id"],
                "pet_id": pet["id"],
                "claim_type": "Accident",
                "claim_amount": 120.0,
                "status": "Submitted",
                "service_date": "2025-06-01",
            }
            listening.remove(gone)
        wait_until(lambda: len(api.events.clients) == 3, "the server to let the client go")

        theirs = write("claims", claim_of("CUST-2", "POL-2", "PET-2"), "claim_submitted")
        assert theirs["late_parents"] == []
        refused = api.post("/api/claims/", claim_of("CUST-2", "POL-2", "PET-2"), token=None)
        assert (refused.status_code, refused.json()) == (
            401,
            {"detail": "write token required (Authorization: Bearer <token>)"},
        )
        assert (a.drain(), b.drain(), c.drain()) == ([], [], [])  # nothing written, no event

        # The pipeline: the new snapshot holds both claims, Submitted. CUST-2's subscriber (a) is
        # told, with the status it was last told (received); nothing about CLM-2, unchanged, and
        # nothing to the others. Nobody follows the new customer any more: nobody is told.
        v1 = pipeline.round("claims,customers,pets,policies")
        assert watched.wait(v1) == 1
        assert a.drain() == [update(theirs["id"], "CUST-2", "Submitted", RECEIVED, v1)]
        assert (b.drain(), c.drain()) == ([], [])
        # A client that follows the new customer now is told what the snapshot says.
        with api.connect() as later:
            assert later.subscribe(new) == {"customer_id": new, "claims": {mine["id"]: "Submitted"}}
            listening.append(later)

            # One step of simulated processing: a new version, not a new claim (no write event),
            # then, once a run has published it, one update, to the subscriber of that customer.
            step = created(api.post(f"/api/claims/{theirs['id']}/simulate-processing"))
            assert (step["previous_status"], step["record"]["status"], step["event"]) == (
                "Submitted",
                "Under Review",
                None,
            )
            assert [x.drain() for x in listening] == [[]] * 4
            assert api.get(f"/api/claims/{theirs['id']}/status") == {
                "claim_id": theirs["id"],
                "status": "Submitted",
                "state": "update received, not yet processed",
                "customer_id": "CUST-2",
                "claim_amount": 64.0,
                "paid_amount": None,
                "processing_days": None,
                "service_date": "2025-06-02",
                "snapshot_version": v1,
                "as_of": AS_OF,
                "pending": {
                    "status": "Under Review",
                    "paid_amount": None,
                    "updated_at": step["updated_at"],
                },
            }

            v2 = pipeline.round("claims")
            assert watched.wait(v2) == 1
            assert a.drain() == [update(theirs["id"], "CUST-2", "Under Review", "Submitted", v2)]
            assert (b.drain(), c.drain(), later.drain()) == ([], [], [])
        assert a.subscribe("CUST-2") == {
            "customer_id": "CUST-2",
            "claims": {"CLM-2": "Paid", theirs["id"]: "Under Review"},
        }
        assert api.get(f"/api/claims/{theirs['id']}/status")["state"] == "processed"


# ---- 2. a claim from the front door to the snapshot ---------------------------------------------


def test_posted_claim_reaches_the_snapshot_and_a_late_parent_releases_its_claim(
    book: LakeFixture, pipeline: Pipeline, tmp_path: Path
):
    """A claim POSTed, the raw sensor's run, the exports sensor's snapshot: the insights list it
    with the values posted and its status goes from received to processed. A claim naming a
    policy that does not exist is accepted, quarantined as orphan_fk, and flows in by itself once
    the policy arrives. The API cannot deliver that policy (it assigns IDs and refuses a
    policy_id), so it comes as the source system's real-time file; parents made through the API
    are late only until the run that takes them with their claim."""
    clock = Clock(dt.datetime(2025, 6, 20, 8, 30, tzinfo=dt.UTC))
    with serving(book, tmp_path / "api.sock", clock) as (api, watched):
        first = api.events.version
        body = claim_of(
            "CUST-2",
            "POL-2",
            "PET-2",
            claim_number="N-WEB-1",
            claim_type="Emergency",
            claim_category="Surgery",
            service_date="2025-06-15",
            claim_amount="310.40",
        )
        posted = created(api.post("/api/claims/", body))
        cid = posted["id"]
        file = f"raw/claims/{cid}_20250620_083000_000000.json"
        record = {
            "claim_id": cid,
            "claim_number": "N-WEB-1",
            "customer_id": "CUST-2",
            "policy_id": "POL-2",
            "pet_id": "PET-2",
            "provider_id": "PRV-1",
            "claim_type": "Emergency",
            "claim_category": "Surgery",
            "service_date": "2025-06-15",
            "claim_amount": 310.4,
            "paid_amount": None,
            "status": "Submitted",
            "processing_days": None,
            "denial_reason": None,
            "updated_at": "2025-06-20T08:30:00.000000",
        }
        assert posted == {
            "id": cid,
            "entity": "claims",
            "event": "claim_submitted",
            "file": file,
            "updated_at": "2025-06-20T08:30:00.000000",
            "source": "ingestion-api",
            "record": record,
            "late_parents": [],
            "message": f"accepted: written to {file}; silver takes it with the next run",
        }
        assert json.loads((book.root / file).read_text()) == {**record, "source": "ingestion-api"}
        assert api.get(f"/api/claims/{cid}/status") == {
            "claim_id": cid,
            "status": "Submitted",
            "state": RECEIVED,
            "customer_id": "CUST-2",
            "received_at": "2025-06-20T08:30:00.000000",
            "file": file,
            "waiting_for": [],
            "snapshot_version": first,
            "as_of": AS_OF,
        }

        # A claim whose policy does not exist (yet): accepted, the response says so.
        clock.now += dt.timedelta(minutes=1)
        late = created(api.post("/api/claims/", claim_of("CUST-2", "POL-LATE", "PET-2")))
        late_file = f"raw/claims/{late['id']}_20250620_083100_000000.json"
        assert (late["file"], late["late_parents"], late["message"]) == (
            late_file,
            [{"field": "policy_id", "id": "POL-LATE", "state": "not found"}],
            f"accepted: written to {late_file}; silver takes it with the next run. Not in silver "
            "yet: policy_id POL-LATE (not found). Late parents are normal: the record waits in "
            "quarantine (orphan_fk) until they arrive, then flows in by itself (an id that never "
            "arrives keeps it there: the quarantine table shows it)",
        )
        # Parents made through the API get IDs of the API's choosing: a claim can name them
        # only once they are written, so through the API a late parent is one "received".
        pet = created(api.post("/api/pets/", pet_of("CUST-2")))
        policy = created(api.post("/api/policies/", policy_of("CUST-2", pet["id"])))
        chained = created(api.post("/api/claims/", claim_of("CUST-2", policy["id"], pet["id"])))
        assert chained["late_parents"] == [
            {"field": "policy_id", "id": policy["id"], "state": RECEIVED},
            {"field": "pet_id", "id": pet["id"], "state": RECEIVED},
        ]
        named = api.post(
            "/api/policies/", {**policy_of("CUST-2", "PET-2"), "policy_id": "POL-LATE"}
        )
        assert (named.status_code, named.json()["detail"]) == (
            422,
            [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "policy_id"],
                    "msg": "Extra inputs are not permitted",
                    "input": "POL-LATE",
                }
            ],
        )

        v1 = pipeline.round("claims,pets,policies")
        assert watched.wait(v1) == 0
        claims = api.get("/api/insights/claims?customer_id=CUST-2")
        assert (claims["total"], claims["version"]) == (3, v1)
        items = {c["claim_id"]: c for c in claims["items"]}
        assert sorted(items) == sorted(["CLM-2", cid, chained["id"]])
        assert items[cid] == {
            **{k: v for k, v in record.items() if k != "updated_at"},
            "customer_name": "Bob Ray",
            "pet_name": "Tom",
            "species": "Cat",
            "breed": "Siamese",
            "plan_name": "Basic",
            "provider_name": "Vet A",
            "provider_type": "General Practice",
            "is_in_network": True,
            "service_month": "2025-06",
            "reimbursement_rate": None,
        }
        assert api.get(f"/api/claims/{cid}/status") == {
            "claim_id": cid,
            "status": "Submitted",
            "state": "processed",
            "customer_id": "CUST-2",
            "claim_amount": 310.4,
            "paid_amount": None,
            "processing_days": None,
            "service_date": "2025-06-15",
            "snapshot_version": v1,
            "as_of": AS_OF,
        }
        # bronze keeps the file as it is, its source among the extra columns
        (bronze,) = [r for r in book.rows("bronze", "claims_raw") if r["_source_file"] == file]
        assert (bronze["claim_amount"], bronze["_extra_columns"], bronze["_source_line"]) == (
            "310.4",
            '{"source":"ingestion-api"}',
            1,
        )
        # the late claim waits in quarantine, and says what for
        quarantined = [
            (q["record_key"], q["reason"], q["detail"], q["source_file"])
            for q in book.rows("silver", "quarantine")
            if q["entity"] == "claims"
        ]
        assert quarantined == [
            (late["id"], "orphan_fk", "policy_id POL-LATE not in dim_policies", late_file),
            (None, "malformed_record", "invalid JSON", "raw/claims/claims.jsonl"),  # the book's
        ]
        silver = {r["claim_id"] for r in book.rows("silver", "fact_claims")}
        assert silver == {"CLM-1", "CLM-2", "CLM-3", cid, chained["id"]}
        assert api.get(f"/api/claims/{late['id']}/status") == {
            "claim_id": late["id"],
            "status": "Submitted",
            "state": RECEIVED,
            "customer_id": "CUST-2",
            "received_at": "2025-06-20T08:31:00.000000",
            "file": late_file,
            "waiting_for": [{"field": "policy_id", "id": "POL-LATE", "state": "not found"}],
            "snapshot_version": v1,
            "as_of": AS_OF,
        }

        # The policy arrives by the source system's own real-time file (which names its ID).
        book.write_raw(
            "policies",
            "POL-LATE_20250621_090000_000000.json",
            json.dumps(
                {
                    "policy_id": "POL-LATE",
                    "policy_number": "PN-LATE",
                    "customer_id": "CUST-2",
                    "pet_id": "PET-2",
                    "plan_name": "Basic",
                    "monthly_premium": "25.00",
                    "deductible": "250",
                    "coverage_limit": "3000",
                    "effective_date": "2025-06-01",
                    "expiration_date": "2026-05-31",
                    "status": "Active",
                    "updated_at": "2025-06-21T09:00:00",
                }
            ),
        )
        assert api.get(f"/api/claims/{late['id']}/status")["waiting_for"] == [
            {"field": "policy_id", "id": "POL-LATE", "state": RECEIVED}
        ]
        v2 = pipeline.round("policies")
        assert watched.wait(v2) == 0
        claims = api.get("/api/insights/claims?customer_id=CUST-2")
        assert (claims["total"], claims["version"]) == (4, v2)
        released = next(c for c in claims["items"] if c["claim_id"] == late["id"])
        assert (released["policy_id"], released["plan_name"], released["status"]) == (
            "POL-LATE",
            "Basic",
            "Submitted",
        )
        assert [
            (q["record_key"], q["reason"])
            for q in book.rows("silver", "quarantine")
            if q["entity"] == "claims"
        ] == [(None, "malformed_record")]
        silver = {r["claim_id"] for r in book.rows("silver", "fact_claims")}
        assert silver == {"CLM-1", "CLM-2", "CLM-3", cid, chained["id"], late["id"]}
        assert api.get(f"/api/claims/{late['id']}/status") == {
            "claim_id": late["id"],
            "status": "Submitted",
            "state": "processed",
            "customer_id": "CUST-2",
            "claim_amount": 64.0,
            "paid_amount": None,
            "processing_days": None,
            "service_date": "2025-06-02",
            "snapshot_version": v2,
            "as_of": AS_OF,
        }


# ---- 3. versions of a claim through the pipeline ------------------------------------------------


def test_simulated_steps_and_a_batch_file_are_versions_of_a_claim_and_the_newest_wins(
    book: LakeFixture, pipeline: Pipeline, tmp_path: Path
):
    """Submitted -> Under Review -> Approved -> Paid, each step a newer file; one run: silver and
    the snapshot hold the newest. Also a claim whose newest version comes in the claims system's
    batch file (a later updated_at than its front-door file): the newest wins there too, and the
    claim's status must not call the older front-door file pending."""
    clock = Clock(dt.datetime(2025, 6, 12, 10, 0, tzinfo=dt.UTC))
    with serving(book, tmp_path / "api.sock", clock) as (api, watched):
        posted = created(
            api.post("/api/claims/", claim_of("CUST-1", "POL-1", "PET-1", claim_amount="250.00"))
        )
        cid = posted["id"]

        def simulate(claim_id: str, body: dict | None = None) -> httpx.Response:
            return api.post(f"/api/claims/{claim_id}/simulate-processing", body)

        paid = simulate(cid, {"status": "paid"})
        assert (paid.status_code, paid.json()) == (
            409,
            {
                "detail": f"claim {cid} is Submitted: it can move to Under Review, Approved, "
                "Denied, not Paid"
            },
        )
        # the clock has not moved: the next version is still strictly newer, by 1 microsecond
        review = created(simulate(cid))
        clock.now = dt.datetime(2025, 6, 15, 9, 0, tzinfo=dt.UTC)
        approved = created(simulate(cid, {"paid_amount": "200.00"}))
        clock.now = dt.datetime(2025, 6, 16, 9, 0, tzinfo=dt.UTC)
        settled = created(simulate(cid))
        steps = [posted, review, approved, settled]
        assert [
            (s["record"]["status"], s.get("previous_status"), s["updated_at"], s["file"])
            for s in steps
        ] == [
            (
                "Submitted",
                None,
                "2025-06-12T10:00:00.000000",
                f"raw/claims/{cid}_20250612_100000_000000.json",
            ),
            (
                "Under Review",
                "Submitted",
                "2025-06-12T10:00:00.000001",
                f"raw/claims/{cid}_20250612_100000_000001.json",
            ),
            (
                "Approved",
                "Under Review",
                "2025-06-15T09:00:00.000000",
                f"raw/claims/{cid}_20250615_090000_000000.json",
            ),
            (
                "Paid",
                "Approved",
                "2025-06-16T09:00:00.000000",
                f"raw/claims/{cid}_20250616_090000_000000.json",
            ),
        ]
        # Approved: the amount given, processing days since the first file (3); Paid keeps both
        assert [(s["record"]["paid_amount"], s["record"]["processing_days"]) for s in steps] == [
            (None, None),
            (None, None),
            (200.0, 3),
            (200.0, 3),
        ]
        assert sorted(p.name for p in (book.root / "raw" / "claims").glob(f"{cid}_*")) == [
            s["file"].rsplit("/", 1)[1] for s in steps
        ]
        final = simulate(cid)
        assert (final.status_code, final.json()) == (
            409,
            {"detail": f"claim {cid} is Paid, a final status"},
        )
        before = api.get(f"/api/claims/{cid}/status")
        assert (before["state"], before["status"], before["file"]) == (
            RECEIVED,
            "Paid",
            settled["file"],
        )

        # Another claim, whose newer version (Approved) comes in the claims system's batch file.
        batched = created(api.post("/api/claims/", claim_of("CUST-2", "POL-2", "PET-2")))
        bid = batched["id"]
        newer = {
            **{k: v for k, v in batched["record"].items() if v is not None},
            "paid_amount": "50.00",
            "status": "Approved",
            "processing_days": 5,
            "updated_at": "2025-06-25T12:00:00",
        }
        book.write_raw("claims", "claims_20250625.jsonl", json.dumps(newer) + "\n")

        v1 = pipeline.round("claims")
        assert watched.wait(v1) == 0
        assert sorted(
            r["_source_file"]
            for r in book.rows("bronze", "claims_raw")
            if r["_source_file"].startswith(f"raw/claims/{cid}")
        ) == [s["file"] for s in steps]
        silver = {r["claim_id"]: r for r in book.rows("silver", "fact_claims")}
        assert (
            silver[cid]["status"],
            silver[cid]["updated_at"],
            silver[cid]["_source_file"],
        ) == ("Paid", dt.datetime(2025, 6, 16, 9, 0), settled["file"])
        assert (
            silver[bid]["status"],
            silver[bid]["updated_at"],
            silver[bid]["_source_file"],
        ) == ("Approved", dt.datetime(2025, 6, 25, 12, 0), "raw/claims/claims_20250625.jsonl")
        (item,) = api.get("/api/insights/claims?customer_id=CUST-1&service_month=2025-06")["items"]
        assert item == {
            "claim_id": cid,
            "claim_number": None,
            "customer_id": "CUST-1",
            "policy_id": "POL-1",
            "pet_id": "PET-1",
            "provider_id": "PRV-1",
            "claim_type": "Illness",
            "claim_category": None,
            "service_date": "2025-06-02",
            "claim_amount": 250.0,
            "paid_amount": 200.0,
            "status": "Paid",
            "processing_days": 3,
            "denial_reason": None,
            "customer_name": "Ann Lee",
            "pet_name": "Rex",
            "species": "Dog",
            "breed": "Lab",
            "plan_name": "Standard",
            "provider_name": "Vet A",
            "provider_type": "General Practice",
            "is_in_network": True,
            "service_month": "2025-06",
            "reimbursement_rate": 0.8,
        }
        assert api.get(f"/api/claims/{cid}/status") == {
            "claim_id": cid,
            "status": "Paid",
            "state": "processed",
            "customer_id": "CUST-1",
            "claim_amount": 250.0,
            "paid_amount": 200.0,
            "processing_days": 3,
            "service_date": "2025-06-02",
            "snapshot_version": v1,
            "as_of": AS_OF,
        }
        final = simulate(cid)
        assert (final.status_code, final.json()) == (
            409,
            {"detail": f"claim {cid} is Paid, a final status"},
        )
        denied = simulate("CLM-3")
        assert (denied.status_code, denied.json()) == (
            409,
            {"detail": "claim CLM-3 is Denied, a final status"},
        )
        unknown = simulate("CLM-404")
        assert (unknown.status_code, unknown.json()) == (
            404,
            {"detail": "claim CLM-404 is neither in silver nor in raw/"},
        )

        # The batch version is the newest: the snapshot holds it and nothing is pending (the
        # front-door file is older than what the snapshot holds).
        assert api.get(f"/api/claims/{bid}/status") == {
            "claim_id": bid,
            "status": "Approved",
            "state": "processed",
            "customer_id": "CUST-2",
            "claim_amount": 64.0,
            "paid_amount": 50.0,
            "processing_days": 5,
            "service_date": "2025-06-02",
            "snapshot_version": v1,
            "as_of": AS_OF,
        }
        # simulated processing takes the newest version (silver's, by updated_at) as current
        step = created(simulate(bid))
        assert (step["previous_status"], step["record"]["status"]) == ("Approved", "Paid")


# ---- the events while a snapshot is published ---------------------------------------------------


class Gate:
    """A snapshot client whose next read, once `hold` is set, is held until `release`: it returns
    the snapshot it read before being held."""

    def __init__(self, snap):
        self.snap = snap
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def snapshot(self):
        snap = self.snap
        if self.hold.is_set():
            self.hold.clear()
            self.entered.set()
            assert self.release.wait(HANG_GUARD)
        return snap


def test_a_subscription_made_while_a_snapshot_is_published_ends_up_with_its_statuses(
    book: LakeFixture, tmp_path: Path
):
    """The watcher handles a new snapshot while a subscription is reading the previous one: the
    subscriber must end up told the new snapshot's statuses (by `subscribed` or by an update)."""
    old = SnapshotClient(LocalStore(snapshot_root(book.lake)), ttl_seconds=0).snapshot()
    claims = old.tables["claims_analytics"]
    (clm2,) = [r for r in claims.to_pylist() if r["claim_id"] == "CLM-2"]
    added = {**clm2, "claim_id": "CLM-9", "status": "Submitted"}  # a claim new in the snapshot
    new = SimpleNamespace(
        version="a-newer-version",
        tables={
            "claims_analytics": pa.Table.from_pylist([*claims.to_pylist(), added], claims.schema)
        },
        manifest={},
    )
    gate = Gate(old)
    # The watcher reads its first snapshot, then sleeps for an hour.
    with (
        serving(book, tmp_path / "api.sock", client=gate, poll=3600) as (api, _),
        api.connect() as client,
    ):
        gate.hold.set()
        try:
            client.send("subscribe_claims", {"customer_id": "CUST-2"})
            assert gate.entered.wait(HANG_GUARD)  # the subscription has read the old snapshot
            # The store moves on, and the watcher's step (by hand, so that it falls exactly in
            # this window): the new version is published to the subscribers.
            gate.snap = new
            step = asyncio.run_coroutine_threadsafe(
                api.events.snapshot_published(new), api.server.loop
            )
            assert step.result(HANG_GUARD) == 0  # nobody follows CUST-2 yet
        finally:
            gate.release.set()
        subscribed = client.next()
        assert subscribed["event"] == "subscribed"
        statuses = dict(subscribed["data"]["claims"])
        for message in client.drain():
            assert message["event"] == "claim_status_update", message
            statuses[message["data"]["claim_id"]] = message["data"]["status"]
        assert (api.events.version, statuses) == (
            "a-newer-version",
            {"CLM-2": "Paid", "CLM-9": "Submitted"},
        )
