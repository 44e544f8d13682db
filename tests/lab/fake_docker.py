#!/usr/bin/env python3
"""A stand-in `docker` executable for ComposeStack tests: the subset of `docker compose` and `docker`
that ComposeStack calls, answering in Docker Compose v2.40's JSON shapes, with its state in a JSON file
($FAKE_DOCKER_STATE). Every call is logged with the CLASSIFIER_* variables it was run with. The fault
commands (kill, stop, pause, unpause, restart, start) change a container's State; `.State.Pid` is 0, as
Docker reports for a container whose processes are not visible, so a SIGKILL goes through `docker kill`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_STATE"])
DEFAULT_SERVICES = {"classifier": 2, "nginx": 1, "locust-master": 1, "locust-worker": 1}
CONTAINER_STATE_AFTER = {
    "kill": "exited",
    "stop": "exited",
    "pause": "paused",
    "unpause": "running",
    "restart": "running",
    "start": "running",
}


def load() -> dict:
    return json.loads(STATE.read_text())


def save(state: dict) -> None:
    # Atomically: a test may read the state while a fault thread's docker call writes it.
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATE)


def container(service: str, number: int, env: dict[str, str], health: str) -> dict:
    return {
        "Name": f"fake-{service}-{number}",
        "Service": service,
        "ID": f"{service[:4]}{number:08d}",
        "State": "running",
        "Health": health if service in ("classifier", "nginx") else "",
        "env": env if service == "classifier" else {},
    }


def scale(state: dict, service: str, count: int) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("CLASSIFIER_")}
    keep = []
    for c in state["containers"]:
        if c["Service"] != service:
            keep.append(c)
    current = sorted((c for c in state["containers"] if c["Service"] == service), key=lambda c: c["Name"])
    for number in range(1, count + 1):
        old = next((c for c in current if c["Name"] == f"fake-{service}-{number}"), None)
        if old is not None and (service != "classifier" or old["env"] == env) and old["State"] == "running":
            keep.append(old)  # unchanged configuration: compose leaves the container alone
        else:
            keep.append(container(service, number, env, state.get("health_on_up", "healthy")))
            state["recreated"] = state.get("recreated", 0) + 1
    state["containers"] = keep


def compose(args: list[str], state: dict) -> int:
    command = args[0]
    if command == "version":
        print("Docker Compose version v2.40.3")
    elif command == "ps":
        rows = [c for c in state["containers"] if "--all" in args or c["State"] == "running"]
        for c in rows:
            status = "Up 5 seconds" + (f" ({c['Health']})" if c["Health"] else "")
            print(
                json.dumps({**{k: v for k, v in c.items() if k != "env"}, "Status": status, "Image": "img"})
            )
    elif command == "up":
        services = [a for a in args[1:] if not a.startswith("-") and "=" not in a]
        scales = dict(a.split("=") for a in args if "=" in a and not a.startswith("-"))
        if not services:
            for service, count in DEFAULT_SERVICES.items():
                scale(state, service, count)
        for service in services:
            scale(state, service, int(scales.get(service, DEFAULT_SERVICES[service])))
    elif command == "down":
        state["containers"] = []
    elif command == "stop":
        for c in state["containers"]:
            c["State"] = "exited"
    elif command == "images":
        images = [
            {
                "ID": "sha256:abc",
                "ContainerName": c["Name"],
                "Repository": f"loadlab/{c['Service']}",
                "Tag": "latest",
            }
            for c in state["containers"]
        ]
        print(json.dumps(images))
    elif command == "port":
        print(state.get("port", "127.0.0.1:18089"))
    else:
        print(f"fake docker: unknown compose command {args}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    args = sys.argv[1:]
    state = load()
    state.setdefault("calls", []).append(
        {"args": args, "env": {k: v for k, v in os.environ.items() if k.startswith("CLASSIFIER_")}}
    )
    code = 0
    if args[0] == "compose":
        rest = args[1:]
        if rest[:1] == ["-p"]:
            rest = rest[2:]  # one fake project whatever its name
        code = compose(rest, state)
    elif args[0] == "inspect" and "{{.Name}} {{.State.Pid}}" in args:
        for name in args[args.index("{{.Name}} {{.State.Pid}}") + 1 :]:
            number = next(i for i, c in enumerate(state["containers"], start=1000) if c["Name"] == name)
            print(f"/{name} {number}")
    elif args[0] == "update":
        cpuset = args[args.index("--cpuset-cpus") + 1]
        for c in state["containers"]:
            if c["Name"] in args[3:]:
                c["cpuset"] = cpuset
    elif args[0] == "inspect":
        c = next(c for c in state["containers"] if c["Name"] == args[-1])
        if args[2] == "{{.State.Pid}}":
            print(0)
        else:
            print(json.dumps([f"{k}={v}" for k, v in c["env"].items()] + ["PATH=/usr/bin"]))
    elif args[0] in CONTAINER_STATE_AFTER:
        names = [a for a in args[1:] if a.startswith("fake-")]
        # `kill --signal HUP` (or another catchable signal) leaves the process running, as on Docker.
        stays = (
            args[0] == "kill" and "--signal" in args and args[args.index("--signal") + 1] not in ("KILL", "9")
        )
        for c in state["containers"]:
            if c["Name"] in names and not stays:
                c["State"] = CONTAINER_STATE_AFTER[args[0]]
    elif args[0] == "stats":
        for name in args[args.index("{{json .}}") + 1 :]:
            cpu = state.get("cpu", {}).get(name, 10.0)
            print(json.dumps({"Name": name, "CPUPerc": f"{cpu:.2f}%", "MemUsage": "100MiB / 23.54GiB"}))
    elif args[0] == "info":
        print(state.get("ncpu", 2))
    else:
        code = 1
    save(state)
    return code


if __name__ == "__main__":
    sys.exit(main())
