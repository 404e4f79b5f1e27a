"""Serving: plain Parquet exports of every gold table (no Delta log), for readers outside Spark.

`gold/exports/<table>/part-0.parquet` is replaced whole (a rename locally, one blob upload on
Azure), so a reader sees the old file or the new one, never half of one.
`gold/exports/_sources/<table>.json` records what it was made from (the gold table's content
version and the export query) and its size; an export whose source is unchanged is not rewritten.
"""

import json
import os
import tempfile

import dagster as dg

from petinsure_assets.bronze import OWNER
from petinsure_assets.catalog import CATALOG, Catalog, TableSpec
from petinsure_assets.lake import EXPORT_FILE, DeltaSource
from petinsure_assets.queries import session
from petinsure_assets.resources import (
    LakeResource,
    column_schema,
    content_version,
    markdown_preview,
)
from petinsure_assets.snapshots import (
    DEFAULT_RETENTION,
    EXPORT_SOURCES,
    SNAPSHOT_PREFIX,
    publish,
)


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except ValueError:  # a damaged record of the source: export again
        return None


def _export_asset(spec: TableSpec, catalog: Catalog) -> dg.AssetsDefinition:
    table = spec.name
    # Personal data stays in the lake: the catalog's PII columns are left out of the export.
    excluded = sorted(catalog.pii_columns | set(spec.pii))

    @dg.asset(
        key=["gold", "exports", table],
        ins={"source": dg.AssetIn(key=["gold", table])},
        group_name="serving",
        kinds={"parquet", "duckdb"},
        owners=[OWNER],
        description=f"gold.{table} as plain Parquet under gold/exports/{table}/ for the claims API "
        "(without personal-data columns).",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        source: DeltaSource,
    ):
        the_lake = lake.lake()
        final = the_lake.export_path(table)
        # Ordered by key: the same gold content gives the same bytes, so a snapshot of
        # unchanged content is recognised as unchanged.
        query = f"SELECT * FROM t ORDER BY {', '.join(spec.key)}"
        columns = source.lake.delta_table(source.uri).schema().to_arrow().names
        left_out = [c for c in columns if c in excluded]
        if left_out:
            query = query.replace("*", f"* EXCLUDE ({', '.join(left_out)})", 1)
        made_from = {
            "table": f"gold/{table}",
            "query": query,
            "delta_version": content_version(source.lake, source.uri),
        }
        source_file = f"{EXPORT_SOURCES}/{table}.json"
        sizes = {f.path: f.size_bytes for f in the_lake.files.list(final.rsplit("/", 1)[0])}
        if (
            final in sizes
            and the_lake.files.exists(source_file)
            and _json_or_none(the_lake.files.read_bytes(source_file))
            == {**made_from, "bytes": sizes[final]}
        ):
            context.log.info(f"gold.{table} unchanged since its export {final}; not rewritten")
            return dg.MaterializeResult(
                metadata={"path": dg.MetadataValue.path(final), "unchanged": True}
            )
        with (
            tempfile.TemporaryDirectory(prefix="petinsure-export-") as tmp,
            session(catalog=catalog) as con,
        ):
            source.register(con, "t")
            schema = con.sql(f"{query} LIMIT 0").to_arrow_table().schema
            local = os.path.join(tmp, EXPORT_FILE)
            con.execute(f"COPY ({query}) TO '{local}' (FORMAT parquet, COMPRESSION zstd)")
            ((rows,),) = con.sql(f"SELECT count(*) FROM read_parquet('{local}')").fetchall()
            preview = con.sql(f"{query} LIMIT 5").to_arrow_table()
            size = os.path.getsize(local)
            the_lake.files.put_file(final, local)  # replaces the old export whole
        # After the export, so that a crash between the two exports again; with the size, so
        # that an export replaced by hand is not taken for ours.
        the_lake.files.write_bytes(
            source_file, json.dumps({**made_from, "bytes": size}, sort_keys=True).encode()
        )
        context.log.info(
            f"exported {rows} rows of gold.{table} to {final}"
            + (f" without the personal-data columns {left_out}" if left_out else "")
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "path": dg.MetadataValue.path(final),
                "bytes": size,
                "dagster/column_schema": column_schema(schema),
                "preview": dg.MetadataValue.md(markdown_preview(preview)),
                "unchanged": False,
            }
        )

    return _asset


def export_assets(catalog: Catalog = CATALOG) -> list[dg.AssetsDefinition]:
    return [_export_asset(spec, catalog) for spec in catalog.gold]


API_SNAPSHOT_KEY = dg.AssetKey(["gold", "api_snapshot"])


class SnapshotConfig(dg.Config):
    retention: int = DEFAULT_RETENTION


def api_snapshot_asset(catalog: Catalog = CATALOG) -> dg.AssetsDefinition:
    @dg.asset(
        key=API_SNAPSHOT_KEY,
        deps=[dg.AssetKey(["gold", "exports", spec.name]) for spec in catalog.gold],
        group_name="serving",
        kinds={"parquet", "json"},
        owners=[OWNER],
        description="Cache-warm snapshot for the claims API under gold/snapshots/: the gold "
        "exports, pre-rendered JSON of the hot endpoints and a checksummed manifest; latest.json "
        "replaced last.",
    )
    def api_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig, lake: LakeResource):
        return _publish_snapshot(context, config, lake)

    return api_snapshot


def _publish_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, lake: LakeResource
) -> dg.MaterializeResult:
    result = publish(lake.lake(), retention=config.retention)
    context.log.info(
        f"snapshot {result.version}: {result.reason}"
        + (f"; pruned {', '.join(result.pruned)}" if result.pruned else "")
    )
    files = result.manifest["files"]
    return dg.MaterializeResult(
        metadata={
            "version": result.version,
            "published": result.published,
            "reason": result.reason,
            "as_of": str(result.manifest.get("as_of")),
            "files": dg.MetadataValue.int(len(files)),
            "bytes": dg.MetadataValue.int(sum(f["bytes"] for f in files.values())),
            "pruned_versions": dg.MetadataValue.int(len(result.pruned)),
            "path": dg.MetadataValue.path(f"{SNAPSHOT_PREFIX}/v/{result.version}"),
        }
    )
