"""The whole path, measured: `POST /api/claims/` -> raw sensor -> refresh run -> exports sensor ->
snapshot run -> the API's snapshot cache -> the claim in `GET /api/insights/claims`, through the
real Dagster daemon and the real API server. Run in a process of its own on a lake that a full
refresh built.

    .venv/bin/python -m bench.front_door --lake /tmp/lake --work /tmp/fd --out fd.json \\
        [--settings default shortest]

For each setting (`default`, the product as shipped: sensors every 30 s, `DATA_CACHE_TTL` 300 s,
the run queue dequeuing every 5 s; `shortest`, the shortest sensible: sensors on every pass of the
daemon's 5 s sensor loop, a 1 s cache, the run queue dequeuing every second; see SETTINGS):

1. the lake is brought to today's as-of date, the one the sensor-launched run uses (its
   `reporting_date` is empty: today, UTC), by an incremental refresh and snapshot in this process
   (not timed; on a lake last refreshed at another as-of date gold is rebuilt here, once), so the
   measured run is the steady-state incremental one;
2. a new DAGSTER_HOME with the project's dagster.yaml (the run queue: one run at a time; its
   dequeue interval that of the setting), and in it the real daemon, `dagster-daemon run -w workspace.yaml`, with PETINSURE_LAKE_ROOT and the
   sensor intervals of the setting; the real API server, `python -m petinsure_assets api --uds`,
   on a Unix socket (no port), with the setting's DATA_CACHE_TTL. The stage waits for the
   sensors' first ticks (the raw sensor's only records the listing as its cursor);
3. one claim of an existing customer, policy, pet and provider is POSTed to the front door,
   which writes its real-time file into raw/claims/; the API is asked for the customer's claims
   every 0.5 s, every 0.1 s once the snapshot run has ended, until the claim is there (the API's
   own event loop asks its snapshot client every second, as steady traffic would: the cache
   expires on its own clock, not on these requests).

Times come from the Dagster instance: the sensors' ticks (`instance.get_ticks`) and the runs'
records and events. Stages, each from the end of the one before (the boundaries never go back:
a tick or an answer that came earlier than the boundary before it counts 0):

- raw sensor wait: POST answered -> end of the raw sensor tick that requested the run;
- run: -> the refresh run ended (queue: until the run queue handed it over; launch: the run's
  process starting and loading the code; execution: its steps);
- snapshot sensor wait: -> end of the exports sensor tick that requested the snapshot;
- snapshot: -> the snapshot run ended (same parts);
- client cache: -> the API answered with the claim (its snapshot cache expired, read
  latest.json and the new version's claims table).

A sensor wait is at most its interval plus the daemon's 5 s sensor loop (plus the tick's own
evaluation); the client cache wait at most DATA_CACHE_TTL (plus reading the new claims table).
The raw files this stage writes are listed in raw/.bench_front_door.json (bench.run's
prepare_lake removes them). The daemon and the API server are stopped however the stage ends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

# The daemon's sensor loop: a sensor ticks on the first pass of it at least its interval after
# its last tick.
from petinsure_assets.automation import DAEMON_SENSOR_LOOP_SECONDS as DAEMON_SENSOR_LOOP_S

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / "workspace.yaml"
MANIFEST = ".bench_front_door.json"  # in raw/: the raw files this stage wrote
STAGES = ("raw sensor wait", "run", "snapshot sensor wait", "snapshot", "client cache")
RUN_PARTS = ("queue", "launch", "execution")
SETTINGS = {
    # The product as shipped: nothing set (the run queue of dagster.yaml dequeues every 5 s).
    "default": {
        "raw_sensor_interval_s": None,
        "exports_sensor_interval_s": None,
        "ttl_s": None,
        "dequeue_interval_s": None,
    },
    # A sensor ticks on every pass of the daemon's loop, every ~5 s, with an interval of 1 to 4:
    # the passes' timing varies by up to a second, so an interval of 5 skips a pass now and
    # then (ticks 5 or 10 s apart). The API re-reads latest.json at most once a second, and the
    # run queue (`run_queue: dequeue_interval_seconds` in dagster.yaml) hands a run over within
    # a second: each a small file read or one SQLite query per second.
    "shortest": {
        "raw_sensor_interval_s": 1,
        "exports_sensor_interval_s": 1,
        "ttl_s": 1,
        "dequeue_interval_s": 1,
    },
}
SLOW_POLL_S = 0.5  # the API is asked this often until the snapshot run has ended
FAST_POLL_S = 0.1  # and this often after
STATE_POLL_S = 0.5  # the instance is read this often
FIRST_TICKS_TIMEOUT_S = 300
# Not a target: how long the stage waits for the claim before it fails (a stuck daemon or a
# failed run must not hang the bench).
DEADLINE_S = 1800


def log(message: str) -> None:
    print(f"[front door {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the processes ------------------------------------------------------------------------------


@contextlib.contextmanager
def process_group(name: str, args: list[str], env: dict[str, str], log_path: Path):
    """A process in a session of its own, its output to `log_path`; stopped with its whole
    process group (the daemon's code server and run workers too) however the block ends."""
    out = open(log_path, "wb")  # noqa: SIM115 (closed in finally, after the process)
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_terminate_with_parent,
    )
    try:
        yield proc
    finally:
        stop_group(proc)
        out.close()
        log(f"{name} stopped")


