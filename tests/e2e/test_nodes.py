"""End to end on several (simulated) hosts: scripts/nodes makes three Docker-in-Docker nodes and a swarm
across them, scripts/swarm deploys the lab with deploy/swarm/placement.yml through the manager's engine,
and `lab compare --stack swarm --nodes` measures it, sampling every node. Uses the images the session
stack built (loaded into the nodes by scripts/nodes). Everything the nodes made is removed at the end, and
the test checks that nothing with their label is left on this machine."""

from __future__ import annotations

import json
import os
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

NODES = ROOT / "scripts" / "nodes"
SWARM = ROOT / "scripts" / "swarm"
PLACEMENT = ROOT / "deploy" / "swarm" / "placement.yml"
LABEL = "label=loadlab.nodes"
SERVE, LOAD = {"node-a", "node-b"}, {"node-c"}
API_PORT = "8000"


def run(argv: list[str], env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    print(done.stderr[-3000:])
    return done.stdout


def host_docker(*args: str) -> str:
    """This machine's engine, whatever DOCKER_HOST the test's environment has."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120).stdout


def left_behind() -> dict[str, list[str]]:
    found = {
        "containers": host_docker("ps", "-aq", "--filter", LABEL).split(),
        "networks": host_docker("network", "ls", "-q", "--filter", LABEL).split(),
        "volumes": host_docker("volume", "ls", "-q", "--filter", LABEL).split(),
    }
    return {kind: ids for kind, ids in found.items() if ids}


def test_down_after_a_crashed_run_leaves_nothing(tmp_path: Path) -> None:
    """A node that died under a half-made cluster: `down` still removes all, and twice is harmless."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env["LOADLAB_NODES_DIR"] = str(tmp_path / "crashed")
    if left_behind():
        pytest.skip("nodes of another run are up")
    try:
        run([str(NODES), "up", "2", "--no-images"], env)
        host_docker("kill", "loadlab-node-b")
    finally:
        run([str(NODES), "down"], env)
        run([str(NODES), "down"], env)
    assert left_behind() == {}
    assert not (tmp_path / "crashed").exists()


@pytest.fixture(scope="module")
def cluster(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three nodes (a, b serve; c load), the lab's stack on them, 2 replicas; then everything removed."""
    if left_behind():
        pytest.fail(f"nodes of another run are up: {left_behind()} (`scripts/nodes down`)")
    directory = tmp_path_factory.mktemp("nodes")
    env = {k: v for k, v in stack.env.items() if k != "DOCKER_HOST"}
    env["LOADLAB_NODES_DIR"] = str(directory)
    # The stack's own default port: it binds on each node's address, apart from this machine's ports.
    env["API_PORT"] = API_PORT
    try:
        started = time.monotonic()
        export = run([str(NODES), "up", "3"], env)
        print(f"nodes: 3 nodes, swarm and images in {time.monotonic() - started:.0f} s")
        manager = {**env, "DOCKER_HOST": export.strip().removeprefix("export DOCKER_HOST=")}
        nodes = {node["name"]: node for node in json.loads((directory / "nodes.json").read_text())["nodes"]}
        started = time.monotonic()
        run([str(SWARM), "up", "-f", str(PLACEMENT), "--publish-ui"], manager)
        wait_converged(manager, {"classifier": 2, "nginx": 1, "locust-master": 1, "locust-worker": 1})
        print(f"nodes: stack converged in {time.monotonic() - started:.0f} s")
        yield {"env": manager, "nodes": nodes, "file": directory / "nodes.json"}
    finally:
        status = subprocess.run([str(NODES), "status"], cwd=ROOT, env=env, capture_output=True, text=True)
        print(status.stdout, status.stderr)
        subprocess.run([str(NODES), "down"], cwd=ROOT, env=env, timeout=300)
    assert left_behind() == {}, f"scripts/nodes down left {left_behind()}"
    assert not directory.exists() or not any(directory.iterdir())
    assert "Swarm: inactive" in host_docker("info"), "this machine's own engine joined a swarm"


def services(env: dict[str, str]) -> dict[str, str]:
    out = run(["docker", "service", "ls", "--format", "{{.Name}} {{.Replicas}}"], env)
    return dict(line.split(" ", 1) for line in out.splitlines())


def wait_converged(env: dict[str, str], want: dict[str, int], timeout: float = 300) -> None:
    expected = {f"loadlab_{name}": f"{n}/{n}" for name, n in want.items()}
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = services(env)
        if seen == expected:
            return
        time.sleep(2)
    tasks = run(["docker", "stack", "ps", "loadlab", "--no-trunc", "--format", "{{.Name}} {{.Error}}"], env)
    raise AssertionError(f"not converged: {seen}, want {expected}\n{tasks[-3000:]}")


def task_nodes(env: dict[str, str], service: str) -> list[str]:
    out = run(
        ["docker", "service", "ps", f"loadlab_{service}", "--filter", "desired-state=running",
         "--format", "{{.Node}}"],
        env,
    )  # fmt: skip
    return sorted(out.split())


def test_placement_puts_replicas_on_serve_nodes_and_locust_on_the_load_node(cluster: dict[str, Any]) -> None:
    env = cluster["env"]
    assert task_nodes(env, "classifier") == sorted(SERVE)  # one replica on each serve node
    assert set(task_nodes(env, "locust-master")) | set(task_nodes(env, "locust-worker")) == LOAD
    assert set(task_nodes(env, "nginx")) <= SERVE
    # `docker node ps` of each node, as the README shows it.
    for name in cluster["nodes"]:
        print(run(["docker", "node", "ps", name, "--format", "{{.Node}} {{.Name}} {{.CurrentState}}"], env))


def test_photo_classified_through_nginx_on_its_node(cluster: dict[str, Any]) -> None:
    (node,) = task_nodes(cluster["env"], "nginx")
    address = cluster["nodes"][node]["ip"]
    photo = ROOT / "images" / "chelsea_640x480.jpg"
    url = f"http://{address}:{API_PORT}/predict"
    with photo.open("rb") as f:
        reply = httpx.post(url, files={"file": (photo.name, f)}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predicted_label"] == "Egyptian cat"


def test_lab_compare_samples_every_node(cluster: dict[str, Any], tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "lab.cli", "compare", "--stack", "swarm", "--nodes", str(cluster["file"]),
        "--replicas", "1,2", "--users", "8", "--duration", "15s", "--warmup", "5s", "--out", str(tmp_path),
    ]  # fmt: skip
    started = time.monotonic()
    run(cmd, cluster["env"], timeout=900)
    print(f"nodes: lab compare --replicas 1,2 in {time.monotonic() - started:.0f} s")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["nodes"] == 3
    for config, folder in zip(
        summary["configs"], sorted(p for p in run_dir.iterdir() if p.is_dir()), strict=True
    ):
        rows = [json.loads(line) for line in (folder / "docker_stats.jsonl").read_text().splitlines()]
        sampled = {row["node"] for row in rows if "raw" in row}
        described = json.loads((folder / "config.json").read_text())["stack_after_setup"]
        # Rows from every node that ran a task (with one replica, the serve node without it may have none).
        ran = {task["Node"] for tasks in described["tasks"].values() for task in tasks}
        assert sampled == ran and ran >= LOAD, f"{folder.name}: rows from {sampled}, tasks on {ran}"
        if config["replicas"] == 2:
            assert sampled == SERVE | LOAD
        # Each sampled classifier container ran on a serve node, and its node is in the record.
        assert {row["node"] for row in rows if row.get("service") == "classifier" and "raw" in row} <= SERVE
        assert described["sampled_nodes"] == sorted(SERVE | LOAD) and not described["tasks_not_sampled"]
        assert config["requests"] > 0 and config["failures"] == 0
        print(f"nodes: r{config['replicas']} {config['rps']} req/s, cpu by node {config['cpu_by_node']}")
        assert set(config["cpu_by_node"]) == ran
    assert "### CPU per node" in (run_dir / "summary.md").read_text()


def test_partition_of_a_serve_node_under_load(cluster: dict[str, Any], tmp_path: Path) -> None:
    """node-b cut off for 20 s, 10 s into a 45 s measurement: the fault's summary has the traffic's
    numbers and the swarm's timings (reported; asserted only within generous bounds)."""
    cmd = [
        sys.executable, "-m", "lab.cli", "compare", "--stack", "swarm", "--nodes", str(cluster["file"]),
        "--replicas", "2", "--users", "8", "--duration", "45s", "--warmup", "5s", "--out", str(tmp_path),
        "--fault", "partition-node=node-b:20s@10s",
    ]  # fmt: skip
    started = time.monotonic()
    run(cmd, cluster["env"], timeout=900)
    print(f"nodes: lab compare with partition-node in {time.monotonic() - started:.0f} s")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (folder,) = [p for p in run_dir.iterdir() if p.is_dir()]
    (applied,) = json.loads((folder / "faults.json").read_text())
    assert applied["error"] is None and applied["target"] == "node-b", applied
    assert 19 <= applied["t_end"] - applied["t"] <= 40  # the partition lasted its 20 s (and the reconnect)
    (config,) = json.loads((run_dir / "summary.json").read_text())["configs"]
    (fault,) = config["faults"]
    print(f"nodes: partition-node summary {json.dumps(fault)}")
    assert fault["fault"] == "partition-node=node-b:20s@10s" and fault["applied"]
    assert isinstance(fault["failures_during"], int) and isinstance(fault["failures_after"], int)
    assert fault["replicas_expected"] == 2 and fault["before_rps"] and fault["before_rps"] > 0
    events = fault["node_events_s"]
    assert set(events) <= {"node_down", "tasks_elsewhere", "node_ready"}
    assert "node_down" in events and 0 < events["node_down"] < 35, events  # measured here: ~11 s
    assert all(0 < t < 45 for t in events.values()), events
    assert "Node Down / tasks elsewhere / Ready s" in (run_dir / "summary.md").read_text()
    # Healed: every node Ready again, the classifier's two tasks on the serve nodes.
    nodes = run(["docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}"], cluster["env"])
    assert sorted(nodes.split()) == sorted([*SERVE, *LOAD, "Ready", "Ready", "Ready"]), nodes
    assert set(task_nodes(cluster["env"], "classifier")) <= SERVE
