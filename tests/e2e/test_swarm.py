"""End to end: the lab as the Swarm stack `loadlab` (scripts/swarm), on a single-node swarm.

Uses the images the session stack built. Initialises a swarm only when this node is in none, and leaves
the machine as it found it: the stack removed, the node labels it added removed, the swarm left (and its
docker_gwbridge removed) only when the test created them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.compose import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SWARM = ROOT / "scripts" / "swarm"
PLACEMENT = ROOT / "deploy" / "swarm" / "placement.yml"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "imagenet"
API_PORT = 18100
API = f"http://127.0.0.1:{API_PORT}"
LABELS = ("loadlab.serve", "loadlab.load")
RUN_SECONDS = 15


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def swarm_script(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(SWARM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"scripts/swarm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def replicas() -> dict[str, str]:
    out = docker("service", "ls", "--filter", "label=com.docker.stack.namespace=loadlab", "--format", "json")
    return {row["Name"]: row["Replicas"] for row in map(json.loads, out.splitlines())}


def wait_converged(expected: dict[str, int], timeout: float = 300) -> None:
    """Every service has its tasks running; a task with a health check runs only once it is healthy."""
    want = {f"loadlab_{name}": f"{count}/{count}" for name, count in expected.items()}
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = replicas()
        if seen == want:
            return
        time.sleep(2)
    raise AssertionError(f"stack not converged: {seen}, want {want}")


def task_hostnames(service: str) -> set[str]:
    """The running tasks' container hostnames (their short IDs): what X-Served-By names."""
    out = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name=loadlab_{service}")
    return set(out.split())


@pytest.fixture(scope="module")
def swarm(stack: Stack) -> Iterator[dict[str, str]]:
    created = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip() != "active"
    had_gwbridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").strip())
    if created:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    node = docker("info", "--format", "{{.Swarm.NodeID}}").strip()
    had_labels = json.loads(docker("node", "inspect", node, "--format", "{{json .Spec.Labels}}")) or {}
    added = [label for label in LABELS if label not in had_labels]
    env = {**stack.env, "API_PORT": str(API_PORT)}
    try:
        for label in added:
            docker("node", "update", "--label-add", f"{label}=true", node)
        swarm_script("up", "-f", str(PLACEMENT), env=env)
        wait_converged({"classifier": 2, "nginx": 1, "locust-master": 1, "locust-worker": 1})
        yield env
    finally:
        for service in ("classifier", "nginx", "locust-master"):
            print(docker("service", "logs", "--tail", "30", f"loadlab_{service}", check=False)[-2000:])
        try:
            swarm_script("down", env=env)
            left = replicas()
            stack_label = "label=com.docker.stack.namespace=loadlab"
            left_containers = docker("ps", "-aq", "--filter", stack_label).split()
        finally:
            for label in added:
                docker("node", "update", "--label-rm", label, node, check=False)
            if created:
                docker("swarm", "leave", "--force")
                if not had_gwbridge:
                    docker("network", "rm", "docker_gwbridge", check=False)
    assert not left, f"the stack is still there: {left}"
    assert not left_containers, f"task containers left behind: {left_containers}"


