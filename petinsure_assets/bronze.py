"""Bronze: one append-only Delta table per entity, fed from the raw landing zone exactly once."""

import dagster as dg

from petinsure_assets import contracts
from petinsure_assets.ingest import bronze_schema, ingest
from petinsure_assets.resources import LakeResource, column_schema, table_metadata

OWNER = "team:data-engineering"


def raw_source(entity: contracts.Entity) -> dg.AssetSpec:
    """The landing-zone folder of an entity: external, written by the ingestion API and batches."""
    return dg.AssetSpec(
        key=["raw", entity.name],
        group_name="raw",
        kinds={"json" if entity.batch_format == "jsonl" else "csv", "json"},
        owners=[OWNER],
        description=f"Landing zone raw/{entity.name}/: the batch file {entity.batch_file}"
        + (
            f" and real-time {entity.realtime_prefix}-…_<YYYYMMDD>_<HHMMSS>_<ffffff>.json files"
            if entity.realtime_prefix
            else ""
        )
        + " (written by the ingestion API and batch loads).",
    )


def _bronze_asset(entity: contracts.Entity) -> dg.AssetsDefinition:
    @dg.asset(
        key=["bronze", entity.bronze_table],
        deps=[["raw", entity.name]],
        group_name="bronze",
        kinds={"delta", "python"},
        owners=[OWNER],
        description=(
            f"Raw {entity.name} from raw/{entity.name}/ ({entity.batch_file}"
            + (
                f" and real-time {entity.realtime_prefix}-*.json files"
                if entity.realtime_prefix
                else ""
            )
            + "), every column as text plus ingestion metadata; append-only, each file once."
        ),
        metadata={"dagster/column_schema": column_schema(bronze_schema(entity))},
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeResource):
        the_lake = lake.lake()
        write = ingest(the_lake, entity, context.run.run_id, log=context.log.info)
        if write is not None:
            return write
        uri = the_lake.table_uri("bronze", entity.bronze_table)
        existing = table_metadata(the_lake, uri) if the_lake.exists(uri) else {}
        return dg.MaterializeResult(metadata={**existing, "rows_added": 0, "files_ingested": 0})

    return _asset


raw_sources = [raw_source(e) for e in contracts.ENTITIES]
bronze_assets = [_bronze_asset(e) for e in contracts.ENTITIES]
