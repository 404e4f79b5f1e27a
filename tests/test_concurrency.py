"""One writer at a time: real processes contend for one lake (lock.py).

Synchronisation is by pipes only: a holder process prints "held" once it holds the lake; a waiting
refresh prints its "waiting" notice before it waits. Nothing here sleeps to let another process
get somewhere.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest

from petinsure_assets.definitions import build_definitions
from petinsure_assets.lake import Lake
from petinsure_assets.lock import LakeBusyError, writer_lock
from tests.conftest import LakeFixture
from tests.test_checks import GOOD_CLAIMS
from tests.test_pipeline import AS_OF, write_base

REPO = Path(__file__).resolve().parents[1]
EXIT_LAKE_BUSY = 75

# write_base: 2 customers, 2 pets, 2 policies, 1 provider (CSV rows) and 4 claim lines, one of
# them not JSON (a bronze row, quarantined in silver).
RAW_RECORDS = {
    "customers_raw": 2,
    "pets_raw": 2,
    "policies_raw": 2,
    "providers_raw": 1,
    "claims_raw": 4,
}
SILVER_KEYS = {
    "dim_customers": ("customer_id", 2),
    "dim_pets": ("pet_id", 2),
    "dim_policies": ("policy_id", 2),
    "dim_providers": ("provider_id", 1),
    "fact_claims": ("claim_id", 3),
}

# Takes the lake through the product's API, says so, and holds it until its stdin closes.
HOLDER = """
import sys
from petinsure_assets.lock import writer_lock
from petinsure_assets.resources import lake_resource_from_env

lake = lake_resource_from_env(sys.argv[1] or None, resolve=True).lake()
with writer_lock(lake, "test holder", run_id="holder-run", wait=0):
    print("held", flush=True)
    sys.stdin.read()
