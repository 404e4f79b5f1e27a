"""A refresh with nothing new writes nothing; what changed is rebuilt; table maintenance keeps
the versions the API snapshot names; the raw sensor starts from the bronze ledger."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from petinsure_assets import catalog
from petinsure_assets.catalog import CATALOG
from petinsure_assets.checks import CHECK_HISTORY_TABLE, all_checks
from petinsure_assets.cli import run_refresh
from petinsure_assets.definitions import build_definitions
from petinsure_assets.gold import AS_OF_COMMIT_KEY
from petinsure_assets.resources import INPUTS_COMMIT_KEY
from petinsure_assets.snapshots import publish, read_latest, snapshot_root
from tests.conftest import LakeFixture
from tests.test_azure import reference  # noqa: F401 (fixture)
from tests.test_checks import GOOD_CLAIMS
from tests.test_pipeline import AS_OF, claim, write_base
from tests.test_serving import _tick

GOLD = tuple(spec.name for spec in CATALOG.gold)
NEXT_AS_OF = "2025-07-31"


def delta_versions(root: Path) -> dict[str, int]:
    """Every Delta table under the lake root (found by its _delta_log) and its version."""
    return {
        str(log.parent.relative_to(root)): DeltaTable(str(log.parent)).version()
        for log in root.rglob("_delta_log")
    }


def served_files(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file of the exports and the snapshots."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for folder in ("gold/exports", "gold/snapshots")
        for p in (root / folder).rglob("*")
        if p.is_file()
    }


def latest_metadata(instance: dg.DagsterInstance, *key: str) -> dict:
    (record,) = instance.fetch_materializations(dg.AssetKey(list(key)), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def rows_at(lake: LakeFixture, layer: str, table: str, version: int, order_by: str) -> list[tuple]:
    files = DeltaTable(lake.lake.table_uri(layer, table), version=version).file_uris()
    if not files:  # an empty table (no cross-sell in the small book) has no data file
        return []
    columns = ", ".join(DeltaTable(lake.lake.table_uri(layer, table)).schema().to_arrow().names)
    return duckdb.sql(
        f"SELECT {columns} FROM read_parquet({files}, hive_partitioning = true) ORDER BY {order_by}"
    ).fetchall()


def gold_checks() -> set[tuple[str, str]]:
    return {
        (t.asset, c.name)
        for t, checks in all_checks()
        if t.asset.startswith("gold/")
        for c in checks
    }


# ---- no-op ------------------------------------------------------------------------------------


def test_refresh_with_nothing_new_writes_nothing(lake: LakeFixture):
    write_base(lake, GOOD_CLAIMS)
    with dg.instance_for_test() as instance:
        first = lake.refresh(as_of=AS_OF, instance=instance)
        versions, files = delta_versions(lake.root), served_files(lake.root)
        snapshot = read_latest(lake.lake)
        # The bronze tables, the ledger, silver, quarantine, gold and the check history.
        assert len(versions) == 5 + 1 + 6 + 6 + 1
        assert "nothing new in raw" not in first.render()

        again = lake.refresh(as_of=AS_OF, instance=instance)
        assert delta_versions(lake.root) == versions
        assert served_files(lake.root) == files
        assert read_latest(lake.lake) == snapshot
        text = again.render()
        assert "nothing new in raw: no table written" in text
        assert again.written == []
        assert again.versions["silver.fact_claims"] == 0
        assert "silver.fact_claims" in text and "unchanged since version 0" in text

        # The materializations say so, with the table as it is.
        for key in (("silver", "fact_claims"), ("gold", "monthly_kpis")):
            meta = latest_metadata(instance, *key)
            assert (meta["unchanged"], meta["rows_added"], meta["delta_version"]) == (True, 0, 0), (
                key
            )
        # silver/quarantine has five commits, one per silver table's step, claims' the last.
        meta = latest_metadata(instance, "silver", "quarantine", "claims")
        assert (meta["unchanged"], meta["rows_added"], meta["delta_version"]) == (True, 0, 4)
        assert meta["dagster/row_count"] == 1  # the "{not json" line
        assert latest_metadata(instance, "silver", "fact_claims")["dagster/row_count"] == 3
        assert latest_metadata(instance, "gold", "exports", "claims_analytics")["unchanged"] is True

        # An export that went missing is written again, from the same gold version.
        export = lake.root / lake.lake.export_path("monthly_kpis")
        content = export.read_bytes()
        export.unlink()
        lake.refresh(as_of=AS_OF, instance=instance)
        assert export.read_bytes() == content
        assert delta_versions(lake.root) == versions


def test_as_of_change_rebuilds_gold_only(refreshed_lake: LakeFixture):
    lake = refreshed_lake  # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF
    before = delta_versions(lake.root)
    history_before = len(lake.rows("gold", CHECK_HISTORY_TABLE))

    summary = lake.refresh(as_of=NEXT_AS_OF)
    after = delta_versions(lake.root)
    changed = {t for t in after if after[t] != before[t]}
    assert changed == {f"gold/{t}" for t in GOLD} | {f"gold/{CHECK_HISTORY_TABLE}"}
    assert all(after[f"gold/{t}"] == before[f"gold/{t}"] + 1 for t in GOLD)
    assert "nothing new in raw; rebuilt: " in summary.render()

    commit = DeltaTable(lake.lake.table_uri("gold", "monthly_kpis")).history(1)[0]
    assert commit[AS_OF_COMMIT_KEY] == NEXT_AS_OF
    inputs = json.loads(commit[INPUTS_COMMIT_KEY])
    assert inputs["as_of"] == NEXT_AS_OF
    assert inputs["tables"] == {"dim_customers": 0, "dim_policies": 0, "fact_claims": 0}

    # The checks of the new gold versions are recorded, once each; silver's are not repeated.
    history = lake.rows("gold", CHECK_HISTORY_TABLE)
    new = [r for r in history if r["run_id"] == summary.run_id]
    assert {r["delta_version"] for r in new} == {1}
    assert len(history) - history_before == len(gold_checks())
    assert {(r["asset_key"], r["check_name"]) for r in new} == gold_checks()

    # Exports and the snapshot follow.
    for t in GOLD:
        source = json.loads((lake.root / "gold" / "exports" / "_sources" / f"{t}.json").read_text())
        assert source["delta_version"] == 1, t
    manifest = json.loads(
        (snapshot_root(lake.lake) / read_latest(lake.lake)["manifest"]).read_text()
    )
    assert manifest["as_of"] == NEXT_AS_OF
    assert manifest["source_tables"] == {f"gold/{t}": 1 for t in GOLD}


def test_new_claim_rewrites_what_depends_on_it_and_sql_change_rebuilds_its_table(
    refreshed_lake: LakeFixture, monkeypatch
):
    lake = refreshed_lake  # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF
    before = delta_versions(lake.root)

    lake.write_raw(
        "claims", "CLM-7_20250501_000000_000000.json", claim("CLM-7", "2025-05-01", "10.00", "5.00")
    )
    lake.refresh(as_of=AS_OF)
    after = delta_versions(lake.root)
    unchanged = {t for t in after if after[t] == before[t]}
    # One step per silver table: only fact_claims follows the new claim, merged into it; the
    # claim is valid, so the quarantine is not written either.
    assert unchanged == {
        *(f"bronze/{t}" for t in CATALOG.pipeline_tables["bronze"] if t != "claims_raw"),
        *(f"silver/{s.name}" for s in CATALOG.silver if s.name != "fact_claims"),
        "silver/quarantine",
    }
    merge = DeltaTable(lake.lake.table_uri("silver", "fact_claims")).history(1)[0]
    assert merge["operation"] == "MERGE"
    assert merge["operationMetrics"]["num_target_rows_inserted"] == 1
    assert lake.rows("silver", "fact_claims", order_by="claim_id")[-1]["claim_id"] == "CLM-7"

    # A revised SQL file (here: a comment added) rebuilds its own table only.
    read = catalog._read
    revised = catalog.SQL_DIR / "gold" / "provider_performance.sql"
    monkeypatch.setattr(
        catalog, "_read", lambda path: read(path) + ("\n-- revised" if path == revised else "")
    )
    summary = lake.refresh(as_of=AS_OF)
    again = delta_versions(lake.root)
    assert {t for t in again if again[t] != after[t]} == {
        "gold/provider_performance",
        f"gold/{CHECK_HISTORY_TABLE}",
    }
    assert summary.written == ["gold.provider_performance", f"gold.{CHECK_HISTORY_TABLE}"]


# ---- maintenance ------------------------------------------------------------------------------


def test_maintenance_compacts_and_vacuums_but_keeps_the_snapshot_versions(
    refreshed_lake: LakeFixture,
):
    # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF: a snapshot of gold version 0 published
    lake = refreshed_lake
    manifest = json.loads(
        (snapshot_root(lake.lake) / read_latest(lake.lake)["manifest"]).read_text()
    )
    assert manifest["source_tables"] == {f"gold/{t}": 0 for t in GOLD}
    # A second claim file, and no snapshot: gold moves to version 1, the snapshot stays on 0.
    lake.write_raw(
        "claims", "CLM-7_20250501_000000_000000.json", claim("CLM-7", "2025-05-01", "10.00", "5.00")
    )
    lake.refresh(as_of=AS_OF, snapshot=False)
    claims_uri = lake.lake.table_uri("bronze", "claims_raw")
    assert len(DeltaTable(claims_uri).file_uris()) == 2
    bronze_rows = lake.rows("bronze", "claims_raw", order_by="_source_file, _source_line")
    history_files = len(DeltaTable(lake.lake.table_uri("gold", CHECK_HISTORY_TABLE)).file_uris())
    assert history_files > 1
    bronze_v0 = DeltaTable(claims_uri, version=0).file_uris()
    gold_v0 = {t: DeltaTable(lake.lake.table_uri("gold", t), version=0).file_uris() for t in GOLD}
    versions = delta_versions(lake.root)

    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("maintain_lake").execute_in_process(
            instance=instance,
            run_config={"ops": {"maintain_lake_op": {"config": {"vacuum_retention_hours": 0}}}},
        )
    assert result.success

    # Compaction: one file, the same rows.
    assert len(DeltaTable(claims_uri).file_uris()) == 1
    assert lake.rows("bronze", "claims_raw", order_by="_source_file, _source_line") == bronze_rows
    assert len(DeltaTable(lake.lake.table_uri("gold", CHECK_HISTORY_TABLE)).file_uris()) == 1
    # Vacuum with no retention: the file of bronze's version 0, compacted into the new one, is
    # gone ...
    assert bronze_v0 and not any(os.path.exists(f) for f in bronze_v0)
    # ... but every gold version the snapshot names can still be read, and is what it published.
    folder = snapshot_root(lake.lake) / "v" / manifest["version"]
    for t in GOLD:
        assert all(os.path.exists(f) for f in gold_v0[t]), t
        key = ", ".join(CATALOG.table(t).key)
        published = duckdb.sql(
            f"SELECT * FROM read_parquet('{folder / (t + '.parquet')}') ORDER BY {key}"
        ).fetchall()
        assert rows_at(lake, "gold", t, 0, key) == published, t
    assert len(rows_at(lake, "gold", "claims_analytics", 0, "claim_id")) == 3
    assert len(rows_at(lake, "gold", "claims_analytics", 1, "claim_id")) == 4

    # Compaction and vacuum changed no rows: the next refresh has nothing to do.
    maintained = delta_versions(lake.root)
    assert maintained["bronze/claims_raw"] > versions["bronze/claims_raw"]
    summary = lake.refresh(as_of=AS_OF)
    assert delta_versions(lake.root) == maintained
    assert "nothing new in raw: no table written" in summary.render()
    # The snapshot it publishes (gold moved to version 1 since) knows its as-of date.
    assert (
        json.loads((snapshot_root(lake.lake) / read_latest(lake.lake)["manifest"]).read_text())[
            "as_of"
        ]
        == AS_OF
    )


def _age(path: Path, hours: float) -> None:
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


def test_unfinished_snapshots_are_cleaned_and_take_no_retention_slot(refreshed_lake: LakeFixture):
    lake = refreshed_lake  # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF
    root = snapshot_root(lake.lake)
    first = read_latest(lake.lake)["version"]
    # What publishes killed midway leave: a folder without a manifest, temporary files. Those
    # of a publish that may still be running (less than an hour old) are left alone.
    old_orphan = root / "v" / "20200101T000000000000Z-deadbeef"
    young = datetime.now(UTC) - timedelta(minutes=5)
    young_orphan = root / "v" / f"{young.strftime('%Y%m%dT%H%M%S%fZ')}-cafebabe"
    for folder in (old_orphan, young_orphan):
        folder.mkdir()
        (folder / "claims_analytics.parquet").write_bytes(b"partial")
    old_tmp = root / ".latest.json.0123.tmp"
    young_tmp = root / ".latest.json.4567.tmp"
    export_tmp = lake.root / "gold" / "exports" / "monthly_kpis" / ".part-0.parquet.89ab.tmp"
    for path in (old_tmp, young_tmp, export_tmp):
        path.write_bytes(b"{")
    _age(old_tmp, 2)
    _age(export_tmp, 2)

    versions = [first]
    export = lake.root / lake.lake.export_path("claims_analytics")
    for _ in range(2):  # two real changes: the claims export loses a row each time
        table = pq.read_table(export)
        pq.write_table(table.slice(0, table.num_rows - 1), export)
        result = publish(lake.lake, retention=2)
        assert result.published
        versions.append(result.version)
    # The two newest finished versions are kept; the orphans took no slot.
    assert sorted(p.name for p in (root / "v").iterdir()) == sorted(
        [*versions[1:], young_orphan.name]
    )
    assert not old_tmp.exists() and not export_tmp.exists()
    assert young_tmp.exists()

    # The maintenance job cleans the rest once it is old enough.
    _age(young_tmp, 2)
    young_orphan.rename(root / "v" / "20200102T000000000000Z-cafebabe")
    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("maintain_lake").execute_in_process(instance=instance)
    assert result.success
    assert sorted(p.name for p in (root / "v").iterdir()) == sorted(versions[1:])
    assert not young_tmp.exists()
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert output.event_specific_data.metadata["snapshot_paths_removed"].value == 2


def test_maintenance_job_and_schedule_are_in_the_definitions():
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("weekly_maintenance")
    assert schedule.job_name == "maintain_lake" and schedule.cron_schedule == "0 4 * * 0"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


# ---- the raw sensor's first tick ----------------------------------------------------------------


def test_raw_sensor_first_tick_on_an_ingested_lake_launches_nothing(refreshed_lake: LakeFixture):
    lake = refreshed_lake  # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF
    defs = build_definitions(str(lake.root))
    with dg.instance_for_test() as instance:
        first = _tick(defs, "raw_files_sensor", instance)
        assert first.run_requests == []
        assert "no new or changed files among the 5 files" in first.skip_message
        assert first.cursor

        lake.write_raw(
            "claims",
            "CLM-7_20250501_000000_000000.json",
            claim("CLM-7", "2025-05-01", "10.00", "5.00"),
        )
        new = _tick(defs, "raw_files_sensor", instance, first.cursor)
        (request,) = new.run_requests
        assert request.tags["petinsure/entities"] == "claims"

        # A fresh cursor on a lake where one file changed since it was ingested: that one only.
        customers = lake.root / "raw" / "customers" / "customers.csv"
        customers.write_text(customers.read_text().replace("Ann", "Anne"))
        fresh = _tick(defs, "raw_files_sensor", instance)
        (request,) = fresh.run_requests
        assert request.tags["petinsure/entities"] == "claims,customers"


# ---- the same on ADLS (Azurite) ------------------------------------------------------------------


def test_noop_and_maintenance_on_azurite(azurite, reference, monkeypatch):
    from petinsure_assets.maintenance import maintain
    from petinsure_assets.resources import lake_resource_from_env
    from tests.test_azure import storage_options, upload_raw, use_azurite

    use_azurite(monkeypatch, azurite)
    upload_raw(azurite, reference)
    assert run_refresh(None, as_of=AS_OF, log_level="WARNING").success
    again = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert again.success and again.written == [], again.render()

    azurite.service().get_container_client("raw").upload_blob(
        "claims/CLM-7_20250501_000000_000000.json", claim("CLM-7", "2025-05-01", "10.00", "5.00")
    )
    assert run_refresh(None, as_of=AS_OF, log_level="WARNING", snapshot=False).success
    options = storage_options(azurite)
    assert len(DeltaTable("az://bronze/claims_raw", storage_options=options).file_uris()) == 2

    lake = lake_resource_from_env(resolve=True).lake()
    maintain(lake, retention_hours=0, log=lambda message: None)
    assert len(DeltaTable("az://bronze/claims_raw", storage_options=options).file_uris()) == 1

    def claims_at(container: str, table: str, version: int) -> int:
        dataset = DeltaTable(  # noqa: F841 (read by name by DuckDB's replacement scan)
            f"az://{container}/{table}", version=version, storage_options=options
        ).to_pyarrow_dataset()
        return duckdb.sql("SELECT count(*) FROM dataset").fetchall()[0][0]

    assert claims_at("gold", "claims_analytics", 0) == 3  # the snapshot's version
    assert claims_at("gold", "claims_analytics", 1) == 4
    assert claims_at("silver", "fact_claims", 1) == 4
    with pytest.raises(Exception, match="(?i)not ?found|404|does not exist"):
        claims_at("bronze", "claims_raw", 0)  # compacted, then vacuumed: its data file is gone
