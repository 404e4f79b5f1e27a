"""Every command ends with its true status and all its output, even when the interpreter would
abort on its way out (pyarrow's threads, apache/arrow#34314: about 1 run in 850).

The race is made certain instead of waited for: each command runs in a subprocess whose
sitecustomize registers `os.abort()` at exit, which is exactly where the upstream race strikes.
A plain interpreter then dies with SIGABRT every time; our entry points must not."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from petinsure_assets.cli import main
from petinsure_assets.snapshot_client import DEMO_SNAPSHOT_DIR
from tests.conftest import LakeFixture
from tests.test_checks import GOOD_CLAIMS
from tests.test_pipeline import AS_OF, write_base

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD = 600  # seconds; a hung command fails the test instead of the suite

FAULT = """\
import atexit, os, sys
atexit.register(os.abort)  # an abort during interpreter teardown, every time
if os.environ.get("PETINSURE_TEST_NO_DAGSTER"):
    sys.modules["dagster"] = None  # `import dagster` raises ImportError
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAULT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    # PYTHONUNBUFFERED would hide a missing flush: output stays buffered, as in production.
    for name in (
        "PYTHONUNBUFFERED",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_SAS_TOKEN",
        "PETINSURE_LAKE_ROOT",
        "PETINSURE_SNAPSHOT_DIR",
        "USE_LIVE_DATA",
    ):
        env.pop(name, None)
    return env


