"""A small reference API over the snapshots: the insight endpoints of seed 001 §9 and the
data-source endpoints of seed 000, served from `SnapshotClient`. It proves the snapshot contract
end to end; the production claims API embeds the same client.

    uvicorn petinsure_assets.reference_api:app --port 8000      (or: make api)

Environment: PETINSURE_SNAPSHOT_DIR (default ./lake/gold/snapshots), or AZURE_STORAGE_ACCOUNT +
AZURE_STORAGE_SAS_TOKEN (read-only) [+ AZURE_GOLD_CONTAINER, AZURE_STORAGE_BLOB_ENDPOINT] to read
the gold container of the storage account; DATA_CACHE_TTL (seconds,
default 300), USE_LIVE_DATA (default true; false serves the bundled demo snapshot),
PETINSURE_ADMIN_TOKEN (required by PUT /api/v1/data-source/toggle; unset = toggle disabled).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from petinsure_assets.snapshot_client import AzureBlobStore, LocalStore, Snapshot, SnapshotClient

MAX_PAGE = 1000


class Toggle(BaseModel):
    use_live: bool | None = None  # omitted: flip the current setting


def _page(table: pa.Table, filters: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
    mask = None
    for column, value in filters.items():
        if value is None:
            continue
        condition = pc.equal(table.column(column), pa.scalar(value, table.schema.field(column).type))
        mask = condition if mask is None else pc.and_(mask, condition)
    if mask is not None:
        table = table.filter(mask)
    items = table.slice(offset, limit).to_pylist()
    return {"total": table.num_rows, "limit": limit, "offset": offset, "items": jsonable_encoder(items)}


def create_app(client: SnapshotClient | None = None, admin_token: str | None = None) -> FastAPI:
    if client is None:
        store = (AzureBlobStore.from_env() if os.environ.get("AZURE_STORAGE_SAS_TOKEN")
                 else LocalStore(os.environ.get("PETINSURE_SNAPSHOT_DIR", "./lake/gold/snapshots")))
        client = SnapshotClient(
            store, use_live=os.environ.get("USE_LIVE_DATA", "true").lower() in ("1", "true", "yes"))
    admin_token = admin_token if admin_token is not None else os.environ.get("PETINSURE_ADMIN_TOKEN", "")
    app = FastAPI(title="PetInsure360 reference claims API",
                  description="Insight endpoints served from the gold API snapshots.")

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
    def kpis(s: Snapshot = Depends(snap), start: str | None = Query(None, alias="from"),
             end: str | None = Query(None, alias="to")):
        months = [m for m in s.documents["kpis"]["months"]
                  if (start is None or m["year_month"] >= start) and (end is None or m["year_month"] <= end)]
        return {"months": months, **meta(s)}

    @app.get("/api/insights/customers")
    def customers(s: Snapshot = Depends(snap), limit: int = limit_q, offset: int = offset_q,
                  value_tier: str | None = None, risk_category: str | None = None,
                  state: str | None = None, segment: str | None = None):
        return {**_page(s.tables["customer_360_view"], {"value_tier": value_tier, "risk_category": risk_category,
                                                        "state": state, "segment": segment}, limit, offset), **meta(s)}

    @app.get("/api/insights/customers/{customer_id}")
    def customer(customer_id: str, s: Snapshot = Depends(snap)):
        found = _page(s.tables["customer_360_view"], {"customer_id": customer_id}, 1, 0)["items"]
        if not found:
            raise HTTPException(404, f"customer {customer_id} not found")
        return {
            **found[0],
            "risk": (_page(s.tables["risk_scoring"], {"customer_id": customer_id}, 1, 0)["items"] or [None])[0],
            "cross_sell": _page(s.tables["cross_sell_recommendations"], {"customer_id": customer_id},
                                MAX_PAGE, 0)["items"],
            **meta(s),
        }

    @app.get("/api/insights/claims")
    def claims(s: Snapshot = Depends(snap), limit: int = limit_q, offset: int = offset_q,
               status: str | None = None, claim_type: str | None = None,
               customer_id: str | None = None, provider_id: str | None = None,
               service_month: str | None = None):
        return {**_page(s.tables["claims_analytics"], {
            "status": status, "claim_type": claim_type, "customer_id": customer_id,
            "provider_id": provider_id, "service_month": service_month}, limit, offset), **meta(s)}

    @app.get("/api/insights/providers")
    def providers(s: Snapshot = Depends(snap), limit: int = limit_q, offset: int = offset_q,
                  is_in_network: bool | None = None, provider_type: str | None = None,
                  state: str | None = None):
        return {**_page(s.tables["provider_performance"], {
            "is_in_network": is_in_network, "provider_type": provider_type, "state": state},
            limit, offset), **meta(s)}

    @app.get("/api/insights/risks")
    def risks(s: Snapshot = Depends(snap), limit: int = limit_q, offset: int = offset_q,
              risk_category: str | None = None):
        return {**_page(s.tables["risk_scoring"], {"risk_category": risk_category}, limit, offset), **meta(s)}

    @app.get("/api/insights/cross-sell")
    def cross_sell(s: Snapshot = Depends(snap), limit: int = limit_q, offset: int = offset_q,
                   priority: str | None = None, recommendation: str | None = None,
                   customer_id: str | None = None):
        return {**_page(s.tables["cross_sell_recommendations"], {
            "priority": priority, "recommendation": recommendation, "customer_id": customer_id},
            limit, offset), **meta(s)}

    @app.get("/api/insights/segments")
    def segments(s: Snapshot = Depends(snap)):
        return {**s.documents["segments"], **meta(s)}

    @app.get("/api/pipeline/status")
    def pipeline_status(s: Snapshot = Depends(snap)):
        return {**s.documents["pipeline_status"], "snapshot_created_at": s.manifest["created_at"], **meta(s)}

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
        if not hmac.compare_digest(token, admin_token):
            raise HTTPException(403, "not an admin token")
        use_live = body.use_live if body and body.use_live is not None else not client.use_live
        client.set_live(use_live)
        client.snapshot()
        return client.status()

    return app


app = create_app()
