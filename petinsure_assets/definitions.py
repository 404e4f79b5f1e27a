"""The code location `petinsure_assets`: every asset, job and resource in one Definitions."""

from __future__ import annotations

import dagster as dg

from petinsure_assets.automation import apply_policies, sensors
from petinsure_assets.bronze import bronze_assets
from petinsure_assets.checks import asset_checks
from petinsure_assets.gold import gold_assets
from petinsure_assets.resources import build_resources
from petinsure_assets.serving import export_assets
from petinsure_assets.silver import silver

# The main job: raw -> bronze -> silver -> gold -> exports, in one process (on two cores the
# multiprocess executor costs 1-2 s per step; the steps themselves use every core through DuckDB).
refresh_all = dg.define_asset_job(
    "refresh_all",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Full refresh of the lakehouse: raw files to bronze, silver, gold and exports.",
)


def build_definitions(lake_root: str | None = None) -> dg.Definitions:
    """The Definitions with the lake at `lake_root` (default: PETINSURE_LAKE_ROOT or ./lake)."""
    return dg.Definitions(
        assets=apply_policies([*bronze_assets, silver, *gold_assets, *export_assets]),
        asset_checks=asset_checks,
        jobs=[refresh_all],
        sensors=sensors,
        resources=build_resources(lake_root),
    )


defs = build_definitions()