def _terminate_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when this process dies, even by SIGKILL,
    which skips the `finally` that stops the group."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to the process's group, SIGKILL after `grace` seconds; then any descendant that
    left the group and still runs."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _, alive = psutil.wait_procs(descendants, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def api_client(socket_path: str):
    import httpx

    return httpx.Client(
        transport=httpx.HTTPTransport(uds=socket_path), base_url="http://api", timeout=120
    )


def wait_for_api(client, proc: subprocess.Popen, log_path: Path) -> None:
    import httpx

    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the API server exited ({proc.returncode}):\n{tail(log_path)}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


# ---- the instance -------------------------------------------------------------------------------


def sensor_ticks(instance, name: str) -> list:
    """The sensor's ticks, oldest first ([] before its first)."""
    from dagster._core.scheduler.instigation import InstigatorType

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            return sorted(ticks, key=lambda t: t.timestamp)
    return []


def finished_ticks(instance, name: str) -> list:
    from dagster._core.scheduler.instigation import TickStatus

    return [t for t in sensor_ticks(instance, name) if t.status != TickStatus.STARTED]


def run_timeline(instance, run_id: str, requested_at: float) -> dict:
    """A run from the end of the tick that requested it to its end: queue (until the run queue
    handed it to the launcher: RUN_STARTING), launch (its process starting and loading the code,
    until RUN_START), execution (until RUN_SUCCESS), and the run mode of each table it wrote."""
    import dagster as dg

    record = instance.get_run_record_by_id(run_id)
    run = record.dagster_run
    if run.status != dg.DagsterRunStatus.SUCCESS:
        raise SystemExit(f"run {run_id} of {run.job_name} ended {run.status.value}")
    events = {}
    modes, as_of = {}, set()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        events.setdefault(event.event_type, entry.timestamp)
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            metadata = materialization.metadata
            key = materialization.asset_key.to_user_string()
            if "run_mode" in metadata:
                modes[key] = metadata["run_mode"].value
            if "as_of" in metadata:
                as_of.add(metadata["as_of"].value)
    dequeued = max(events.get(dg.DagsterEventType.RUN_STARTING, requested_at), requested_at)
    started = max(record.start_time, dequeued)
    ended = max(record.end_time, started)
    return {
        "run_id": run_id,
        "job": run.job_name,
        "created_at": record.create_timestamp.timestamp(),
        "enqueued_at": events.get(dg.DagsterEventType.RUN_ENQUEUED),
        "dequeued_at": events.get(dg.DagsterEventType.RUN_STARTING),
        "started_at": record.start_time,
        "ended_at": ended,  # RUN_SUCCESS (never counted before its start)
        "parts": {
            "queue": dequeued - requested_at,
            "launch": started - dequeued,
            "execution": ended - started,
        },
        "run_modes": modes,
        "as_of": sorted(as_of),
    }


