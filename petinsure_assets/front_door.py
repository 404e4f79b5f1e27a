"""The front door: the ingestion endpoints of seed 001 §9.1 and its real-time events (§9.4).

Customers, pets, policies and claims arrive over HTTP; each accepted record becomes one real-time
file `<ID>_<YYYYMMDD>_<HHMMSS>_<ffffff>.json` in `raw/<entity>/`, which the raw sensor picks up
like any other file. Nothing here is written twice:

- **Request models** are built from the raw contract and the table catalog (`request_model`): the
  fields are the entity's raw columns (`contracts.py`) but its key and `updated_at`, which the API
  assigns; each field's type is its silver column's type (`queries.output_schemas`), enumerated
  fields take the spec's accepted values (in any case, stored in their accepted spelling), amounts
  the spec's ranges. A field is required when silver quarantines a record without it (found by
  asking silver's own SQL, `required_columns`) or when it names a parent.
- **The final word is silver's**: before anything is written, the exact bytes of the file are
  parsed as bronze parses them and judged by the entity's silver SQL (`judge`). A record a hard
  rule would quarantine (paid above claimed, a date out of range, ...) or with a value silver would
  drop as invalid (an email, a phone number, a weight of 0) is refused with 422 naming the field.
  A parent that does not exist yet is not a refusal: late parents are normal, the response says
  which are missing, and silver holds the record in quarantine until they arrive.
- **IDs** are the source's formats, `CUST-`, `PET-`, `POL-`, `CLM-` and 16 random hex digits (64
  bits); a file is created only if its name is new (`storage.create`), so two requests can never
  share an ID or a file. `updated_at` is the time of the request (UTC); the file also records
  `"source": "ingestion-api"` (bronze keeps it in `_extra_columns`).
- **Atomic files**: local lake, a hidden temporary name, flushed, then linked to its name; Azure,
  one blob upload that never replaces an existing blob. The raw sensor never sees half a file.

Writes need `Authorization: Bearer <PETINSURE_WRITE_TOKEN>` (not the admin toggle's token; unset =
writes disabled, 503). Reads stay open. Bodies above `MAX_BODY_BYTES` are refused with 422 before
they are read whole.

Events (`/ws`, FastAPI's own WebSocket, JSON messages `{"event": ..., "data": {...}}`, not the
Socket.IO protocol): `connect` on connection; `customer_created`, `pet_added`, `policy_created`,
`claim_submitted` to every client on each new record (IDs and non-personal fields only: a
new customer's name or email never goes out to other clients); a client sends
`{"event": "subscribe_claims", "data": {"customer_id": ...}}` and gets `claim_status_update` when a
newly published snapshot changes the status of one of that customer's claims (also a claim seen
for the first time). One process: the events of one API process reach its own clients only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import inspect
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Depends, FastAPI, Header, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from petinsure_assets import contracts, demo_data
from petinsure_assets.catalog import CATALOG, Catalog, TableSpec
from petinsure_assets.ingest import realtime_rows
from petinsure_assets.lake import sql_string
from petinsure_assets.lock import number_from_env
from petinsure_assets.queries import output_schemas, session, staged_table
from petinsure_assets.storage import StorageError, redact

log = logging.getLogger("petinsure.front_door")

SOURCE = "ingestion-api"
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 500
ID_HEX_DIGITS = 16
AMOUNT_LIMIT = Decimal("1000000000")  # parse_amount: magnitude below 10^9
# The event of an accepted write, per entity (seed 001 §9.4).
EVENTS = {
    "customers": "customer_created",
    "pets": "pet_added",
    "policies": "policy_created",
    "claims": "claim_submitted",
}
ENTITIES = tuple(contracts.BY_NAME[name] for name in EVENTS)
# What an event tells every client: ids and non-personal fields.
EVENT_FIELDS = {
    "customers": ("customer_id", "segment", "state", "customer_since"),
    "pets": ("pet_id", "customer_id", "species", "breed"),
    "policies": ("policy_id", "customer_id", "pet_id", "plan_name", "status", "effective_date"),
    "claims": (
        "claim_id",
        "customer_id",
        "policy_id",
        "pet_id",
        "claim_type",
        "claim_amount",
        "status",
        "service_date",
    ),
}
RECEIVED = "received, not yet processed"


# not StrEnum: that would change str() and format() of the members
class Choice(str, Enum):  # noqa: UP042
    """An accepted value of an enumerated field or filter; `approved` or ` APPROVED ` finds
    Approved."""

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        if isinstance(value, str):
            wanted = value.strip().casefold()
            return next((m for m in cls if m.value.casefold() == wanted), None)
        return None


@cache
def choices(name: str, values: tuple[str, ...]) -> type[Choice]:
    return Choice(name, [(v, v) for v in values])


def vocabulary_name(vocabulary: str) -> str:
    """The enum name of a vocabulary of the catalog: claim_statuses -> ClaimStatuses."""
    return "".join(w.capitalize() for w in vocabulary.split("_"))


class WriteFailed(RuntimeError):
    """The raw zone could not take the file (nothing of it is visible there)."""


class RecordRefused(ValueError):
    """A record silver's rules would quarantine or drop a value of: `field` says which."""

    def __init__(self, field_name: str, message: str, value: Any = None):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message
        self.value = value