def test_photo_classified_through_nginx(swarm: dict[str, str]) -> None:
    # Every backend serves real weights (offline: the fixture's, rebuilt as float for tf and litert).
    photo = ROOT / "images" / "chelsea_640x480.jpg"
    with photo.open("rb") as f:
        reply = httpx.post(f"{API}/predict", files={"file": (photo.name, f)}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predicted_label"] == "Egyptian cat"
    assert reply.headers["x-served-by"] in task_hostnames("classifier")
    # img_url: the classifier fetches from `nginx` by its task IP (dnsrr), on the overlay network.
    url = "http://nginx/images/chelsea_640x480.jpg"
    fetched = httpx.post(f"{API}/predict/tf", json={"img_url": url}, timeout=30)
    assert fetched.status_code == 200, fetched.text


def test_scaled_to_three_all_answer(swarm: dict[str, str]) -> None:
    docker("service", "scale", "--detach=false", "loadlab_classifier=3", timeout=300)
    wait_converged({"classifier": 3, "nginx": 1, "locust-master": 1, "locust-worker": 1})
    tasks = task_hostnames("classifier")
    assert len(tasks) == 3
    photo = (ROOT / "images" / "chelsea_224x224.jpg").read_bytes()
    served: set[str] = set()
    deadline = time.monotonic() + 60
    while served != tasks and time.monotonic() < deadline:
        reply = httpx.post(f"{API}/predict", files={"file": ("c.jpg", photo)}, timeout=30)
        assert reply.status_code == 200, reply.text
        served.add(reply.headers["x-served-by"])
    assert served == tasks


def test_master_counts_workers_and_a_short_run_has_no_failures(swarm: dict[str, str]) -> None:
    ui = swarm_script("ui", env=swarm).strip()
    docker("service", "scale", "--detach=false", "loadlab_locust-worker=2", timeout=300)
    with httpx.Client(base_url=ui, timeout=15) as locust:
        deadline = time.monotonic() + 90
        count = 0
        while count != 2 and time.monotonic() < deadline:
            count = locust.get("/worker-count").json()["worker_count"]
            time.sleep(1)
        assert count == 2, f"the master counts {count} workers"
        form = {"user_count": "4", "spawn_rate": "4", "host": "http://nginx", "run_time": f"{RUN_SECONDS}s"}
        assert locust.post("/swarm", data=form).json()["success"]
        time.sleep(RUN_SECONDS)
        deadline = time.monotonic() + 60
        while locust.get("/stats/requests").json()["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(4)  # the workers' last stats report (every 3 s)
        stats = locust.get("/stats/requests").json()
    assert stats["state"] == "stopped"
    rows = [r for r in stats["stats"] if r["name"] != "Aggregated"]
    real = [r for r in rows if r["method"] not in {"SERVER", None, ""}]
    requests = sum(row["num_requests"] for row in real)
    failures = sum(row["num_failures"] for row in real)
    print(f"swarm: {requests} requests, {failures} failures in {RUN_SECONDS} s with 2 workers, 3 replicas")
    assert {row["name"] for row in real} == {"/predict", "/predict/tf"}
    assert requests > 0
    assert failures == 0


def test_lab_compare_on_the_swarm(swarm: dict[str, str], tmp_path: Path) -> None:
    """`lab compare --stack swarm --replicas 1,2`: scaled by Docker's service commands, then put back."""
    before = replicas()
    cmd = [
        sys.executable, "-m", "lab.cli", "compare", "--stack", "swarm", "--replicas", "1,2", "--users", "4",
        "--duration", "10s", "--warmup", "3s", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=swarm, capture_output=True, text=True, timeout=900)
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0, (
        f"lab compare exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["stack_kind"] == "swarm"
    assert len(run["stack_before"]["nodes"]) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    configs = summary["configs"]
    assert [c["replicas"] for c in configs] == [1, 2]
    for config in configs:
        print(
            f"swarm lab compare r{config['replicas']}: {config['requests']} requests, {config['rps']} req/s"
        )
        assert config["requests"] > 0 and config["failures"] == 0
        # Per-task CPU of the classifier tasks on this node, from docker stats.
        assert config["cpu_cores_used"] is not None and config["cpu_cores_used"] > 0
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir())
    for config, folder in zip(configs, folders, strict=True):
        served = json.loads((folder / "served_by.json").read_text())
        assert len(served) == config["replicas"], served
        # What a configuration change cost (lab.stacks.swarm.SWARM.change_s is measured like this).
        print(f"swarm stack_setup_s r{config['replicas']}: {_config(folder)['stack_setup_s']}")
    assert replicas() == before, "lab compare did not put the stack back"


def _config(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "config.json").read_text()))
