"""The benchmark harness end to end at 200 claims (the large sizes are make bench's): every figure
of the report is there and the baselines computed the product's gold; a claim POSTed to the real
API went through the real Dagster daemon to GET /api/insights/claims (the shortest settings only:
the defaults wait for 30 s sensors and a 300 s cache). Not a timed test: no figure is compared
with a target."""

from __future__ import annotations

import json
import re

import pytest

from bench import run as bench
from bench.front_door import MANIFEST, STAGES
from bench.probe import LAYERS, layer_of
from petinsure_assets.catalog import CATALOG

CLAIMS = 200
NUMBER = r"[0-9][0-9,]*(\.[0-9]+)?"


def test_layer_of_every_step_kind():
    assert layer_of("bronze__claims_raw") == "bronze"
    assert layer_of("silver_dim_providers") == "silver"
    assert layer_of("gold__monthly_kpis") == "gold"
    assert layer_of("gold__exports__monthly_kpis") == "exports"
    assert layer_of("gold__api_snapshot") == "snapshot"


def test_harness_end_to_end_writes_every_figure(tmp_path):
    report = tmp_path / "performance.md"
    assert (
        bench.main(
            ["--claims", str(CLAIMS), "--work", str(tmp_path / "work"), "--report", str(report)]
            # The Spark baseline is the Databricks engine's task (test_databricks.py runs it).
            + ["--baselines", "pandas"]
            + ["--front-door-settings", "shortest"]
        )
        == 0
    )
    result = json.loads((tmp_path / "work" / "results" / f"{CLAIMS}.json").read_text())

    # Every layer ran its steps and has every figure.
    refresh = result["refresh"]
    for layer in LAYERS:
        figures = refresh["layers"][layer]
        assert figures["steps"] > 0, layer
        assert figures["wall_s"] > 0 and figures["cpu_s"] >= 0 and figures["peak_rss_bytes"] > 0
    assert refresh["layers"]["bronze"]["steps"] == 5
    assert refresh["total"]["wall_s"] >= sum(f["wall_s"] for f in refresh["layers"].values())
    assert refresh["rows"]["gold.claims_analytics"] == refresh["rows"]["silver.fact_claims"]
    assert all(result["lake_bytes"][layer] > 0 for layer in ("raw", *LAYERS))

    # The baseline ran on the same bronze and computed the product's gold, row for row.
    for name in ("pandas",):
        baseline = result["baselines"][name]
        assert baseline["status"] == "same gold", (name, baseline)
        comparison = baseline["comparison"]
        assert set(comparison) == {spec.name for spec in CATALOG.gold}
        assert (
            comparison["claims_analytics"]["product_rows"]
            == refresh["rows"]["gold.claims_analytics"]
        )
        assert all(c["differing_rows"] == 0 for c in comparison.values())

    assert result["client"]["cold_load_s"] > 0 and result["client"]["warm_read_s"] > 0
    # Each incremental scenario went through every stage (bench.incremental fails the run when a
    # snapshot lacks the claims its drop brought, or the updates' new amounts).
    scenarios = result["incremental"]["scenarios"]
    assert list(scenarios) == list(bench.SCENARIOS)
    for scenario in scenarios.values():
        assert list(scenario["stages"]) == [
            "raw sensor tick",
            "refresh run (bronze to exports)",
            "exports sensor tick",
            "snapshot run",
            "snapshot client cold read",
        ]

    # The claim POSTed to the front door reached GET /api/insights/claims through the daemon's
    # sensors and runs; the five stages run from boundary to boundary and add up to the total.
    assert list(result["front_door"]["settings"]) == ["shortest"]
    door = result["front_door"]["settings"]["shortest"]
    assert door["setting"] == {
        "raw_sensor_interval_s": 1,
        "exports_sensor_interval_s": 1,
        "ttl_s": 1,
        "dequeue_interval_s": 1,
    }
    claim = door["visible_claim"]
    assert claim["claim_id"] == door["claim_id"] and door["claim_id"].startswith("CLM-")
    assert (claim["claim_amount"], claim["status"]) == (123.45, "Submitted")
    assert door["raw_file"].startswith(f"raw/claims/{door['claim_id']}_")
    assert list(door["stages"]) == list(STAGES)
    marks = list(door["boundaries"].values())
    assert list(door["boundaries"]) == ["posted", *STAGES]
    assert all(b >= a for a, b in zip(marks, marks[1:]))
    assert door["stages"] == {s: marks[i + 1] - marks[i] for i, s in enumerate(STAGES)}
    assert door["total_s"] == marks[-1] - marks[0]
    assert sum(door["stages"].values()) == pytest.approx(door["total_s"], abs=1e-9)
    for run in (door["refresh_run"], door["snapshot_run"]):
        assert sum(run["parts"].values()) == pytest.approx(
            door["stages"]["run" if run is door["refresh_run"] else "snapshot"], abs=1e-9
        )
    assert (door["refresh_run"]["job"], door["snapshot_run"]["job"]) == (
        "refresh_all",
        "publish_api_snapshot",
    )
    # The measured run is the steady-state incremental one, at the as-of date the lake was
    # brought to: every gold table that can merge a change merged it.
    assert door["refresh_run"]["as_of"] == [door["brought_to_today"]["as_of"]]
    modes = door["refresh_run"]["run_modes"]
    assert modes["silver/fact_claims"] == "incremental"
    for spec in CATALOG.gold:
        if spec.incremental is not None:
            assert modes[f"gold/{spec.name}"] == "incremental", spec.name
    assert door["other_runs"] == []

    # The report: machine, date, a row per layer with every figure, the ratio against the baseline
    # (the Spark baseline not run: its row says so).
    text = report.read_text()
    assert re.search(r"Machine: \d+ cores .*, \d+ GiB memory", text)
    assert f"{CLAIMS:,} claims on 20" in text
    for layer in LAYERS:
        row = re.search(rf"^\| {layer} \|(.*)\|$", text, re.M)
        assert row, layer
        cells = [c.strip() for c in row.group(1).split("|")]
        assert len(cells) == 6 and all(re.fullmatch(NUMBER, c) for c in cells), (layer, cells)
    assert re.search(rf"^\| \*\*total\*\* \| \*\*{NUMBER}\*\*", text, re.M)
    row = re.search(rf"^\| {re.escape(bench.BASELINE_NAMES['pandas'])} \|(.*)\|$", text, re.M)
    cells = [c.strip() for c in row.group(1).split("|")]
    assert cells[3] == "same gold"
    assert re.fullmatch(NUMBER, cells[4]) and re.fullmatch(NUMBER + "x", cells[5]), cells
    spark = re.search(rf"^\| {re.escape(bench.BASELINE_NAMES['spark'])} \|(.*)\|$", text, re.M)
    assert spark.group(1).split("|")[0].strip() == "not run"
    assert re.search(rf"cold load .* {NUMBER} ms; warm read {NUMBER} us", text)
    row = re.search(rf"^\| {CLAIMS} \|(.*)\|$", text, re.M)
    cells = [c.strip() for c in row.group(1).split("|")]
    assert len(cells) == len(bench.SCENARIOS) + 1 and all(re.fullmatch(NUMBER, c) for c in cells)
    assert "## Targets" in text
    row = re.search(rf"^\| {CLAIMS} \| shortest \|(.*)\|$", text, re.M)
    cells = [c.strip() for c in row.group(1).split("|")]
    assert len(cells) == len(STAGES) + 1
    assert cells[-1] == f"**{door['total_s']:.2f}**"
    assert all(re.fullmatch(rf"{NUMBER}( \(<= {NUMBER}\))?", c) for c in cells[:-1]), cells

    # A new bench of the size starts clean: the POSTed claim's file is gone from raw/.
    lake = tmp_path / "work" / f"claims-{CLAIMS}" / "lake"
    assert json.loads((lake / "raw" / MANIFEST).read_text()) == [door["raw_file"]]
    assert (lake / door["raw_file"]).exists()
    bench.prepare_lake(tmp_path / "work", CLAIMS)
    assert not (lake / door["raw_file"]).exists() and not (lake / "raw" / MANIFEST).exists()
