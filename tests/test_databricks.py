"""The Databricks engine: the real dagster-databricks Pipes clients against the fake workspace
(tests/fake_databricks.py: its jobs run the package's task file on local Spark), on the shared
demo lake, compared row for row with the DuckDB engine's tables."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import dagster as dg
import pytest
from dagster import AssetKey

import petinsure_assets.databricks_task as task_module
from petinsure_assets.catalog import CATALOG, SQL_DIR, load_catalog
from petinsure_assets.databricks import DatabricksEngine
from petinsure_assets.definitions import build_definitions
from petinsure_assets.engines import engine_from_env
from petinsure_assets.resources import FULL_REFRESH_TAG
from tests.conftest import DEMO_AS_OF, LakeFixture
from tests.fake_databricks import FakeWorkspace

TOKEN = "dapi-not-a-real-token-7f3a"
LAKE_KEY = "lake-account-key-91c2"
DATABRICKS_ENV = {
    "PETINSURE_ENGINE": "databricks",
    "DATABRICKS_HOST": "https://adb-1234.azuredatabricks.net",
    "DATABRICKS_TOKEN": TOKEN,
    "PETINSURE_DATABRICKS_CLUSTER": json.dumps(
        {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_D4ds_v5", "num_workers": 2}
    ),
    "PETINSURE_DATABRICKS_WHEEL": "dbfs:/petinsure/petinsure_assets-0-py3-none-any.whl",
    "PETINSURE_DATABRICKS_TASK_FILE": task_module.__file__,
    "PETINSURE_DATABRICKS_SECRET_SCOPE": "petinsure",
    "AZURE_STORAGE_KEY": LAKE_KEY,  # the lake's credential: the cluster gets a reference to it
}
WORKSPACES: dict[str, FakeWorkspace] = {}


class FakeDatabricksEngine(DatabricksEngine):
    """The Databricks engine, its WorkspaceClient the fake workspace named by `host`."""

    def workspace_client(self):
        return WORKSPACES[self.host]


# ---- the switch ------------------------------------------------------------------------------


def test_engine_is_chosen_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PETINSURE_ENGINE", raising=False)
    assert engine_from_env() == "duckdb"
    monkeypatch.setenv("PETINSURE_ENGINE", "spark")
    with pytest.raises(ValueError, match="'spark' is not an engine: use one of duckdb, databricks"):
        engine_from_env()
    duck = build_definitions(str(tmp_path / "lake"), engine="duckdb")
    for name, value in DATABRICKS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PETINSURE_DATABRICKS_CLUSTER")
    with pytest.raises(ValueError, match="exactly one of PETINSURE_DATABRICKS_CLUSTER"):
        build_definitions(str(tmp_path / "lake"))
    monkeypatch.setenv(
        "PETINSURE_DATABRICKS_CLUSTER", DATABRICKS_ENV["PETINSURE_DATABRICKS_CLUSTER"]
    )
    spark = build_definitions(str(tmp_path / "lake"))
    engine = spark.resources["engine"]
    assert isinstance(engine, DatabricksEngine) and engine.name == "databricks"
    assert isinstance(engine.token, dg.EnvVar)  # the token never enters the resource's config

    def graph(defs):
        repo = defs.get_repository_def()
        return {
            key: (
                node.kinds if hasattr(node, "kinds") else None,
                sorted(
                    c.to_user_string() for c in repo.asset_graph.get_check_keys_for_assets({key})
                ),
                node.legacy_freshness_policy,
            )
            for key, node in (
                (k, repo.asset_graph.get(k)) for k in repo.asset_graph.materializable_asset_keys
            )
        }

    on_duck, on_spark = graph(duck), graph(spark)
    assert set(on_duck) == set(on_spark)
    computed = {dg.AssetKey(s.path.split("/")) for s in CATALOG.tables}
    computed |= {dg.AssetKey(["silver", "quarantine", s.entity.name]) for s in CATALOG.silver}
    assert len(computed) == 16 and computed <= set(on_duck)  # 5 + 5 quarantine parts + 6
    for key in on_duck:
        kinds_duck, checks_duck, fresh_duck = on_duck[key]
        kinds_spark, checks_spark, fresh_spark = on_spark[key]
        assert (checks_duck, fresh_duck) == (checks_spark, fresh_spark), key
        if key in computed:
            assert kinds_duck == {"delta", "duckdb"} and kinds_spark == {
                "delta",
                "spark",
                "databricks",
            }
        else:
            assert kinds_duck == kinds_spark, key


# ---- the whole graph on the fake workspace -----------------------------------------------------


@pytest.fixture(scope="module")
def spark():
    from bench.baselines.spark_local import spark_session

    session = spark_session("petinsure-test-databricks")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def workspace(spark, tmp_path_factory):
    ws = FakeWorkspace(
        tmp_path_factory.mktemp("workspace"),
        spark,
        secrets={("petinsure", "AZURE_STORAGE_KEY"): LAKE_KEY},
    )
    WORKSPACES["fake://workspace"] = ws
    return ws


def _bronze_copy(demo_lake: LakeFixture, dest: Path) -> LakeFixture:
    """The demo lake's raw files and bronze tables, without silver and gold."""
    shutil.copytree(demo_lake.root, dest, ignore=shutil.ignore_patterns("silver", "gold"))
    return LakeFixture(dest)