def mode_summary(modes: dict[str, str]) -> str:
    """`silver: incremental 1; gold: incremental 5, full 1 (monthly_kpis)` from the run modes of
    the tables a run wrote (the tables named but for the incremental ones)."""
    by_layer: dict[str, dict[str, list[str]]] = {}
    for key, mode in sorted(modes.items()):
        layer, name = key.split("/", 1)
        by_layer.setdefault(layer, {}).setdefault(mode, []).append(name)
    return "; ".join(
        f"{layer}: "
        + ", ".join(
            f"{mode} {len(names)}" + ("" if mode == "incremental" else f" ({', '.join(names)})")
            for mode, names in by_mode.items()
        )
        for layer, by_mode in sorted(by_layer.items(), key=lambda x: x[0] != "silver")
    )


# ---- the claim ----------------------------------------------------------------------------------


def claim_body(lake_root: str, service_date: str) -> dict:
    """A new claim of an existing customer, policy, pet and provider (those of a claim sampled
    from silver.fact_claims), in the shape POST /api/claims/ takes."""
    from petinsure_assets.lake import Lake

    lake = Lake(root=lake_root)
    parent = lake.read(
        lake.table_uri("silver", "fact_claims"),
        "SELECT customer_id, policy_id, pet_id, provider_id FROM t "
        "USING SAMPLE 1 ROWS (reservoir, 5)",
    ).to_pylist()[0]
    return {
        **parent,
        "claim_type": "Illness",
        "claim_category": "Diagnostics",
        "service_date": service_date,
        "claim_amount": 123.45,
        "paid_amount": None,
        "status": "Submitted",
        "processing_days": None,
        "denial_reason": None,
    }


def record_raw_file(lake_root: str, relative: str) -> None:
    """Add a raw file this stage wrote to raw/.bench_front_door.json."""
    manifest = Path(lake_root, "raw", MANIFEST)
    files = json.loads(manifest.read_text()) if manifest.exists() else []
    files.append(relative)
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(files, indent=1))
    os.replace(tmp, manifest)


