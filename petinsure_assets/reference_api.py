"""The API: the insight endpoints of seed 001 §9 and the data-source endpoints of seed 000, served
from the snapshots (`SnapshotClient`), and the front door of §9.1 and §9.4 (`front_door.py`:
ingestion endpoints writing real-time files into the raw zone, WebSocket events). It proves the
snapshot contract end to end; the production claims API embeds the same client.

    python -m petinsure_assets api --port 8000      (or: make api; --uds PATH for a Unix socket)

Environment: PETINSURE_LAKE_ROOT (default ./lake: the raw zone the front door writes into, and
whose gold/snapshots it reads) or the Azure variables of the lake (AZURE_STORAGE_ACCOUNT and a
credential allowed to create blobs in the raw container); PETINSURE_SNAPSHOT_DIR (another
snapshot folder), or AZURE_STORAGE_SAS_TOKEN [+ AZURE_GOLD_CONTAINER, AZURE_STORAGE_BLOB_ENDPOINT]
to read the gold container of the storage account; DATA_CACHE_TTL (seconds, default 300),
USE_LIVE_DATA (default true; false serves the bundled demo snapshot), PETINSURE_ADMIN_TOKEN
(required by PUT /api/v1/data-source/toggle; unset = toggle disabled), PETINSURE_WRITE_TOKEN
(required by every write of the front door; unset = writes disabled; must differ from the admin
token), PETINSURE_EVENTS_POLL_SECONDS (how often the event loop asks the client for the snapshot,
default 1; the client's cache still decides when latest.json is read again).

Filters say no clearly: an enumerated filter (claim status, claim type, value tier, risk category,
cross-sell recommendation and priority) matches its accepted values whatever the case and answers
422 naming them otherwise; months must be YYYY-MM; free-text filters (state, segment, provider
type) match whatever the case; ids match exactly.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from contextlib import asynccontextmanager
from enum import Enum
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel

from petinsure_assets import contracts, front_door, thresholds
from petinsure_assets.front_door import BodyLimit, Events, FrontDoor, choices, require_token
from petinsure_assets.snapshot_client import (
    Snapshot,
    SnapshotClient,
    SnapshotError,
    store_from_env,
)

MAX_PAGE = 1000
ADMIN_TOKEN_ENV = "PETINSURE_ADMIN_TOKEN"


def lake_from_env():
    """The lake the front door writes into: PETINSURE_LAKE_ROOT (default ./lake), or the Azure
    storage account of the environment (as the Dagster code location chooses it)."""
    from petinsure_assets.resources import lake_resource_from_env

    return lake_resource_from_env(resolve=True).lake()


class Toggle(BaseModel):
    use_live: bool | None = None  # omitted: flip the current setting


ClaimStatus = choices("ClaimStatus", contracts.CLAIM_STATUSES)
ClaimType = choices("ClaimType", contracts.CLAIM_TYPES)
ValueTier = choices("ValueTier", thresholds.VALUE_TIERS)
RiskCategory = choices("RiskCategory", thresholds.RISK_CATEGORIES)
Recommendation = choices("Recommendation", thresholds.CROSS_SELL_RECOMMENDATIONS)
Priority = choices("Priority", thresholds.CROSS_SELL_PRIORITIES)


def _month(value: str) -> str:
    if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", value):
        raise ValueError("expected a month as YYYY-MM, e.g. 2025-03")
    return value


class _AnyCase(str):
    """A free-text filter value, matched whatever its case."""


Month = Annotated[str, AfterValidator(_month)]
AnyCase = Annotated[str, AfterValidator(lambda v: _AnyCase(v.strip()))]


def _condition(column: pa.ChunkedArray, value: Any) -> pa.ChunkedArray:
    if isinstance(value, _AnyCase):
        return pc.equal(pc.utf8_lower(column), value.lower())
    if isinstance(value, Enum):
        value = value.value
    return pc.equal(column, pa.scalar(value, column.type))


def _page(table: pa.Table, filters: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
    mask = None
    for column, value in filters.items():
        if value is None:
            continue
        condition = _condition(table.column(column), value)
        mask = condition if mask is None else pc.and_(mask, condition)
    if mask is not None:
        table = table.filter(mask)
    items = table.slice(offset, limit).to_pylist()
    return {
        "total": table.num_rows,
        "limit": limit,
        "offset": offset,
        "items": jsonable_encoder(items),
    }


def create_app(
    client: SnapshotClient | None = None,
    admin_token: str | None = None,
    write_token: str | None = None,
    door: FrontDoor | None = None,
    events_poll_seconds: float | None = None,
) -> FastAPI:
    """The API: insights from the snapshots (`client`), and the front door writing into the
    lake's raw zone (`door`; default: the lake of the environment). Tokens default to
    PETINSURE_ADMIN_TOKEN (the data-source toggle) and PETINSURE_WRITE_TOKEN (writes)."""
    if client is None:
        client = SnapshotClient(
            store_from_env(),
            use_live=os.environ.get("USE_LIVE_DATA", "true").lower() in ("1", "true", "yes"),
        )
    admin_token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV, "")
    write_token = (
        write_token if write_token is not None else os.environ.get(front_door.WRITE_TOKEN_ENV, "")
    )
    if write_token and write_token == admin_token:
        raise ValueError(
            f"{front_door.WRITE_TOKEN_ENV} must differ from {ADMIN_TOKEN_ENV}: writes and the "
            "data-source toggle need tokens of their own"
        )
    door = door or FrontDoor(lake_from_env)
    events = Events()
    poll = events_poll_seconds or front_door.events_poll_seconds()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher = asyncio.create_task(front_door.watch_snapshots(events, client.snapshot, poll))
        try:
            yield
        finally:
            watcher.cancel()

    app = FastAPI(
        title="PetInsure360 reference claims API",
        description="Insight endpoints served from the gold API snapshots; the front door "
        "(ingestion endpoints and real-time events) writing into the raw landing zone.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    app.state.events = events
    app.state.front_door = door

    @app.exception_handler(SnapshotError)
    def snapshot_unavailable(request, error: SnapshotError):
        # A table read on first use could not be: its version was replaced and pruned, or the
        # file is damaged. The client reads latest.json again on the next request.
        return JSONResponse(
            status_code=503,
            content={"detail": f"snapshot table unavailable, try again: {error}"},
            headers={"Retry-After": "1"},
        )

    def snap() -> Snapshot:
        return client.snapshot()

    def meta(s: Snapshot) -> dict[str, Any]:
        return {"version": s.version, "source": s.source, "as_of": s.manifest.get("as_of")}

    limit_q = Query(100, ge=1, le=MAX_PAGE)
    offset_q = Query(0, ge=0)

    @app.get("/health")
    def health(s: Snapshot = Depends(snap)):
        return {"status": "ok", **meta(s)}

    @app.get("/api/insights/summary")
    def summary(s: Snapshot = Depends(snap)):
        return {**s.documents["summary"], **meta(s)}

    @app.get("/api/insights/kpis")
    def kpis(
        s: Snapshot = Depends(snap),
        start: Month | None = Query(None, alias="from"),
        end: Month | None = Query(None, alias="to"),
    ):
        if start and end and start > end:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", "from"),
                        "input": start,
                        "msg": f"from ({start}) is after to ({end})",
                    }
                ]
            )
        months = [
            m
            for m in s.documents["kpis"]["months"]
            if (start is None or m["year_month"] >= start)
            and (end is None or m["year_month"] <= end)
        ]
        return {"months": months, **meta(s)}

    @app.get("/api/insights/customers")
    def customers(
        s: Snapshot = Depends(snap),
        limit: int = limit_q,
        offset: int = offset_q,
        value_tier: ValueTier | None = None,
        risk_category: RiskCategory | None = None,
        state: AnyCase | None = None,
        segment: AnyCase | None = None,
    ):
        return {
            **_page(
                s.tables["customer_360_view"],
                {
                    "value_tier": value_tier,
                    "risk_category": risk_category,
                    "state": state,
                    "segment": segment,
                },
                limit,
                offset,
            ),
            **meta(s),
        }

    @app.get("/api/insights/customers/{customer_id}")
    def customer(customer_id: str, s: Snapshot = Depends(snap)):
        found = _page(s.tables["customer_360_view"], {"customer_id": customer_id}, 1, 0)["items"]
        if not found:
            raise HTTPException(404, f"customer {customer_id} not found")
        return {
            **found[0],
            "risk": (
                _page(s.tables["risk_scoring"], {"customer_id": customer_id}, 1, 0)["items"]
                or [None]
            )[0],
            "cross_sell": _page(
                s.tables["cross_sell_recommendations"], {"customer_id": customer_id}, MAX_PAGE, 0
            )["items"],
            **meta(s),
        }

    @app.get("/api/insights/claims")
    def claims(
        s: Snapshot = Depends(snap),
        limit: int = limit_q,
        offset: int = offset_q,
        status: ClaimStatus | None = None,
        claim_type: ClaimType | None = None,
        customer_id: str | None = None,
        provider_id: str | None = None,
        service_month: Month | None = None,
    ):
        return {
            **_page(
                s.tables["claims_analytics"],
                {
                    "status": status,
                    "claim_type": claim_type,
                    "customer_id": customer_id,
                    "provider_id": provider_id,
                    "service_month": service_month,
                },
                limit,
                offset,
            ),
            **meta(s),
        }

    @app.get("/api/insights/providers")
    def providers(
        s: Snapshot = Depends(snap),
        limit: int = limit_q,
        offset: int = offset_q,
        is_in_network: bool | None = None,
        provider_type: AnyCase | None = None,
        state: AnyCase | None = None,
    ):
        return {
            **_page(
                s.tables["provider_performance"],
                {"is_in_network": is_in_network, "provider_type": provider_type, "state": state},
                limit,
                offset,
            ),
            **meta(s),
        }

    @app.get("/api/insights/risks")
    def risks(
        s: Snapshot = Depends(snap),
        limit: int = limit_q,
        offset: int = offset_q,
        risk_category: RiskCategory | None = None,
    ):
        return {
            **_page(s.tables["risk_scoring"], {"risk_category": risk_category}, limit, offset),
            **meta(s),
        }

    @app.get("/api/insights/cross-sell")
    def cross_sell(
        s: Snapshot = Depends(snap),
        limit: int = limit_q,
        offset: int = offset_q,
        priority: Priority | None = None,
        recommendation: Recommendation | None = None,
        customer_id: str | None = None,
    ):
        return {
            **_page(
                s.tables["cross_sell_recommendations"],
                {
                    "priority": priority,
                    "recommendation": recommendation,
                    "customer_id": customer_id,
                },
                limit,
                offset,
            ),
            **meta(s),
        }

    @app.get("/api/insights/segments")
    def segments(s: Snapshot = Depends(snap)):
        return {**s.documents["segments"], **meta(s)}

    @app.get("/api/pipeline/status")
    def pipeline_status(s: Snapshot = Depends(snap)):
        return {
            **s.documents["pipeline_status"],
            "snapshot_created_at": s.manifest["created_at"],
            **meta(s),
        }

    @app.get("/api/v1/data-source/status")
    def data_source_status():
        client.snapshot()  # so that the status reflects a fresh attempt, not a stale one
        return client.status()

    @app.put("/api/v1/data-source/toggle")
    def toggle(body: Toggle | None = None, authorization: str | None = Header(None)):
        require_token(
            authorization, admin_token, "admin", "the toggle is disabled", ADMIN_TOKEN_ENV
        )
        use_live = body.use_live if body and body.use_live is not None else not client.use_live
        client.set_live(use_live)
        client.snapshot()
        return client.status()

    front_door.add_routes(app, door, events, client.snapshot, write_token)
    return app


app = create_app()


def serve(host: str = "127.0.0.1", port: int = 8000, uds: str | None = None) -> int:
    """Serve `app` with uvicorn until Ctrl-C (status 0; 3 when it cannot listen). SIGTERM ends
    the process by that signal after a graceful shutdown, as uvicorn does."""
    import socket

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    if not uds:
        uvicorn.run(app, host=host, port=port)  # reports a busy port itself (STARTUP_FAILURE)
        return 0
    # A Unix socket is bound here: uvicorn lets a path it cannot bind escape as a traceback.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(uds)
    except OSError as e:
        listener.close()
        print(f"petinsure api: cannot listen on {uds}: {e.strerror or e}", file=sys.stderr)
        return STARTUP_FAILURE
    try:
        uvicorn.run(app, fd=listener.fileno())
    finally:
        listener.close()
        os.unlink(uds)
    return 0