def _run(
    lake: LakeFixture,
    engine: DatabricksEngine,
    *,
    job="refresh_all",
    selection=None,
    catalog=CATALOG,
    tags=None,
):
    """Run `job` (or materialize `selection`) with the Databricks engine `engine`, the
    environment of DATABRICKS_ENV set for the definitions and the run only."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in DATABRICKS_ENV.items():
            env.setenv(name, value)
        defs = build_definitions(str(lake.root), catalog=catalog)
        resources = {**defs.resources, "engine": engine}
        config = {"resources": {"reporting_date": {"config": {"as_of": DEMO_AS_OF}}}}
        if selection is not None:
            assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
            return dg.materialize(
                assets,
                selection=selection,
                resources=resources,
                run_config=config,
                raise_on_error=False,
                tags=tags,
            )
        merged = dg.Definitions(
            assets=defs.assets, jobs=defs.jobs, resources=resources, executor=dg.in_process_executor
        )
        return merged.resolve_job_def(job).execute_in_process(
            run_config=config, raise_on_error=False, tags=tags
        )


def _engine(**overrides) -> FakeDatabricksEngine:
    settings = dict(
        host="fake://workspace",
        token=dg.EnvVar("DATABRICKS_TOKEN"),
        cluster_spec=DATABRICKS_ENV["PETINSURE_DATABRICKS_CLUSTER"],
        wheel=DATABRICKS_ENV["PETINSURE_DATABRICKS_WHEEL"],
        task_file=task_module.__file__,
        secret_scope="petinsure",
        poll_interval_seconds=0.2,
    )
    settings.update(overrides)
    return FakeDatabricksEngine(**settings)


TABLES = (
    [("silver", s.name) for s in CATALOG.silver]
    + [("silver", "quarantine")]
    + [("gold", s.name) for s in CATALOG.gold]
)


def _assert_same_tables(actual: LakeFixture, expected: LakeFixture):
    for layer, table in TABLES:
        a, e = (
            lake.lake.read(lake.lake.table_uri(layer, table), "SELECT * FROM t ORDER BY ALL")
            for lake in (actual, expected)
        )
        assert a.schema.equals(e.schema), f"{layer}/{table}: schema"
        assert a.num_rows == e.num_rows > 0 or (
            table == "quarantine" and a.num_rows == e.num_rows
        ), table
        assert a.to_pylist() == e.to_pylist(), f"{layer}/{table}: rows differ"


@pytest.fixture(scope="module")
def databricks_run(workspace, demo_lake, tmp_path_factory):
    """The main job on the Databricks engine (a job cluster) over the demo lake's bronze."""
    lake = _bronze_copy(demo_lake, tmp_path_factory.mktemp("on_databricks") / "lake")
    submitted_before = len(workspace.submitted)
    result = _run(lake, _engine())
    return lake, result, workspace.submitted[submitted_before:]


def test_whole_graph_on_databricks_equals_duckdb(databricks_run, demo_lake, workspace):
    lake, result, submitted = databricks_run
    assert result.success, [r.error for r in workspace.runs.values() if r.error]
    _assert_same_tables(lake, demo_lake)
    # One Databricks run per silver and gold step, each a job cluster with the wheel.
    steps = sorted(body["tasks"][0]["task_key"] for body in submitted)
    assert steps == sorted(
        "petinsure_" + s.path.replace("/", "_") for s in (*CATALOG.silver, *CATALOG.gold)
    )
    for body in submitted:
        (task,) = body["tasks"]
        assert task["libraries"] == [{"whl": DATABRICKS_ENV["PETINSURE_DATABRICKS_WHEEL"]}]
        assert task["new_cluster"]["num_workers"] == 2
        env = task["new_cluster"]["spark_env_vars"]
        assert env["AZURE_STORAGE_KEY"] == "{{secrets/petinsure/AZURE_STORAGE_KEY}}"
        assert LAKE_KEY not in json.dumps(body) and TOKEN not in json.dumps(body)
    assert [r.result_state for r in workspace.runs.values()][: len(submitted)] == ["SUCCESS"] * len(
        submitted
    )


