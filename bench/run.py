"""The benchmark: demo data at a given size -> full refresh through Dagster -> baselines on the same
bronze -> the snapshot client -> the incremental path; figures per layer, ratios, targets, and the
report docs/performance.md.

    .venv/bin/python -m bench.run --claims 15000 1000000 10000000      # (make bench)
    .venv/bin/python -m bench.run --claims 2000 --report /tmp/perf.md --baselines none

For each size, in this order and all on the same data:
1. the demo raw zone (seed 42; kept in --work between invocations, regenerated when the size or
   seed differs), then bronze, silver and gold are deleted: every refresh starts from raw;
2. the full refresh raw -> bronze -> silver -> gold -> exports -> snapshot through Dagster in a
   process of its own (`bench.probe`): wall, CPU and peak memory per layer and in total;
3. each baseline (pandas, Spark local) on the bronze that refresh wrote, in a process of its own,
   and its gold compared with the product's row for row (`bench.compare`): a baseline that
   computes other numbers is reported as such and its ratio is not counted;
4. the snapshot client: a cold load and warm reads of the snapshot just published;
5. one new claim file through the sensors to a new snapshot (`bench.incremental`);
6. the whole path, `POST /api/claims/` to the claim in `GET /api/insights/claims`, through the
   real Dagster daemon and API server, with the default intervals and the shortest sensible ones
   (`bench.front_door`; `--front-door-settings`).

Results go to <work>/results/<claims>.json; the report is rendered from every size measured so far
in --work (each size's figures and ratios come from one invocation). `--only-front-door` runs
step 6 alone on the lakes and results already in --work (a size measured before, its lake
refreshed) and keeps every other figure of their results:

    .venv/bin/python -m bench.run --only-front-door --claims 15000 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = ROOT / "bench" / "results"
DEFAULT_REPORT = ROOT / "docs" / "performance.md"
AS_OF = "2026-01-31"  # the demo data runs to January 2026 (README)
SEED = 42
BASELINES = ("pandas", "spark")
BASELINE_MODULES = {
    "pandas": "bench.baselines.pandas_notebooks",
    "spark": "bench.baselines.spark_local",
}
BASELINE_NAMES = {"pandas": "pandas (notebook style)", "spark": "Spark local[2] (same SQL)"}
LAYER_OUTPUTS = {  # rows a layer writes, from the refresh summary's row counts
    "bronze": ("bronze.",),
    "silver": ("silver.",),
    "gold": ("gold.",),
}
GiB = 2**30
TOP_STEPS = 8
MiB = 2**20

# The targets of the issue, for a 2-core, 24 GiB machine.
TARGET_10M_WALL_S = 90.0
TARGET_10M_PEAK_BYTES = 6 * GiB
TARGET_15K_WALL_S = 6.0
TARGET_PANDAS_SPEEDUP = 5.0
TARGET_SPARK_SPEEDUP = 3.0
# One new 1,000-claim file -> new snapshot, by lake size.
TARGET_INCREMENTAL_S = {1_000_000: 5.0, 10_000_000: 10.0}
# The incremental scenarios of bench.incremental, in the order they run.
SCENARIOS = ("new claim file", "file of updates", "late parent releasing orphans")
# The settings of the POST-to-GET stage (bench.front_door.SETTINGS), in the order they run.
FRONT_DOOR_SETTINGS = ("default", "shortest")
TARGET_WARM_READ_S = 0.001
TARGET_COLD_LOAD_S = 0.200


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def python() -> str:
    return sys.executable


# ---- measuring a child process ------------------------------------------------------------------


def run_measured(args: list[str], *, timeout: float | None = None) -> dict:
    """Run a command; its wall time, CPU time (with its children) and peak resident memory of its
    whole process tree (sampled every 50 ms)."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = 0
    tree_cpu: dict[int, float] = {}  # last CPU seconds seen per process of the tree (a JVM too)
    output: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    timed_out = False
    while proc.poll() is None:
        try:
            parent = psutil.Process(proc.pid)
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            for p in tree:
                times = p.cpu_times()
                tree_cpu[p.pid] = times.user + times.system
        except psutil.Error:
            pass
        if timeout is not None and time.perf_counter() - start > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            timed_out = True
            proc.wait()
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    reader.join(timeout=5)
    after = os.times()
    # Reaped children count in os.times(); a grandchild that its parent did not wait for (Spark's
    # JVM) only in the samples, so the larger of the two.
    cpu = max(
        (after.children_user - before.children_user)
        + (after.children_system - before.children_system),
        sum(tree_cpu.values()),
    )
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_bytes": peak,
        "timed_out": timed_out,
        "cpu_whole_tree": True,
        "output": "".join(output)[-4000:],
    }


