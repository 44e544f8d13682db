"""How to reach each node of a multi-node swarm from where lab runs: the nodes file (nodes.json).

scripts/nodes writes one for its Docker-in-Docker nodes (DOCKER_HOST endpoints on unix sockets, addresses
on a bridge of this machine); on real hosts write it by hand, with `ssh://user@host` endpoints (Docker's
CLI speaks ssh) and each host's address. `lab compare --stack swarm --nodes FILE` samples every node's
containers through its own engine and reaches published ports at the address of the node that runs them.

Versions: 1, this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SERVE_LABEL, LOAD_LABEL = "loadlab.serve", "loadlab.load"  # deploy/swarm/placement.yml's node labels


class NodesFileError(ValueError):
    pass


@dataclass(frozen=True)
class NodeRecord:
    name: str  # the swarm node's hostname (`docker node ls`)
    ip: str  # its address, as lab reaches it (published host-mode ports answer there)
    endpoint: str  # DOCKER_HOST of its engine, from where lab runs
    labels: dict[str, str] = field(default_factory=dict)  # swarm node labels
    manager: bool = False
    # The container that is this node on the machine lab runs on (scripts/nodes' nodes): what the node
    # fault kinds kill or cut off. None on a real host, which lab cannot crash.
    container: str | None = None

    @property
    def role(self) -> str:
        return "manager" if self.manager else "worker"


@dataclass(frozen=True)
class NodesFile:
    nodes: tuple[NodeRecord, ...]
    network: str | None = None  # the bridge scripts/nodes made (None on real hosts)
    subnet: str | None = None
    host_engine: str | None = None  # DOCKER_HOST of the engine running the node containers (None: default)

    @property
    def manager(self) -> NodeRecord:
        return next(node for node in self.nodes if node.manager)

    def node(self, name: str) -> NodeRecord:
        for node in self.nodes:
            if node.name == name:
                return node
        raise NodesFileError(f"no node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "network": self.network,
            "subnet": self.subnet,
            "host_engine": self.host_engine,
            "nodes": [asdict(node) for node in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodesFile:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise NodesFileError(f"schema_version {data.get('schema_version')!r}, not {SCHEMA_VERSION}")
        try:
            nodes = tuple(
                NodeRecord(
                    name=str(node["name"]),
                    ip=str(node["ip"]),
                    endpoint=str(node["endpoint"]),
                    labels={str(k): str(v) for k, v in (node.get("labels") or {}).items()},
                    manager=bool(node.get("manager", False)),
                    container=node.get("container"),
                )
                for node in data["nodes"]
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise NodesFileError(f"a node lacks {err}") from None
        if sum(node.manager for node in nodes) < 1:
            raise NodesFileError("no node is a manager")
        return cls(nodes, data.get("network"), data.get("subnet"), data.get("host_engine"))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_nodes_file(path: Path) -> NodesFile:
    try:
        return NodesFile.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as err:
        raise NodesFileError(f"{path}: {err}") from None
    except NodesFileError as err:
        raise NodesFileError(f"{path}: {err}") from None