def test_results_and_metadata_come_back_through_pipes(databricks_run):
    lake, result, _ = databricks_run
    materialized = {
        m.asset_key.to_user_string(): m.metadata
        for m in (
            e.event_specific_data.materialization for e in result.get_asset_materialization_events()
        )
    }
    for spec in CATALOG.tables:
        metadata = materialized[spec.path]
        assert metadata["engine"].value == "databricks"
        assert metadata["run_mode"].value == "full"
        table = lake.lake.delta_table(lake.lake.table_uri(spec.layer, spec.name))
        assert metadata["dagster/row_count"].value == table.count()
        assert metadata["delta_version"].value == table.version()
        assert metadata["Databricks Job Run ID"].value.isdigit()
        assert [c.name for c in metadata["dagster/column_schema"].schema.columns] == (
            table.schema().to_arrow().names
        )
    quarantined = lake.lake.read(
        lake.lake.table_uri("silver", "quarantine"),
        "SELECT entity, count(*) AS n FROM t GROUP BY ALL",
    ).to_pylist()
    for row in quarantined:
        part = materialized[f"silver/quarantine/{row['entity']}"]
        assert part["dagster/row_count"].value == row["n"]
        assert part["engine"].value == "databricks"
    # Every check of every silver and gold table and part, evaluated on Spark, came back.
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.asset_key.path[0] in ("silver", "gold")
        and "exports" not in e.event_specific_data.asset_key.path
        and e.event_specific_data.asset_key.path[-1] != "api_snapshot"
    ]
    repo = build_definitions(str(lake.root), engine="duckdb").get_repository_def()
    keys = {AssetKey(s.path.split("/")) for s in CATALOG.tables}
    keys |= {AssetKey(["silver", "quarantine", s.entity.name]) for s in CATALOG.silver}
    expected = {
        (k.asset_key.to_user_string(), k.name)
        for k in repo.asset_graph.get_check_keys_for_assets(keys)
    }
    assert {(e.asset_key.to_user_string(), e.check_name) for e in evaluations} == expected
    assert len(evaluations) == len(expected) and all(e.passed for e in evaluations)
    logs = "\n".join(str(e.message) for e in result.all_events if e.message)
    assert TOKEN not in logs and LAKE_KEY not in logs


def test_the_wheel_carries_the_task_and_the_catalog(tmp_path):
    """What a cluster installs: the task file, every SQL file and spec of the catalog."""
    import subprocess
    import sys
    import zipfile

    root = Path(task_module.__file__).parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("petinsure_assets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    catalog = {
        str(p.relative_to(root))
        for p in (root / "petinsure_assets" / "sql").rglob("*")
        if p.suffix in (".sql", ".toml")
    }
    assert len(catalog) == 2 * len(CATALOG.tables) + 1 + len(
        list((root / "petinsure_assets" / "sql" / "gold" / "views").glob("*.sql"))
    )
    assert catalog <= names
    assert "petinsure_assets/databricks_task.py" in names


def test_incremental_run_on_databricks_equals_duckdb(databricks_run, workspace, tmp_path):
    """A new claim and a newer version of another: the Spark steps merge them, and the lake
    equals a DuckDB full rebuild of the same bronze."""
    lake, _, _ = databricks_run
    claim = {
        "claim_id": "CLM-00099999",
        "claim_number": "CLM-2026-099999",
        "customer_id": "CUST-00000384",
        "policy_id": "POL-00000575",
        "pet_id": "PET-00000575",
        "provider_id": "PRV-00000017",
        "claim_type": "Illness",
        "claim_category": "Diagnostics",
        "service_date": "2026-01-20",
        "claim_amount": 321.45,
        "paid_amount": 0,
        "status": "Submitted",
        "processing_days": 0,
        "denial_reason": "",
        "updated_at": "2026-01-21T10:00:00",
    }
    newer = {**claim, "claim_id": "CLM-00000433", "claim_number": "CLM-2025-000433"}
    newer.update(service_date="2025-09-03", status="Denied", denial_reason="Pre-existing")
    newer.update(updated_at="2026-01-22T09:00:00")
    lake.write_raw("claims", "CLM-00099999_20260121_100000_000000.json", json.dumps(claim))
    lake.write_raw("claims", "CLM-00000433_20260122_090000_000000.json", json.dumps(newer))
    result = _run(lake, _engine())
    assert result.success
    modes = {
        m.asset_key.to_user_string(): m.metadata["run_mode"].value
        for m in (
            e.event_specific_data.materialization for e in result.get_asset_materialization_events()
        )
        if "run_mode" in m.metadata
    }
    assert modes["silver/fact_claims"] == "incremental"
    assert modes["gold/claims_analytics"] == "incremental"
    assert modes["gold/customer_360_view"] == "incremental"
    duck = _bronze_copy(lake, tmp_path / "duck")
    duck.refresh(as_of=DEMO_AS_OF, full_refresh=True)
    _assert_same_tables(lake, duck)