def post_claim(client, token: str, body: dict) -> tuple[str, str]:
    """POST /api/claims/: (claim id, raw file) from its 201 answer."""
    answer = client.post("/api/claims/", json=body, headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 201:
        raise SystemExit(f"POST /api/claims/ answered {answer.status_code}: {answer.text[:2000]}")
    created = answer.json()
    return created["id"], created["file"]


def claim_visible(client, customer_id: str, claim_id: str) -> dict | None:
    """The claim as GET /api/insights/claims lists it (with the snapshot's version), or None."""
    answer = client.get("/api/insights/claims", params={"customer_id": customer_id, "limit": 1000})
    answer.raise_for_status()
    body = answer.json()
    found = [item for item in body["items"] if item["claim_id"] == claim_id]
    return {**found[0], "snapshot_version": body["version"]} if found else None


# ---- one setting --------------------------------------------------------------------------------


def effective(setting: dict, instance) -> dict:
    """The setting's intervals and TTL, the product's defaults where it sets none (the run
    queue's, the instance's)."""
    from petinsure_assets.automation import DEFAULT_SENSOR_INTERVAL_SECONDS
    from petinsure_assets.snapshot_client import DEFAULT_TTL_SECONDS

    return {
        "raw_sensor_interval_s": setting["raw_sensor_interval_s"]
        or DEFAULT_SENSOR_INTERVAL_SECONDS,
        "exports_sensor_interval_s": setting["exports_sensor_interval_s"]
        or DEFAULT_SENSOR_INTERVAL_SECONDS,
        "ttl_s": setting["ttl_s"] or DEFAULT_TTL_SECONDS,
        "dequeue_interval_s": instance.run_coordinator.dequeue_interval_seconds,
    }


def environment(lake_root: str, home: Path, setting: dict, token: str) -> dict[str, str]:
    from petinsure_assets.automation import EXPORTS_SENSOR_INTERVAL_ENV, RAW_SENSOR_INTERVAL_ENV
    from petinsure_assets.front_door import WRITE_TOKEN_ENV

    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            RAW_SENSOR_INTERVAL_ENV,
            EXPORTS_SENSOR_INTERVAL_ENV,
            "DATA_CACHE_TTL",
            "PETINSURE_SNAPSHOT_DIR",
            "AZURE_STORAGE_SAS_TOKEN",
            "USE_LIVE_DATA",
            "PETINSURE_ADMIN_TOKEN",
        )
    }
    env.update(
        DAGSTER_HOME=str(home),
        PETINSURE_LAKE_ROOT=lake_root,
        PETINSURE_SNAPSHOT_DIR=str(Path(lake_root, "gold", "snapshots")),
        PYTHONUNBUFFERED="1",
    )
    env[WRITE_TOKEN_ENV] = token
    if setting["raw_sensor_interval_s"]:
        env[RAW_SENSOR_INTERVAL_ENV] = str(setting["raw_sensor_interval_s"])
    if setting["exports_sensor_interval_s"]:
        env[EXPORTS_SENSOR_INTERVAL_ENV] = str(setting["exports_sensor_interval_s"])
    if setting["ttl_s"]:
        env["DATA_CACHE_TTL"] = str(setting["ttl_s"])
    return env


def bring_to_today(lake_root: str) -> dict:
    """An incremental refresh and snapshot at today's as-of date (UTC), in this process on an
    ephemeral instance: what the sensor-launched run computes with, so that it merges only the
    claim. Not timed as part of the path."""
    from petinsure_assets.cli import run_refresh

    as_of = dt.datetime.now(dt.UTC).date().isoformat()
    start = time.perf_counter()
    summary = run_refresh(lake_root, as_of=as_of, log_level="WARNING")
    if not summary.success:
        raise SystemExit("the refresh at today's as-of date failed:\n" + summary.render())
    return {"as_of": as_of, "wall_s": time.perf_counter() - start, "written": summary.written}


def set_dequeue_interval(home: Path, seconds: int) -> None:
    """The project's dagster.yaml in `home`, its run queue dequeuing every `seconds`."""
    import yaml

    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text()) or {}
    config.setdefault("run_queue", {})["dequeue_interval_seconds"] = seconds
    path.write_text(yaml.safe_dump(config))


