"""The Dagster UI for real: `dagster dev` (webserver + daemon), a run launched over GraphQL, and
headless Chromium (Debian's chromium + chromium-driver, installed here when missing) reading
the asset graph and an asset's page. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By

from tests.conftest import LakeFixture
from tests.test_checks import GOOD_CLAIMS
from tests.test_pipeline import AS_OF, write_base

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"


def ensure_chromium() -> tuple[str, str]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
            check=True,
            env=env,
            timeout=900,
            stdout=subprocess.DEVNULL,
        )
    return shutil.which("chromium"), shutil.which("chromedriver")


# dagster-webserver has no way to bind port 0 (it takes 0 as "3000, or a free port it picks":
# the same free-port race). So in the test's process tree, uvicorn's Server.startup is wrapped to
# bind port 0 and write the port it got into a FIFO that the test reads: no race, no polling.
PORT_0_SITECUSTOMIZE = """\
import importlib.abc, importlib.machinery, os, sys

class _BindPort0(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "uvicorn.server":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            startup = module.Server.startup

            async def startup_on_port_0(self, sockets=None):
                self.config.port = 0
                await startup(self, sockets)
                with open(os.environ["PETINSURE_TEST_PORT_FIFO"], "w") as fifo:
                    fifo.write(str(self.servers[0].sockets[0].getsockname()[1]))

            module.Server.startup = startup_on_port_0

        spec.loader.exec_module = exec_and_wrap
        return spec

if os.environ.get("PETINSURE_TEST_PORT_FIFO"):
    sys.meta_path.insert(0, _BindPort0())
"""
STARTUP_TIMEOUT_SECONDS = 300  # a safety net only: the port arrives as soon as the server listens


def read_port(fifo: Path, process: subprocess.Popen) -> int:
    """The port the webserver bound, from the FIFO (opening it blocks until the server writes)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while reader.is_alive() and process.poll() is None and time.monotonic() < deadline:
        reader.join(timeout=1)  # the port, or dagster dev's exit, ends the wait
    if not got:
        raise AssertionError(f"dagster dev reported no port (exit status {process.poll()})")
    return int(got[0])


@pytest.fixture
def dagster_dev(lake: LakeFixture, tmp_path: Path):
    """`dagster dev` on a loopback port its webserver binds itself (port 0, reported through a
    FIFO) with its own DAGSTER_HOME and lake; stopped (the whole process group) whatever
    happens."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PORT_0_SITECUSTOMIZE)
    fifo = tmp_path / "port.fifo"
    os.mkfifo(fifo)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PETINSURE_LAKE_ROOT": str(lake.root),
        "PYTHONPATH": os.pathsep.join(
            [str(site), *filter(None, [os.environ.get("PYTHONPATH", "")])]
        ),
        "PETINSURE_TEST_PORT_FIFO": str(fifo),
    }
    for name in ("AZURE_STORAGE_ACCOUNT", "PETINSURE_ALERT_WEBHOOK_URL"):
        env.pop(name, None)
    log = open(tmp_path / "dagster-dev.log", "wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield read_port(fifo, process), process, tmp_path / "dagster-dev.log"
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def dismiss_prompt(driver) -> None:
    """Close the UI's one-time newsletter prompt if it is (or is about to be) open."""
    deadline = time.time() + 5
    while time.time() < deadline:
        skips = driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
        for skip in skips:
            skip.click()
        if skips or not driver.find_elements(By.CSS_SELECTOR, ".dagster-backdrop"):
            if not driver.find_elements(By.CSS_SELECTOR, ".dagster-backdrop"):
                return
        time.sleep(0.3)


def body_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def test_ui_shows_the_graph_checks_and_metadata(lake: LakeFixture, dagster_dev):
    from dagster_graphql import DagsterGraphQLClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = ensure_chromium()
    write_base(lake, GOOD_CLAIMS)
    port, process, log = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)
    run_id = wait_for(
        lambda: client.submit_job_execution(
            "refresh_all",
            run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}}},
        ),
        180,
        "the code location to load and accept a run",
    )
    status = wait_for(
        lambda: (
            (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s
        ),
        300,
        f"run {run_id} to finish",
        interval=1,
    )
    assert status == "SUCCESS", log.read_text()[-5000:]

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=2000,1300",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    try:
        driver.get(f"{base}/assets")  # the catalog: every asset by name
        # (the list is virtualised: only the first rows are in the page)
        names = ("bronze / claims_raw", "bronze / customers_raw", "gold / api_snapshot")
        catalog = wait_for(
            lambda: all(n in (t := body_text(driver)) for n in names) and t,
            90,
            "the catalog to list the assets",
        )
        assert "append-only, each file once" in catalog  # descriptions are shown
        dismiss_prompt(driver)
        driver.save_screenshot(str(ARTIFACTS / "catalog.png"))

        driver.get(
            f"{base}/asset-groups"
        )  # the lineage: raw -> bronze -> silver -> gold -> serving
        groups = ("raw", "bronze", "silver", "gold", "serving")
        wait_for(
            lambda: (
                "Materialize all" in body_text(driver)
                and all(
                    driver.find_elements(
                        By.XPATH,
                        f"//*[local-name()='foreignObject']//*[normalize-space(text())='{g}']",
                    )
                    for g in groups
                )
            ),
            60,
            "the asset graph with its five groups",
        )
        dismiss_prompt(driver)
        # Open every group for the picture (best effort: the graph re-renders as groups open).
        for group in groups:
            for node in driver.find_elements(
                By.XPATH, f"//*[local-name()='foreignObject']//*[normalize-space(text())='{group}']"
            )[:1]:
                try:
                    ActionChains(driver).double_click(node).perform()
                except WebDriverException:
                    pass
                time.sleep(0.7)
        dismiss_prompt(driver)
        zoom_out = driver.find_elements(By.CSS_SELECTOR, "button[class*='SVGViewport_iconButton']")[
            1
        ]
        for _ in range(2):  # the whole graph in the picture
            zoom_out.click()
            time.sleep(0.3)
        time.sleep(1)
        driver.save_screenshot(str(ARTIFACTS / "asset-graph.png"))

        driver.get(f"{base}/assets/gold/monthly_kpis")
        expected = (
            "Per service month",
            "loss ratio = paid / premium earned",
            "Row count",
            "delta_version",
            "rows_added",
            "preview",
            "year_month",
            "Freshness policy",
        )
        wait_for(
            lambda: all(e in body_text(driver) for e in expected),
            90,
            "the asset page's description, metadata and schema",
        )
        driver.save_screenshot(str(ARTIFACTS / "asset-monthly_kpis.png"))

        driver.get(f"{base}/assets/gold/monthly_kpis?view=checks")
        checks = wait_for(
            lambda: (t := body_text(driver)) and "no_missing_month" in t and t, 90, "the checks tab"
        )
        assert "year_month_unique" in checks and "claims_count_equals_silver" in checks
        driver.save_screenshot(str(ARTIFACTS / "asset-monthly_kpis-checks.png"))
    finally:
        driver.quit()