# ---- the request models, from the contract and the catalog ---------------------------------------


def assigned_columns(entity: contracts.Entity) -> tuple[str, ...]:
    """The columns the API sets: the key and updated_at."""
    return (entity.key, "updated_at")


def _amount(low: float | None, high: float | None) -> Any:
    return Annotated[
        Decimal,
        Field(
            ge=Decimal(str(low)) if low is not None else None,
            gt=-AMOUNT_LIMIT if low is None else None,
            le=Decimal(str(high)) if high is not None else None,
            lt=AMOUNT_LIMIT if high is None else None,
            decimal_places=2,
            allow_inf_nan=False,
        ),
    ]


def _field_type(spec: TableSpec, column: str, arrow: pa.DataType) -> Any:
    accepted = {a.column: a for a in spec.accepted}
    ranges = {r.column: r for r in spec.ranges}
    low, high = (ranges[column].low, ranges[column].high) if column in ranges else (None, None)
    if column in accepted:
        a = accepted[column]
        return choices(vocabulary_name(a.vocabulary), a.values)
    if pa.types.is_decimal(arrow):
        return _amount(low, high)
    if pa.types.is_floating(arrow):
        return Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]
    if pa.types.is_integer(arrow):
        return Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
    if pa.types.is_boolean(arrow):
        return bool
    if pa.types.is_date(arrow):
        return dt.date
    return Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


def _example(spec: TableSpec, column: str, arrow: pa.DataType) -> Any:
    """A valid value of a column (what `required_columns` starts from)."""
    accepted = {a.column: a for a in spec.accepted}
    if column in accepted:
        return accepted[column].values[0]
    if pa.types.is_decimal(arrow) or pa.types.is_floating(arrow):
        return 1.0
    if pa.types.is_integer(arrow):
        return 1
    if pa.types.is_boolean(arrow):
        return True
    if pa.types.is_date(arrow):
        return "2020-01-01"
    return "x"


def silver_columns(entity: contracts.Entity, catalog: Catalog = CATALOG) -> dict[str, pa.DataType]:
    """The entity's raw columns the API takes, with their silver types."""
    schema = _schemas(catalog)[catalog.silver_for(entity).path]
    skip = assigned_columns(entity)
    return {c: schema.field(c).type for c in entity.columns if c not in skip}


@cache
def _schemas(catalog: Catalog) -> dict[str, pa.Schema]:
    return output_schemas(catalog)


@cache
def required_columns(entity: contracts.Entity, catalog: Catalog = CATALOG) -> tuple[str, ...]:
    """The columns a record cannot do without: those whose absence makes silver's own SQL
    quarantine an otherwise valid record, and the foreign keys (an empty parent never arrives)."""
    spec = catalog.silver_for(entity)
    columns = silver_columns(entity, catalog)
    base = {c: _example(spec, c, t) for c, t in columns.items()}
    now = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
    records = {"": base} | {c: {k: v for k, v in base.items() if k != c} for c in columns}
    verdicts = judge(
        entity,
        [(f"X-{c}.json", _document(entity, "X-1", now, r)) for c, r in records.items()],
        now,
        catalog,
    )
    if verdicts[0].reason is not None:
        raise AssertionError(f"the example {entity.name} record is refused: {verdicts[0].detail}")
    required = set(spec.parents)
    required.update(c for c, v in zip(columns, verdicts[1:], strict=True) if v.reason)
    return tuple(c for c in columns if c in required)