# ---- failure, cancellation, a failed blocking check -------------------------------------------


def _catalog(tmp_path: Path, table: str, template: str):
    """A copy of the catalog whose gold `table` runs `template`, its "{query}" the table's own
    query."""
    root = tmp_path / "sql"
    shutil.copytree(SQL_DIR, root)
    query = CATALOG.sql(f"gold/{table}").rstrip().rstrip(";")
    (root / "gold" / f"{table}.sql").write_text(template.replace("{query}", query))
    return load_catalog(root)


def test_a_failing_spark_task_fails_the_step_and_writes_nothing(
    databricks_run, workspace, tmp_path
):
    lake, _, _ = databricks_run
    catalog = _catalog(
        tmp_path,
        "monthly_kpis",
        "{query}\nLIMIT CAST('many' AS INTEGER)\n",
    )
    uri = lake.lake.table_uri("gold", "monthly_kpis")
    before = lake.lake.delta_table(uri).version()
    result = _run(lake, _engine(), selection="gold/monthly_kpis", catalog=catalog)
    assert not result.success
    run = list(workspace.runs.values())[-1]
    assert run.result_state == "FAILED"
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.event_specific_data.error.cause.message
    assert message.startswith("dagster._core.errors.DagsterPipesExecutionError: Error running ")
    assert "CAST_INVALID_INPUT" in message and "'many'" in message
    assert lake.lake.delta_table(uri).version() == before


def test_a_failed_blocking_check_reported_from_spark_stops_downstream(
    databricks_run, workspace, tmp_path
):
    lake, _, _ = databricks_run
    catalog = _catalog(
        tmp_path,
        "provider_performance",
        "SELECT * FROM ({query}) p\nUNION ALL SELECT * FROM ({query}) q\n"
        "WHERE q.provider_id = (SELECT min(provider_id) FROM dim_providers)\n",
    )
    result = _run(
        lake,
        _engine(),
        selection="gold/provider_performance*",
        catalog=catalog,
        tags={FULL_REFRESH_TAG: "true"},
    )
    assert not result.success
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    unique = evaluations["provider_id_unique"]
    assert not unique.passed and unique.metadata["failing_rows"].value == 1
    assert list(workspace.runs.values())[-1].result_state == "SUCCESS"  # the task did its job
    exports = [
        e
        for e in result.all_events
        if e.step_key and "exports" in e.step_key and e.is_successful_output
    ]
    assert exports == []  # the export after it did not run


def test_a_cancelled_run_cancels_the_databricks_run(databricks_run, workspace, tmp_path):
    lake, _, _ = databricks_run
    catalog = _catalog(
        tmp_path,
        "monthly_kpis",
        "SELECT * FROM ({query}) k WHERE (SELECT count(*) FROM "
        "dim_customers a, dim_customers b, dim_customers c, dim_customers d) > 0\n",
    )
    uri = lake.lake.table_uri("gold", "monthly_kpis")
    before = lake.lake.delta_table(uri).version()
    started = len(workspace.runs)

    finished = threading.Event()

    def interrupt_when_running():
        # Once the task's Spark job runs: what terminating the Dagster run sends its process.
        while not finished.wait(0.1):
            runs = list(workspace.runs.values())[started:]
            if (
                runs
                and runs[0].life_cycle_state == "RUNNING"
                and workspace.spark.sparkContext.statusTracker().getActiveJobsIds()
            ):
                os.kill(os.getpid(), signal.SIGINT)
                return

    interrupter = threading.Thread(target=interrupt_when_running, daemon=True)
    interrupter.start()
    try:
        result = _run(
            lake,
            _engine(),
            selection="gold/monthly_kpis",
            catalog=catalog,
            tags={FULL_REFRESH_TAG: "true"},
        )
    finally:
        finished.set()
        interrupter.join()
    run = list(workspace.runs.values())[started]
    assert run.cancelled and run.result_state == "CANCELED"
    assert not result.success
    assert lake.lake.delta_table(uri).version() == before
