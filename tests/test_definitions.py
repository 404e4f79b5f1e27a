"""The code location loads cleanly and every asset says what it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def expected_keys() -> set[str]:
    """What the code location holds, from the raw contract and the table catalog."""
    from petinsure_assets import contracts
    from petinsure_assets.catalog import CATALOG

    return {
        *(f"raw/{e.name}" for e in contracts.ENTITIES),
        *(f"bronze/{e.bronze_table}" for e in contracts.ENTITIES),
        *(f"silver/{s.name}" for s in CATALOG.silver),
        *(f"silver/quarantine/{s.entity.name}" for s in CATALOG.silver),
        *(f"gold/{s.name}" for s in CATALOG.gold),
        *(f"gold/exports/{s.name}" for s in CATALOG.gold),
        "gold/api_snapshot",
    }


def test_every_asset_has_group_kinds_owner_and_description():
    from petinsure_assets.definitions import build_definitions

    graph = build_definitions("/nonexistent-lake").resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == expected_keys()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        serving = key.path[1] in ("exports", "api_snapshot")
        if key.path[0] == "raw":
            assert node.group_name == "raw" and not node.is_executable, key
        assert node.group_name == ("serving" if serving else key.path[0]), key
        assert node.kinds, key
        assert node.owners == ["team:data-engineering"], key
        assert node.description and len(node.description) > 20, key
        if key.path[0] in ("silver", "gold") and key.path[1] != "api_snapshot":
            assert node.metadata["dagster/column_schema"].columns, key


def test_loading_the_code_location_raises_no_deprecation_warning():
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "from petinsure_assets.definitions import defs\n"
        "import dagster as dg\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "defs.resolve_job_def('refresh_all')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_dg_lists_and_checks_the_code_location_from_the_repo_root(tmp_path):
    """`dg` finds the project through [tool.dg] in pyproject.toml, as `dg dev` does."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(home)}
    dg_cli = str(Path(sys.executable).parent / "dg")

    def dg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [dg_cli, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )

    checked = dg("check", "defs")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully." in checked.stdout

    listed = dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    assert {asset["asset_key"] for asset in defs["assets"]} == expected_keys()
    assert "refresh_all" in {job["name"] for job in defs["jobs"]}


def test_sqlite_files_under_dagster_home_commit_without_fsync(tmp_path, monkeypatch):
    import sqlalchemy

    from petinsure_assets.instance import SYNCHRONOUS_ENV, relax_sqlite_durability

    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    relax_sqlite_durability()

    def synchronous(db) -> int:
        engine = sqlalchemy.create_engine(f"sqlite:///{db}", poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA synchronous").scalar()

    assert synchronous(home / "runs.db") == 0  # OFF
    assert synchronous(elsewhere / "other.db") == 2  # FULL, SQLite's default: not ours to change
    monkeypatch.setenv(SYNCHRONOUS_ENV, "normal")
    assert synchronous(home / "runs.db") == 1


def _load_sensor_intervals(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Load the code location in a new process (the variables are read when it loads), with the
    two interval variables set as in `env` only, and print the two sensors' minimum intervals."""
    code = (
        "from petinsure_assets.definitions import defs\n"
        "print(defs.resolve_sensor_def('raw_files_sensor').minimum_interval_seconds,"
        " defs.resolve_sensor_def('exports_sensor').minimum_interval_seconds)\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.endswith("_SENSOR_INTERVAL_SECONDS")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}
    )


def test_sensor_intervals_come_from_the_environment_when_the_definitions_load():
    from petinsure_assets.automation import EXPORTS_SENSOR_INTERVAL_ENV, RAW_SENSOR_INTERVAL_ENV

    loaded = _load_sensor_intervals(
        {RAW_SENSOR_INTERVAL_ENV: "5", EXPORTS_SENSOR_INTERVAL_ENV: "7"}
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["5", "7"]
    default = _load_sensor_intervals({})
    assert default.returncode == 0, default.stderr[-3000:]
    assert default.stdout.split() == ["30", "30"]


def test_a_sensor_interval_that_is_not_a_positive_whole_number_is_refused_at_load(monkeypatch):
    from petinsure_assets.automation import (
        EXPORTS_SENSOR_INTERVAL_ENV,
        RAW_SENSOR_INTERVAL_ENV,
        sensor_interval_seconds,
    )

    refused = _load_sensor_intervals({EXPORTS_SENSOR_INTERVAL_ENV: "0"})
    assert refused.returncode != 0
    assert (
        "PETINSURE_EXPORTS_SENSOR_INTERVAL_SECONDS must be a whole number of seconds, 1 or more"
        in refused.stderr
    ), refused.stderr[-3000:]
    assert "got '0'" in refused.stderr
    for value in ("-5", "2.5", "abc", "nan", "inf", "1e400"):
        monkeypatch.setenv(RAW_SENSOR_INTERVAL_ENV, value)
        with pytest.raises(ValueError, match=f"{RAW_SENSOR_INTERVAL_ENV} must be a whole number"):
            sensor_interval_seconds(RAW_SENSOR_INTERVAL_ENV)
    for value, seconds in (("1", 1), (" 45 ", 45), ("", 30)):
        monkeypatch.setenv(RAW_SENSOR_INTERVAL_ENV, value)
        assert sensor_interval_seconds(RAW_SENSOR_INTERVAL_ENV) == seconds
