"""SwarmStack's Docker commands against a stand-in `docker` (tests/lab/fake_swarm_docker.py): scale and
configure with service commands, wait for running tasks, sample, find Locust, put the stack back."""

from __future__ import annotations

import json
import stat
import sys
import time
from pathlib import Path

import pytest

from lab.faults import FaultSpec
from lab.grid import ExperimentSettings, StackConfig
from lab.nodes import NodeRecord, NodesFile
from lab.stacks import StackError, StackOptions, make_stack
from lab.stacks import swarm as swarm_module
from lab.stacks.docker import env_list_to_dict
from lab.stacks.swarm import SwarmStack, published_port

FAKE = Path(__file__).with_name("fake_swarm_docker.py")
ORIGINAL_ENV = {"CLASSIFIER_BACKEND": "tf", "CLASSIFIER_WORKERS": "1", "CLASSIFIER_PORT": "8000"}
SETTINGS = ExperimentSettings(replicas=[1, 2], users=[8], max_batch_size=8)


class Fake:
    def __init__(self, tmp_path: Path, **extra: dict) -> None:
        self.state = tmp_path / "state.json"
        services = {
            "classifier": {"replicas": 2, "env": dict(ORIGINAL_ENV)},
            "nginx": {"replicas": 1, "env": {}, "ports": [{"TargetPort": 80, "PublishedPort": 8000}]},
            "locust-master": {"replicas": 1, "env": {}},
            "locust-worker": {"replicas": 1, "env": {}},
        }
        for name, changes in extra.items():
            services[name.replace("_", "-")].update(changes)
        self.state.write_text(json.dumps({"services": services}))
        docker = tmp_path / "docker"
        docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
        self.stack = SwarmStack(
            tmp_path, env={"FAKE_DOCKER_STATE": str(self.state)}, ready_timeout_s=2, docker=str(docker)
        )

    def read(self) -> dict:
        return json.loads(self.state.read_text())

    def calls(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.read()["calls"] if c[: len(prefix)] == list(prefix)]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def test_capture_reads_replicas_settings_and_nodes(fake: Fake) -> None:
    state = fake.stack.capture()
    assert state.replicas == {"classifier": 2, "nginx": 1, "locust-master": 1, "locust-worker": 1}
    assert state.classifier_env == ORIGINAL_ENV
    assert state.existed and state.details["nodes"] == [
        {"Hostname": "node-1", "Status": "Ready", "Availability": "Active"}
    ]


def test_replicas_only_is_a_plain_service_scale(fake: Fake) -> None:
    fake.stack.capture()
    assert fake.stack.apply(StackConfig(1), SETTINGS)["CLASSIFIER_REPLICAS"] == "1"
    assert fake.calls("service", "scale") == [["service", "scale", "--detach", "loadlab_classifier=1"]]
    assert not fake.calls("service", "update")
    assert fake.read()["services"]["classifier"]["replicas"] == 1


def test_changed_settings_are_one_update_with_the_count(fake: Fake) -> None:
    fake.stack.capture()
    fake.stack.apply(StackConfig(3, backend="litert", batching="on"), SETTINGS)
    (update,) = fake.calls("service", "update")
    assert update == [
        "service", "update", "--detach", "--replicas", "3",
        "--env-add", "CLASSIFIER_BACKEND=litert", "--env-add", "CLASSIFIER_MAX_BATCH_SIZE=8",
        "loadlab_classifier",
    ]  # fmt: skip
    classifier = fake.read()["services"]["classifier"]
    assert classifier["replicas"] == 3 and classifier["env"]["CLASSIFIER_BACKEND"] == "litert"


def test_a_cpu_budget_is_the_tasks_limit_and_goes_back_to_none(fake: Fake) -> None:
    state = fake.stack.capture()
    fake.stack.apply(StackConfig(2, cpus_per_replica=0.5), SETTINGS)
    (update,) = fake.calls("service", "update")
    assert update[-4:] == ["CLASSIFIER_CPUS=0.5", "--limit-cpu", "0.5", "loadlab_classifier"]
    assert fake.read()["services"]["classifier"]["env"]["CLASSIFIER_CPUS"] == "0.5"
    fake.stack.restore(state)
    # The stack was deployed without CLASSIFIER_CPUS (no budget): restore takes the limit off again.
    assert "CLASSIFIER_CPUS" not in state.classifier_env
    (_, restore) = fake.calls("service", "update")
    assert restore[-4:] == ["CLASSIFIER_CPUS=0", "--limit-cpu", "0", "loadlab_classifier"]


