"""The code location `petinsure_assets`: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg

from petinsure_assets.automation import apply_policies, jobs, schedules, sensors
from petinsure_assets.bronze import bronze_assets, raw_sources
from petinsure_assets.catalog import CATALOG, Catalog
from petinsure_assets.databricks import databricks_engine_from_env
from petinsure_assets.engines import DATABRICKS, engine_from_env
from petinsure_assets.gold import gold_assets
from petinsure_assets.instance import relax_sqlite_durability
from petinsure_assets.maintenance import maintain_lake, weekly_maintenance
from petinsure_assets.resources import build_resources
from petinsure_assets.serving import api_snapshot_asset, export_assets
from petinsure_assets.silver import silver_assets


def build_definitions(
    lake_root: str | None = None, catalog: Catalog = CATALOG, engine: str | None = None
) -> dg.Definitions:
    """The Definitions with the lake at `lake_root` (default: PETINSURE_LAKE_ROOT or ./lake);
    every silver and gold table, its checks, freshness and export from the table catalog,
    computed by `engine` (default: PETINSURE_ENGINE, else duckdb; engines.py)."""
    engine = engine or engine_from_env()
    relax_sqlite_durability()  # every process that runs our steps loads these definitions
    return dg.Definitions(
        assets=apply_policies(
            [
                *raw_sources,
                *bronze_assets,
                *silver_assets(catalog, engine),
                *gold_assets(catalog, engine),
                *export_assets(catalog),
                api_snapshot_asset(catalog),
            ],
            catalog,
        ),
        jobs=[*jobs, maintain_lake],
        schedules=[*schedules, weekly_maintenance],
        sensors=sensors,
        resources=build_resources(
            lake_root, databricks_engine_from_env() if engine == DATABRICKS else None
        ),
        # Every run in one process (the UI's and the automation sensor's too): a run holds the
        # lake's writer lock for its whole length (lock.py), which step processes could not share.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
