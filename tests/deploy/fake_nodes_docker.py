#!/usr/bin/env python3
"""A stand-in `docker` executable for scripts/nodes tests: the host engine's containers, volumes, networks
and images, and each node's engine (reached with `-H unix://<dir>/docker.sock`, made by `docker run` of a
node from its socket-dir bind mount) with its swarm and images. State in $FAKE_DOCKER_STATE; every call is
logged as [host or "", *args]. $FAKE_DOCKER_FAIL="swarm join" makes every call starting with those words
fail, as a real engine's error would."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_STATE"])


def option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]


def labelled(items: dict, args: list[str]) -> list[str]:
    wanted = option(args, "--filter")[0].removeprefix("label=")
    return [name for name, item in items.items() if wanted in item["labels"]]


def engine_call(state: dict, host: str, args: list[str]) -> str:
    engine = state["engines"].get(host)
    if engine is None or not engine["up"]:
        print(f"Cannot connect to the Docker daemon at {host}", file=sys.stderr)
        sys.exit(1)
    match args:
        case ["version", *_]:
            return "20.10.24"
        case ["swarm", "init", "--advertise-addr", ip]:
            engine["swarm"] = {"manager": True, "ip": ip, "nodes": {engine["hostname"]: {"labels": {}}}}
            return ""
        case ["swarm", "join-token", "-q", "worker"]:
            return "SWMTKN-fake"
        case ["swarm", "join", "--token", "SWMTKN-fake", "--advertise-addr", ip, manager_addr]:
            manager = next(e for e in state["engines"].values() if e.get("swarm", {}).get("manager"))
            assert manager_addr == f"{manager['swarm']['ip']}:2377", manager_addr
            manager["swarm"]["nodes"][engine["hostname"]] = {"labels": {}}
            engine["swarm"] = {"manager": False, "ip": ip}
            return ""
        case ["node", "ls", "--format", _]:
            return "\n".join(f"{name} Ready" for name in engine["swarm"]["nodes"])
        case ["node", "ls"]:
            return "ID HOSTNAME STATUS\n" + "\n".join(f"x {name} Ready" for name in engine["swarm"]["nodes"])
        case ["node", "update", *rest]:
            labels = engine["swarm"]["nodes"][rest[-1]]["labels"]
            labels.update(item.split("=", 1) for item in option(rest, "--label-add"))
            return ""
        case ["image", "inspect", "--format", "{{.Id}}", image]:
            if image not in engine["images"]:
                sys.exit(1)
            return engine["images"][image]
        case ["load", "-q", "-i", archive]:
            engine["images"].update(json.loads(Path(archive).read_text()))
            return ""
        case ["images", "--format", _]:
            return "\n".join(engine["images"])
    print(f"fake docker -H {host}: unexpected {args}", file=sys.stderr)
    sys.exit(2)


def host_call(state: dict, args: list[str]) -> str:
    match args:
        case ["ps", "-aq", "--filter", _]:
            return "\n".join(state["containers"][n]["id"] for n in labelled(state["containers"], args))
        case ["ps", "-a", "--filter", _, "--format", _]:
            return "\n".join(f"{n} running" for n in labelled(state["containers"], args))
        case [kind, "ls", "-q", "--filter", _] if kind in ("volume", "network"):
            return "\n".join(labelled(state[kind + "s"], args))
        case ["network", "create", *rest]:
            state["networks"][rest[-1]] = {
                "labels": option(rest, "--label"),
                "subnet": option(rest, "--subnet"),
            }
            return "net-id"
        case ["volume", "create", "--label", label, name]:
            state["volumes"][name] = {"labels": [label]}
            return name
        case ["run", "-d", *rest]:
            name, image = option(rest, "--name")[0], rest[-1]
            assert image in state["images"], f"no image {image}"
            assert option(rest, "--network")[0] in state["networks"]
            for volume in option(rest, "-v"):
                source = volume.split(":")[0]
                assert source in state["volumes"] or Path(source).is_dir(), f"no {source}"
            socket_dir = next(v.split(":")[0] for v in option(rest, "-v") if v.endswith(":/run/loadlab-node"))
            labels = [label.split("=")[0] for label in option(rest, "--label")]
            state["containers"][name] = {"id": f"id-{name}", "labels": labels, "args": rest}
            host = f"unix://{socket_dir}/docker.sock"
            state["engines"][host] = {"up": True, "hostname": option(rest, "--hostname")[0], "images": {}}
            return f"id-{name}"
        case ["rm", "-f", "-v", *ids]:
            for name in [n for n, c in state["containers"].items() if c["id"] in ids]:
                del state["containers"][name]
            return ""
        case ["volume", "rm", "-f", *names]:
            for name in names:
                del state["volumes"][name]
            return ""
        case ["network", "rm", *names]:
            for name in names:
                del state["networks"][name]
            return ""
        case ["image", "inspect", "--format", template, image]:
            if image not in state["images"]:
                sys.exit(1)
            if template == "{{.Id}}":
                return state["images"][image]["id"]
            label = template.split('"')[1]
            return state["images"][image].get("labels", {}).get(label, "")
        case ["save", "-o", archive, image]:
            Path(archive).write_text(json.dumps({image: state["images"][image]["id"]}))
            return ""
    print(f"fake docker: unexpected {args}", file=sys.stderr)
    sys.exit(2)


def main(args: list[str]) -> None:
    state = json.loads(STATE.read_text())
    host = ""
    if args[:1] == ["-H"]:
        host, args = args[1], args[2:]
    state["calls"].append([host, *args])
    fail = os.environ.get("FAKE_DOCKER_FAIL", "").split()
    if fail and args[: len(fail)] == fail:
        STATE.write_text(json.dumps(state))
        print(f"Error response from daemon: fake failure of {' '.join(fail)}", file=sys.stderr)
        sys.exit(1)
    try:
        out = engine_call(state, host, args) if host else host_call(state, args)
    finally:  # also when a call exits with an error: its log entry stays
        STATE.write_text(json.dumps(state))
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