def measure_setting(lake_root: str, work: Path, name: str, setting: dict) -> dict:
    import dagster as dg

    from bench.probe import init_home

    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"{name}: refresh at today's as-of date")
    today = bring_to_today(lake_root)
    home = folder / "dagster_home"
    init_home(str(home))
    if setting["dequeue_interval_s"]:
        set_dequeue_interval(home, setting["dequeue_interval_s"])
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.from_config(str(home))
    token = secrets.token_urlsafe(24)
    env = environment(lake_root, home, setting, token)
    socket_dir = tempfile.mkdtemp(prefix="petinsure-fd-")  # short: a socket path has 107 bytes
    socket_path = os.path.join(socket_dir, "api.sock")
    daemon_log, api_log = folder / "daemon.log", folder / "api.log"
    daemon_cmd = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(WORKSPACE)]
    api_cmd = [sys.executable, "-m", "petinsure_assets", "api", "--uds", socket_path]
    try:
        with (
            process_group("daemon", daemon_cmd, env, daemon_log) as daemon,
            process_group("API server", api_cmd, env, api_log) as api,
            api_client(socket_path) as client,
        ):
            wait_for_api(client, api, api_log)
            log(f"{name}: API up on {socket_path}; waiting for the sensors' first ticks")
            deadline = time.time() + FIRST_TICKS_TIMEOUT_S
            while not (
                finished_ticks(instance, "raw_files_sensor")
                and finished_ticks(instance, "exports_sensor")
            ):
                if daemon.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"the daemon did not tick the sensors:\n{tail(daemon_log)}")
                time.sleep(STATE_POLL_S)
            first = finished_ticks(instance, "raw_files_sensor")[0]
            if first.run_ids:
                raise SystemExit(f"the raw sensor's first tick requested runs: {first.run_ids}")
            body = claim_body(lake_root, today["as_of"])
            client.get("/api/insights/claims", params={"customer_id": body["customer_id"]})
            status = client.get("/api/v1/data-source/status").json()
            log(f"{name}: POST /api/claims/")
            asked = time.time()
            claim_id, raw_file = post_claim(client, token, body)
            posted = time.time()
            record_raw_file(lake_root, raw_file)
            path = wait_until_visible(
                instance, client, body["customer_id"], claim_id, posted, daemon, daemon_log
            )
            wait_for_quiet(instance, daemon, daemon_log)
            other_runs = [
                r.dagster_run.job_name
                for r in instance.get_run_records()
                if r.dagster_run.run_id not in path["run_ids"]
            ]
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        os.environ.pop("DAGSTER_HOME", None)
    result = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "setting": effective(setting, instance),
        "changed_from_defaults": {k: v for k, v in setting.items() if v is not None},
        "post_s": posted - asked,
        # The phase of the POST against the API's cache: its next read of latest.json is due
        # this much less than the TTL after the POST.
        "cache_read_before_post_s": asked
        - dt.datetime.fromisoformat(status["last_sync"]).timestamp(),
        "claim_id": claim_id,
        "raw_file": raw_file,
        "brought_to_today": today,
        **{k: v for k, v in path.items() if k != "run_ids"},
        "other_runs": other_runs,
    }
    result["bounds"] = bounds(result)
    log(
        f"{name}: {result['total_s']:.2f} s: "
        + "; ".join(f"{k} {v:.2f} s" for k, v in result["stages"].items())
    )
    return result


def bounds(result: dict) -> dict[str, float]:
    """The most a wait can be, whatever the phase of the POST: a sensor wait, the sensor's
    interval plus one pass of the daemon's sensor loop plus the tick's own evaluation; the
    client cache, the TTL plus the answer that read the new version plus one poll; a run's
    queue, the run queue's dequeue interval."""
    s, ticks = result["setting"], result["ticks"]
    return {
        "raw sensor wait": s["raw_sensor_interval_s"]
        + DAEMON_SENSOR_LOOP_S
        + ticks["raw"]["evaluation_s"],
        "snapshot sensor wait": s["exports_sensor_interval_s"]
        + DAEMON_SENSOR_LOOP_S
        + ticks["exports"]["evaluation_s"],
        "client cache": s["ttl_s"] + result["visible_get_s"] + FAST_POLL_S,
        "run queue": s["dequeue_interval_s"],
        "snapshot queue": s["dequeue_interval_s"],
    }