@cache
def request_model(entity: contracts.Entity, catalog: Catalog = CATALOG) -> type[BaseModel]:
    """The body of `POST /api/<entity>/`: the raw columns but the key and updated_at."""
    spec = catalog.silver_for(entity)
    required = required_columns(entity, catalog)
    fields: dict[str, Any] = {}
    for column, arrow in silver_columns(entity, catalog).items():
        kind = _field_type(spec, column, arrow)
        fields[column] = (kind, ...) if column in required else (kind | None, None)
    name = entity.name[:-1].capitalize() if entity.name != "policies" else "Policy"
    return create_model(
        f"{name}Request",
        __config__=ConfigDict(extra="forbid", str_strip_whitespace=True),
        __doc__=f"A new {entity.name[:-1] if entity.name != 'policies' else 'policy'}: "
        f"{spec.description} {entity.key} and updated_at are assigned by the API.",
        **fields,
    )


class ProcessingStep(BaseModel):
    """The next step of a claim's (simulated) processing; empty: the next status in
    Submitted → Under Review → Approved → Paid."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: choices(vocabulary_name("claim_statuses"), contracts.CLAIM_STATUSES) | None = None  # type: ignore[valid-type]
    paid_amount: _amount(0, None) | None = None  # type: ignore[valid-type]
    denial_reason: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)] | None = None


# ---- judging a record by silver's rules -----------------------------------------------------------


@dataclass
class Judgement:
    reason: str | None  # silver's reject reason, None when it would take the record
    detail: str | None
    typed: dict[str, Any]  # the record as silver types it


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)  # 2 decimals below 10^9: the float's repr is the decimal
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _stamp(moment: dt.datetime) -> str:
    """updated_at as the generator writes it (UTC, no offset), to the microsecond."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _document(
    entity: contracts.Entity, record_id: str, moment: dt.datetime, values: dict[str, Any]
) -> bytes:
    """The real-time file: every contract column in contract order, then the source."""
    record = {
        c: record_id
        if c == entity.key
        else _stamp(moment)
        if c == "updated_at"
        else _plain(values.get(c))
        for c in entity.columns
    }
    record["source"] = SOURCE
    return json.dumps(record, indent=2).encode()


def judge(
    entity: contracts.Entity,
    documents: list[tuple[str, bytes]],
    moment: dt.datetime,
    catalog: Catalog = CATALOG,
) -> list[Judgement]:
    """Silver's verdict on each real-time file (name, bytes): parsed as bronze parses it, then
    run through the entity's silver SQL with its parents taken as present (a missing parent is
    not a refusal)."""
    spec = catalog.silver_for(entity)
    with session(None, catalog) as con:
        rows = pa.concat_tables(
            realtime_rows(entity, name, data, batch_id="front-door", ingested_at=moment, con=con)
            for name, data in documents
        )
        con.register(entity.bronze_table, rows)
        for column, parent in spec.parents.items():
            con.register(parent, rows.select([column]))
        con.execute(catalog.sql(spec.path))
        staged = con.sql(f"SELECT * FROM {staged_table(spec)}").to_arrow_table().to_pylist()
    by_file = {row["_source_file"]: row for row in staged}
    return [
        Judgement(by_file[n]["_reject_reason"], by_file[n]["_reject_detail"], by_file[n])
        for n, _ in documents
    ]


def _refusal(entity: contracts.Entity, values: dict[str, Any], verdict: Judgement) -> RecordRefused:
    """The field a refusal names: the first word of silver's detail when it is a column."""
    detail = verdict.detail or verdict.reason or "refused"
    first = detail.split(" ", 1)[0]
    column = first if first in entity.columns else "body"
    return RecordRefused(column, f"{detail} ({verdict.reason})", values.get(column))


def check(
    entity: contracts.Entity, values: dict[str, Any], verdict: Judgement, catalog: Catalog = CATALOG
) -> None:
    """Refuse (RecordRefused) what silver would quarantine, or a value it would drop as invalid."""
    if verdict.reason is not None:
        raise _refusal(entity, values, verdict)
    spec = catalog.silver_for(entity)
    formats = {f.column: f.what for f in spec.formats}
    for column, value in values.items():
        if _plain(value) is not None and verdict.typed.get(column) is None:
            what = formats.get(column)
            raise RecordRefused(
                column,
                f"{_plain(value)!r} is not valid"
                + (f" (expected {what})" if what else "")
                + ": silver's rules would store it as empty (docs/rules.md, soft fields)",
                _plain(value),
            )