"""


def process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PETINSURE_", "AZURE_"))}
    env.update(PYTHONPATH=str(REPO), DAGSTER_HOME=str(tmp_path / "dagster_home"), **extra)
    return env


class Holder:
    """A process that holds the lake's writer lock until it is killed."""

    def __init__(self, lake_arg: str, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, lake_arg],
            env=env,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line == "held\n", line

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup runs in the holder; only the kernel (or the lease) can free it."""
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait() == -signal.SIGKILL
        self.process.stdout.close()
        self.process.stdin.close()


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(lake_arg: str, env: dict[str, str]) -> Holder:
        started.append(Holder(lake_arg, env))
        return started[-1]

    yield start
    for holder in started:
        if holder.process.poll() is None:
            holder.kill()


def refresh_command(lake_arg: str | None, *args: str) -> list[str]:
    lake = ["--lake", lake_arg] if lake_arg else []
    return [sys.executable, "-m", "petinsure_assets", "refresh", *lake, "--as-of", AS_OF, *args]


def refusal_pattern(holder: Holder, where: str) -> re.Pattern:
    return re.compile(
        rf"petinsure: the lake \({re.escape(where)}\) is being written by test holder \(run "
        rf"holder-run, pid {holder.pid} on host {re.escape(socket.gethostname())}, since "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\); not waiting \(lock wait 0 s\)\. Run again once it "
        r"has finished, or wait longer: --lock-wait SECONDS or PETINSURE_LOCK_WAIT_SECONDS\n"
    )


def assert_ingested_once(lake: Lake) -> None:
    counts = {
        t: lake.read(lake.table_uri("bronze", t), "SELECT count(*) AS n FROM t")
        .column("n")[0]
        .as_py()
        for t in RAW_RECORDS
    }
    assert counts == RAW_RECORDS
    for table, (key, expected) in SILVER_KEYS.items():
        row = lake.read(
            lake.table_uri("silver", table),
            f"SELECT count(*) AS n, count(DISTINCT {key}) AS k FROM t",
        ).to_pylist()
        assert row == [{"n": expected, "k": expected}], table


@pytest.fixture
def small_lake(tmp_path: Path) -> LakeFixture:
    lake = LakeFixture(tmp_path / "lake")
    write_base(lake, GOOD_CLAIMS)
    return lake


def test_two_refreshes_started_together_ingest_once(small_lake, tmp_path, holders):
    """Both refreshes are started while a holder has the lake, so both are provably waiting when
    it dies; then they contend with each other. One ingests, the other waits for it and finds
    nothing new."""
    env = process_env(tmp_path)
    holder = holders(str(small_lake.root), env)
    refreshes = [
        subprocess.Popen(
            refresh_command(str(small_lake.root), "--lock-wait", "600"),
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for refresh in refreshes:
        assert refresh.stderr.readline() == (
            f"petinsure: waiting up to 600 s for the lake (local folder {small_lake.root}): it is "
            f"being written by test holder (run holder-run, pid {holder.pid} on host "
            f"{socket.gethostname()}, since {holder_since(small_lake.root)})\n"
        )
    holder.kill()
    outcomes = [refresh.communicate() for refresh in refreshes]
    assert [r.returncode for r in refreshes] == [0, 0], [err[-2000:] for _, err in outcomes]
    assert all(out.startswith("refresh_all succeeded") for out, _ in outcomes)
    assert_ingested_once(small_lake.lake)


def holder_since(root: Path) -> str:
    import json

    return json.loads((root / "_lake_writer.lock").read_text())["since"]


def test_refresh_refuses_while_held_and_runs_once_the_holder_is_killed(
    small_lake, tmp_path, holders
):
    env = process_env(tmp_path)
    holder = holders(str(small_lake.root), env)
    refused = subprocess.run(
        refresh_command(str(small_lake.root), "--lock-wait", "0"),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == EXIT_LAKE_BUSY, refused.stderr[-2000:]
    assert refusal_pattern(holder, f"local folder {small_lake.root}").fullmatch(refused.stderr)
    assert refused.stdout == ""
    assert sorted(p.name for p in small_lake.root.iterdir()) == ["_lake_writer.lock", "raw"]

    holder.kill()
    done = subprocess.run(
        refresh_command(str(small_lake.root), "--lock-wait", "0"),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_ingested_once(small_lake.lake)
    # Released at the end: the lock names nobody, and this process can take it at once.
    assert (small_lake.root / "_lake_writer.lock").read_bytes() == b""
    with writer_lock(small_lake.lake, "test", wait=0):
        pass


def test_every_dagster_job_refuses_while_the_lake_is_held(
    small_lake, tmp_path, holders, monkeypatch
):
    monkeypatch.setenv("PETINSURE_LOCK_WAIT_SECONDS", "0")
    holder = holders(str(small_lake.root), process_env(tmp_path))
    defs = build_definitions(str(small_lake.root))
    repository = defs.get_repository_def()
    jobs = sorted(job.name for job in repository.get_all_jobs())
    assert {"refresh_all", "publish_api_snapshot"} <= set(jobs)
    for name in jobs:
        result = repository.get_job(name).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
            run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}}},
        )
        assert not result.success, name
        failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        assert len(failures) == 1, name
        assert f"is being written by test holder (run holder-run, pid {holder.pid}" in str(
            failures[0].event_specific_data.error
        ), name
    assert sorted(p.name for p in small_lake.root.iterdir()) == ["_lake_writer.lock", "raw"]

    # A sensor only reads: it is not held up by the writer, and asks for the run.
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, definitions=defs, resources=defs.resources
        ) as context,
    ):
        tick = defs.resolve_sensor_def("raw_files_sensor").evaluate_tick(context)
    assert len(tick.run_requests) == 1


def test_another_thread_of_the_process_is_another_writer(tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    errors: list[str] = []

    def second_writer():
        try:
            with writer_lock(lake, "second", wait=0):
                errors.append("second writer got the lake")
        except LakeBusyError as e:
            errors.append(str(e))

    with writer_lock(lake, "first", run_id="run-1", wait=0):
        with writer_lock(lake, "first, again", run_id="run-2", wait=0):  # reentrant
            thread = threading.Thread(target=second_writer)
            thread.start()
            thread.join()
    assert len(errors) == 1
    assert re.fullmatch(
        rf"the lake \(local folder {re.escape(lake.root)}\) is being written by first \(run run-2, "
        rf"pid {os.getpid()} on host {re.escape(socket.gethostname())}, since \S+\); not waiting "
        r"\(lock wait 0 s\)\. .*",
        errors[0],
    )


def test_azure_refuses_while_leased_and_the_lease_of_a_killed_holder_expires(
    small_lake, tmp_path, holders, azurite
):
    from dagster_azure.adls2 import ADLS2Key

    from petinsure_assets.azure import azure_lake

    account, key = azurite.name, azurite.key  # an account of its own on the session's Azurite
    service = azurite.service()
    raw = small_lake.root / "raw"
    for path in sorted(raw.rglob("*")):
        if path.is_file():
            service.get_container_client("raw").upload_blob(
                path.relative_to(raw).as_posix(), path.read_bytes()
            )
    # The shortest lease Azure grants: a killed holder's lease is gone 15 s after its last
    # renewal, and the refresh below waits for that.
    env = process_env(
        tmp_path,
        AZURE_STORAGE_ACCOUNT=account,
        AZURE_STORAGE_KEY=key,
        AZURE_STORAGE_BLOB_ENDPOINT=azurite.endpoint,
        PETINSURE_LOCK_LEASE_SECONDS="15",
    )
    holder = holders("", env)

    refused = subprocess.run(
        refresh_command(None, "--lock-wait", "0"),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == EXIT_LAKE_BUSY, refused.stderr[-2000:]
    where = f"storage account {account} (containers raw, bronze, silver, gold)"
    assert refusal_pattern(holder, where).fullmatch(refused.stderr)
    assert key not in refused.stderr
    written = {
        c: sorted(b.name for b in service.get_container_client(c).list_blobs())
        for c in ("bronze", "silver", "gold")
    }
    assert written == {"bronze": ["_lake_writer.lock"], "silver": [], "gold": []}

    holder.kill()
    done = subprocess.run(
        refresh_command(None, "--lock-wait", "120"),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert key not in done.stderr + done.stdout
    assert_ingested_once(azure_lake(account, ADLS2Key(key=key), endpoint=azurite.endpoint))
    lock = service.get_blob_client("bronze", "_lake_writer.lock").get_blob_properties()
    assert (lock.lease.state, lock.size) == ("available", 0)  # released, and names nobody
