"""End to end: what a person sees on the Locust master (port 8089) while a test runs on the real stack.

Locust's own numbers count only real HTTP requests, so its header RPS equals the sum of the rows; the
server-side split sits in its own "Server timing" tab and at GET /server-timing. Checked through the web
UI's JSON and in a real browser (headless Chromium, screenshot kept under artifacts/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.compose import ROOT, Stack
from tests.e2e.conftest import web_master_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = ROOT / "artifacts" / "e2e"
USERS = 8
STAGES = {"queue", "decode", "infer", "fetch", "total"}


def _chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)


@pytest.fixture(scope="module")
def running(stack: Stack) -> Iterator[str]:
    """A test of USERS users on the web-UI master and its workers, stopped afterwards."""
    web = web_master_ready(stack)
    form = {"user_count": str(USERS), "spawn_rate": str(USERS), "host": "http://nginx", "run_time": "120s"}
    reply = httpx.post(f"{web}/swarm", data=form, timeout=10).json()
    assert reply["success"], reply
    try:
        time.sleep(20)  # past the ramp-up, and several stats reports from each worker
        yield web
    finally:
        httpx.get(f"{web}/stop", timeout=10)


def _real_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in view["stats"] if row["name"] != "Aggregated"]


def test_header_rps_and_aggregated_row_are_the_real_requests(running: str) -> None:
    view = httpx.get(f"{running}/stats/requests", timeout=10).json()
    rows = _real_rows(view)
    assert {row["method"] for row in rows} == {"POST"}, rows
    assert {row["name"] for row in rows} == {"/predict", "/predict/tf"}
    aggregated = next(row for row in view["stats"] if row["name"] == "Aggregated")
    assert aggregated["num_requests"] == sum(row["num_requests"] for row in rows)
    assert aggregated["num_failures"] == 0
    # The header's RPS is `current_rps` (the last ~10 s), the Aggregated row's; `total_rps` is the
    # whole test's average. Each must be the sum of the real rows' own: a synthetic row would multiply it.
    for key in ("current_rps", "total_rps"):
        rows_rps = sum(row[key] for row in rows)
        assert view[key] == pytest.approx(rows_rps, rel=0.10), (key, view[key], rows_rps)
        assert view[key] > 0


def test_server_timing_counts_the_real_requests(running: str) -> None:
    view = httpx.get(f"{running}/stats/requests", timeout=10).json()
    timing = httpx.get(f"{running}/server-timing", timeout=10).json()
    real = sum(row["num_requests"] for row in _real_rows(view))
    assert set(timing["stages"]) <= STAGES and {"queue", "decode", "infer", "total"} <= set(timing["stages"])
    total = timing["stages"]["total"]
    # Both come from the workers' same reports; a report in flight between the two calls may differ.
    assert total["count"] == pytest.approx(real, rel=0.10), (total["count"], real)
    for stage in timing["stages"].values():
        assert stage["p50_ms"] <= stage["p95_ms"] <= stage["p99_ms"], stage
    client_p50 = next(row for row in view["stats"] if row["name"] == "Aggregated")["median_response_time"]
    # What the server spent on a request cannot exceed what the client waited for it.
    assert total["p50_ms"] <= client_p50, (total, client_p50)
    assert set(timing["by_name"]) == {"/predict", "/predict/tf"}
    assert "fetch" in timing["by_name"]["/predict/tf"] and "fetch" not in timing["by_name"]["/predict"]


def test_browser_shows_the_server_timing_tab(running: str) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the web UI: install Debian's chromium")
        pytest.skip("no chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,900"]
    page = f"{running}/?tab=server-timing"
    # The UI fills its tables from /stats/requests, which it polls every 2 s: give it virtual time.
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=8000", "--dump-dom", page],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "Server timing" in dom
    for text in ("All requests", "/predict/tf", "infer", "p95 (ms)"):
        assert text in dom, f"{text!r} not in the rendered Server timing tab"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "locust-server-timing.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [browser, *flags, "--virtual-time-budget=8000", f"--screenshot={shot}", page],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000
    header = ARTIFACTS / "locust-stats.png"
    subprocess.run(
        [browser, *flags, "--virtual-time-budget=8000", f"--screenshot={header}", f"{running}/"],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