# Simulated processing: where a claim can go from each status (the first is the default step).
NEXT_STATUSES: dict[str | None, tuple[str, ...]] = {
    "Submitted": ("Under Review", "Approved", "Denied"),
    "Under Review": ("Approved", "Denied"),
    "Approved": ("Paid",),
}


def _parse_stamp(value: Any) -> dt.datetime | None:
    """updated_at of a version (a datetime from silver, ISO text from a file) as UTC."""
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _received_on(path: str) -> dt.date | None:
    """The date in a real-time file's name (<ID>_<YYYYMMDD>_...)."""
    m = contracts.REALTIME_NAME.fullmatch(path.rsplit("/", 1)[-1])
    return dt.datetime.strptime(m["stamp"], "%Y%m%d_%H%M%S").date() if m else None


# ---- the front door -------------------------------------------------------------------------------


@dataclass
class Accepted:
    entity: contracts.Entity
    id: str
    file: str
    record: dict[str, Any]
    late_parents: list[dict[str, str]] = field(default_factory=list)
    previous_status: str | None = None

    @property
    def event(self) -> str | None:
        """The write event: a new record's; none for a newer version of a claim (its status
        change is announced by claim_status_update once a snapshot holds it)."""
        return EVENTS[self.entity.name] if self.previous_status is None else None

    def response(self) -> dict[str, Any]:
        message = f"accepted: written to {self.file}; silver takes it with the next run"
        if self.late_parents:
            missing = ", ".join(f"{p['field']} {p['id']} ({p['state']})" for p in self.late_parents)
            message += (
                f". Not in silver yet: {missing}. Late parents are normal: the record waits in "
                "quarantine (orphan_fk) until they arrive, then flows in by itself (an id that "
                "never arrives keeps it there: the quarantine table shows it)"
            )
        return {
            "id": self.id,
            "entity": self.entity.name,
            "event": self.event,
            "file": self.file,
            "updated_at": self.record["updated_at"],
            "source": SOURCE,
            "record": {c: self.record[c] for c in self.entity.columns},
            "late_parents": self.late_parents,
            "message": message,
            **({"previous_status": self.previous_status} if self.previous_status else {}),
        }

    def event_data(self) -> dict[str, Any]:
        return {c: self.record[c] for c in EVENT_FIELDS[self.entity.name]}