def test_restore_puts_back_settings_count_and_workers(fake: Fake) -> None:
    state = fake.stack.capture()
    fake.stack.apply(StackConfig(1, backend="litert"), SETTINGS)
    fake.stack.scale_locust_workers(3)
    fake.stack.restore(state)
    services = fake.read()["services"]
    assert services["classifier"]["replicas"] == 2
    assert services["classifier"]["env"]["CLASSIFIER_BACKEND"] == "tf"
    assert services["locust-worker"]["replicas"] == 1


def test_wait_ready_gives_up_with_the_task_states(tmp_path: Path) -> None:
    fake = Fake(tmp_path, classifier={"task_state": "Starting 2 seconds ago"})
    with pytest.raises(StackError, match="Starting 2 seconds ago"):
        fake.stack.wait_ready("classifier", 2)


def test_samples_name_service_and_node(fake: Fake) -> None:
    samples = fake.stack.container_stats()
    assert {s["service"] for s in samples} == {"classifier", "nginx", "locust-master", "locust-worker"}
    assert len([s for s in samples if s["service"] == "classifier"]) == 2
    assert {s["node"] for s in samples} == {"node-1"}
    assert samples[0]["raw"]["CPUPerc"] == "50.00%"
    described = fake.stack.describe()
    assert described["tasks_not_sampled"] == [] and len(described["nodes"]) == 1


def test_locust_url_from_gwbridge_or_published_port(tmp_path: Path) -> None:
    assert Fake(tmp_path).stack.locust_url() == "http://192.168.0.5:8089"
    published = Fake(tmp_path, locust_master={"ports": [{"TargetPort": 8089, "PublishedPort": 18189}]})
    assert published.stack.locust_url() == "http://127.0.0.1:18189"


def test_helpers() -> None:
    assert env_list_to_dict(["A=1", "B=x=y", "junk"]) == {"A": "1", "B": "x=y"}
    assert published_port([{"TargetPort": 80, "PublishedPort": 8000}], 80) == 8000
    assert published_port([{"TargetPort": 80}], 80) is None
    assert published_port(None, 8089) is None


def test_faults_are_refused_not_ignored(fake: Fake) -> None:
    spec = FaultSpec.parse("kill-replica@5s")
    # `lab compare` refuses a container kind before a run: the swarm stack injects node kinds only.
    assert fake.stack.kind.fault_kinds == ("kill-node", "partition-node")
    with pytest.raises(StackError, match="cannot inject kill-replica"):
        fake.stack.inject_fault(spec)
    assert fake.stack.process_stats() == []


def test_the_factory_builds_the_swarm_stack_from_the_options(fake: Fake, tmp_path: Path) -> None:
    options = StackOptions(tmp_path, ready_timeout_s=2, env=fake.stack.cli.env, docker=fake.stack.cli.docker)
    stack = make_stack("swarm", options)
    assert isinstance(stack, SwarmStack) and stack.ready_timeout_s == 2
    assert stack.capture().replicas["classifier"] == 2


def multi_node(tmp_path: Path, down: tuple[str, ...] = ()) -> Fake:
    """Three nodes as scripts/nodes makes them: replicas on node-1 and node-2, Locust on node-3, a nodes
    file naming each node's engine and address."""
    fake = Fake(
        tmp_path,
        classifier={"nodes": ["node-1", "node-2"]},
        nginx={"nodes": ["node-2"], "ports": [{"TargetPort": 80, "PublishedPort": 8000}]},
        locust_master={"nodes": ["node-3"], "ports": [{"TargetPort": 8089, "PublishedPort": 8089}]},
        locust_worker={"nodes": ["node-3"]},
    )
    names = ("node-1", "node-2", "node-3")
    state = fake.read()
    state["engines"] = {f"unix:///nodes/{name}/docker.sock": name for name in names}
    state["up"] = [name for name in names if name not in down]
    fake.state.write_text(json.dumps(state))
    state["node_containers"] = {
        f"loadlab-{name}": {"node": name, "running": True, "connected": True} for name in names
    }
    fake.state.write_text(json.dumps(state))
    nodes = NodesFile(
        tuple(
            NodeRecord(
                name,
                f"10.1.0.{i + 1}",
                f"unix:///nodes/{name}/docker.sock",
                manager=i == 0,
                container=f"loadlab-{name}",
            )
            for i, name in enumerate(names)
        ),
        network="loadlab-nodes",
    )
    fake.stack = SwarmStack(
        tmp_path, nodes=nodes, env=fake.stack.cli.env, ready_timeout_s=2, docker=fake.stack.cli.docker
    )
    return fake


