"""Shared test helpers: a temporary lake, raw files written by hand, and reading tables back."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from petinsure_assets.cli import RefreshSummary, run_refresh
from petinsure_assets.lake import Lake


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
