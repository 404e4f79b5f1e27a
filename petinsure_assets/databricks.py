"""The Databricks engine (PETINSURE_ENGINE=databricks): each silver and gold step is a Spark job
submitted through Dagster Pipes.

The step's asset, checks and metadata are those of the DuckDB engine; only where it computes
changes. `run_step` submits `databricks_task.py` (a file of the package, uploaded next to its
wheel) as a one-task run, with the step, the lake's location, the as-of date and the run's refresh
tags in the Pipes extras, waits for it, and yields what the task reported: a materialization per
table written (row count, Delta version, run mode, engine, the Databricks run's id and URL) and
every check result, so a failed blocking check stops downstream as it does with DuckDB.

Compute (exactly one):
- a job cluster: `PETINSURE_DATABRICKS_CLUSTER`, the JSON of a `new_cluster` spec
  (PipesDatabricksClient; Pipes files on DBFS);
- an existing cluster: `PETINSURE_DATABRICKS_CLUSTER_ID` (PipesDatabricksClient);
- serverless: `PETINSURE_DATABRICKS_VOLUME`, a Unity Catalog volume for the Pipes files
  (PipesDatabricksServerlessClient).

Secrets: `DATABRICKS_TOKEN` (or `DATABRICKS_CLIENT_ID` + `DATABRICKS_CLIENT_SECRET`) are `EnvVar`s,
never in the run config, logs or metadata. The lake's credential never leaves the workspace: a
job cluster's environment names it as secret references (`{{secrets/<scope>/<name>}}`, scope
`PETINSURE_DATABRICKS_SECRET_SCOPE`), resolved by Databricks on the cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from petinsure_assets.catalog import CATALOG
from petinsure_assets.engines import DATABRICKS, EngineResource
from petinsure_assets.resources import AZURE_ENV, FULL_CHECKS_TAG, FULL_REFRESH_TAG

DATABRICKS_ENV = {
    "host": "DATABRICKS_HOST",
    "token": "DATABRICKS_TOKEN",
    "client_id": "DATABRICKS_CLIENT_ID",
    "client_secret": "DATABRICKS_CLIENT_SECRET",
    "cluster_spec": "PETINSURE_DATABRICKS_CLUSTER",
    "existing_cluster_id": "PETINSURE_DATABRICKS_CLUSTER_ID",
    "serverless_volume": "PETINSURE_DATABRICKS_VOLUME",
    "wheel": "PETINSURE_DATABRICKS_WHEEL",
    "task_file": "PETINSURE_DATABRICKS_TASK_FILE",
    "secret_scope": "PETINSURE_DATABRICKS_SECRET_SCOPE",
}
# The lake credential's variables (resources.AZURE_ENV) a job cluster gets as secret references.
CREDENTIAL_VARS = ("sas", "key", "client_id", "client_secret", "tenant_id")
SERVERLESS_ENVIRONMENT = "petinsure"


class DatabricksEngine(EngineResource):
    """Silver and gold on Databricks through Dagster Pipes (databricks.py)."""

    engine: str = DATABRICKS
    host: str = Field(description="Workspace URL (DATABRICKS_HOST).")
    token: str = Field(default="", description="Personal access token (DATABRICKS_TOKEN).")
    client_id: str = Field(default="", description="Service principal (DATABRICKS_CLIENT_ID).")
    client_secret: str = Field(default="", description="Its secret (DATABRICKS_CLIENT_SECRET).")
    cluster_spec: str = Field(default="", description="JSON `new_cluster` spec: a job cluster.")
    existing_cluster_id: str = Field(default="", description="An all-purpose cluster's id.")
    serverless_volume: str = Field(
        default="", description="/Volumes/<catalog>/<schema>/<volume>: serverless compute."
    )
    wheel: str = Field(default="", description="The package wheel on DBFS, a volume or a URL.")
    task_file: str = Field(description="databricks_task.py uploaded to DBFS or a volume.")
    secret_scope: str = Field(default="", description="Secret scope of the lake's credential.")
    poll_interval_seconds: float = Field(
        default=2.0,
        description="How often the run's state and its Pipes messages are read (each a request "
        "to the workspace); a step ends at most this long after its task.",
    )

    def workspace_client(self):
        from databricks.sdk import WorkspaceClient

        if self.token:
            return WorkspaceClient(host=self.host, token=self.token)
        return WorkspaceClient(
            host=self.host, client_id=self.client_id, client_secret=self.client_secret
        )

    def pipes_client(self):
        from dagster_databricks.pipes import (
            PipesDatabricksClient,
            PipesDatabricksServerlessClient,
            PipesDbfsMessageReader,
            PipesUnityCatalogVolumesMessageReader,
        )

        client = self.workspace_client()
        if self.serverless_volume:
            return PipesDatabricksServerlessClient(
                client,
                volume_path=self.serverless_volume,
                message_reader=PipesUnityCatalogVolumesMessageReader(
                    client=client,
                    volume_path=self.serverless_volume,
                    interval=self.poll_interval_seconds,
                ),
                poll_interval_seconds=self.poll_interval_seconds,
            )
        return PipesDatabricksClient(
            client,
            env=self.cluster_env(),
            message_reader=PipesDbfsMessageReader(
                client=client, interval=self.poll_interval_seconds
            ),
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def cluster_env(self) -> dict[str, str]:
        """A job cluster's environment: the lake credential as secret references (their names
        only; Databricks resolves them on the cluster), for the variables of the credential the
        orchestrator uses, kept in the scope under the same names."""
        if not self.secret_scope:
            return {}
        return {
            AZURE_ENV[v]: "{{secrets/" + f"{self.secret_scope}/{AZURE_ENV[v]}" + "}}"
            for v in CREDENTIAL_VARS
            if os.environ.get(AZURE_ENV[v])
        }

    def submit_task(self, path: str):
        """The one-task run of the step of `path` ("layer/table")."""
        from databricks.sdk.service import jobs

        task: dict[str, Any] = {
            "task_key": "petinsure_" + path.replace("/", "_"),
            "spark_python_task": {
                "python_file": self.task_file,
                "parameters": ["--pipes-io", "volumes" if self.serverless_volume else "dbfs"],
            },
        }
        if self.serverless_volume:
            task["environment_key"] = SERVERLESS_ENVIRONMENT
        else:
            task["libraries"] = [{"whl": self.wheel}] if self.wheel else []
            if self.existing_cluster_id:
                task["existing_cluster_id"] = self.existing_cluster_id
            else:
                task["new_cluster"] = json.loads(self.cluster_spec)
        return jobs.SubmitTask.from_dict(task)

    def submit_args(self, path: str) -> dict[str, Any]:
        args: dict[str, Any] = {"run_name": f"petinsure {path}"}
        if self.serverless_volume:
            from databricks.sdk.service import compute, jobs

            args["environments"] = [
                jobs.JobEnvironment(
                    environment_key=SERVERLESS_ENVIRONMENT,
                    spec=compute.Environment(
                        client="2", dependencies=[self.wheel] if self.wheel else []
                    ),
                )
            ]
        return args

    def run_step(
        self,
        context: dg.AssetExecutionContext,
        lake,
        path: str,
        catalog,
        local: Callable[[], Iterator],
        as_of=None,
    ) -> Iterator:
        """Submit the step of `path` and yield what the task reported."""
        extras = {
            "step": path,
            "lake": lake_location(lake),
            "as_of": as_of.isoformat() if as_of else "",
            "tags": {
                t: context.run.tags[t]
                for t in (FULL_REFRESH_TAG, FULL_CHECKS_TAG)
                if t in context.run.tags
            },
            "catalog": "" if catalog is CATALOG else str(catalog.root),
            "secret_scope": self.secret_scope if self.serverless_volume else "",
        }
        context.log.info(
            f"{path}: submitting to Databricks at {self.host} ("
            + (
                "serverless"
                if self.serverless_volume
                else f"cluster {self.existing_cluster_id}"
                if self.existing_cluster_id
                else "a job cluster"
            )
            + ")"
        )
        invocation = self.pipes_client().run(
            context=context,
            extras=extras,
            task=self.submit_task(path),
            submit_args=self.submit_args(path),
        )
        results = list(invocation.get_results())
        written = {r.asset_key for r in results if isinstance(r, dg.MaterializeResult)}
        expected = set(context.selected_asset_keys)
        if not expected <= written:
            run_id = invocation.metadata.get("Databricks Job Run ID")
            raise dg.Failure(
                f"Databricks run {getattr(run_id, 'value', run_id)} of {path} ended without "
                "reporting "
                + ", ".join(sorted(k.to_user_string() for k in expected - written))
                + " (cancelled, or it stopped before writing): nothing downstream runs"
            )
        yield from results


def lake_location(lake) -> dict[str, str]:
    """Where the task finds the lake (no credential): a local root, or the ADLS account."""
    if not lake.storage_account:
        return {"root": os.path.abspath(lake.root)}
    return {
        "storage_account": lake.storage_account,
        "blob_endpoint": lake.blob_endpoint,
        **{
            f"{layer}_container": getattr(lake, f"{layer}_container")
            for layer in ("raw", "bronze", "silver", "gold")
        },
    }


def databricks_engine_from_env() -> DatabricksEngine:
    """The Databricks engine configured by the environment (DATABRICKS_ENV); says which
    variable is missing or contradicts another."""
    env = os.environ
    missing = [DATABRICKS_ENV[k] for k in ("host", "task_file") if not env.get(DATABRICKS_ENV[k])]
    if not env.get(DATABRICKS_ENV["token"]) and not env.get(DATABRICKS_ENV["client_secret"]):
        missing.append(f"{DATABRICKS_ENV['token']} (or DATABRICKS_CLIENT_ID and _SECRET)")
    compute = [
        DATABRICKS_ENV[k]
        for k in ("cluster_spec", "existing_cluster_id", "serverless_volume")
        if env.get(DATABRICKS_ENV[k])
    ]
    if len(compute) != 1:
        missing.append(
            "exactly one of PETINSURE_DATABRICKS_CLUSTER, PETINSURE_DATABRICKS_CLUSTER_ID, "
            f"PETINSURE_DATABRICKS_VOLUME (set: {', '.join(compute) or 'none'})"
        )
    if missing:
        raise ValueError("PETINSURE_ENGINE=databricks needs " + "; ".join(missing))
    if env.get(DATABRICKS_ENV["cluster_spec"]):
        try:
            json.loads(env[DATABRICKS_ENV["cluster_spec"]])
        except json.JSONDecodeError as e:
            raise ValueError(f"PETINSURE_DATABRICKS_CLUSTER is not JSON: {e}") from None

    def secret(key: str):
        return dg.EnvVar(DATABRICKS_ENV[key]) if env.get(DATABRICKS_ENV[key]) else ""

    return DatabricksEngine(
        host=env[DATABRICKS_ENV["host"]],
        token=secret("token"),
        client_id=env.get(DATABRICKS_ENV["client_id"], ""),
        client_secret=secret("client_secret"),
        **{
            k: env.get(DATABRICKS_ENV[k], "")
            for k in (
                "cluster_spec",
                "existing_cluster_id",
                "serverless_volume",
                "wheel",
                "task_file",
                "secret_scope",
            )
        },
    )
