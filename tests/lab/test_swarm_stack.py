"""SwarmStack's Docker commands against a stand-in `docker` (tests/lab/fake_swarm_docker.py): scale and
configure with service commands, wait for running tasks, sample, find Locust, put the stack back."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from lab.faults import FaultSpec
from lab.grid import ExperimentSettings, StackConfig
from lab.stacks import StackError, StackOptions, make_stack
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
    assert fake.stack.kind.fault_kinds == ()  # `lab compare` refuses --fault before a run
    with pytest.raises(StackError, match="cannot inject kill-replica"):
        fake.stack.inject_fault(spec)
    assert fake.stack.process_stats() == []


def test_the_factory_builds_the_swarm_stack_from_the_options(fake: Fake, tmp_path: Path) -> None:
    options = StackOptions(tmp_path, ready_timeout_s=2, env=fake.stack.cli.env, docker=fake.stack.cli.docker)
    stack = make_stack("swarm", options)
    assert isinstance(stack, SwarmStack) and stack.ready_timeout_s == 2
    assert stack.capture().replicas["classifier"] == 2