def test_with_a_nodes_file_every_node_is_sampled_through_its_engine(tmp_path: Path) -> None:
    fake = multi_node(tmp_path)
    samples = fake.stack.container_stats()
    where = sorted((s["node"], s["service"]) for s in samples)
    assert where == [
        ("node-1", "classifier"),
        ("node-2", "classifier"),
        ("node-2", "nginx"),
        ("node-3", "locust-master"),
        ("node-3", "locust-worker"),
    ]
    # Each node's stats came from its own engine.
    assert len(fake.calls("stats")) == 3
    described = fake.stack.describe()
    assert described["sampled_nodes"] == ["node-1", "node-2", "node-3"]
    assert described["tasks_not_sampled"] == []
    assert [t["Node"] for t in described["tasks"]["classifier"]] == ["node-1", "node-2"]
    # Ports are reached at the address of the node that runs the task.
    assert fake.stack.locust_url() == "http://10.1.0.3:8089"
    assert fake.stack._reach("nginx", 80) == ("10.1.0.2", 8000)
    # Readiness counts the containers on every engine.
    fake.stack.wait_ready("classifier", 2)


def test_a_node_that_does_not_answer_is_an_error_row_not_a_lost_sample(tmp_path: Path) -> None:
    fake = multi_node(tmp_path, down=("node-2",))
    samples = fake.stack.container_stats()
    errors = [s for s in samples if "error" in s]
    assert [e["node"] for e in errors] == ["node-2"]
    assert {s["node"] for s in samples if "raw" in s} == {"node-1", "node-3"}


def test_an_unpublished_ui_on_another_node_is_a_clear_error(tmp_path: Path) -> None:
    fake = multi_node(tmp_path)
    state = fake.read()
    state["services"]["locust-master"]["ports"] = []
    fake.state.write_text(json.dumps(state))
    with pytest.raises(StackError, match="--publish-ui"):
        fake.stack.locust_url()


def test_the_factory_reads_the_nodes_file(tmp_path: Path) -> None:
    path = tmp_path / "nodes.json"
    NodesFile((NodeRecord("node-a", "10.0.0.1", "unix:///a.sock", manager=True),)).write(path)
    stack = make_stack("swarm", StackOptions(tmp_path, nodes_file=path))
    assert isinstance(stack, SwarmStack) and stack.engines().keys() == {"node-a"}
    path.write_text(json.dumps({"schema_version": 99, "nodes": []}))
    with pytest.raises(ValueError, match="schema_version 99"):
        make_stack("swarm", StackOptions(tmp_path, nodes_file=path))


def test_node_faults_are_refused_where_they_cannot_be_injected(tmp_path: Path) -> None:
    fake = multi_node(tmp_path)
    cut = FaultSpec.parse("partition-node=node-2:5s@5s")
    assert fake.stack.refuse_faults([cut]) is None
    assert "manager" in str(fake.stack.refuse_faults([FaultSpec.parse("kill-node=node-1@5s")]))
    assert "node faults only" in str(fake.stack.refuse_faults([FaultSpec.parse("kill-replica@5s")]))
    with pytest.raises(ValueError, match="no node 'node-9'"):
        fake.stack.refuse_faults([FaultSpec.parse("kill-node=node-9@5s")])
    (tmp_path / "single").mkdir()
    assert "--nodes" in str(Fake(tmp_path / "single").stack.refuse_faults([cut]))


def test_partition_node_cuts_watches_reconnects_and_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swarm_module, "WATCH_INTERVAL_S", 0.2)
    fake = multi_node(tmp_path)
    spec = FaultSpec.parse("partition-node=node-2:5s@5s")
    target, detail = fake.stack.inject_fault(spec)
    assert target == "node-2" and "disconnect from loadlab-nodes" in detail
    assert "it ran classifier, nginx" in detail
    assert fake.calls("network", "disconnect") == [
        ["network", "disconnect", "loadlab-nodes", "loadlab-node-2"]
    ]
    time.sleep(1.5)
    fake.stack.end_fault(spec, target)
    assert fake.calls("network", "connect") == [
        ["network", "connect", "--ip", "10.1.0.2", "loadlab-nodes", "loadlab-node-2"]
    ]
    time.sleep(1.0)
    events = fake.stack.fault_events(spec, target)
    assert list(events) == ["node_down", "tasks_elsewhere", "node_ready"]
    assert events["node_down"] <= events["node_ready"]
    fake.stack.heal(2, 1)
    assert fake.read()["services"]["classifier"]["forced"] == 1  # spread over the nodes again


def test_kill_node_kills_its_container_and_heal_starts_it(tmp_path: Path) -> None:
    fake = multi_node(tmp_path)
    spec = FaultSpec.parse("kill-node=node-2@5s")
    fake.stack.inject_fault(spec)
    assert fake.calls("kill") == [["kill", "loadlab-node-2"]]
    assert {t["Node"] for t in fake.stack.tasks("classifier")} == {"node-1"}
    fake.stack.fault_events(spec, "node-2")
    fake.stack.heal(2, 1)
    assert fake.calls("start") == [["start", "loadlab-node-2"]]
    assert {n["Status"] for n in fake.stack.nodes()} == {"Ready"}
