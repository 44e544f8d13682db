"""The lab as the Docker Swarm stack `loadlab` (scripts/swarm), as `lab compare --stack swarm` drives it.

Scales with `docker service scale` (or `docker service update --env-add ... --replicas N` when a
configuration changes the classifier's settings), waits until every task runs (Swarm reports a task with
a health check running only once it is healthy), and samples `docker stats` of the stack's task
containers on this node: Docker's CLI reaches no other node's containers, so tasks elsewhere are listed
in the record (`describe()`) but not sampled. The Locust UI is reached as `scripts/swarm ui` does, on
this node's docker_gwbridge, unless it is published. Faults and a soak's per-process samples are
compose-only for now.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from lab.grid import ExperimentSettings, StackConfig
from lab.stack import (
    CLASSIFIER,
    LOCUST_MASTER,
    LOCUST_WEB_CONTAINER_PORT,
    LOCUST_WORKER,
    NGINX,
    NoFaults,
    StackError,
    StackState,
    classifier_env_for,
    parse_json_records,
)

STACK = "loadlab"
NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_LABEL = "com.docker.swarm.service.name"


def env_list_to_dict(items: list[str] | None) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in items or [] if "=" in item]
    return {key: value for key, value in pairs}


def published_port(ports: list[dict[str, Any]] | None, target: int) -> int | None:
    for port in ports or []:
        if int(port.get("TargetPort", 0)) == target and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    return None


class SwarmStack(NoFaults):
    kind = "swarm"

    def __init__(
        self,
        project_dir: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 300.0,
        docker: str = "docker",
        stack: str = STACK,
    ) -> None:
        self.project_dir = project_dir
        self.env = dict(os.environ if env is None else env)
        self.ready_timeout_s = ready_timeout_s
        self.docker = docker
        self.stack = stack
        self._base_env: dict[str, str] = {}

    def _run(self, args: list[str], timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            args,
            cwd=self.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def _service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def _inspect_service(self, name: str) -> dict[str, Any]:
        out = self._run([self.docker, "service", "inspect", self._service(name)]).stdout
        return dict(json.loads(out)[0])

    def services(self) -> dict[str, int]:
        """Desired replicas per service of the stack (compose service names)."""
        out = self._run(
            [
                self.docker,
                "service",
                "ls",
                "--filter",
                f"label={NAMESPACE_LABEL}={self.stack}",
                "--format",
                "json",
            ]
        ).stdout
        prefix = f"{self.stack}_"
        return {
            row["Name"].removeprefix(prefix): int(str(row["Replicas"]).split("/")[1].split()[0])
            for row in parse_json_records(out)
        }

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """The service's tasks that should run: their node and current state ("Running 5 seconds ago")."""
        out = self._run(
            [
                self.docker,
                "service",
                "ps",
                self._service(name),
                "--no-trunc",
                "--filter",
                "desired-state=running",
                "--format",
                "json",
            ]
        ).stdout
        return parse_json_records(out)

    def _classifier_env(self) -> dict[str, str]:
        spec = self._inspect_service(CLASSIFIER)["Spec"]["TaskTemplate"]["ContainerSpec"]
        env = env_list_to_dict(spec.get("Env"))
        return {k: v for k, v in sorted(env.items()) if k.startswith("CLASSIFIER_")}

    def nodes(self) -> list[dict[str, Any]]:
        out = self._run([self.docker, "node", "ls", "--format", "json"]).stdout
        return [
            {k: row.get(k) for k in ("Hostname", "Status", "Availability")} for row in parse_json_records(out)
        ]

    def capture(self) -> StackState:
        services = self.services()
        classifier_env = self._classifier_env() if CLASSIFIER in services else {}
        self._base_env = dict(classifier_env)
        return StackState(
            replicas=services,
            classifier_env=classifier_env,
            existed=bool(services),
            details={"stack": self.stack, "nodes": self.nodes()},
        )

    def ensure_up(self, state: StackState) -> None:
        if state.replicas.get(LOCUST_MASTER) and state.replicas.get(CLASSIFIER):
            self.wait_ready(CLASSIFIER, state.replicas[CLASSIFIER])
            return
        self._run([str(self.project_dir / "scripts" / "swarm"), "up"])
        state.details["started_by_lab"] = True
        self._base_env = self._classifier_env()
        self.wait_ready(CLASSIFIER, self.services()[CLASSIFIER])
        self.wait_ready(LOCUST_MASTER, 1)

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        overrides = classifier_env_for(config, settings, self._base_env)
        self._set_classifier(overrides, config.replicas)
        return overrides

    def _set_classifier(self, env: Mapping[str, str], replicas: int) -> None:
        current = self._classifier_env()
        changed = {k: v for k, v in env.items() if k != "CLASSIFIER_REPLICAS" and current.get(k) != v}
        if current.get("CLASSIFIER_CPUS") and "CLASSIFIER_CPUS" not in env:
            changed["CLASSIFIER_CPUS"] = "0"  # a stack deployed without a budget: back to none
        if changed:
            # One rolling update of settings and count; Swarm replaces every task with the new settings.
            args = [self.docker, "service", "update", "--detach", "--replicas", str(replicas)]
            for key, value in sorted(changed.items()):
                args += ["--env-add", f"{key}={value}"]
            if "CLASSIFIER_CPUS" in changed:  # the budget is the tasks' limit too (0: none), as in compose
                args += ["--limit-cpu", changed["CLASSIFIER_CPUS"] or "0"]
            self._run([*args, self._service(CLASSIFIER)])
        else:
            self._run(
                [self.docker, "service", "scale", "--detach", f"{self._service(CLASSIFIER)}={replicas}"]
            )
        self.wait_ready(CLASSIFIER, replicas)

    def wait_ready(self, name: str, replicas: int) -> None:
        """`replicas` tasks running (healthy, where the service has a health check), and no other task of
        the service still starting or stopping, so that nginx's DNS answer holds exactly these."""
        deadline = time.monotonic() + self.ready_timeout_s
        states: list[str] = []
        while time.monotonic() < deadline:
            states = [str(task.get("CurrentState", "")) for task in self.tasks(name)]
            running = [s for s in states if s.startswith("Running")]
            if len(running) == replicas == len(states) and self._containers_of(name) == replicas:
                return
            time.sleep(1.0)
        raise StackError(f"{self._service(name)} not ready within {self.ready_timeout_s:.0f}s: {states}")

    def _containers_of(self, name: str) -> int:
        """Running containers of the service on this node plus its running tasks on other nodes."""
        here = self._run(
            [self.docker, "ps", "-q", "--filter", f"label={SERVICE_LABEL}={self._service(name)}"]
        ).stdout.split()
        node = self._this_node()
        elsewhere = [t for t in self.tasks(name) if t.get("Node") != node]
        return len(here) + len(elsewhere)

    def _this_node(self) -> str:
        return self._run([self.docker, "info", "--format", "{{.Name}}"]).stdout.strip()

    def scale_locust_workers(self, workers: int) -> None:
        self._run([self.docker, "service", "scale", "--detach", f"{self._service(LOCUST_WORKER)}={workers}"])
        self.wait_ready(LOCUST_WORKER, workers)

    def locust_worker_count(self) -> int | None:
        return sum(
            1 for t in self.tasks(LOCUST_WORKER) if str(t.get("CurrentState", "")).startswith("Running")
        )

    def container_stats(self) -> list[dict[str, Any]]:
        out = self._run(
            [
                self.docker,
                "ps",
                "--filter",
                f"label={NAMESPACE_LABEL}={self.stack}",
                "--format",
                '{{.Names}}\t{{.Label "com.docker.swarm.service.name"}}',
            ]
        ).stdout
        service_of = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        if not service_of:
            return []
        node = self._this_node()
        raw_stats = self._run(
            [self.docker, "stats", "--no-stream", "--format", "{{json .}}", *service_of], timeout=30
        ).stdout
        prefix = f"{self.stack}_"
        return [
            {
                "service": service_of.get(raw.get("Name", ""), "").removeprefix(prefix),
                "node": node,
                "raw": raw,
            }
            for raw in parse_json_records(raw_stats)
        ]

    def describe(self) -> dict[str, Any]:
        tasks = {
            name: [{k: t.get(k) for k in ("Name", "Node", "CurrentState", "Image")} for t in self.tasks(name)]
            for name in self.services()
        }
        node = self._this_node()
        images = sorted({t["Image"] for ts in tasks.values() for t in ts if t.get("Image")})
        return {
            "stack": self.stack,
            "nodes": self.nodes(),
            "model": self.model_info(),
            "tasks": tasks,
            # docker stats reaches this node's containers only.
            "sampled_node": node,
            "tasks_not_sampled": sorted(
                t["Name"] for ts in tasks.values() for t in ts if t.get("Node") != node
            ),
            "images": [{"Repository": image, "ID": self._image_id(image)} for image in images],
            "classifier_env": self.classifier_settings(),
        }

    def _image_id(self, image: str) -> str | None:
        try:
            return self._run([self.docker, "image", "inspect", "--format", "{{.Id}}", image]).stdout.strip()
        except StackError:
            return None

    def model_info(self) -> dict[str, Any]:
        try:
            port = published_port(self._inspect_service(NGINX)["Endpoint"].get("Ports"), 80)
            if port is None:
                raise StackError(f"{self._service(NGINX)} publishes no port")
            response = httpx.get(f"http://127.0.0.1:{port}/model", timeout=10.0)
            response.raise_for_status()
            return dict(response.json())
        except (StackError, ValueError, httpx.HTTPError) as err:
            return {"error": str(err)}

    def classifier_settings(self) -> dict[str, str]:
        return self._classifier_env()

    def host_cpus(self) -> int:
        try:
            return int(self._run([self.docker, "info", "--format", "{{.NCPU}}"], timeout=30).stdout.strip())
        except (StackError, ValueError):
            return os.cpu_count() or 1

    def locust_url(self) -> str | None:
        endpoint = self._inspect_service(LOCUST_MASTER)["Endpoint"]
        port = published_port(endpoint.get("Ports"), LOCUST_WEB_CONTAINER_PORT)
        if port is not None:
            return f"http://127.0.0.1:{port}"
        # Not published (the default): the master's address on this node's docker_gwbridge.
        ids = self._run(
            [
                self.docker,
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                f"label={SERVICE_LABEL}={self._service(LOCUST_MASTER)}",
            ]
        ).stdout.split()
        if not ids:
            return None
        bridge = self._run(
            [self.docker, "network", "inspect", "docker_gwbridge", "--format", "{{json .Containers}}"]
        )
        endpoint_here = json.loads(bridge.stdout or "{}").get(ids[0])
        if not endpoint_here:
            return None
        return f"http://{endpoint_here['IPv4Address'].split('/')[0]}:{LOCUST_WEB_CONTAINER_PORT}"

    def restore(self, state: StackState) -> None:
        if not state.existed or state.details.get("started_by_lab"):
            self._run([str(self.project_dir / "scripts" / "swarm"), "down"])
            return
        if state.replicas.get(CLASSIFIER) is not None:
            self._set_classifier(state.classifier_env, state.replicas[CLASSIFIER])
        workers = state.replicas.get(LOCUST_WORKER)
        if workers is not None and workers != self.locust_worker_count():
            self.scale_locust_workers(workers)
