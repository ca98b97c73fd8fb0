"""The MLflow UI in a real browser: `mlflow server` on 127.0.0.1 over a store made by short
runs and a compare, read by Debian's chromium driven by playwright (which cannot download its
own browser here). Needs `pip install playwright` and a chromium on PATH (.ci/run installs
both); skipped without them. MOSGYM_SCREENSHOTS=DIR keeps screenshots of both pages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mosgym.analysis import compare, dashboard
from mosgym.experiment import browse
from mosgym.experiment.run import main

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("MOSGYM_CHROMIUM") or shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install chromium)", allow_module_level=True)

AGENTS = ("static-uni", "mos-cossim")
RUN = ["--env", "sim-skills-tiny", "--seeds", "0-1", "--steps", "200", "--no-progress", "-q"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Two agents x two seeds on the simulator, compared; served by `mlflow server`."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root}/mlflow.db"
    cwd, env_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(root)  # the experiment's artifacts go to ./mlruns here
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        for agent in AGENTS:
            assert main([*RUN, "--agent", agent]) == 0
        client = MlflowClient(uri)
        result = compare.compare(client, "sim-skills-tiny", out=root / "cmp", n_boot=200)
    finally:
        os.chdir(cwd)
        if env_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                assert time.time() < deadline, "mlflow server did not answer in 120 s"
                time.sleep(0.5)
        exp_id = client.get_experiment_by_name("sim-skills-tiny").experiment_id
        yield {"base": base, "uri": uri, "exp": exp_id, "compare": result}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(store: dict) -> Iterator[object]:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1600, "height": 1000})
        yield tab
        browser.close()


def _screenshot(page: object, name: str) -> None:
    folder = os.environ.get("MOSGYM_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name))  # type: ignore[attr-defined]


def test_runs_page_lists_agent_first_names_grouped_by_agent(store: dict, page) -> None:
    url = browse.runs_page_url(store["uri"], store["exp"], base=store["base"])
    page.goto(url)
    page.get_by_text("static-uni s1", exact=True).wait_for(timeout=60_000)
    body = page.inner_text("body")
    for agent in AGENTS:
        assert f"Group: {agent}" in body
        for seed in (0, 1):
            assert f"{agent} s{seed}" in body
    assert "final/dev_loss_mean" in body  # the view's metric columns
    assert "Model registry" in body and "Evaluation runs" not in body  # "Model training" side
    _screenshot(page, "ux-runs.png")


def test_chart_view_draws_one_group_per_agent(store: dict, page) -> None:
    page.goto(browse.runs_page_url(store["uri"], store["exp"], base=store["base"], charts=True))
    page.get_by_text("Group: static-uni").first.wait_for(timeout=60_000)
    # Each chart has one line per agent group (its legend: "AGENT (METRIC)"), not per run.
    for agent in AGENTS:
        page.get_by_text(f"{agent} (dev_loss/copy)").first.wait_for(timeout=60_000)
    assert "static-uni s0 (dev_loss/copy)" not in page.inner_text("body")
    page.get_by_text("Step", exact=True).first.wait_for(timeout=60_000)  # the axes are drawn
    _screenshot(page, "ux-charts.png")


def test_dashboard_renders_its_leaderboard_inline(store: dict, page) -> None:
    if not dashboard.available():
        pytest.skip("plotly is not installed (pip install 'mosgym[dashboard]')")
    rid = store["compare"].run_id
    page.goto(browse.run_page_url(store["base"], store["exp"], rid, dashboard.NAME))
    frame = page.frame_locator("iframe.mlflow-html-iframe")
    table = frame.locator("table.leaderboard")
    table.wait_for(timeout=60_000)
    text = table.inner_text()
    assert all(agent in text for agent in AGENTS) and "final mean dev loss" in text
    frame.locator(".plotly-graph-div").first.wait_for(timeout=60_000)  # plotly.js ran
    _screenshot(page, "ux-dashboard.png")