# ---- the steps ------------------------------------------------------------------------------------


def prepare_lake(work: Path, claims: int) -> tuple[Path, float | None]:
    """The lake of this size with its raw zone (generated if missing) and nothing else."""
    from petinsure_assets.demo_data import generate

    lake = work / f"claims-{claims}" / "lake"
    marker = lake / "raw" / ".generated.json"
    wanted = {"claims": claims, "seed": SEED}
    generated_in = None
    if not marker.exists() or json.loads(marker.read_text()) != wanted:
        shutil.rmtree(lake, ignore_errors=True)
        log(f"generating {claims:,} demo claims into {lake / 'raw'}")
        start = time.perf_counter()
        generate(lake / "raw", claims=claims, seed=SEED)
        generated_in = time.perf_counter() - start
        marker.write_text(json.dumps(wanted))
    for layer in ("bronze", "silver", "gold"):
        shutil.rmtree(lake / layer, ignore_errors=True)
    for stray in [  # the files of the incremental scenarios (bench.incremental)
        *(lake / "raw").glob("*/*-BENCH-*"),
        *(lake / "raw" / "claims").glob("claims_bench_*"),
    ]:
        stray.unlink()
    remove_front_door_files(lake)
    return lake, generated_in


def remove_front_door_files(lake: Path) -> None:
    """The raw files the front-door stage POSTed (listed in its manifest in raw/)."""
    from bench.front_door import MANIFEST

    manifest = lake / "raw" / MANIFEST
    if not manifest.exists():
        return
    raw = (lake / "raw").resolve()
    for relative in json.loads(manifest.read_text()):
        path = (lake / relative).resolve()
        if path.parent.parent == raw:  # raw/<entity>/<file>, nothing else
            path.unlink(missing_ok=True)
    manifest.unlink()


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def lake_sizes(lake: Path) -> dict[str, int]:
    gold = lake / "gold"
    exports, snapshots = gold / "exports", gold / "snapshots"
    return {
        "raw": folder_bytes(lake / "raw"),
        "bronze": folder_bytes(lake / "bronze"),
        "silver": folder_bytes(lake / "silver"),
        "gold": folder_bytes(gold) - folder_bytes(exports) - folder_bytes(snapshots),
        "exports": folder_bytes(exports),
        "snapshot": folder_bytes(snapshots),
    }


