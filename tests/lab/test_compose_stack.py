"""ComposeStack's command sequences against a stand-in `docker` (tests/lab/fake_docker.py): scale and
configure, wait for health, sample, describe, inject faults, and put the stack back as it was. No Docker
needed."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.faults import (
    DURATION,
    FAULT_KINDS,
    FaultInjector,
    FaultKind,
    FaultOps,
    FaultSpec,
    fault_help,
    read_faults,
)
from lab.grid import ExperimentSettings, StackConfig
from lab.services import NGINX
from lab.stacks import ComposeStack, StackError, StackOptions, find_project_dir, make_stack
from lab.timeline import Second, fault_impact

FAKE = Path(__file__).with_name("fake_docker.py")
ORIGINAL_ENV = {"CLASSIFIER_WORKERS": "1", "CLASSIFIER_BACKEND": "tf", "CLASSIFIER_THREADS": "2"}
SETTINGS = ExperimentSettings(replicas=[1, 3], users=[8], max_batch_size=8)


class Fake:
    def __init__(self, tmp_path: Path, containers: list[dict], project_name: str | None = None) -> None:
        self.state = tmp_path / "state.json"
        self.state.write_text(json.dumps({"containers": containers}))
        self.docker = tmp_path / "docker"
        self.docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        self.docker.chmod(self.docker.stat().st_mode | stat.S_IEXEC)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFIER_")}
        env["FAKE_DOCKER_STATE"] = str(self.state)
        self.stack = ComposeStack(
            tmp_path, env=env, ready_timeout_s=3, docker=str(self.docker), project_name=project_name
        )

    def read(self) -> dict:
        return json.loads(self.state.read_text())

    def up_calls(self) -> list[dict]:
        return [c for c in self.read()["calls"] if c["args"][:2] == ["compose", "up"]]

    def commands(self) -> list[list[str]]:
        return [c["args"] for c in self.read()["calls"]]

    def containers(self, service: str) -> list[dict]:
        return [c for c in self.read()["containers"] if c["Service"] == service and c["State"] == "running"]


def _running_stack() -> list[dict]:
    def c(service: str, n: int, env: dict | None = None, health: str = "") -> dict:
        return {"Name": f"fake-{service}-{n}", "Service": service, "ID": f"{n}", "State": "running",
                "Health": health, "env": env or {}}  # fmt: skip

    return [
        c("classifier", 1, ORIGINAL_ENV, "healthy"),
        c("classifier", 2, ORIGINAL_ENV, "healthy"),
        c("nginx", 1, health="healthy"),
        c("locust-master", 1),
        c("locust-worker", 1),
    ]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path, _running_stack())


def test_capture_reads_scale_and_classifier_settings(fake: Fake) -> None:
    state = fake.stack.capture()
    assert state.replicas == {"classifier": 2, "nginx": 1, "locust-master": 1, "locust-worker": 1}
    assert state.classifier_env == ORIGINAL_ENV and state.existed
    assert fake.stack.locust_worker_count() == 1 and fake.stack.host_cpus() == 2


def test_apply_scales_and_sets_only_what_the_config_names(fake: Fake) -> None:
    fake.stack.capture()
    applied = fake.stack.apply(StackConfig(3, 2, "litert", "on"), SETTINGS)
    (call,) = fake.up_calls()
    assert call["args"] == [
        "compose",
        "up",
        "-d",
        "--no-build",
        "--no-deps",
        "--scale",
        "classifier=3",
        "classifier",
    ]
    expected = {**ORIGINAL_ENV, "CLASSIFIER_WORKERS": "2", "CLASSIFIER_BACKEND": "litert",
                "CLASSIFIER_MAX_BATCH_SIZE": "8", "CLASSIFIER_REPLICAS": "3"}  # fmt: skip
    assert call["env"] == expected == applied
    assert len(fake.containers("classifier")) == 3
    assert fake.stack.classifier_settings() == dict(sorted(expected.items()))
    # A config that names only replicas goes back to the stack's own settings for the rest.
    fake.stack.apply(StackConfig(1), SETTINGS)
    assert fake.up_calls()[-1]["env"] == {**ORIGINAL_ENV, "CLASSIFIER_REPLICAS": "1"}
    assert len(fake.containers("classifier")) == 1


def test_restore_puts_back_scale_env_and_locust_workers(fake: Fake) -> None:
    state = fake.stack.capture()
    fake.stack.scale_locust_workers(3)
    fake.stack.apply(StackConfig(4, 2, "litert", "off"), SETTINGS)
    assert len(fake.containers("locust-worker")) == 3
    fake.stack.restore(state)
    restore_calls = fake.up_calls()[-2:]
    assert restore_calls[0]["args"][-3:] == ["--scale", "classifier=2", "classifier"]
    assert restore_calls[0]["env"] == ORIGINAL_ENV
    assert restore_calls[1]["args"][-3:] == ["--scale", "locust-worker=1", "locust-worker"]
    assert [c["env"] for c in fake.containers("classifier")] == [ORIGINAL_ENV, ORIGINAL_ENV]
    assert len(fake.containers("locust-worker")) == 1


def test_wait_ready_gives_up_with_the_replicas_status(fake: Fake) -> None:
    fake.stack.capture()
    state = fake.read()
    state["health_on_up"] = "starting"
    fake.state.write_text(json.dumps(state))
    with pytest.raises(StackError, match=r"classifier not ready within 3s \(want 3\).*fake-classifier-3: Up"):
        fake.stack.apply(StackConfig(3, 2), SETTINGS)


def test_a_stack_that_was_down_is_started_and_taken_down_again(tmp_path: Path) -> None:
    fake = Fake(tmp_path, [])
    state = fake.stack.capture()
    assert not state.existed and state.replicas == {}
    fake.stack.ensure_up(state)
    assert fake.up_calls()[0]["args"] == ["compose", "up", "-d", "--no-build"]
    assert len(fake.containers("classifier")) == 2
    fake.stack.restore(state)
    assert fake.read()["calls"][-1]["args"] == ["compose", "down"]
    assert fake.read()["containers"] == []


def test_stats_describe_and_locust_url(fake: Fake) -> None:
    state = fake.read()
    state["cpu"] = {"fake-classifier-1": 95.5, "fake-locust-worker-1": 42.0}
    state["port"] = "0.0.0.0:18089"
    fake.state.write_text(json.dumps(state))
    samples = {s["raw"]["Name"]: s for s in fake.stack.container_stats()}
    assert samples["fake-classifier-1"]["service"] == "classifier"
    assert samples["fake-classifier-1"]["raw"]["CPUPerc"] == "95.50%"
    assert samples["fake-locust-worker-1"]["service"] == "locust-worker"
    assert len(samples) == 5
    described = fake.stack.describe()
    assert {i["ContainerName"] for i in described["images"]} == set(samples)
    assert described["classifier_env"] == dict(sorted(ORIGINAL_ENV.items()))
    assert fake.stack.locust_url() == "http://127.0.0.1:18089"  # 0.0.0.0 is reached on loopback


def test_find_project_dir(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_dir(deep) == tmp_path
    with pytest.raises(StackError, match="no compose file"):
        find_project_dir(Path("/proc/self"))


def test_services_lab_started_are_stopped_and_the_rest_put_back(tmp_path: Path) -> None:
    containers = _running_stack()
    for c in containers:
        if c["Service"].startswith("locust"):
            c["State"] = "exited"
    fake = Fake(tmp_path, containers)
    state = fake.stack.capture()
    assert state.existed and "locust-master" not in state.replicas
    fake.stack.ensure_up(state)
    assert len(fake.containers("locust-master")) == 1
    fake.stack.apply(StackConfig(1), SETTINGS)
    fake.stack.restore(state)
    stops = [c["args"] for c in fake.read()["calls"] if c["args"][:2] == ["compose", "stop"]]
    assert stops == [["compose", "stop", "locust-master", "locust-worker"]]
    assert len(fake.containers("classifier")) == 2 and fake.containers("locust-master") == []


def test_a_project_name_goes_to_every_compose_command(tmp_path: Path) -> None:
    fake = Fake(tmp_path, _running_stack(), project_name="loadlab-e2e")
    state = fake.stack.capture()
    fake.stack.apply(StackConfig(1), SETTINGS)
    fake.stack.restore(state)
    compose_calls = [args for args in fake.commands() if args[0] == "compose" and args[1:2] != ["version"]]
    assert compose_calls and all(args[1:3] == ["-p", "loadlab-e2e"] for args in compose_calls)


@pytest.mark.parametrize(
    "text, command, target, state_after",
    [
        ("kill-replica@5s", ["kill", "--signal", "KILL", "fake-classifier-2"], "fake-classifier-2", "exited"),
        ("stop-replica@5s", ["stop", "fake-classifier-2"], "fake-classifier-2", "exited"),
        ("pause-replica=3s@5s", ["pause", "fake-classifier-2"], "fake-classifier-2", "paused"),
        ("restart-nginx@5s", ["restart", "--time", "2", "fake-nginx-1"], "fake-nginx-1", "running"),
        ("reload-nginx@5s", ["kill", "--signal", "HUP", "fake-nginx-1"], "fake-nginx-1", "running"),
        ("kill-locust-worker@5s", ["kill", "--signal", "KILL", "fake-locust-worker-1"],
         "fake-locust-worker-1", "exited"),
    ],
)  # fmt: skip
def test_each_fault_kind_hits_the_highest_numbered_container(
    fake: Fake, text: str, command: list[str], target: str, state_after: str
) -> None:
    hit, detail = fake.stack.inject_fault(FaultSpec.parse(text))
    assert hit == target and detail
    assert fake.commands()[-1] == command
    assert next(c for c in fake.read()["containers"] if c["Name"] == target)["State"] == state_after


def test_scale_fault_keeps_the_configuration_and_heal_brings_everything_back(fake: Fake) -> None:
    fake.stack.capture()
    fake.stack.apply(StackConfig(2, 2), SETTINGS)
    assert fake.stack.inject_fault(FaultSpec.parse("scale-replicas=1@5s")) == (None, "classifier scaled to 1")
    assert fake.up_calls()[-1]["env"]["CLASSIFIER_WORKERS"] == "2"  # the configuration's, not the stack's
    assert len(fake.containers("classifier")) == 1
    spec = FaultSpec.parse("pause-replica=3s@5s")
    fake.stack.inject_fault(FaultSpec.parse("restart-nginx@5s"))
    target, _ = fake.stack.inject_fault(spec)
    fake.stack.heal(2, 1)
    assert len(fake.containers("classifier")) == 2 and len(fake.containers("nginx")) == 1
    assert ["unpause", target] in fake.commands()
    fake.stack.end_fault(spec, target)  # ending a pause heal already ended does no harm on a real engine
    assert fake.commands()[-1] == ["unpause", target]


def test_a_new_fault_kind_is_one_record(fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Adding a kind touches lab/faults.py only: the record below is all it takes for parsing, the CLI,
    the compose stack, the injector and the timeline."""

    def freeze(ops: FaultOps, target: str, spec: FaultSpec) -> str:
        ops.docker("pause", target)
        return f"frozen for {spec.duration_s:g} s"

    def thaw(ops: FaultOps, target: str) -> None:
        ops.docker("unpause", target)

    kind = FaultKind(
        "freeze-nginx", "docker pause of nginx for DURATION", NGINX, freeze, arg=DURATION, end=thaw
    )
    monkeypatch.setitem(FAULT_KINDS, kind.name, kind)

    spec = FaultSpec.parse("freeze-nginx=30s@0.1s")
    assert spec == FaultSpec("freeze-nginx", 0.1, duration_s=30.0) and kind.lasts
    assert "freeze-nginx=10s@30s" in fault_help()
    with pytest.raises(ValueError, match="needs =duration"):
        FaultSpec.parse("freeze-nginx@3s")
    dry = CliRunner().invoke(
        app, ["compare", "--replicas", "1", "--users", "1", "--duration", "20s",
              "--fault", "freeze-nginx=2s@5s", "--dry-run"],
    )  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert kind.name in fake.stack.kind.fault_kinds

    path = tmp_path / "faults.json"
    injector = FaultInjector([spec], path, fake.stack.inject_fault, fake.stack.end_fault, lambda: {"a": 1})
    t0 = time.time()
    injector.start(t0)
    deadline = time.monotonic() + 20  # each fake docker call is a Python process: slow on a busy machine
    while fake.containers("nginx") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake.containers("nginx") == []  # paused, so not running
    injector.stop()  # before the 30 s are over: a lasting fault is ended all the same
    assert len(fake.containers("nginx")) == 1
    (record,) = read_faults(path)
    assert (record.target, record.detail, record.error) == ("fake-nginx-1", "frozen for 30 s", None)
    assert record.t is not None and record.t_end is not None and record.t_end - record.t < 25
    assert ["pause", "fake-nginx-1"] in fake.commands() and fake.commands()[-1] == ["unpause", "fake-nginx-1"]

    start = math.floor(t0) - 20  # 20 s of steady traffic before the fault, 20 s after
    seconds = [Second(t, 10, 0, {50.0: 10}) for t in range(start, start + 40)]
    impact = fault_impact(record, seconds, start, start + 40, 2, {"a": 5})
    assert impact.applied and impact.fault == "freeze-nginx=30s@0.1s"
    assert impact.replicas_expected is None and impact.locust is None  # it takes no replica away
    assert impact.recovered and impact.failures_during == 0


def test_the_factory_builds_the_compose_stack_from_the_options(fake: Fake, tmp_path: Path) -> None:
    options = StackOptions(
        tmp_path, ready_timeout_s=3, project_name="other", env=fake.stack.cli.env, docker=str(fake.docker)
    )
    stack = make_stack("compose", options)
    assert isinstance(stack, ComposeStack) and stack.ready_timeout_s == 3
    assert stack.capture().replicas["classifier"] == 2
    assert fake.commands()[-2][:3] == ["compose", "-p", "other"]