def python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def console_script(name: str) -> list[str]:
    """What pip's generated script for a [project.scripts] entry runs: sys.exit(<function>())."""
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"][name]
    module, function = target.split(":")
    return ["-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


PETINSURE = {
    "python -m petinsure_assets": ["-m", "petinsure_assets"],
    "petinsure (console script)": console_script("petinsure"),
}


def _main_blocks(path: Path) -> list[list[ast.stmt]]:
    """The code a module runs as a program: its `if __name__ == "__main__":` blocks (all of a
    package's __main__.py)."""
    tree = ast.parse(path.read_text())
    if path.name == "__main__.py":
        return [tree.body]
    return [
        node.body
        for node in tree.body
        if isinstance(node, ast.If)
        and ast.unparse(node.test) in ("__name__ == '__main__'", "'__main__' == __name__")
    ]


def test_every_program_of_the_project_ends_through_run_and_exit():
    programs = {}
    for path in sorted([*REPO.glob("petinsure_assets/**/*.py"), *REPO.glob("bench/**/*.py")]):
        for block in _main_blocks(path):
            calls = {
                ast.unparse(n.func)
                for stmt in block
                for n in ast.walk(stmt)
                if isinstance(n, ast.Call)
            }
            programs[path.relative_to(REPO).as_posix()] = "run_and_exit" in calls
    # The Databricks task is the one program that returns: on a cluster it runs inside the
    # driver's Python process (and in tests inside the fake workspace's), which is not its to end.
    assert programs.pop("petinsure_assets/databricks_task.py") is False
    assert programs == {
        name: True
        for name in (
            "bench/baselines/pandas_notebooks.py",
            "bench/baselines/spark_local.py",
            "bench/front_door.py",
            "bench/incremental.py",
            "bench/probe.py",
            "bench/run.py",
            "petinsure_assets/__main__.py",
            "petinsure_assets/cli.py",
            "petinsure_assets/demo_data.py",
            "petinsure_assets/snapshot_client.py",
        )
    }


def test_the_injected_fault_aborts_an_ordinary_exit(env, tmp_path: Path):
    done = python(["-c", "print('done')"], env, tmp_path)
    assert (done.returncode, done.stdout) == (
        -signal.SIGABRT,
        "",
    )  # and its buffered output is lost


@pytest.mark.parametrize("command", PETINSURE)
def test_cli_success_exits_0_with_all_its_output(command, env, tmp_path: Path):
    lake = tmp_path / "lake"
    done = python(
        [*PETINSURE[command], "generate", "--claims", "20", "--lake", str(lake)], env, tmp_path
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"generating demo raw data: 20 claims into {lake}/raw\n",
        "",
    )
    assert (lake / "raw" / "claims" / "claims.jsonl").is_file()


@pytest.mark.parametrize("command", PETINSURE)
def test_cli_usage_error_exits_2_before_anything_runs(command, env, tmp_path: Path):
    done = python(
        [*PETINSURE[command], "refresh", "--lake", str(tmp_path / "lake"), "--as-of", "2025-02-30"],
        env,
        tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.endswith(
        "petinsure refresh: error: argument --as-of: "
        "reporting_date.as_of must be YYYY-MM-DD, got '2025-02-30'\n"
    )
    assert not (tmp_path / "lake").exists()


def test_cli_unusable_lake_exits_2_with_a_message(env, tmp_path: Path):
    (tmp_path / "a-file").write_text("not a folder")
    done = python(
        [
            "-m",
            "petinsure_assets",
            "generate",
            "--claims",
            "20",
            "--lake",
            str(tmp_path / "a-file"),
        ],
        env,
        tmp_path,
    )
    assert (done.returncode, done.stderr) == (
        2,
        f"petinsure: [Errno 20] Not a directory: '{tmp_path}/a-file/raw/customers'\n",
    )


def test_refresh_of_a_raw_zone_with_data_says_that_claims_is_ignored(
    lake: LakeFixture, tmp_path: Path, monkeypatch, capsys
):
    """`make demo ARGS="--claims 20000"` on an existing lake refreshes what raw/ holds: it says so."""
    write_base(lake, GOOD_CLAIMS)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    status = main(["refresh", "--lake", str(lake.root), "--claims", "20000", "--as-of", AS_OF])
    out, err = capsys.readouterr()
    assert status == 0 and out.startswith("refresh_all succeeded")
    assert err.startswith(
        f"petinsure: {lake.root}/raw already holds data; --claims 20000 ignored, the lake is refreshed "
        "as it is. To generate new demo data, pass --lake <new folder> or delete the lake first "
        "(`make clean` deletes ./lake).\n"
    )
    assert sorted(p.name for p in (lake.root / "raw" / "claims").iterdir()) == ["claims.jsonl"]
    assert len(lake.rows("bronze", "claims_raw")) == 4  # the 4 lines of claims.jsonl


PROGRAM = """\
import logging, logging.handlers, sys
from petinsure_assets.entry_point import run_and_exit

def main():
{body}

run_and_exit(main)
"""


@pytest.mark.parametrize(
    "body, status, stdout, stderr",
    [
        # 100,000 characters stay in the pipe's buffer until flushed: all of them arrive.
        ("    print('x' * 99_999)", 0, "x" * 99_999 + "\n", ""),
        ("    print('partial', end='')\n    return 1", 1, "partial", ""),
        ("    raise SystemExit(2)", 2, "", ""),
        ("    raise SystemExit('no lake here')", 1, "", "no lake here\n"),
        ("    raise KeyboardInterrupt", 130, "", ""),
        # A handler that holds records until it is flushed: logging.shutdown() writes them.
        (
            "    handler = logging.handlers.MemoryHandler(100, target=logging.StreamHandler(sys.stdout))\n"
            "    logging.getLogger('p').addHandler(handler)\n"
            "    logging.getLogger('p').warning('logged before exit')",
            0,
            "logged before exit\n",
            "",
        ),
    ],
)
def test_run_and_exit_gives_the_status_the_interpreter_would(
    body, status, stdout, stderr, env, tmp_path
):
    done = python(["-c", PROGRAM.format(body=body)], env, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (status, stdout, stderr)


def test_run_and_exit_reports_an_unexpected_error_with_its_traceback(env, tmp_path: Path):
    done = python(["-c", PROGRAM.format(body="    raise ValueError('boom')")], env, tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Traceback (most recent call last):\n")
    assert done.stderr.endswith("ValueError: boom\n")


def test_snapshot_client_command_needs_no_dagster_and_exits_0(env, tmp_path: Path):
    env["PETINSURE_TEST_NO_DAGSTER"] = "1"
    probe = python(["-c", "import dagster"], env, tmp_path)
    assert "ModuleNotFoundError: import of dagster halted" in probe.stderr

    latest = json.loads((DEMO_SNAPSHOT_DIR / "latest.json").read_text())
    manifest = json.loads((DEMO_SNAPSHOT_DIR / latest["manifest"]).read_text())
    done = python(["-m", "petinsure_assets.snapshot_client", "--demo"], env, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {
        "version": latest["version"],
        "as_of": "2026-01-31",
        "created_at": manifest["created_at"],
        "rows": {name: f["rows"] for name, f in manifest["files"].items()},
    }
    assert json.loads(done.stdout)["rows"]["claims_analytics.parquet"] == 297


def test_snapshot_client_command_exits_1_when_the_snapshot_cannot_be_read(env, tmp_path: Path):
    done = python(["-m", "petinsure_assets.snapshot_client", str(tmp_path)], env, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "snapshot_client: cannot read latest.json: No such file or directory\n",
    )


def test_api_process_serves_then_exits_0_on_ctrl_c(env, tmp_path: Path):
    """On a Unix socket, so that no port is needed (no free-port race)."""
    sock = tmp_path / "api.sock"
    env["USE_LIVE_DATA"] = "false"  # the bundled demo snapshot
    process = subprocess.Popen(
        [sys.executable, "-m", "petinsure_assets", "api", "--uds", str(sock)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = []
        for line in process.stderr:  # uvicorn logs to stderr; EOF if the process died
            started.append(line)
            if "Uvicorn running on socket" in line:
                break
        assert any("Uvicorn running on socket" in line for line in started), "".join(started)
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://api"
        ) as http:
            health = http.get("/health")
        assert (health.status_code, health.json()["status"], health.json()["source"]) == (
            200,
            "ok",
            "demo",
        )
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert '"GET /health HTTP/1.1" 200' in stdout
    assert "Shutting down" in stderr and stderr.rstrip().endswith(
        f"Finished server process [{process.pid}]"
    )
    assert not sock.exists()


def test_api_process_that_cannot_listen_exits_3(env, tmp_path: Path):
    socket_path = tmp_path / "no-such-folder" / "api.sock"
    done = python(["-m", "petinsure_assets", "api", "--uds", str(socket_path)], env, tmp_path)
    assert (done.returncode, done.stderr) == (  # 3: uvicorn's STARTUP_FAILURE
        3,
        f"petinsure api: cannot listen on {socket_path}: No such file or directory\n",
    )

    with socket.socket() as held:  # a port this test holds: taken for sure, no race
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = python(["-m", "petinsure_assets", "api", "--port", str(port)], env, tmp_path)
    assert done.returncode == 3
    assert (
        f"[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): address already in use"
        in done.stderr
    )
