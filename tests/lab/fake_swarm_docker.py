#!/usr/bin/env python3
"""A stand-in `docker` executable for SwarmStack tests: the subset of `docker service`, `node`, `ps`,
`stats`, `info` and `network inspect` that SwarmStack calls, in Docker CLI 28's JSON shapes, with its state
in a JSON file ($FAKE_DOCKER_STATE): services {name: {replicas, env, ports, nodes}}. Every task converges at
once and runs on `node-1`, or on the nodes a service's `nodes` list names (task i on nodes[i]). With
$DOCKER_HOST set (state `engines`: endpoint -> node name) the CLI talks to that node's engine: `ps` and
`stats` see its containers only. Every call is logged."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_STATE"])
NODE = "node-1"


def node_up(state: dict, node: str) -> bool:
    """A node whose container ($FAKE's node_containers) is killed or cut off is Down, its tasks elsewhere."""
    for container in state.get("node_containers", {}).values():
        if container["node"] == node:
            return bool(container["running"] and container["connected"])
    return True


def task_node(service: dict, index: int, state: dict | None = None) -> str:
    nodes = service.get("nodes") or [NODE]
    if state is not None:
        every = sorted({NODE, *state.get("engines", {}).values()})
        nodes = [n for n in nodes if node_up(state, n)] or [n for n in every if node_up(state, n)]
    return str(nodes[index % len(nodes)])


def main(args: list[str]) -> None:
    state = json.loads(STATE.read_text())
    state.setdefault("calls", []).append(args)
    services: dict = state["services"]
    here = state.get("engines", {}).get(os.environ.get("DOCKER_HOST", ""), NODE)
    if os.environ.get("DOCKER_HOST") and here not in state.get("up", [here]):
        STATE.write_text(json.dumps(state))
        print("Cannot connect to the Docker daemon", file=sys.stderr)
        sys.exit(1)

    def tasks_here(name: str) -> list[int]:
        return [i for i in range(services[name]["replicas"]) if task_node(services[name], i, state) == here]

    out = ""
    match args:
        case ["service", "ls", *_]:
            out = "\n".join(
                json.dumps({"Name": f"loadlab_{n}", "Replicas": f"{s['replicas']}/{s['replicas']}"})
                for n, s in services.items()
            )
        case ["service", "inspect", name]:
            s = services[name.removeprefix("loadlab_")]
            spec = {"TaskTemplate": {"ContainerSpec": {"Env": [f"{k}={v}" for k, v in s["env"].items()]}}}
            out = json.dumps([{"Spec": spec, "Endpoint": {"Ports": s.get("ports", [])}}])
        case ["service", "ps", name, *_]:
            s = services[name.removeprefix("loadlab_")]
            state_text = s.get("task_state", "Running 3 seconds ago")
            out = "\n".join(
                json.dumps(
                    {
                        "Name": f"{name}.{i + 1}",
                        "Node": task_node(s, i, state),
                        "CurrentState": state_text,
                        "Image": f"loadlab/{name}:latest",
                    }
                )
                for i in range(s["replicas"])
            )
        case ["service", "scale", "--detach", target]:
            name, count = target.split("=")
            services[name.removeprefix("loadlab_")]["replicas"] = int(count)
        case ["service", "update", "--detach", "--replicas", count, *rest]:
            name = rest[-1].removeprefix("loadlab_")
            services[name]["replicas"] = int(count)
            for i, item in enumerate(rest[:-1]):
                if item == "--env-add":
                    key, value = rest[i + 1].split("=", 1)
                    services[name]["env"][key] = value
        case ["node", "ls", *_]:
            out = "\n".join(
                json.dumps(
                    {
                        "Hostname": node,
                        "Status": "Ready" if node_up(state, node) else "Down",
                        "Availability": "Active",
                    }
                )
                for node in sorted({NODE, *state.get("engines", {}).values()})
            )
        case ["node", "inspect", node, "--format", "{{.Status.State}}"]:
            out = "ready" if node_up(state, node) else "down"
        case ["service", "update", "--detach", "--force", name]:
            services[name.removeprefix("loadlab_")]["forced"] = (
                services[name.removeprefix("loadlab_")].get("forced", 0) + 1
            )
        # The engine that runs the node containers (scripts/nodes' nodes).
        case ["kill", container]:
            state["node_containers"][container]["running"] = False
        case ["start", container]:
            state["node_containers"][container]["running"] = True
        case ["network", "disconnect", _, container]:
            state["node_containers"][container]["connected"] = False
        case ["network", "connect", "--ip", _, _, container]:
            state["node_containers"][container]["connected"] = True
        case ["inspect", "--format", "{{json .State.Running}}", container]:
            out = json.dumps(state["node_containers"][container]["running"])
        case ["inspect", "--format", "{{json .NetworkSettings.Networks}}", container]:
            connected = state["node_containers"][container]["connected"]
            out = json.dumps({"loadlab-nodes": {}} if connected else {})
        case ["info", "--format", "{{.Name}}"]:
            out = here
        case ["info", "--format", "{{.NCPU}}"]:
            out = "2"
        case ["ps", "-q", "--filter", label]:
            name = label.rsplit("=", 1)[1].removeprefix("loadlab_")
            out = "\n".join(f"{name}{i}" for i in tasks_here(name))
        case ["ps", "-q", "--no-trunc", "--filter", label]:
            name = label.rsplit("=", 1)[1].removeprefix("loadlab_")
            out = "\n".join(f"{name}-full-id-{i}" for i in tasks_here(name))
        case ["ps", "--filter", _, "--format", _]:
            out = "\n".join(f"loadlab_{n}.{i + 1}\tloadlab_{n}" for n in services for i in tasks_here(n))
        case ["stats", "--no-stream", "--format", _, *names]:
            out = "\n".join(
                json.dumps({"Name": n, "CPUPerc": "50.00%", "MemUsage": "100MiB / 2GiB"}) for n in names
            )
        case ["network", "inspect", "docker_gwbridge", *_]:
            out = json.dumps({"locust-master-full-id-0": {"IPv4Address": "192.168.0.5/20"}})
        case ["image", "inspect", *_]:
            out = "sha256:0123"
        case _:
            print(f"fake docker: unexpected {args}", file=sys.stderr)
            sys.exit(2)
    STATE.write_text(json.dumps(state))
    print(out)


if __name__ == "__main__":
    # SwarmStack asks several engines at once (one thread each): one call at a time on the state file.
    with STATE.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        main(sys.argv[1:])