def wait_until_visible(
    instance, client, customer_id: str, claim_id: str, posted: float, daemon, daemon_log: Path
) -> dict:
    """Ask the API for the customer's claims until the claim is there; then the path's
    boundaries from the instance."""
    import dagster as dg

    deadline = posted + DEADLINE_S
    last_get = last_state = 0.0
    snapshot_ended = False
    visible_at = None
    while visible_at is None:
        now = time.time()
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.returncode}):\n{tail(daemon_log)}")
        if now > deadline:
            raise SystemExit(
                f"claim {claim_id} not in the API {DEADLINE_S} s after it was posted; "
                f"runs: {[(r.dagster_run.job_name, r.dagster_run.status.value) for r in instance.get_run_records()]}\n"
                f"{tail(daemon_log)}"
            )
        if not snapshot_ended and now - last_state >= STATE_POLL_S:
            last_state = now
            for record in instance.get_run_records():
                run = record.dagster_run
                if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                    raise SystemExit(f"run {run.run_id} of {run.job_name} {run.status.value}")
                if run.job_name == "publish_api_snapshot" and record.end_time:
                    snapshot_ended = True
        if now - last_get >= (FAST_POLL_S if snapshot_ended else SLOW_POLL_S):
            last_get = now
            asked = time.time()
            item = claim_visible(client, customer_id, claim_id)
            if item is not None:
                visible_at = time.time()
                get_s = visible_at - asked
                break
        time.sleep(0.02)

    raw_ticks = finished_ticks(instance, "raw_files_sensor")
    raw_tick = next((t for t in raw_ticks if t.run_ids), None)
    if raw_tick is None:
        raise SystemExit("no raw sensor tick requested a run, yet the claim is in the API")
    exports_tick = next(
        (
            t
            for t in finished_ticks(instance, "exports_sensor")
            if t.run_ids and t.timestamp >= raw_tick.timestamp
        ),
        None,
    )
    if exports_tick is None:
        raise SystemExit("no exports sensor tick requested a snapshot, yet the claim is there")
    # The boundaries, never going back.
    marks = [posted]

    def mark(at: float) -> float:
        marks.append(max(at, marks[-1]))
        return marks[-1]

    refresh = run_timeline(instance, raw_tick.run_ids[0], mark(_end(raw_tick)))
    mark(refresh["ended_at"])
    snapshot = run_timeline(instance, exports_tick.run_ids[0], mark(_end(exports_tick)))
    mark(snapshot["ended_at"])
    mark(visible_at)
    stages = {stage: marks[i + 1] - marks[i] for i, stage in enumerate(STAGES)}
    return {
        "posted_at": posted,
        "boundaries": dict(zip(("posted", *STAGES), marks, strict=True)),
        "stages": stages,
        "total_s": marks[-1] - marks[0],
        "ticks": {
            "raw": {
                **_tick_times(raw_tick),
                # The phase of the POST against the raw sensor's ticks.
                "previous_tick_s_before_post": posted
                - max(t.timestamp for t in raw_ticks if t.timestamp < posted),
            },
            "exports": _tick_times(exports_tick),
        },
        "refresh_run": refresh,
        "snapshot_run": snapshot,
        "visible_get_s": get_s,
        "visible_claim": item,
        "run_ids": {refresh["run_id"], snapshot["run_id"]},
    }


def _end(tick) -> float:
    return tick.end_timestamp or tick.timestamp


def _tick_times(tick) -> dict:
    return {
        "started_at": tick.timestamp,
        "ended_at": _end(tick),
        "evaluation_s": _end(tick) - tick.timestamp,
    }


def wait_for_quiet(instance, daemon, daemon_log: Path) -> None:
    """Until no run is queued or running (the daemon is stopped with nothing half done)."""
    import dagster as dg

    deadline = time.time() + DEADLINE_S
    while any(
        r.dagster_run.status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        for r in instance.get_run_records()
    ):
        if daemon.poll() is not None or time.time() > deadline:
            raise SystemExit(f"runs did not finish:\n{tail(daemon_log)}")
        time.sleep(STATE_POLL_S)


def measure(lake_root: str, work: Path, settings: list[str]) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    return {
        "settings": {
            name: measure_setting(lake_root, work, name, SETTINGS[name]) for name in settings
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lake", required=True, help="a lake a full refresh built")
    parser.add_argument("--work", required=True, help="the daemon's homes and the logs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args(argv)
    # SIGTERM ends the stage like Ctrl-C: through the `finally` that stops the daemon and the API.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    result = measure(os.path.abspath(args.lake), Path(args.work).resolve(), args.settings)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
