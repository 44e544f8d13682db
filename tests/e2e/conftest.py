from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.compose import ROOT, Stack, compose_v2_missing_reason, running_stack

REPLICAS, WORKERS = 2, 2
# Rich wraps tables and sentences at the terminal's width (80 without one): wide enough that a table row
# stays one line for the tests that read it.
LAB_COLUMNS = "250"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """One compose stack for all end-to-end tests: 2 replicas, 2 Locust workers, own ports, then down."""
    reason = compose_v2_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the end-to-end tests: {reason}")
        pytest.skip(reason)
    with running_stack(
        "loadlab-e2e",
        api_port=18000,
        web_port=18089,
        up_args=["--scale", f"classifier={REPLICAS}", "--scale", f"locust-worker={WORKERS}"],
    ) as running:
        yield running


def web_master_ready(stack: Stack) -> str:
    """The web-UI master and its WORKERS workers up (a stack test may have swapped the master for a headless
    one, or scaled the workers), the workers joined: its base URL."""
    stack.compose(
        "up", "-d", "--no-deps", "--scale", f"locust-worker={WORKERS}", "locust-master", "locust-worker"
    )
    stack.wait_healthy("locust-master", 1)
    web = f"http://127.0.0.1:{stack.web_port}"
    deadline = time.monotonic() + 120
    while httpx.get(f"{web}/stats/requests", timeout=5).json().get("worker_count") != WORKERS:
        assert time.monotonic() < deadline, "the workers did not join the master"
        time.sleep(1)
    return web


def run_lab(stack: Stack, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python3 -m lab.cli ARGS` against the test stack (`compare` gets its project name)."""
    project = ["--project-name", stack.project] if args and args[0] == "compare" else []
    cmd = [sys.executable, "-m", "lab.cli", *args, *project]
    env = {**stack.env, "COLUMNS": LAB_COLUMNS}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class LabRun:
    """One `lab compare`: its results folder and what it printed."""

    run_dir: Path
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """Everything it printed with whitespace folded, so a sentence reads the same however it wrapped."""
        return " ".join(f"{self.stdout}\n{self.stderr}".split())


LabCompare = Callable[..., LabRun]


@pytest.fixture(scope="session")
def lab_compare(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> LabCompare:
    """Runs `lab compare ARGS` on the test stack into a new folder and returns its run; a test module wraps
    it in a module-scoped fixture so that one measurement serves all of its tests."""

    def run(name: str, *args: str, timeout: float = 900) -> LabRun:
        web_master_ready(stack)
        out = tmp_path_factory.mktemp(name)
        done = run_lab(stack, "compare", *args, "--out", str(out), timeout=timeout)
        print(done.stdout[-3000:], done.stderr[-4000:])
        assert done.returncode == 0, (
            f"lab compare exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        runs = [p for p in out.iterdir() if p.is_dir()]
        assert len(runs) == 1, runs
        return LabRun(runs[0], done.stdout, done.stderr)

    return run
