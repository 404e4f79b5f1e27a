"""Where silver and gold compute: the engine switch.

`PETINSURE_ENGINE` chooses, when the definitions load:

- `duckdb` (the default): every step runs in this process, in DuckDB sessions;
- `databricks`: every silver and gold step submits a Spark job to Databricks through Dagster
  Pipes (databricks.py); the job runs the same step code (`silver.silver_step`,
  `gold.gold_step`) with the same SQL translated to Spark SQL (spark_engine.py) and reports its
  materializations and check results back.

Both give the same asset keys, check specs, metadata names and freshness; the kind tags and the
`engine` metadata of every materialization say which engine computed it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import dagster as dg
from pydantic import Field

ENGINE_ENV = "PETINSURE_ENGINE"
DUCKDB, DATABRICKS = "duckdb", "databricks"
ENGINES = (DUCKDB, DATABRICKS)


def engine_from_env() -> str:
    """The engine named by PETINSURE_ENGINE (default duckdb); anything else is an error that
    says what is accepted."""
    name = os.environ.get(ENGINE_ENV, "").strip().lower() or DUCKDB
    if name not in ENGINES:
        raise ValueError(
            f"{ENGINE_ENV}={os.environ[ENGINE_ENV]!r} is not an engine: use one of "
            + ", ".join(ENGINES)
        )
    return name


def engine_kinds(engine: str) -> set[str]:
    """The kind tags the UI shows on a silver or gold asset."""
    return {"delta", "duckdb"} if engine == DUCKDB else {"delta", "spark", "databricks"}


def run_metadata(mode: str, reason: str, engine: str) -> dict[str, dg.MetadataValue]:
    """What every silver and gold materialization says about how it was computed."""
    return {
        "run_mode": dg.MetadataValue.text(mode),
        "run_reason": dg.MetadataValue.text(reason),
        "engine": dg.MetadataValue.text(engine),
    }


class EngineResource(dg.ConfigurableResource):
    """The DuckDB engine: a step runs here, in this process (the Databricks engine,
    `databricks.DatabricksEngine`, is a subclass that submits it instead)."""

    engine: str = Field(
        default=DUCKDB, description="Where silver and gold compute (PETINSURE_ENGINE)."
    )

    @property
    def name(self) -> str:
        return self.engine

    def run_step(
        self,
        context: dg.AssetExecutionContext,
        lake,
        path: str,
        catalog,
        local: Callable[[], Iterator],
        as_of=None,
    ) -> Iterator:
        """Run the step of the table `path` ("layer/table"): here, `local()`."""
        yield from local()
