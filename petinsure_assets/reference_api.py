"""A small reference API over the snapshots: the insight endpoints of seed 001 §9 and the
data-source endpoints of seed 000, served from `SnapshotClient`. It proves the snapshot contract
end to end; the production claims API embeds the same client.

    python -m petinsure_assets api --port 8000      (or: make api; --uds PATH for a Unix socket)

Environment: PETINSURE_SNAPSHOT_DIR (default ./lake/gold/snapshots), or AZURE_STORAGE_ACCOUNT +
AZURE_STORAGE_SAS_TOKEN (read-only) [+ AZURE_GOLD_CONTAINER, AZURE_STORAGE_BLOB_ENDPOINT] to read
the gold container of the storage account; DATA_CACHE_TTL (seconds,
default 300), USE_LIVE_DATA (default true; false serves the bundled demo snapshot),
PETINSURE_ADMIN_TOKEN (required by PUT /api/v1/data-source/toggle; unset = toggle disabled).

Filters say no clearly: an enumerated filter (claim status, claim type, value tier, risk category,
cross-sell recommendation and priority) matches its accepted values whatever the case and answers
422 naming them otherwise; months must be YYYY-MM; free-text filters (state, segment, provider
type) match whatever the case; ids match exactly.
"""

from __future__ import annotations

import hmac
import os
import re
import sys
from enum import Enum
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel

from petinsure_assets import contracts, thresholds
from petinsure_assets.snapshot_client import (
    Snapshot,
    SnapshotClient,
    SnapshotError,
    store_from_env,
)

MAX_PAGE = 1000


class Toggle(BaseModel):
    use_live: bool | None = None  # omitted: flip the current setting


# not StrEnum: that would change str() and format() of the members
class _Choice(str, Enum):  # noqa: UP042
    """The accepted values of an enumerated filter; `approved` or ` APPROVED ` finds Approved."""

    @classmethod
    def _missing_(cls, value: object) -> _Choice | None:
        if isinstance(value, str):
            wanted = value.strip().casefold()
            return next((m for m in cls if m.value.casefold() == wanted), None)
        return None


def _choices(name: str, values: tuple[str, ...]) -> type[_Choice]:
    return _Choice(name, [(v, v) for v in values])


ClaimStatus = _choices("ClaimStatus", contracts.CLAIM_STATUSES)
ClaimType = _choices("ClaimType", contracts.CLAIM_TYPES)
ValueTier = _choices("ValueTier", thresholds.VALUE_TIERS)
RiskCategory = _choices("RiskCategory", thresholds.RISK_CATEGORIES)
Recommendation = _choices("Recommendation", thresholds.CROSS_SELL_RECOMMENDATIONS)
Priority = _choices("Priority", thresholds.CROSS_SELL_PRIORITIES)


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


def create_app(client: SnapshotClient | None = None, admin_token: str | None = None) -> FastAPI:
    if client is None:
        client = SnapshotClient(
            store_from_env(),
            use_live=os.environ.get("USE_LIVE_DATA", "true").lower() in ("1", "true", "yes"),
        )
    admin_token = (
        admin_token if admin_token is not None else os.environ.get("PETINSURE_ADMIN_TOKEN", "")
    )
    app = FastAPI(
        title="PetInsure360 reference claims API",
        description="Insight endpoints served from the gold API snapshots.",
    )

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
        if not admin_token:
            raise HTTPException(503, "the toggle is disabled: PETINSURE_ADMIN_TOKEN is not set")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "admin token required (Authorization: Bearer <token>)")
        # As bytes (compare_digest refuses non-ASCII str): the header's own bytes, which the server
        # decoded as Latin-1, against the token's UTF-8, what clients send.
        if not hmac.compare_digest(token.encode("latin-1"), admin_token.encode()):
            raise HTTPException(403, "not an admin token")
        use_live = body.use_live if body and body.use_live is not None else not client.use_live
        client.set_live(use_live)
        client.snapshot()
        return client.status()

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
