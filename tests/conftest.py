"""Shared test helpers: a temporary lake, raw files written by hand, and reading tables back."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from petinsure_assets.cli import RefreshSummary, run_refresh
from petinsure_assets.lake import Lake

# The modules that take longest, longest first: pytest-xdist (`-n 2 --dist worksteal`, see
# pyproject.toml) splits the tests between its workers in collection order, so these start
# first and the short ones fill in at the end. Only the order changes; every test runs.
SLOW_MODULES = (
    "test_databricks.py",  # the whole graph twice on local Spark: about five minutes on one worker
    "test_bench.py",  # one test of a minute: early, so that it does not end the run alone
    "test_front_door_flow.py",  # real server, real WebSocket clients, sensors and runs
    "test_ui.py",
    "test_spark_sql.py",
    "test_azure.py",
    "test_noop_and_maintenance.py",
    "test_concurrency.py",
    "test_pipeline.py",
    "test_catalog.py",
    "test_checks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_MODULES.index(name) if name in SLOW_MODULES else len(SLOW_MODULES)

    items.sort(key=rank)  # stable: the order within a module is kept


class LakeFixture:
    """A temporary lake: write raw files, run the main job, read tables back as dicts."""

    def __init__(self, root: Path):
        self.root = root
        self.lake = Lake(root=str(root))

    def write_raw(self, entity: str, filename: str, text: str) -> Path:
        """Write raw/<entity>/<filename>; `text` is dedented and stripped of its first newline."""
        path = self.root / "raw" / entity / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def refresh(self, as_of: str = "", **kwargs) -> RefreshSummary:
        summary = run_refresh(str(self.root), as_of=as_of, log_level="WARNING", **kwargs)
        assert summary.success, summary.render()
        return summary

    def rows(self, layer: str, table: str, order_by: str = "ALL") -> list[dict]:
        """All rows of a Delta table as dicts, ordered (by every column unless told)."""
        uri = self.lake.table_uri(layer, table)
        return self.lake.read(uri, f"SELECT * FROM t ORDER BY {order_by}").to_pylist()


@pytest.fixture
def lake(tmp_path: Path) -> LakeFixture:
    return LakeFixture(tmp_path / "lake")


DEMO_AS_OF = "2026-01-31"
DEMO_CLAIMS = 2_000


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory) -> LakeFixture:
    """A 2,000-claim demo lake (seed 42) refreshed as of 2026-01-31 through the whole graph,
    shared by the tests that compare other implementations with the product's gold."""
    from petinsure_assets.demo_data import generate

    lake = LakeFixture(tmp_path_factory.mktemp("demo") / "lake")
    generate(lake.lake.layer("raw"), claims=DEMO_CLAIMS, seed=42)
    lake.refresh(as_of=DEMO_AS_OF)
    return lake


# ---- the small hand-made book, refreshed once per session ---------------------------------------


def _copy(lake: LakeFixture, dest: Path) -> LakeFixture:
    """A copy of a refreshed lake (Delta logs and manifests hold relative paths only): what a test
    that goes on writing starts from instead of refreshing the same raw files again."""
    shutil.copytree(lake.root, dest, symlinks=True)
    return LakeFixture(dest)


@pytest.fixture(scope="session")
def _good_base_lake(tmp_path_factory) -> LakeFixture:
    from tests.test_checks import GOOD_CLAIMS
    from tests.test_pipeline import AS_OF, write_base

    lake = LakeFixture(tmp_path_factory.mktemp("good_base") / "lake")
    write_base(lake, GOOD_CLAIMS)
    lake.refresh(as_of=AS_OF)
    return lake


@pytest.fixture
def refreshed_lake(_good_base_lake: LakeFixture, tmp_path: Path) -> LakeFixture:
    """`write_base(lake, GOOD_CLAIMS)` then `lake.refresh(as_of=AS_OF)`, as a copy of one lake
    refreshed once per session: the test may change it at will."""
    return _copy(_good_base_lake, tmp_path / "lake")


@pytest.fixture(scope="session")
def served_lake(tmp_path_factory) -> LakeFixture:
    """The small hand-made book (see test_checks): 2 customers, 3 pets (one uninsured), 2 policies,
    3 claims and a line that is not JSON, refreshed as of AS_OF. Shared: read it, or copy it."""
    from tests.test_checks import GOOD_CLAIMS
    from tests.test_pipeline import AS_OF, add_uninsured_pet, write_base

    lake = LakeFixture(tmp_path_factory.mktemp("served") / "lake")
    write_base(lake, GOOD_CLAIMS)
    add_uninsured_pet(lake)
    lake.refresh(as_of=AS_OF)
    return lake


@pytest.fixture(scope="session")
def hostile_records_lake(tmp_path_factory):
    """test_hostile_records' lake, refreshed once per session (its `hostile` fixture, also used
    by the pandas and Spark baseline tests)."""
    from tests.test_hostile_records import build_hostile

    return build_hostile(tmp_path_factory)


@pytest.fixture(scope="session")
def rules_v2_lake(tmp_path_factory):
    """test_rules_by_hand's v2 lake, refreshed once per session (its `built_v2` fixture, also
    used by the pandas and Spark baseline tests)."""
    from tests.test_rules_by_hand import build_v2

    return build_v2(tmp_path_factory)


# ---- Azurite: one server per session, an account per test ---------------------------------------


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    from tests.azurite import Azurite

    server = Azurite(tmp_path_factory.mktemp("azurite"), in_memory=True).start()
    yield server
    server.stop()


@pytest.fixture
def azurite(azurite_server):
    """An account of its own on the session's Azurite, with the four layer containers."""
    account = azurite_server.account()
    account.create_containers()
    return account


@pytest.fixture
def private_azurite(tmp_path: Path):
    """An Azurite of the test's own (on disk), for a test that stops and restarts the server."""
    from tests.azurite import ACCOUNT, Azurite

    server = Azurite(tmp_path / "azurite").start()
    try:
        account = server.account(ACCOUNT)
        account.create_containers()
        yield account
    finally:
        server.stop()
