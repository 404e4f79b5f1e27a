"""One measured full refresh, in a process of its own (so start-up is counted and memory is its own).

    .venv/bin/python -m bench.probe --lake /tmp/lake --as-of 2026-01-31 --out probe.json

Runs what `make demo` runs (`refresh_all`, then `publish_api_snapshot`, in-process executor, on the
SQLite Dagster instance of --dagster-home, as `make demo` does on ./.dagster_home) while a sampler thread records this process's
CPU time and resident memory every 20 ms. Each Dagster step's start and end come from the run's
event log; a layer's figures are the sums (wall, CPU) and the maximum (peak memory) over its steps.
Start-up is everything from the interpreter's start to the first step (imports, definitions,
instance); "other" is run bookkeeping between and after steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time

import psutil

PROJECT_INSTANCE_CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "dagster.yaml")
PROCESS_STARTED = psutil.Process().create_time()
SAMPLE_SECONDS = 0.02

# Step key prefix -> layer: bronze__<table>, silver_<table> (a table and its quarantine rows),
# gold__<table>, gold__exports__<table>, gold__api_snapshot. Checks run inside their table's step.
LAYERS = ("bronze", "silver", "gold", "exports", "snapshot")


def layer_of(step_key: str) -> str:
    if step_key.startswith("gold__exports__"):
        return "exports"
    if step_key.startswith("gold__api_snapshot"):
        return "snapshot"
    for layer in ("bronze", "silver", "gold"):
        if step_key.startswith(layer):
            return layer
    raise ValueError(f"step {step_key!r} belongs to no known layer")


class Sampler(threading.Thread):
    """(time, cpu seconds, rss bytes) of this process every SAMPLE_SECONDS."""

    def __init__(self):
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.samples: list[tuple[float, float, int]] = []
        self._halt = threading.Event()

    def sample(self) -> None:
        cpu = self.process.cpu_times()
        self.samples.append((time.time(), cpu.user + cpu.system, self.process.memory_info().rss))

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()

    def window(self, start: float, end: float) -> tuple[float, int]:
        """CPU seconds spent and peak RSS within [start, end]."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        before = [s for s in self.samples if s[0] < start]
        after = [s for s in self.samples if s[0] > end]
        cpu_start = (before[-1] if before else self.samples[0])[1]
        cpu_end = (after[0] if after else self.samples[-1])[1]
        peaks = [s[2] for s in inside] or [(after[0] if after else self.samples[-1])[2]]
        return max(0.0, cpu_end - cpu_start), max(peaks)


def step_windows(instance, run_ids: list[str]) -> list[tuple[str, float, float]]:
    """(step key, start, end) of every step of the runs, from the event log."""
    import dagster as dg

    steps: dict[str, list[float]] = {}
    for run_id in run_ids:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None or not event.step_key:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                steps[event.step_key] = [record.timestamp, record.timestamp]
            elif event.event_type in (
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            ):
                steps[event.step_key][1] = record.timestamp
    return sorted(((k, s, e) for k, (s, e) in steps.items()), key=lambda x: x[1])


def init_home(home: str) -> None:
    """A new DAGSTER_HOME with the project's instance settings and its SQLite databases created
    (what the first `make demo` on a machine leaves behind)."""
    import dagster as dg

    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    shutil.copy(PROJECT_INSTANCE_CONFIG, os.path.join(home, "dagster.yaml"))
    dg.DagsterInstance.from_config(home).dispose()


def measure(lake_root: str, as_of: str, home: str) -> dict:
    sampler = Sampler()
    sampler.sample()
    sampler.start()
    import dagster as dg

    from petinsure_assets.cli import run_refresh

    os.environ["DAGSTER_HOME"] = home
    instance = dg.DagsterInstance.from_config(home)
    summary = run_refresh(lake_root, as_of=as_of, instance=instance, log_level="WARNING")
    ended = time.time()
    sampler.stop()
    windows = step_windows(instance, [r.run_id for r in instance.get_runs()])
    if not summary.success:
        raise SystemExit("refresh failed:\n" + summary.render())

    layers = {
        name: {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_bytes": 0, "steps": 0} for name in LAYERS
    }
    for step, start, end in windows:
        cpu, peak = sampler.window(start, end)
        figures = layers[layer_of(step)]
        figures["wall_s"] += end - start
        figures["cpu_s"] += cpu
        figures["peak_rss_bytes"] = max(figures["peak_rss_bytes"], peak)
        figures["steps"] += 1
    first_step = windows[0][1]
    startup_cpu, startup_peak = sampler.window(PROCESS_STARTED, first_step)
    total_cpu = sampler.samples[-1][1]
    total_wall = ended - PROCESS_STARTED
    in_steps = sum(f["wall_s"] for f in layers.values())
    return {
        "success": summary.success,
        "total": {
            "wall_s": total_wall,
            "cpu_s": total_cpu,
            "peak_rss_bytes": max(s[2] for s in sampler.samples),
        },
        "startup": {
            "wall_s": first_step - PROCESS_STARTED,
            "cpu_s": startup_cpu,
            "peak_rss_bytes": startup_peak,
        },
        "other": {"wall_s": total_wall - in_steps - (first_step - PROCESS_STARTED)},
        "layers": layers,
        "steps": [
            {"step": k, "wall_s": e - s, "cpu_s": sampler.window(s, e)[0]} for k, s, e in windows
        ],
        "rows": summary.rows,
        "snapshot_version": summary.snapshot_version,
    }


def measure_main(measure, description: str, home_help: str) -> None:
    """The command line of a measuring module: --lake, --as-of, --dagster-home in, JSON to --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dagster-home", required=True, help=home_help)
    args = parser.parse_args()
    result = measure(os.path.abspath(args.lake), args.as_of, os.path.abspath(args.dagster_home))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def main() -> None:
    measure_main(
        measure, __doc__.split("\n")[0], "an initialised DAGSTER_HOME with no runs (see init_home)"
    )


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
