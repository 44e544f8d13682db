"""End to end: the lab's master with no local workers, and 2 workers from locust/remote-workers.yml.

The workers run as their own compose project on the host's network, which they do not share with the
lab: like workers on another machine, they know only the master's published worker port and send the
load to the published API port, not to `nginx`.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.compose import ROOT, Stack
from tests.e2e.conftest import WORKERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REMOTE = ROOT / "locust" / "remote-workers.yml"
REMOTE_WORKERS = 2
RUN_SECONDS = 20
# Host networking stands in for "another machine": 127.0.0.1 is then the lab's host, where the stack
# publishes the API and the master's worker port.
HOST_NETWORK = """\
services:
  locust-worker:
    network_mode: host
"""


def remote_compose(*args: str, env: dict[str, str], override: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "compose", "-p", "loadlab-e2e-remote", "-f", str(REMOTE), "-f", str(override), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def remote_workers(stack: Stack, tmp_path: Path) -> Iterator[dict[str, str]]:
    override = tmp_path / "host-network.yml"
    override.write_text(HOST_NETWORK)
    env = {
        **os.environ,
        "LOCUST_MASTER_HOST": "127.0.0.1",
        "LOCUST_MASTER_PORT": stack.env["LOCUST_MASTER_PORT"],
    }
    # The lab with 0 local workers: the UI master steps aside for a headless one (below).
    stack.compose("stop", "locust-master", "locust-worker")
    try:
        scale = f"locust-worker={REMOTE_WORKERS}"
        up = remote_compose("up", "-d", "--scale", scale, env=env, override=override)
        assert up.returncode == 0, up.stderr
        yield env
    finally:
        logs = remote_compose("logs", "--no-color", "--tail", "50", env=env, override=override)
        print(logs.stdout[-3000:])
        remote_compose("down", "--timeout", "5", env=env, override=override)
        # Back as the other tests expect it, healthy: the web UI master and its local workers.
        stack.compose(
            "up",
            "-d",
            "--no-deps",
            "--wait",
            "--scale",
            f"locust-worker={WORKERS}",
            "locust-master",
            "locust-worker",
        )


def test_remote_workers_load_the_published_api(stack: Stack, remote_workers: dict[str, str]) -> None:
    assert stack.container_ids("locust-worker") == [], "no local worker may take part"
    out = Path(tempfile.mkdtemp(prefix="loadlab-remote-"))
    out.chmod(0o777)  # the Locust image runs as an unprivileged user
    run = stack.compose(
        "run", "--rm", "--no-deps", "--use-aliases", "--service-ports", "-v", f"{out}:/out",
        "locust-master", "--master", "--locustfile", "/locust/locustfile.py",
        # The workers' target: the API as the host publishes it, which they reach; `nginx` they could not.
        "--host", f"http://127.0.0.1:{stack.api_port}",
        "--headless", "--users", "8", "--spawn-rate", "8", "--run-time", f"{RUN_SECONDS}s",
        "--expect-workers", str(REMOTE_WORKERS), "--expect-workers-max-wait", "90",
        "--csv", "/out/run", "--only-summary",
        check=False,
        timeout=RUN_SECONDS + 240,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"headless Locust failed ({run.returncode}):\n{log[-4000:]}"
    assert re.search(rf"\b{REMOTE_WORKERS} workers? (connected|ready)", log), log[-3000:]
    with (out / "run_stats.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row["Type"] not in {"SERVER", ""}]
    real = [row for row in rows if row["Name"] != "Aggregated"]
    requests = sum(int(row["Request Count"]) for row in real)
    failures = sum(int(row["Failure Count"]) for row in real)
    print(f"remote workers: {requests} requests, {failures} failures in {RUN_SECONDS} s")
    assert requests > 0
    assert failures == 0
