"""ComposeStack's side of CPU budgets against the stand-in `docker` (tests/lab/fake_docker.py): the budget
exported per configuration and put back, the containers' PIDs for the cgroup sampler, `--pin`'s cpusets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.grid import ExperimentSettings, StackConfig
from tests.lab.test_compose_stack import ORIGINAL_ENV, SETTINGS, Fake, _running_stack


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path, _running_stack())


def test_the_budget_is_exported_per_configuration_and_put_back(fake: Fake) -> None:
    state = fake.stack.capture()
    applied = fake.stack.apply(StackConfig(2, cpus_per_replica=0.5), SETTINGS)
    assert applied["CLASSIFIER_CPUS"] == "0.5" == fake.up_calls()[-1]["env"]["CLASSIFIER_CPUS"]
    # A change of budget recreates the replicas (compose sees another environment).
    assert all(c["env"]["CLASSIFIER_CPUS"] == "0.5" for c in fake.containers("classifier"))
    fake.stack.restore(state)
    assert "CLASSIFIER_CPUS" not in fake.up_calls()[-1]["env"]
    assert [c["env"] for c in fake.containers("classifier")] == [ORIGINAL_ENV, ORIGINAL_ENV]


def test_cgroup_targets_name_every_running_container_with_its_pid(fake: Fake) -> None:
    targets = fake.stack.cgroup_targets()
    assert {t["container"]: t["service"] for t in targets} == {
        "fake-classifier-1": "classifier", "fake-classifier-2": "classifier", "fake-nginx-1": "nginx",
        "fake-locust-master-1": "locust-master", "fake-locust-worker-1": "locust-worker",
    }  # fmt: skip
    assert all(t["pid"] >= 1000 for t in targets) and len({t["pid"] for t in targets}) == 5


def test_pin_puts_each_replica_on_its_own_core_and_restores_every_core(fake: Fake) -> None:
    state = fake.read()
    state["ncpu"] = 4
    fake.state.write_text(json.dumps(state))
    captured = fake.stack.capture()
    pinned = ExperimentSettings(replicas=[2], users=[8], cpus_per_replica=[1.0], pin=True)
    fake.stack.apply(StackConfig(2, cpus_per_replica=1.0), pinned)
    cpuset = {c["Name"]: c.get("cpuset") for c in fake.read()["containers"]}
    assert cpuset == {
        "fake-classifier-1": "0", "fake-classifier-2": "1", "fake-nginx-1": "2-3",
        "fake-locust-master-1": "2-3", "fake-locust-worker-1": "2-3",
    }  # fmt: skip
    assert fake.stack.describe()["cpusets"] == cpuset
    fake.stack.restore(captured)
    # What was pinned is back on every core; the replicas restore recreated have no cpuset at all.
    after = {c["Name"]: c.get("cpuset") for c in fake.read()["containers"] if c["State"] == "running"}
    assert {after[name] for name in after if "classifier" not in name} == {"0-3"}
    assert {after[name] for name in after if "classifier" in name} <= {"0-3", None}
    # Without --pin nothing is pinned.
    before = len(fake.commands())
    fake.stack.apply(StackConfig(2, cpus_per_replica=1.0), SETTINGS)
    assert not any(args[0] == "update" for args in fake.commands()[before:])


def test_lab_compare_refuses_pin_before_measuring_on_a_machine_too_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Fake(tmp_path, _running_stack())  # writes the stand-in `docker` and its state (2 cores)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(tmp_path / "state.json"))
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    args = ["compare", "--replicas", "1,2", "--cpus-per-replica", "0.5", "--pin", "--users", "8",
            "--project-dir", str(tmp_path), "--out", str(tmp_path / "results")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "needs 2 replica(s) x 1 core(s) + 1 core for nginx and Locust = 3 cores" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "results").exists()
    assert not [
        c
        for c in json.loads((tmp_path / "state.json").read_text())["calls"]
        if c["args"][:2] == ["compose", "up"]
    ]
