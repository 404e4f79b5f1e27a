"""A Databricks workspace on this machine, for the real `dagster-databricks` Pipes clients.

There is no official fake of the Databricks SDK (dagster_databricks_tests only mock it), so this is
one at the level of its REST calls: the SDK's own `JobsAPI`, `DbfsAPI` and `FilesAPI` classes
(the ones the Pipes clients build from `client.api_client`) talk to `FakeApiClient.do`, which
serves the endpoints they call from a local folder:

- DBFS (`/api/2.0/dbfs/...`): files under <root>/dbfs, which the task sees mounted at
  PETINSURE_DBFS_MOUNT (Databricks mounts DBFS at /dbfs);
- Files (`/api/2.0/fs/...`): Unity Catalog volume paths, which are local folders here;
- Jobs (`/api/2.2/jobs/runs/...`): `runs/submit` runs the task's Python file (a
  `spark_python_task`) in a thread, as `__main__` with the task's parameters as arguments and the
  cluster's `spark_env_vars` (secret references resolved from `secrets`) as its environment,
  with the local Spark session `local[2]` as the cluster's session: a one-node cluster that runs
  one task at a time. `runs/get` reports its life cycle; `runs/cancel` cancels its Spark jobs (the
  task's job group) and the run ends CANCELED.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import re
import runpy
import shutil
import sys
import threading
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster_pipes
from databricks.sdk.errors import NotFound
from databricks.sdk.service.compute import ClustersAPI
from databricks.sdk.service.jobs import JobsAPI

DBFS_MOUNT_ENV = "PETINSURE_DBFS_MOUNT"
CLUSTER_TAGS = {
    "spark.databricks.clusterUsageTags.clusterLogDeliveryEnabled": "false",
    "spark.databricks.clusterUsageTags.clusterLogDestination": "",
    "spark.databricks.clusterUsageTags.clusterId": "fake-cluster",
}
_SECRET_REFERENCE = re.compile(r"\{\{secrets/([^/}]+)/([^}]+)\}\}")


@dataclass
class FakeRun:
    run_id: int
    task: dict[str, Any]
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    cancelled: bool = False
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict[str, Any]:
        state = {"life_cycle_state": self.life_cycle_state, "state_message": self.state_message}
        if self.result_state:
            state["result_state"] = self.result_state
        return {
            "run_id": self.run_id,
            "state": state,
            "run_page_url": f"https://fake.databricks/jobs/runs/{self.run_id}",
            "tasks": [{"task_key": self.task["task_key"], "state": state}],
        }


class FakeWorkspace:
    """What the Pipes clients use of a `WorkspaceClient`: `api_client`, `jobs`, `clusters`."""

    def __init__(self, root: Path, spark, secrets: dict[tuple[str, str], str] | None = None):
        self.root = root
        self.dbfs_root = root / "dbfs"
        self.dbfs_root.mkdir(parents=True, exist_ok=True)
        self.spark = spark
        self.secrets = dict(secrets or {})
        self.runs: dict[int, FakeRun] = {}
        self.submitted: list[dict[str, Any]] = []  # every runs/submit body, as sent
        self._ids = itertools.count(1)
        self._cluster = threading.Lock()  # one task at a time
        self.api_client = FakeApiClient(self)
        self.jobs = JobsAPI(self.api_client)
        self.clusters = ClustersAPI(self.api_client)
        # What a Databricks cluster's sessions (every one: the context's conf) say about it.
        for key, value in CLUSTER_TAGS.items():
            spark.sparkContext._jsc.sc().conf().set(key, value)
            spark.conf.set(key, value)

    # ---- jobs ------------------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        self.submitted.append(body)
        (task,) = body["tasks"]
        run = FakeRun(next(self._ids), task)
        self.runs[run.run_id] = run
        threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        return {"run_id": run.run_id}

    def cancel(self, run_id: int) -> None:
        run = self.runs[run_id]
        run.cancelled = True
        if not run.done.is_set():
            run.life_cycle_state = "TERMINATING"
            self.spark.sparkContext.cancelJobGroup(f"fake-run-{run_id}")

    def _environment(self, task: dict[str, Any]) -> dict[str, str]:
        env = dict(task.get("new_cluster", {}).get("spark_env_vars", {}))
        for name, value in env.items():
            for scope, key in _SECRET_REFERENCE.findall(value):
                if (scope, key) not in self.secrets:
                    raise KeyError(f"secret {key} not found in scope {scope}")
                env[name] = value.replace(
                    "{{secrets/" + f"{scope}/{key}" + "}}", self.secrets[(scope, key)]
                )
        env[DBFS_MOUNT_ENV] = str(self.dbfs_root)
        return env

    def _execute(self, run: FakeRun) -> None:
        python = run.task["spark_python_task"]
        with self._cluster:
            if run.cancelled:
                self._end(run, "CANCELED", "cancelled before it started")
                return
            run.life_cycle_state = "RUNNING"
            saved_argv, saved_env = sys.argv, {}
            try:
                env = self._environment(run.task)
                saved_env = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                sys.argv = [python["python_file"], *python.get("parameters", [])]
                # Each task of a cluster is a Python process of its own: no Pipes context yet.
                dagster_pipes.PipesContext._instance = None
                # The session a Databricks driver hands its task: active in the task's thread.
                self.spark._jvm.SparkSession.setActiveSession(self.spark._jsparkSession)
                self.spark.sparkContext.setJobGroup(
                    f"fake-run-{run.run_id}", run.task["task_key"], interruptOnCancel=True
                )
                runpy.run_path(python["python_file"], run_name="__main__")
            except BaseException as e:  # noqa: BLE001 - the run fails with it, as on a cluster
                run.error = traceback.format_exc()
                if run.cancelled:
                    self._end(run, "CANCELED", "Run cancelled.")
                else:
                    self._end(run, "FAILED", f"{type(e).__name__}: {e}".splitlines()[0])
                return
            finally:
                for k, v in saved_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                sys.argv = saved_argv
            self._end(run, "CANCELED" if run.cancelled else "SUCCESS", "")

    @staticmethod
    def _end(run: FakeRun, result: str, message: str) -> None:
        run.result_state, run.state_message = result, message
        run.life_cycle_state = "TERMINATED"
        run.done.set()

    # ---- files -----------------------------------------------------------------------------

    def dbfs_path(self, path: str) -> Path:
        return self.dbfs_root / path.removeprefix("dbfs:").lstrip("/")


class FakeApiClient:
    """`ApiClient.do` for the endpoints the Pipes clients call."""

    def __init__(self, workspace: FakeWorkspace):
        self.workspace = workspace

    def do(
        self,
        method: str,
        path: str,
        query: dict | None = None,
        headers: dict | None = None,
        body: dict | None = None,
        raw: bool = False,
        files=None,
        data=None,
        auth=None,
        response_headers=None,
    ) -> Any:
        w = self.workspace
        query, body = query or {}, body or {}
        if path.startswith("/api/2.0/fs/"):
            kind, _, local = path.removeprefix("/api/2.0/fs/").partition("/")
            return self._files(method, kind, Path("/" + urllib.parse.unquote(local)), data)
        route = (method, path)
        if route == ("POST", "/api/2.0/dbfs/mkdirs"):
            w.dbfs_path(body["path"]).mkdir(parents=True, exist_ok=True)
        elif route == ("POST", "/api/2.0/dbfs/delete"):
            target = w.dbfs_path(body["path"])
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        elif route == ("POST", "/api/2.0/dbfs/put"):
            target = w.dbfs_path(body["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(body.get("contents", "")))
        elif route == ("GET", "/api/2.0/dbfs/read"):
            target = w.dbfs_path(query["path"])
            if not target.is_file():
                raise NotFound(f"No file or directory exists on path {query['path']}.")
            content = target.read_bytes()
            return {"bytes_read": len(content), "data": base64.b64encode(content).decode()}
        elif route == ("GET", "/api/2.0/dbfs/get-status"):
            target = w.dbfs_path(query["path"])
            if not target.exists():
                raise NotFound(f"No file or directory exists on path {query['path']}.")
            size = target.stat().st_size if target.is_file() else 0
            return {"path": query["path"], "is_dir": target.is_dir(), "file_size": size}
        elif route == ("POST", "/api/2.2/jobs/runs/submit"):
            return w.submit(body)
        elif route == ("GET", "/api/2.2/jobs/runs/get"):
            return w.runs[int(query["run_id"])].as_dict()
        elif route == ("POST", "/api/2.2/jobs/runs/cancel"):
            w.cancel(int(body["run_id"]))
        else:
            raise NotImplementedError(f"the fake workspace does not serve {method} {path}")
        return {}

    @staticmethod
    def _files(method: str, kind: str, local: Path, data) -> Any:
        if kind == "directories":
            if method == "PUT":
                local.mkdir(parents=True, exist_ok=True)
            elif method == "DELETE":
                local.rmdir()
            elif method in ("GET", "HEAD"):
                if not local.is_dir():
                    raise NotFound(f"The directory {local} does not exist.")
                if method == "GET":
                    return {
                        "contents": [
                            {"path": str(p), "name": p.name, "is_directory": p.is_dir()}
                            for p in sorted(local.iterdir())
                        ]
                    }
            return {}
        if method == "PUT":
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data.read() if hasattr(data, "read") else bytes(data))
        elif method == "DELETE":
            local.unlink()
        elif method in ("GET", "HEAD"):
            if not local.is_file():
                raise NotFound(f"The file {local} does not exist.")
            if method == "GET":
                return {"contents": io.BytesIO(local.read_bytes())}
        return {}
