"""scripts/nodes against a stand-in `docker` (tests/deploy/fake_nodes_docker.py): the nodes' command lines,
the swarm across them, labels, which images go where, and that `down` removes all of it, also after a
failed `up`. The real thing: tests/e2e/test_nodes.py."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.test_swarm_stack_file import PLACEMENT, rendered
from tests.test_settings_in_step import ROOT

FAKE = Path(__file__).with_name("fake_nodes_docker.py")
IMAGES = {
    "loadlab/classifier:latest": "sha256:c1",
    "loadlab/nginx:latest": "sha256:n1",
    "loadlab/locust:latest": "sha256:l1",
}


def load_script() -> ModuleType:
    path = str(ROOT / "scripts" / "nodes")
    spec = importlib.util.spec_from_loader("scripts_nodes", SourceFileLoader("scripts_nodes", path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


nodes = load_script()


class Fake:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state = tmp_path / "state.json"
        images: dict[str, Any] = {name: {"id": image_id} for name, image_id in IMAGES.items()}
        # The node image is present and made of what the script would make it of: no mmdebstrap here.
        images[nodes.NODE_IMAGE] = {"id": "sha256:node", "labels": {"loadlab.rootfs": nodes.node_image_key()}}
        self.state.write_text(
            json.dumps(
                {
                    "calls": [],
                    "containers": {},
                    "volumes": {},
                    "networks": {},
                    "images": images,
                    "engines": {},
                }
            )
        )
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        docker = bin_dir / "docker"
        docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
        self.dir = tmp_path / "nodes"
        monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
        monkeypatch.setenv("FAKE_DOCKER_STATE", str(self.state))
        monkeypatch.setenv("LOADLAB_NODES_DIR", str(self.dir))
        monkeypatch.setattr(nodes, "DOCKER", "docker")

    def read(self) -> dict[str, Any]:
        return dict(json.loads(self.state.read_text()))

    def calls(self, *prefix: str, host: str | None = None) -> list[list[str]]:
        return [
            call[1:]
            for call in self.read()["calls"]
            if call[1 : 1 + len(prefix)] == list(prefix) and (host is None or call[0] == host)
        ]

    def left(self) -> dict[str, Any]:
        state = self.read()
        return {kind: state[kind] for kind in ("containers", "volumes", "networks") if state[kind]}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


def endpoint(fake: Fake, name: str) -> str:
    return f"unix://{fake.dir / name / 'docker.sock'}"


def test_up_makes_nodes_a_swarm_and_labels(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    nodes.main(["up", "3", "--no-images"])
    assert capsys.readouterr().out == f"export DOCKER_HOST={endpoint(fake, 'node-a')}\n"
    [network] = fake.calls("network", "create")
    assert network[-1] == "loadlab-nodes" and "172.30.77.0/24" in network and "loadlab.nodes" in network
    runs = fake.calls("run")
    assert [run[run.index("--ip") + 1] for run in runs] == ["172.30.77.11", "172.30.77.12", "172.30.77.13"]
    for run, name in zip(runs, ("node-a", "node-b", "node-c"), strict=True):
        # The measured substitute for --privileged, which this kind of host refuses.
        assert "--privileged" not in run
        assert run[run.index("--cap-drop") + 1] == "SYS_RESOURCE" and "--init" in run
        assert f"loadlab-{name}:/var/lib/docker" in run  # overlay2 needs a volume under it
        assert f"{fake.dir / name}:/run/loadlab-node" in run
        assert run[run.index("--hostname") + 1] == name and run[-1] == nodes.NODE_IMAGE
    assert fake.calls("swarm", "init", host=endpoint(fake, "node-a")) == [
        ["swarm", "init", "--advertise-addr", "172.30.77.11"]
    ]
    joins = fake.calls("swarm", "join")
    assert len(joins) == 2 and all(join[-1] == "172.30.77.11:2377" for join in joins)
    manager = fake.read()["engines"][endpoint(fake, "node-a")]["swarm"]
    assert {name: node["labels"] for name, node in manager["nodes"].items()} == {
        "node-a": {"loadlab.serve": "true"},
        "node-b": {"loadlab.serve": "true"},
        "node-c": {"loadlab.load": "true"},
    }
    record = json.loads((fake.dir / "nodes.json").read_text())
    assert record["schema_version"] == 1
    assert [(n["name"], n["ip"], n["manager"]) for n in record["nodes"]] == [
        ("node-a", "172.30.77.11", True),
        ("node-b", "172.30.77.12", False),
        ("node-c", "172.30.77.13", False),
    ]


def test_down_removes_everything_and_is_idempotent(fake: Fake) -> None:
    nodes.main(["up", "2", "--no-images"])
    assert set(fake.left()) == {"containers", "volumes", "networks"}
    nodes.main(["down"])
    assert fake.left() == {} and not fake.dir.exists()
    calls = len(fake.read()["calls"])
    nodes.main(["down"])  # nothing left: lists, removes nothing
    after = [call[1:] for call in fake.read()["calls"][calls:]]
    assert after == [
        ["ps", "-aq", "--filter", "label=loadlab.nodes"],
        ["volume", "ls", "-q", "--filter", "label=loadlab.nodes"],
        ["network", "ls", "-q", "--filter", "label=loadlab.nodes"],
    ]


def test_failed_up_removes_what_it_made(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "swarm join")
    with pytest.raises(SystemExit) as exit_info:
        nodes.main(["up", "3", "--no-images"])
    assert exit_info.value.code == 1
    assert fake.calls("swarm", "join") and fake.left() == {} and not fake.dir.exists()


def test_failed_up_kept_for_a_look_then_down(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "swarm join")
    with pytest.raises(SystemExit):
        nodes.main(["up", "3", "--no-images", "--keep-on-failure"])
    assert len(fake.left()["containers"]) == 3
    monkeypatch.delenv("FAKE_DOCKER_FAIL")
    nodes.main(["down"])
    assert fake.left() == {}


def test_up_refuses_when_nodes_are_up(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    nodes.main(["up", "1", "--no-images"])
    with pytest.raises(SystemExit):
        nodes.main(["up", "1", "--no-images"])
    assert "nodes are up already" in capsys.readouterr().err
    assert len(fake.calls("run")) == 1


def test_env_and_status(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    nodes.main(["status"])
    assert capsys.readouterr().out == "no nodes\n"
    nodes.main(["up", "2", "--no-images"])
    capsys.readouterr()
    nodes.main(["env", "node-b"])
    assert capsys.readouterr().out == f"export DOCKER_HOST={endpoint(fake, 'node-b')}\n"
    nodes.main(["status"])
    out = capsys.readouterr().out
    assert "node-a   172.30.77.11    running    manager" in out and "node-b: images none" in out
    with pytest.raises(SystemExit):
        nodes.main(["env", "node-z"])


def test_plan_roles() -> None:
    one = nodes.plan(1, "172.30.77.0/24", Path("/x"))
    assert one[0].labels == {"loadlab.serve": "true", "loadlab.load": "true"} and one[0].manager
    four = nodes.plan(4, "10.9.0.0/24", Path("/x"))
    assert [n.labels for n in four].count({"loadlab.serve": "true"}) == 3 and four[-1].ip == "10.9.0.14"
    with pytest.raises(nodes.NodesError):
        nodes.plan(3, "10.9.0.0/29", Path("/x"))
    with pytest.raises(nodes.NodesError):
        nodes.plan(0, "10.9.0.0/24", Path("/x"))


def test_images_go_where_placement_runs_them() -> None:
    three = nodes.plan(3, nodes.DEFAULT_SUBNET, Path("/x"))
    needed = nodes.images_needed(rendered("-f", str(PLACEMENT)), three)
    where = {image.split("/")[-1].split(":")[0]: [n.name for n in at] for image, at in needed.items()}
    assert where == {"classifier": ["node-a", "node-b"], "nginx": ["node-a", "node-b"], "locust": ["node-c"]}
    # No placement: any node may run any task.
    anywhere = nodes.images_needed(rendered(), three)
    assert all(len(at) == 3 for at in anywhere.values())


def test_constraints() -> None:
    node = nodes.Node("node-b", "10.0.0.1", "unix:///x", {"loadlab.serve": "true"})
    assert nodes.constraint_holds("node.labels.loadlab.serve == true", node) is True
    assert nodes.constraint_holds("node.labels.loadlab.load == true", node) is False
    assert nodes.constraint_holds("node.labels.loadlab.load != true", node) is True
    assert nodes.constraint_holds("node.hostname==node-b", node) is True
    assert nodes.constraint_holds("node.role == manager", node) is False
    assert nodes.constraint_holds("engine.labels.x == y", node) is None  # unknown: assumed possible
    assert nodes.runs_on({"deploy": {"placement": {"constraints": ["engine.labels.x == y"]}}}, node)


def test_images_saved_once_loaded_only_where_missing(fake: Fake) -> None:
    nodes.main(["up", "3", "--no-images"])
    three = nodes.read_state(fake.dir)
    # node-b has the classifier already, node-a an older build of it.
    engines = fake.read()
    engines["engines"][three[1].endpoint]["images"]["loadlab/classifier:latest"] = "sha256:c1"
    engines["engines"][three[0].endpoint]["images"]["loadlab/classifier:latest"] = "sha256:old"
    fake.state.write_text(json.dumps(engines))
    nodes.load_images({"loadlab/classifier:latest": three[:2], "loadlab/locust:latest": three[2:]}, fake.dir)
    assert [call[-1] for call in fake.calls("save")] == ["loadlab/classifier:latest", "loadlab/locust:latest"]
    loads = [call[0] for call in fake.read()["calls"] if call[1:2] == ["load"]]
    assert loads == [three[0].endpoint, three[2].endpoint]
    state = fake.read()["engines"]
    assert state[three[0].endpoint]["images"] == {"loadlab/classifier:latest": "sha256:c1"}
    assert state[three[2].endpoint]["images"] == {"loadlab/locust:latest": "sha256:l1"}
    assert not list((fake.dir / "images").iterdir())  # the archives do not stay
    with pytest.raises(nodes.NodesError, match="not on this machine"):
        nodes.load_images({"loadlab/absent:latest": three[:1]}, fake.dir)