def full_refresh(lake: Path, work: Path) -> dict:
    from bench.probe import init_home

    out = work / "probe.json"
    init_home(str(work / "dagster_home"))  # not timed: what the first `make demo` leaves behind
    measured = run_measured(
        [
            python(),
            "-m",
            "bench.probe",
            "--lake",
            str(lake),
            "--as-of",
            AS_OF,
            "--out",
            str(out),
            "--dagster-home",
            str(work / "dagster_home"),
        ]
    )
    if measured["returncode"] != 0:
        raise SystemExit(f"the full refresh failed:\n{measured['output']}")
    probe = json.loads(out.read_text())
    probe["process"] = {k: measured[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes")}
    return probe


def baseline(name: str, lake: Path, work: Path, timeout: float) -> dict:
    from bench.compare import compare_gold
    from petinsure_assets.lake import Lake

    out = work / f"baseline-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log(f"baseline {name}")
    measured = run_measured(
        [
            python(),
            "-m",
            BASELINE_MODULES[name],
            "--lake",
            str(lake),
            "--as-of",
            AS_OF,
            "--out",
            str(out),
        ],
        timeout=timeout,
    )
    result = {
        k: measured[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes", "timed_out", "cpu_whole_tree")
    }
    if measured["timed_out"]:
        result["status"] = f"did not finish within {timeout:.0f} s"
    elif measured["returncode"] != 0:
        result["status"] = f"failed (exit {measured['returncode']})"
        result["output"] = measured["output"]
    else:
        comparison = compare_gold(Lake(root=str(lake)), str(out))
        result["comparison"] = comparison
        differing = {
            t: c
            for t, c in comparison.items()
            if c["differing_rows"] or c["product_rows"] != c["other_rows"]
        }
        result["status"] = "same gold" if not differing else f"DIFFERENT gold: {differing}"
    shutil.rmtree(out, ignore_errors=True)
    log(f"baseline {name}: {result['status']}, {result['wall_s']:.1f} s")
    return result


def client_timings(lake: Path) -> dict:
    from petinsure_assets.snapshot_client import LocalStore, SnapshotClient

    store = LocalStore(lake / "gold" / "snapshots")
    colds = []
    for _ in range(3):
        client = SnapshotClient(store)
        start = time.perf_counter()
        client.snapshot()
        colds.append(time.perf_counter() - start)
    warms = []
    for _ in range(1000):
        start = time.perf_counter()
        client.snapshot()
        warms.append(time.perf_counter() - start)
    return {
        "cold_load_s": statistics.median(colds),
        "warm_read_s": statistics.median(warms),
        "warm_read_p99_s": sorted(warms)[989],
    }


def incremental(lake: Path, work: Path) -> dict:
    out = work / "incremental.json"
    measured = run_measured(
        [
            python(),
            "-m",
            "bench.incremental",
            "--lake",
            str(lake),
            "--as-of",
            AS_OF,
            "--out",
            str(out),
            "--dagster-home",
            str(work / "dagster_home"),
        ]
    )
    if measured["returncode"] != 0:
        raise SystemExit(f"the incremental run failed:\n{measured['output']}")
    return json.loads(out.read_text())


def front_door(lake: Path, work: Path, settings: list[str]) -> dict:
    """The whole path through the daemon and the API (`bench.front_door`), in a process of its
    own; its progress is shown as it goes."""
    out = work / "front_door.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [
            python(),
            "-m",
            "bench.front_door",
            "--lake",
            str(lake),
            "--work",
            str(work / "front_door"),
            "--out",
            str(out),
            "--settings",
            *settings,
        ],
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"the front-door stage failed (exit {done.returncode}; output above)")
    result = json.loads(out.read_text())
    result["machine"] = machine()
    return result


def bench_size(
    claims: int,
    work: Path,
    baselines: list[str],
    timeout: float,
    front_door_settings: list[str] = (),
) -> dict:
    lake, generated_in = prepare_lake(work, claims)
    size_work = lake.parent
    log(f"{claims:,} claims: full refresh")
    refresh = full_refresh(lake, size_work)
    log(f"{claims:,} claims: full refresh {refresh['total']['wall_s']:.1f} s")
    result = {
        "claims": claims,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "generated_in_s": generated_in,
        "refresh": refresh,
        "lake_bytes": lake_sizes(lake),
        "baselines": {name: baseline(name, lake, size_work, timeout) for name in baselines},
        "client": client_timings(lake),
    }
    log(f"{claims:,} claims: incremental")
    result["incremental"] = incremental(lake, size_work)
    if front_door_settings:
        log(f"{claims:,} claims: POST to GET through the daemon and the API")
        result["front_door"] = front_door(lake, size_work, list(front_door_settings))
    return result


def front_door_only(claims: int, work: Path, settings: list[str]) -> dict:
    """The front-door stage alone on a size measured before: its lake as it is, its other
    figures kept; the settings measured now replace the same settings' earlier figures."""
    path = work / "results" / f"{claims}.json"
    lake = work / f"claims-{claims}" / "lake"
    if not path.exists() or not (lake / "gold").exists():
        raise SystemExit(
            f"--only-front-door: no results or refreshed lake for {claims:,} claims in {work}; "
            "run the whole bench for that size first"
        )
    result = json.loads(path.read_text())
    log(f"{claims:,} claims: POST to GET through the daemon and the API (front-door stage only)")
    measured = front_door(lake, lake.parent, settings)
    earlier = result.get("front_door", {}).get("settings", {})
    measured["settings"] = {**earlier, **measured["settings"]}
    result["front_door"] = measured
    return result


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("dagster", "duckdb", "deltalake", "pyarrow", "pandas", "pyspark"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    return {
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "cpu": model or platform.processor(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


# ---- figures, targets and the report --------------------------------------------------------------


def layer_rows(result: dict) -> dict[str, int]:
    rows = result["refresh"]["rows"]
    out = {
        layer: sum(n for k, n in rows.items() if k.startswith(prefixes))
        for layer, prefixes in LAYER_OUTPUTS.items()
    }
    out["exports"] = out["gold"]
    out["snapshot"] = out["gold"]
    return out


def product_silver_gold_s(result: dict) -> float:
    """The product's time for what the baselines compute: the silver and gold table steps (their
    checks excluded; the baselines check nothing)."""
    return sum(
        s["wall_s"]
        for s in result["refresh"]["steps"]
        if s["step"].startswith(("silver", "gold__"))
        and not s["step"].endswith("_checks")
        and not s["step"].startswith(("gold__exports__", "gold__api_snapshot"))
    )


def speedup(result: dict, name: str) -> float | None:
    """How many times faster the product is; for a baseline stopped at its time limit, a lower
    bound (its time so far); None when it failed or computed other numbers."""
    b = result["baselines"].get(name)
    if not b or not (b["status"] == "same gold" or b["timed_out"]):
        return None
    return b["wall_s"] / product_silver_gold_s(result)


def speedup_text(result: dict, name: str) -> str | None:
    s = speedup(result, name)
    if s is None:
        return None
    return f">= {s:.1f}x" if result["baselines"][name]["timed_out"] else f"{s:.1f}x"


def targets(results: dict[int, dict]) -> list[tuple[str, str, bool | None]]:
    """(target, figure, met) for every target of the issue; met None = not measured."""
    out = []
    r10m = results.get(10_000_000)
    if r10m:
        wall, peak = r10m["refresh"]["total"]["wall_s"], r10m["refresh"]["total"]["peak_rss_bytes"]
        out.append(
            (
                "10M claims full refresh raw -> snapshot < 90 s",
                f"{wall:.1f} s",
                wall < TARGET_10M_WALL_S,
            )
        )
        out.append(
            (
                "10M claims peak memory < 6 GiB",
                f"{peak / GiB:.2f} GiB",
                peak < TARGET_10M_PEAK_BYTES,
            )
        )
    else:
        out.append(("10M claims full refresh < 90 s, peak < 6 GiB", "not measured", None))
    for claims in sorted(c for c in results if c >= 1_000_000):
        for name, target in (("pandas", TARGET_PANDAS_SPEEDUP), ("spark", TARGET_SPARK_SPEEDUP)):
            b = results[claims]["baselines"].get(name)
            s = speedup(results[claims], name)
            figure = speedup_text(results[claims], name) or (b["status"] if b else "not run")
            out.append(
                (
                    f"{claims:,} claims: >= {target:.0f}x faster than {BASELINE_NAMES[name]}",
                    figure,
                    None if s is None else s >= target,
                )
            )
    r15k = results.get(15_000)
    if r15k:
        wall = r15k["refresh"]["total"]["wall_s"]
        out.append(
            (
                "15,000 claims full refresh incl. Dagster start-up < 6 s",
                f"{wall:.1f} s",
                wall < TARGET_15K_WALL_S,
            )
        )
        c = r15k["client"]
        out.append(
            (
                "snapshot client warm read < 1 ms (15,000 claims)",
                f"{c['warm_read_s'] * 1e6:.1f} us",
                c["warm_read_s"] < TARGET_WARM_READ_S,
            )
        )
        out.append(
            (
                "snapshot client cold load < 200 ms (15,000 claims)",
                f"{c['cold_load_s'] * 1e3:.0f} ms",
                c["cold_load_s"] < TARGET_COLD_LOAD_S,
            )
        )
    for claims, target in TARGET_INCREMENTAL_S.items():
        r = results.get(claims)
        if r:
            t = r["incremental"]["scenarios"]["new claim file"]["total_s"]
            out.append(
                (
                    f"{claims:,} claims: one new 1,000-claim file -> new snapshot < {target:.0f} s",
                    f"{t:.1f} s",
                    t < target,
                )
            )
    return out


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def render(results: dict[int, dict]) -> str:
    sizes = sorted(results)
    first = results[sizes[0]]["machine"]
    lines = [
        "# Performance",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand. Every figure of a size, its",
        "baselines' and its ratios come from one run on the same data.",
        "",
        f"Machine: {first['cores']} cores ({first['cpu']}), {first['memory_bytes'] / GiB:.0f} GiB memory, "
        f"{first['system']}, Python {first['python']}; "
        + ", ".join(f"{k} {v}" for k, v in first["versions"].items())
        + ".",
        "Measured: "
        + ", ".join(f"{c:,} claims on {results[c]['measured_at']}" for c in sizes)
        + ".",
        "",
        "## Targets",
        "",
        "| target | figure | |",
        "|---|---:|---|",
    ]
    lines += [f"| {t} | {f} | {_mark(m)} |" for t, f, m in targets(results)]
    lines += [
        "",
        "How the incremental path (raw drop -> new snapshot, through the sensors; seconds of "
        "pipeline time, polling intervals excluded) grows with the lake, against the full refresh:",
        "",
        "| claims | " + " | ".join(SCENARIOS) + " | full refresh |",
        "|---:|" + "---:|" * (len(SCENARIOS) + 1),
    ]
    lines += [
        f"| {c:,} | "
        + " | ".join(
            f"{results[c]['incremental']['scenarios'][s]['total_s']:.2f}" for s in SCENARIOS
        )
        + f" | {results[c]['refresh']['total']['wall_s']:.1f} |"
        for c in sizes
    ]
    lines += front_door_lines(results)
    for claims in sizes:
        r = results[claims]
        refresh = r["refresh"]
        rows = layer_rows(r)
        sizes_b = r["lake_bytes"]
        lines += [
            "",
            f"## {claims:,} claims",
            "",
            "Full refresh raw -> snapshot through Dagster (`refresh_all`, then `publish_api_snapshot`, "
            "in-process executor), in a new process, on a SQLite instance whose DAGSTER_HOME was "
            "created beforehand (as the first `make demo` leaves it; not timed). Demo data generation "
            + (
                f"took {r['generated_in_s']:.1f} s (not included)."
                if r["generated_in_s"]
                else "was reused from an earlier run (not included)."
            ),
            "",
            "| layer (checks run inside each table's step) | wall s | CPU s | peak memory MiB | rows written | rows/s | size on disk MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| start-up (interpreter, imports, definitions, instance) | {refresh['startup']['wall_s']:.2f} | "
            f"{refresh['startup']['cpu_s']:.2f} | {refresh['startup']['peak_rss_bytes'] / MiB:,.0f} | | | |",
        ]
        for layer, f in refresh["layers"].items():
            n = rows.get(layer, 0)
            rate = f"{n / f['wall_s']:,.0f}" if f["wall_s"] else ""
            lines.append(
                f"| {layer} | {f['wall_s']:.2f} | {f['cpu_s']:.2f} | "
                f"{f['peak_rss_bytes'] / MiB:,.0f} | {n:,} | {rate} | "
                f"{sizes_b.get(layer, 0) / MiB:,.1f} |"
            )
        t = refresh["total"]
        lines += [
            f"| run bookkeeping between steps | {refresh['other']['wall_s']:.2f} | | | | | |",
            f"| **total** | **{t['wall_s']:.2f}** | **{t['cpu_s']:.2f}** | **{t['peak_rss_bytes'] / MiB:,.0f}** | "
            f"{sum(rows[k] for k in ('bronze', 'silver', 'gold')):,} | | "
            f"{sum(sizes_b.values()) / MiB:,.1f} (raw {sizes_b['raw'] / MiB:,.1f}) |",
            "",
            "Rows written: bronze, silver (with quarantine) and gold rows; exports and the snapshot "
            "write the gold rows again. Size on disk: that layer's files (gold without exports and "
            "snapshots).",
            "",
            "**Against the baselines** (silver + gold from the same bronze; the product's time is its "
            f"silver and gold steps without their checks: {product_silver_gold_s(r):.2f} s):",
            "",
            "| baseline | wall s | CPU s | peak memory MiB | gold | ours / baseline | ours is faster by |",
            "|---|---:|---:|---:|---|---:|---:|",
        ]
        ours = product_silver_gold_s(r)
        for name in BASELINES:
            b = r["baselines"].get(name)
            if not b:
                lines.append(f"| {BASELINE_NAMES[name]} | not run | | | | | |")
                continue
            s = speedup_text(r, name)
            cpu = f"{b['cpu_s']:.2f}" + (
                "" if b.get("cpu_whole_tree") else " (Python process only)"
            )
            lines.append(
                f"| {BASELINE_NAMES[name]} | {b['wall_s']:.2f} | {cpu} | "
                f"{b['peak_rss_bytes'] / MiB:,.0f} | {b['status']} | "
                + (f"{ours / b['wall_s']:.3f} | {s} |" if s is not None else " | |")
            )
        top = sorted(refresh["steps"], key=lambda s: -s["wall_s"])[:TOP_STEPS]
        lines += [
            "",
            f"**Where the time goes** (the {TOP_STEPS} longest of {len(refresh['steps'])} steps):",
            "",
            "| step | wall s | CPU s |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{s['step']}` | {s['wall_s']:.2f} | {s.get('cpu_s', 0):.2f} |" for s in top]
        c, inc = r["client"], r["incremental"]
        lines += [
            "",
            f"**Snapshot client**: cold load (read, verify and parse every file) "
            f"{c['cold_load_s'] * 1e3:,.1f} ms; warm read {c['warm_read_s'] * 1e6:.1f} us "
            f"(p99 {c['warm_read_p99_s'] * 1e6:.1f} us).",
            "",
            "**Incremental** (raw drop -> new snapshot, by stage):",
            "",
        ]
        lines += [
            f"- {name}: {inc['scenarios'][name]['total_s']:.2f} s: "
            + "; ".join(f"{k} {v:.2f} s" for k, v in inc["scenarios"][name]["stages"].items())
            for name in SCENARIOS
        ]
    return "\n".join(lines) + "\n"


def _setting_text(name: str, setting: dict) -> str:
    return (
        f"**{name}**: sensors every {setting['raw_sensor_interval_s']} s (raw) and "
        f"{setting['exports_sensor_interval_s']} s (exports), run queue every "
        f"{setting['dequeue_interval_s']} s, `DATA_CACHE_TTL` {setting['ttl_s']:g} s"
    )


def _parts(run: dict) -> str:
    from bench.front_door import RUN_PARTS

    return " / ".join(f"{run['parts'][p]:.2f}" for p in RUN_PARTS)


def front_door_lines(results: dict[int, dict]) -> list[str]:
    """The end-to-end latency section: per size and setting, the five stages and the total."""
    from bench.front_door import DAEMON_SENSOR_LOOP_S, STAGES, bounds, mode_summary
    from petinsure_assets.catalog import CATALOG

    measured = [c for c in sorted(results) if results[c].get("front_door")]
    if not measured:
        return []
    rows = [
        (c, name, r) for c in measured for name, r in results[c]["front_door"]["settings"].items()
    ]
    settings: dict[str, dict] = {}
    for _, name, r in rows:
        settings.setdefault(name, r["setting"])
    loop = DAEMON_SENSOR_LOOP_S
    phase = max(r["cache_read_before_post_s"] for _, _, r in rows)
    rebuilt = ", ".join(f"`{spec.name}`" for spec in CATALOG.gold if spec.incremental is None)
    lines = [
        "",
        "## End to end: `POST /api/claims/` to `GET /api/insights/claims`",
        "",
        "One claim of an existing customer, policy, pet and provider is POSTed to the real API "
        "server (`python -m petinsure_assets api --uds`, on a Unix socket), whose front door "
        "writes its real-time file into `raw/claims/`; the real Dagster daemon (`dagster-daemon "
        "run -w workspace.yaml`, a new DAGSTER_HOME with the project's dagster.yaml: one run at a "
        "time) takes it through the raw sensor, the refresh run, the exports sensor and the "
        "snapshot run; the API lists it in `GET /api/insights/claims?customer_id=...` once its "
        "snapshot cache has read the new version (`bench/front_door.py`). Each stage runs from "
        "the end of the one before, read from the instance's sensor ticks and run records, so "
        "they add up to the total: **raw sensor wait** (POST answered -> end of the raw sensor "
        "tick that requested the run), **run** (-> the refresh run ended), **snapshot sensor "
        "wait** (-> end of the exports sensor tick that requested the snapshot), **snapshot** "
        "(-> the snapshot run ended), **client cache** (-> the API answered with the claim).",
        "",
        "Settings: "
        + "; ".join(_setting_text(n, st) for n, st in settings.items())
        + f". The daemon evaluates sensors in a loop that passes at most every {loop} s, and a "
        "sensor ticks on the first pass at least its interval after its last tick: 1 s ticks on "
        f"every pass (every ~{loop} s); {loop} s does not (the passes' timing varies by up to a "
        f"second, so it skips a pass now and then: ticks {loop} or {2 * loop} s apart). So 1 s "
        "is the shortest sensible sensor interval. A 1 s cache reads `latest.json` (a few "
        "hundred bytes) once a second, a 1 s run queue (`run_queue: dequeue_interval_seconds`) "
        "is one SQLite query a second.",
        "",
        "The waits depend on when the claim arrives against the sensors' ticks and the API's "
        "cache, whose next read of `latest.json` comes one TTL after its last whatever the "
        "requests. Each is shown with its bound (`<=`): a sensor's interval plus one pass of the "
        f"daemon's {loop} s loop plus the tick's own evaluation; the TTL plus the answer that "
        "read the new version plus one poll (0.1 s). With the default 300 s TTL the claim shows "
        "at the cache's first read after the snapshot, between 0 and 300 s after it (150 s on "
        f"average); in these runs the API had last read `latest.json` at most {phase:.1f} s "
        "before the POST (the phase column below), so its next read came about one TTL after "
        "the POST: the default totals are near the worst case for a claim whose snapshot lands "
        "within one TTL. The measured refresh run is the steady-state incremental one: the sensor-launched "
        "run computes gold as of today (UTC), so the lake was first refreshed at today's as-of "
        "date (not timed); the second table gives the run mode of every table the run wrote "
        f"({rebuilt}: no `[incremental]` in the spec, rebuilt whenever an input changes).",
        "",
        "| claims | setting | " + " | ".join(f"{stage} s" for stage in STAGES) + " | **total s** |",
        "|---:|---|" + "---:|" * (len(STAGES) + 1),
    ]
    for c, name, r in rows:
        limits = bounds(r)
        cells = [
            f"{r['stages'][stage]:.2f}" + (f" (<= {limits[stage]:.1f})" if stage in limits else "")
            for stage in STAGES
        ]
        lines.append(f"| {c:,} | {name} | " + " | ".join(cells) + f" | **{r['total_s']:.2f}** |")
    lines += [
        "",
        "Where the runs' time goes (queue: the tick's end to the run queue handing the run over, "
        "at most its dequeue interval; launch: the run's own process starting and loading the "
        "code location; execution: its steps), the sensor ticks' own evaluation (the raw tick "
        "includes Dagster creating the run of about 30 assets), the POST's answer, the phase of "
        "the POST (since the raw sensor's previous tick; since the API's last read of "
        "`latest.json`), and the refresh run's tables by run mode:",
        "",
        "| claims | setting | refresh run: queue / launch / execution s | snapshot run: "
        "queue / launch / execution s | tick evaluation: raw / exports s | POST s | "
        "phase: raw tick / cache read s | refresh run's tables | measured |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c, name, r in rows:
        ticks = r["ticks"]
        lines.append(
            f"| {c:,} | {name} | {_parts(r['refresh_run'])} | {_parts(r['snapshot_run'])} | "
            f"{ticks['raw']['evaluation_s']:.2f} / {ticks['exports']['evaluation_s']:.2f} | "
            f"{r['post_s']:.2f} | {ticks['raw']['previous_tick_s_before_post']:.1f} / "
            f"{r['cache_read_before_post_s']:.1f} | as of "
            f"{', '.join(r['refresh_run']['as_of'])}: "
            f"{mode_summary(r['refresh_run']['run_modes'])} | {r['measured_at']} |"
        )
    missing = [c for c in sorted(results) if c not in measured]
    if missing:
        lines += [
            "",
            "Not measured end to end: " + ", ".join(f"{c:,} claims" for c in missing) + ".",
        ]
    return lines


def load_results(work: Path) -> dict[int, dict]:
    folder = work / "results"
    return (
        {int(p.stem): json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
        if folder.exists()
        else {}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, nargs="+", default=[15_000, 1_000_000, 10_000_000])
    parser.add_argument(
        "--baselines", nargs="+", default=list(BASELINES), choices=[*BASELINES, "none"]
    )
    parser.add_argument(
        "--baseline-timeout",
        type=float,
        default=3600,
        help="seconds a baseline may take before it is stopped (default 3600)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help=f"lakes and results (default {DEFAULT_WORK})",
    )
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument(
        "--front-door-settings",
        nargs="+",
        default=list(FRONT_DOOR_SETTINGS),
        choices=[*FRONT_DOOR_SETTINGS, "none"],
        help="the settings of the POST-to-GET stage (default: both; none skips the stage)",
    )
    parser.add_argument(
        "--only-front-door",
        action="store_true",
        help="run only the POST-to-GET stage, on the lakes and results already in --work, "
        "keeping their other figures; then rewrite the report from every size there",
    )
    args = parser.parse_args(argv)
    baselines = [b for b in args.baselines if b != "none"]
    front_door_settings = [s for s in args.front_door_settings if s != "none"]
    if args.only_front_door and not front_door_settings:
        parser.error("--only-front-door needs a front-door setting")
    (args.work / "results").mkdir(parents=True, exist_ok=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    for claims in args.claims:
        if args.only_front_door:
            result = front_door_only(claims, args.work, front_door_settings)
        else:
            result = bench_size(
                claims, args.work, baselines, args.baseline_timeout, front_door_settings
            )
        (args.work / "results" / f"{claims}.json").write_text(json.dumps(result, indent=1))
        report = render(load_results(args.work))  # after every size: a long run keeps what it has
        args.report.write_text(report)
        log(f"{claims:,} claims done; report written to {args.report}")
    print(report)
    return 0


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