class FrontDoor:
    """Writes accepted records into the lake's raw zone; answers a claim's status."""

    def __init__(
        self,
        lake_factory: Callable[[], Any],
        catalog: Catalog = CATALOG,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self._lake_factory = lake_factory
        self._lake = None
        self.catalog = catalog
        self.clock = clock

    @property
    def lake(self):
        if self._lake is None:
            self._lake = self._lake_factory()
        return self._lake

    def new_id(self, entity: contracts.Entity) -> str:
        return f"{entity.realtime_prefix}-{uuid.uuid4().hex[:ID_HEX_DIGITS].upper()}"

    def submit(self, entity: contracts.Entity, body: BaseModel) -> Accepted:
        """Judge, then write a new record of `entity`."""
        values = body.model_dump()
        return self._write(entity, None, values, self.clock())

    def _write(
        self,
        entity: contracts.Entity,
        record_id: str | None,
        values: dict[str, Any],
        moment: dt.datetime,
    ) -> Accepted:
        late = self.late_parents(entity, values)
        # Judged once: the ID and the microsecond do not change silver's verdict.
        the_id = record_id or self.new_id(entity)
        path, data = self._file(entity, the_id, moment, values)
        check(entity, values, judge(entity, [(path, data)], moment, self.catalog)[0], self.catalog)
        for _ in range(3):
            try:
                if record_id is None and self.received_files(entity, the_id):
                    raise FileExistsError(the_id)  # an ID in use (64 random bits: never, really)
                self.lake.files.create(path, data)
            except FileExistsError:
                if record_id:  # a version of the same record in the same microsecond
                    moment += dt.timedelta(microseconds=1)
                else:
                    the_id = self.new_id(entity)
                path, data = self._file(entity, the_id, moment, values)
                continue
            except (OSError, StorageError) as e:  # the reason, never the server's own paths
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise WriteFailed(f"{path} could not be written: {reason}") from None
            log.info("%s %s written to %s", entity.name[:-1], the_id, path)
            return Accepted(entity, the_id, path, json.loads(data), late)
        raise WriteFailed(f"no free file name for a new {entity.name[:-1]} after 3 tries")

    def _file(
        self, entity: contracts.Entity, the_id: str, moment: dt.datetime, values: dict[str, Any]
    ) -> tuple[str, bytes]:
        name = f"{the_id}_{moment.astimezone(dt.UTC):%Y%m%d_%H%M%S_%f}.json"
        problem = contracts.realtime_name_problem(entity, name)
        if problem:
            raise AssertionError(f"{name}: {problem}")
        return f"raw/{entity.name}/{name}", _document(entity, the_id, moment, values)

    # ---- parents and versions -------------------------------------------------------------------

    def _silver_has(self, table: str, column: str, value: str) -> bool:
        uri = self.lake.table_uri("silver", table)
        if not self.lake.exists(uri):
            return False
        found = self.lake.read(
            uri, f"SELECT count(*) AS n FROM t WHERE {column} = {sql_string(value)}"
        )
        return found.column("n")[0].as_py() > 0

    def received_files(self, entity: contracts.Entity, record_id: str) -> list[str]:
        """The real-time files of a record in raw/, oldest first (their names sort by time)."""
        if entity.realtime_prefix is None:
            return []
        found = self.lake.files.find(f"raw/{entity.name}", f"{record_id}_")
        return sorted(f.path for f in found if not f.refused)

    def late_parents(self, entity: contracts.Entity, values: dict[str, Any]) -> list[dict]:
        """The parents of a record that silver does not hold yet, each with what is known."""
        spec = self.catalog.silver_for(entity)
        late = []
        for column, table in spec.parents.items():
            value = _plain(values.get(column))
            if value is None or self._silver_has(table, column, value):
                continue
            parent = next(e for e in contracts.ENTITIES if e.key == column)
            state = RECEIVED if self.received_files(parent, value) else "not found"
            late.append({"field": column, "id": value, "state": state})
        return late

    def latest_received(self, entity: contracts.Entity, record_id: str) -> dict | None:
        """The newest real-time file of a record that holds a JSON object (another producer's
        broken file, or one gone meanwhile, is passed over: bronze and silver say what it is)."""
        for path in reversed(self.received_files(entity, record_id)):
            try:
                record = json.loads(self.lake.files.read_bytes(path))
            except (StorageError, ValueError):
                continue
            if isinstance(record, dict):
                return {**record, "_file": path}
        return None

    def current_claim(self, claim_id: str, received: dict | None = None) -> dict | None:
        """The newest version of a claim: its latest real-time file (`received`, when already
        read) or its silver row, whichever has the later updated_at."""
        candidates = []
        received = received or self.latest_received(contracts.CLAIMS, claim_id)
        if received:
            candidates.append(received)
        uri = self.lake.table_uri("silver", "fact_claims")
        if self.lake.exists(uri):
            columns = ", ".join(contracts.CLAIMS.columns)
            rows = self.lake.read(
                uri, f"SELECT {columns} FROM t WHERE claim_id = {sql_string(claim_id)}"
            ).to_pylist()
            if rows:
                candidates.append({k: _plain(v) for k, v in rows[0].items()})
        if not candidates:
            return None
        oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
        return max(candidates, key=lambda r: _parse_stamp(r.get("updated_at")) or oldest)

    def simulate_processing(self, claim_id: str, step: ProcessingStep) -> Accepted:
        """A newer version of the claim, one step further (or as `step` says)."""
        current = self.current_claim(claim_id)
        if current is None:
            raise LookupError(claim_id)
        status = current.get("status")
        allowed = NEXT_STATUSES.get(status, ())
        target = step.status.value if step.status else (allowed[0] if allowed else None)
        if target not in allowed:
            raise RecordRefused(
                "status",
                f"claim {claim_id} is {status}"
                + (
                    f": it can move to {', '.join(allowed)}, not {target}"
                    if allowed
                    else ", a final status"
                ),
                target,
            )
        values = {
            c: current.get(c)
            for c in contracts.CLAIMS.columns
            if c not in ("claim_id", "updated_at")
        }
        values["status"] = target
        moment = self.clock()
        if target in ("Approved", "Paid"):
            paid = step.paid_amount if step.paid_amount is not None else values.get("paid_amount")
            values["paid_amount"] = paid if paid is not None else values["claim_amount"]
        if target == "Denied":
            values["paid_amount"] = None
            values["denial_reason"] = step.denial_reason or "Denied in simulated processing"
        if target in ("Approved", "Denied"):
            received = self.received_files(contracts.CLAIMS, claim_id)
            since = _received_on(received[0]) if received else None
            since = since or dt.date.fromisoformat(str(values["service_date"]))
            values["processing_days"] = max(0, (moment.date() - since).days)
        previous = _parse_stamp(current.get("updated_at"))
        if previous is not None and moment <= previous:  # strictly newer: dedup must pick it
            moment = previous + dt.timedelta(microseconds=1)
        accepted = self._write(contracts.CLAIMS, claim_id, values, moment)
        accepted.previous_status = status
        return accepted

    def claim_status(self, claim_id: str, snapshot) -> dict[str, Any] | None:
        """A claim's status from the snapshot `snapshot`, or "received, not yet processed" when
        only its real-time file is there; None when neither knows it."""
        table = snapshot.tables["claims_analytics"]
        found = table.filter(pc.equal(table.column("claim_id"), claim_id)).to_pylist()
        received = self.latest_received(contracts.CLAIMS, claim_id)
        if found and received:  # the newest version may come from elsewhere (a batch file)
            received = self.current_claim(claim_id, received)
        meta = {"snapshot_version": snapshot.version, "as_of": snapshot.manifest.get("as_of")}
        if found:
            row = found[0]
            answer = {
                "claim_id": claim_id,
                "status": row["status"],
                "state": "processed",
                **{
                    c: _plain(row[c])
                    for c in (
                        "customer_id",
                        "claim_amount",
                        "paid_amount",
                        "processing_days",
                        "service_date",
                    )
                },
                **meta,
            }
            if received and (received.get("status"), received.get("paid_amount")) != (
                row["status"],
                _plain(row["paid_amount"]),
            ):
                answer["state"] = "update received, not yet processed"
                answer["pending"] = {
                    "status": received.get("status"),
                    "paid_amount": received.get("paid_amount"),
                    "updated_at": received.get("updated_at"),
                }
            return answer
        if received is None:
            return None
        late = self.late_parents(contracts.CLAIMS, received)
        return {
            "claim_id": claim_id,
            "status": received.get("status"),
            "state": RECEIVED,
            "customer_id": received.get("customer_id"),
            "received_at": received.get("updated_at"),
            "file": received["_file"],
            "waiting_for": late,
            **meta,
        }


# ---- real-time events ------------------------------------------------------------------------------


class Events:
    """The WebSocket clients of this process, what they subscribed to, and the claim statuses
    they were last told."""

    def __init__(self):
        self.clients: dict[WebSocket, set[str]] = {}  # client -> subscribed customer ids
        self.statuses: dict[str, dict[str, str | None]] = {}  # customer -> claim -> status
        self.version: str | None = None

    async def send(self, client: WebSocket, event: str, data: dict[str, Any]) -> bool:
        try:
            await client.send_json({"event": event, "data": data})
            return True
        except Exception:  # a client gone midway: forget it, the others still get theirs
            self.clients.pop(client, None)
            return False

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        for client in list(self.clients):
            await self.send(client, event, data)

    async def serve(self, client: WebSocket, snapshot: Callable[[], Any]) -> None:
        """One client's connection: `connect`, then its `subscribe_claims` messages."""
        await client.accept()
        self.clients[client] = set()
        await self.send(client, "connect", {"events": [*EVENTS.values(), "claim_status_update"]})
        try:
            while True:
                try:
                    message = await client.receive_json()
                except (ValueError, KeyError):
                    await self.send(client, "error", {"message": "messages are JSON objects"})
                    continue
                await self._handle(client, message, snapshot)
        except WebSocketDisconnect:
            pass
        finally:
            self.clients.pop(client, None)
            self.forget_unsubscribed()

    def forget_unsubscribed(self) -> None:
        """Drop the statuses of customers no client follows any more."""
        followed = set().union(*self.clients.values()) if self.clients else set()
        for customer in set(self.statuses) - followed:
            del self.statuses[customer]

    async def _handle(self, client: WebSocket, message: Any, snapshot: Callable[[], Any]) -> None:
        event = message.get("event") if isinstance(message, dict) else None
        data = message.get("data") if isinstance(message, dict) else None
        customer = data.get("customer_id") if isinstance(data, dict) else None
        if event != "subscribe_claims" or not isinstance(customer, str) or not customer.strip():
            await self.send(
                client,
                "error",
                {
                    "message": 'expected {"event": "subscribe_claims", "data": '
                    '{"customer_id": "CUST-..."}}'
                },
            )
            return
        customer = customer.strip()
        while customer not in self.statuses:
            published = self.version
            try:
                snap = await asyncio.to_thread(snapshot)
                found = await asyncio.to_thread(claim_statuses, snap, [customer])
            except Exception as e:  # the store failing: say so, keep the connection
                reason = redact(f"{type(e).__name__}: {e}")[:300]
                await self.send(
                    client, "error", {"message": f"claim statuses unavailable: {reason}"}
                )
                return
            if self.version == published:  # no snapshot was published meanwhile: current
                self.statuses[customer] = {claim: status for claim, (_, status) in found.items()}
        self.clients.setdefault(client, set()).add(customer)
        await self.send(
            client,
            "subscribed",
            {"customer_id": customer, "claims": dict(sorted(self.statuses[customer].items()))},
        )

    def submitted(self, accepted: Accepted) -> None:
        """A claim written for a subscribed customer: its first status update will come from
        the snapshot that first holds it."""
        customer = accepted.record.get("customer_id")
        if accepted.entity is contracts.CLAIMS and customer in self.statuses:
            self.statuses[customer].setdefault(accepted.id, RECEIVED)

    async def snapshot_published(self, snap) -> int:
        """Tell the subscribers of the claims whose status `snap` changed; how many were told."""
        self.version = snap.version
        subscribed = sorted({c for customers in self.clients.values() for c in customers})
        if not subscribed:
            return 0
        now = await asyncio.to_thread(claim_statuses, snap, subscribed)
        told = 0
        for customer in subscribed:
            known = self.statuses.setdefault(customer, {})
            for claim_id, status in sorted(now.items()):
                if status[0] != customer:
                    continue
                if known.get(claim_id, "?") == status[1]:
                    continue
                data = {
                    "claim_id": claim_id,
                    "customer_id": customer,
                    "status": status[1],
                    "previous_status": known.get(claim_id),
                    "snapshot_version": snap.version,
                }
                known[claim_id] = status[1]
                for client, customers in list(self.clients.items()):
                    if customer in customers and await self.send(
                        client, "claim_status_update", data
                    ):
                        told += 1
        return told


def claim_statuses(snap, customers: list[str]) -> dict[str, tuple[str, str]]:
    """claim id -> (customer, status) of the customers' claims in the snapshot."""
    table = snap.tables["claims_analytics"]
    rows = table.filter(pc.is_in(table.column("customer_id"), pa.array(customers, pa.string())))
    return {
        i: (o, s)
        for i, o, s in zip(
            rows.column("claim_id").to_pylist(),
            rows.column("customer_id").to_pylist(),
            rows.column("status").to_pylist(),
            strict=True,
        )
    }


def plans() -> list[dict[str, Any]]:
    """The plans on offer, from the generator's plan table (the demo book is sold from it)."""
    return demo_data.plan_catalog()


# ---- the HTTP side ---------------------------------------------------------------------------------

WRITE_TOKEN_ENV = "PETINSURE_WRITE_TOKEN"
EVENTS_POLL_ENV = "PETINSURE_EVENTS_POLL_SECONDS"
DEFAULT_EVENTS_POLL_SECONDS = 1.0


def require_token(
    authorization: str | None, expected: str, token: str, disabled: str, env: str
) -> None:
    """The request's bearer token must be `expected`, the `token` token ("admin", "write");
    503 `disabled` when none is configured."""
    if not expected:
        raise HTTPException(503, f"{disabled}: {env} is not set")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(401, f"{token} token required (Authorization: Bearer <token>)")
    # As bytes (compare_digest refuses non-ASCII str): the header's own bytes, which the server
    # decoded as Latin-1, against the token's UTF-8, what clients send.
    if not hmac.compare_digest(given.encode("latin-1"), expected.encode()):
        article = "an" if token[0] in "aeiou" else "a"
        raise HTTPException(403, f"not {article} {token} token")


def refused(error: RecordRefused) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("body", error.field),
                "msg": error.message,
                "input": error.value,
            }
        ]
    )


