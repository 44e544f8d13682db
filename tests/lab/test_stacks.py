"""The stack kinds as data: the factory, the records the driver and the analysis read, and what the CLI
makes of them (the time estimate, refusing faults), without Docker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import EXIT_USAGE, app
from lab.faults import FAULT_KINDS
from lab.stacks import STACKS, ExternalStack, StackError, StackOptions, make_stack, stack_kind
from lab.stacks.base import UNKNOWN_KIND
from lab.units import parse_duration


def test_the_factory_builds_each_kind_by_name(tmp_path: Path) -> None:
    assert set(STACKS) == {"compose", "swarm", "external"}
    external = make_stack("external", StackOptions(tmp_path, locust_url="http://127.0.0.1:9"))
    assert isinstance(external, ExternalStack) and external.locust_url() == "http://127.0.0.1:9"
    with pytest.raises(StackError, match="needs --locust-url"):
        make_stack("external", StackOptions(tmp_path))
    with pytest.raises(StackError, match="one of compose, swarm, external"):
        make_stack("k8s", StackOptions(tmp_path))


def test_what_differs_between_kinds_is_on_their_records() -> None:
    compose, swarm, external = (stack_kind(name) for name in ("compose", "swarm", "external"))
    node_kinds = ("kill-node", "partition-node")
    assert compose.fault_kinds == tuple(k for k in FAULT_KINDS if k not in node_kinds)
    assert swarm.fault_kinds == node_kinds and external.fault_kinds == ()
    assert [k.name for k in (compose, swarm, external) if k.samples_host_cpu] == ["compose"]
    assert compose.change_s > swarm.change_s > external.change_s == 0
    assert compose.nodes == 1 and swarm.nodes is None  # a swarm run records its node list
    # An old run.json without the field, or with a kind this lab no longer has: nothing assumed.
    assert stack_kind(None) is stack_kind("gone") is UNKNOWN_KIND
    assert not UNKNOWN_KIND.sets_replicas and UNKNOWN_KIND.nodes is None


def _estimate_s(*args: str) -> float:
    command = ["compare", "--replicas", "1,2", "--users", "4", "--duration", "10s", "--warmup", "0"]
    result = CliRunner().invoke(app, [*command, "--dry-run", *args])
    assert result.exit_code == 0, result.output
    match = re.search(r"estimated (\S+)", result.output)
    assert match, result.output
    return parse_duration(match.group(1))


def test_the_estimate_charges_each_kind_its_change_cost() -> None:
    external = _estimate_s("--stack", "external")
    # Two configurations, each a change (the first, and a scale-up): each kind's change_s twice.
    assert _estimate_s("--stack", "swarm") - external == round(2 * stack_kind("swarm").change_s)
    assert _estimate_s("--stack", "compose") - external == round(2 * stack_kind("compose").change_s)


def test_faults_are_refused_on_a_kind_that_cannot_inject_them(tmp_path: Path) -> None:
    args = ["compare", "--stack", "swarm", "--replicas", "1", "--users", "1", "--duration", "20s",
            "--fault", "restart-nginx@5s", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--fault needs --stack compose" in result.output and "restart-nginx" in result.output
    assert not any(tmp_path.iterdir())


def test_pinning_is_refused_on_a_kind_that_cannot_pin(tmp_path: Path) -> None:
    assert [name for name in ("compose", "swarm", "external") if stack_kind(name).pins_cpus] == ["compose"]
    args = ["compare", "--stack", "external", "--replicas", "1", "--users", "1", "--duration", "20s",
            "--locust-url", "http://127.0.0.1:9", "--cpus-per-replica", "0.5", "--pin",
            "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--pin needs --stack compose" in result.output
    assert not any(tmp_path.iterdir())