class BodyLimit:
    """ASGI middleware: a request body above `limit` bytes is refused with 422 (naming `body`)
    as soon as its size is known, before it is read whole."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send, int(length))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(scope, receive, send, size)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, size: int) -> None:
        response = JSONResponse(
            status_code=422,
            content={
                "detail": [
                    {
                        "type": "too_long",
                        "loc": ["body"],
                        "msg": f"the body is {size} bytes or more; the limit is {self.limit}",
                        "input": None,
                    }
                ]
            },
        )
        await response(scope, receive, send)


def add_routes(
    app: FastAPI,
    door: FrontDoor,
    events: Events,
    snapshot: Callable[[], Any],
    write_token: str,
) -> None:
    """The ingestion endpoints, the claim status, simulated processing, the plans and `/ws`."""

    def writer(authorization: str | None = Header(None)) -> None:
        require_token(authorization, write_token, "write", "writes are disabled", WRITE_TOKEN_ENV)

    async def written(accepted: Accepted) -> JSONResponse:
        if accepted.event:
            events.submitted(accepted)
            await events.broadcast(accepted.event, accepted.event_data())
        return JSONResponse(jsonable_encoder(accepted.response()), status_code=201)

    def ingestion_route(entity: contracts.Entity) -> None:
        model = request_model(entity)

        async def create(body, authorized=None):
            try:
                accepted = await asyncio.to_thread(door.submit, entity, body)
            except RecordRefused as e:
                raise refused(e) from None
            except WriteFailed as e:
                raise HTTPException(503, f"nothing was written: {e}") from None
            return await written(accepted)

        # The body's type is built at run time: given to FastAPI as the signature.
        create.__signature__ = inspect.Signature(
            [
                inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=model),
                inspect.Parameter(
                    "authorized",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=Depends(writer),
                    annotation=None,
                ),
            ]
        )
        app.post(
            f"/api/{entity.name}/",
            status_code=201,
            tags=["ingestion"],
            summary=f"{EVENTS[entity.name].replace('_', ' ').capitalize()}: write one "
            f"{entity.name} record into raw/{entity.name}/",
            description=model.__doc__,
        )(create)

    for entity in ENTITIES:
        ingestion_route(entity)

    @app.get("/api/policies/plans/available", tags=["ingestion"])
    def available_plans():
        return {"plans": plans()}

    @app.get("/api/claims/{claim_id}/status", tags=["ingestion"])
    def claim_status(claim_id: str):
        answer = door.claim_status(claim_id, snapshot())
        if answer is None:
            raise HTTPException(404, f"claim {claim_id} is neither in the snapshot nor in raw/")
        return answer

    @app.post("/api/claims/{claim_id}/simulate-processing", status_code=201, tags=["ingestion"])
    async def simulate_processing(
        claim_id: str, step: ProcessingStep | None = None, _: None = Depends(writer)
    ):
        try:
            accepted = await asyncio.to_thread(
                door.simulate_processing, claim_id, step or ProcessingStep()
            )
        except LookupError:
            raise HTTPException(404, f"claim {claim_id} is neither in silver nor in raw/") from None
        except RecordRefused as e:
            if e.field == "status":
                raise HTTPException(409, e.message) from None
            raise refused(e) from None
        except WriteFailed as e:
            raise HTTPException(503, f"nothing was written: {e}") from None
        return await written(accepted)

    @app.websocket("/ws")
    async def websocket(client: WebSocket):
        await events.serve(client, snapshot)


async def watch_snapshots(events: Events, snapshot: Callable[[], Any], interval: float) -> None:
    """Every `interval` seconds, the snapshot the API serves (the client's cache decides when it
    reads latest.json again); a new version tells the subscribers what changed."""
    while True:
        try:
            snap = await asyncio.to_thread(snapshot)
            if events.version is None:
                events.version = snap.version
            elif snap.version != events.version:
                told = await events.snapshot_published(snap)
                log.info("snapshot %s: %d claim status update(s) sent", snap.version, told)
        except Exception as e:  # the API keeps serving; the next tick tries again
            log.warning("watching the snapshots: %s", redact(f"{type(e).__name__}: {e}")[:300])
        await asyncio.sleep(interval)


def events_poll_seconds() -> float:
    """PETINSURE_EVENTS_POLL_SECONDS (default 1), a number of seconds above 0."""
    value = number_from_env(EVENTS_POLL_ENV, DEFAULT_EVENTS_POLL_SECONDS)
    if not 0 < value < float("inf"):
        raise ValueError(f"{EVENTS_POLL_ENV} must be a number of seconds above 0, got {value}")
    return value
