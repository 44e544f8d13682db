"""The lab as the Docker Swarm stack `loadlab` (scripts/swarm), as `lab compare --stack swarm` drives it.

Scales with `docker service scale` (or `docker service update --env-add ... --replicas N` when a
configuration changes the classifier's settings), waits until every task runs (Swarm reports a task with
a health check running only once it is healthy), and samples `docker stats` of the stack's task
containers. A manager's engine lists every task but runs only its own containers: without a nodes file
(--nodes, lab.nodes) lab samples this engine's and lists the tasks elsewhere in the record
(`describe()`) as not sampled; with one it samples every node through its own engine, in parallel, and
reaches a published port at the address of the node that runs its task. Without a nodes file the Locust
UI is reached as `scripts/swarm ui` does, on this node's docker_gwbridge, unless it is published.

Faults: the node kinds (lab.faults, acts_on NODES) on nodes that are containers of this machine
(scripts/nodes: the nodes file names each node's container and the network they share). While a node
fault lasts and after it, a watch polls the manager every second and writes down when the node was
marked Down, when every task that ran there ran elsewhere, and when the node was Ready again
(`fault_events`). The container kinds and a soak's per-process samples stay compose-only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.faults import NODES, FaultSpec, apply_fault, fault_kind
from lab.faults import end_fault as end_fault_of_kind
from lab.grid import ExperimentSettings, StackConfig
from lab.nodes import NodeRecord, NodesFile, read_nodes_file
from lab.services import CLASSIFIER, LOCUST_MASTER, LOCUST_WORKER, NGINX
from lab.stacks.base import (
    LOCUST_WEB_CONTAINER_PORT,
    StackError,
    StackKind,
    StackOptions,
    StackState,
    classifier_env_for,
)
from lab.stacks.docker import DockerCLI, DockerStack, classifier_vars, env_list_to_dict, model_info

SWARM = StackKind(
    name="swarm",
    help="the Swarm stack loadlab (scripts/swarm)",
    # Seconds a configuration change costs: `docker service update --env-add ...` replaces the tasks one at
    # a time (update_config parallelism 1, stop-first), each loading and warming the model before Swarm
    # reports it running (healthy). Measured 2026-12-03 on a single-node swarm (Docker 20.10, 2 cores, a
    # busy machine: load average 4-5), 2 replicas, TF backend, until every task ran as SwarmStack waits:
    # settings update 20.0-20.2 s (4 runs), scale 1->2 6.4 s (2 runs), update 2->1 with a settings change
    # 10.5 s. The settings update is what the estimate charges for.
    change_s=20.0,
    # Tasks may run on other nodes: this machine's busy cores are not the stack's.
    samples_host_cpu=False,
    sets_replicas=True,
    nodes=None,  # every run records its node list (StackState.details["nodes"])
    injects_faults=False,
    injects_node_faults=True,  # given a nodes file with the nodes' containers (refuse_faults says)
)
WATCH_INTERVAL_S = 1.0  # how often a node fault's watch asks the manager

STACK = "loadlab"
NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_LABEL = "com.docker.swarm.service.name"


def published_port(ports: list[dict[str, Any]] | None, target: int) -> int | None:
    for port in ports or []:
        if int(port.get("TargetPort", 0)) == target and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    return None


class NodeWatch:
    """After a node fault: when the manager marked the node Down, when every task that ran there (of the
    services it held) ran on other nodes, and, once the fault ended, when the node was Ready again. Wall
    clock times; polls through the manager in a thread of its own until stopped."""

    def __init__(self, stack: SwarmStack, node: str, services: list[str], t0: float) -> None:
        self.stack, self.node, self.services, self.t0 = stack, node, services, t0
        self.events: dict[str, float] = {}
        self.ended_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{node}", daemon=True)
        self._thread.start()

    def _state(self) -> str:
        return self.stack.cli("node", "inspect", self.node, "--format", "{{.Status.State}}").strip()

    def _moved(self) -> bool:
        """As many tasks running on other nodes as the service wants. Not "no task left on the node":
        right after the node is marked Down its task is gone from the list before a new one is in it."""
        desired = self.stack.services()
        for service in self.services:
            elsewhere = [
                t
                for t in self.stack.tasks(service)
                if t.get("Node") != self.node and str(t.get("CurrentState", "")).startswith("Running")
            ]
            if len(elsewhere) < desired.get(service, 1):
                return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            try:
                state, now = self._state(), time.time()
                if state == "down" and "node_down" not in self.events:
                    self.events["node_down"] = now
                if "tasks_elsewhere" not in self.events and self.services and self._moved():
                    self.events["tasks_elsewhere"] = time.time()
                if self.ended_at is not None and state == "ready" and "node_down" in self.events:
                    self.events.setdefault("node_ready", now)
            except StackError:
                continue  # a manager busy electing or slow to answer: ask again

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=30)
        return dict(self.events)


class SwarmStack(DockerStack):
    kind = SWARM

    def __init__(
        self, project_dir: Path, *, stack: str = STACK, nodes: NodesFile | None = None, **docker: Any
    ) -> None:
        """`docker`: DockerStack's env, ready_timeout_s and docker (the binary). `nodes`: how to reach
        each node's engine and address (lab.nodes); None: this engine only."""
        super().__init__(project_dir, **docker)
        self.stack = stack
        self.nodes_file = nodes
        self._engines: dict[str, DockerCLI] | None = None
        self._watches: dict[str, NodeWatch] = {}  # by fault spec text
        self._node_faulted = False

    @classmethod
    def from_options(cls, options: StackOptions) -> SwarmStack:
        nodes = read_nodes_file(options.nodes_file) if options.nodes_file is not None else None
        return cls(options.project_dir, nodes=nodes, **cls.docker_options(options))

    def engines(self) -> dict[str, DockerCLI]:
        """Node name -> the CLI on its engine: every node of the nodes file, else this engine alone."""
        if self._engines is None:
            if self.nodes_file is None:
                self._engines = {self.cli.node_name(): self.cli}
            else:
                self._engines = {node.name: self.cli.on(node.endpoint) for node in self.nodes_file.nodes}
        return self._engines

    def _address(self, node: str | None) -> str:
        """Where lab reaches a port published (host mode) on the node: its address in the nodes file;
        without one, on this machine."""
        if self.nodes_file is None or node is None:
            return "127.0.0.1"
        return self.nodes_file.node(node).ip

    def _node_of(self, name: str) -> str | None:
        """The node of the service's first running task."""
        for task in self.tasks(name):
            if str(task.get("CurrentState", "")).startswith("Running"):
                return str(task.get("Node"))
        return None

    def _service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def _inspect_service(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("service", "inspect", self._service(name)))[0])

    def services(self) -> dict[str, int]:
        """Desired replicas per service of the stack (compose service names)."""
        rows = self.cli.records(
            "service", "ls", "--filter", f"label={NAMESPACE_LABEL}={self.stack}", "--format", "json"
        )
        prefix = f"{self.stack}_"
        return {
            row["Name"].removeprefix(prefix): int(str(row["Replicas"]).split("/")[1].split()[0])
            for row in rows
        }

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """The service's tasks that should run: their node and current state ("Running 5 seconds ago")."""
        return self.cli.records(
            "service", "ps", self._service(name), "--no-trunc", "--filter", "desired-state=running",
            "--format", "json",
        )  # fmt: skip

    def nodes(self) -> list[dict[str, Any]]:
        rows = self.cli.records("node", "ls", "--format", "json")
        return [{k: row.get(k) for k in ("Hostname", "Status", "Availability")} for row in rows]

    def capture(self) -> StackState:
        services = self.services()
        classifier_env = self.classifier_settings() if CLASSIFIER in services else {}
        self._base_env = dict(classifier_env)
        return StackState(
            replicas=services,
            classifier_env=classifier_env,
            existed=bool(services),
            details={"stack": self.stack, "nodes": self.nodes()},
        )

    def _swarm_script(self, command: str) -> None:
        self.cli.run([str(self.project_dir / "scripts" / "swarm"), command])

    def ensure_up(self, state: StackState) -> None:
        if state.replicas.get(LOCUST_MASTER) and state.replicas.get(CLASSIFIER):
            self.wait_ready(CLASSIFIER, state.replicas[CLASSIFIER])
            return
        self._swarm_script("up")
        state.details["started_by_lab"] = True
        self._base_env = self.classifier_settings()
        self.wait_ready(CLASSIFIER, self.services()[CLASSIFIER])
        self.wait_ready(LOCUST_MASTER, 1)

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        overrides = classifier_env_for(config, settings, self._base_env)
        self._set_classifier(overrides, config.replicas)
        return overrides

    def _set_classifier(self, env: Mapping[str, str], replicas: int) -> None:
        current = self.classifier_settings()
        changed = {k: v for k, v in env.items() if k != "CLASSIFIER_REPLICAS" and current.get(k) != v}
        if current.get("CLASSIFIER_CPUS") and "CLASSIFIER_CPUS" not in env:
            changed["CLASSIFIER_CPUS"] = "0"  # a stack deployed without a budget: back to none
        if changed:
            # One rolling update of settings and count; Swarm replaces every task with the new settings.
            args = ["service", "update", "--detach", "--replicas", str(replicas)]
            for key, value in sorted(changed.items()):
                args += ["--env-add", f"{key}={value}"]
            if "CLASSIFIER_CPUS" in changed:  # the budget is the tasks' limit too (0: none), as in compose
                args += ["--limit-cpu", changed["CLASSIFIER_CPUS"] or "0"]
            self.cli(*args, self._service(CLASSIFIER))
        else:
            self.cli("service", "scale", "--detach", f"{self._service(CLASSIFIER)}={replicas}")
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

    def _task_containers_here(self, name: str, cli: DockerCLI | None = None) -> list[str]:
        """IDs of the service's running containers on this node (or on `cli`'s engine)."""
        return (cli or self.cli)(
            "ps", "-q", "--no-trunc", "--filter", f"label={SERVICE_LABEL}={self._service(name)}"
        ).split()

    def _containers_of(self, name: str) -> int:
        """Running containers of the service on the engines lab reaches, plus its running tasks on the
        nodes it does not (counted as Swarm reports them)."""
        engines = self.engines()
        elsewhere = [t for t in self.tasks(name) if t.get("Node") not in engines]
        return sum(len(self._task_containers_here(name, cli)) for cli in engines.values()) + len(elsewhere)

    def scale_locust_workers(self, workers: int) -> None:
        self.cli("service", "scale", "--detach", f"{self._service(LOCUST_WORKER)}={workers}")
        self.wait_ready(LOCUST_WORKER, workers)

    def locust_worker_count(self) -> int | None:
        return sum(
            1 for t in self.tasks(LOCUST_WORKER) if str(t.get("CurrentState", "")).startswith("Running")
        )

    def container_stats(self) -> list[dict[str, Any]]:
        """`docker stats` of the stack's containers on every engine lab reaches, each row naming its node;
        an engine that does not answer gives an error row (the others' samples stand)."""
        engines = self.engines()
        with ThreadPoolExecutor(max_workers=len(engines)) as pool:
            futures = {node: pool.submit(self._stats_on, node, cli) for node, cli in engines.items()}
        rows: list[dict[str, Any]] = []
        for node, future in futures.items():
            try:
                rows += future.result()
            except StackError as err:
                rows.append({"node": node, "error": str(err)})
        return rows

    def _stats_on(self, node: str, cli: DockerCLI) -> list[dict[str, Any]]:
        out = cli(
            "ps", "--filter", f"label={NAMESPACE_LABEL}={self.stack}",
            "--format", '{{.Names}}\t{{.Label "com.docker.swarm.service.name"}}',
        )  # fmt: skip
        service_of = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        if not service_of:
            return []
        stats = cli.records("stats", "--no-stream", "--format", "{{json .}}", *service_of, timeout=30)
        prefix = f"{self.stack}_"
        return [
            {
                "service": service_of.get(raw.get("Name", ""), "").removeprefix(prefix),
                "node": node,
                "raw": raw,
            }
            for raw in stats
        ]

    def describe(self) -> dict[str, Any]:
        tasks = {
            name: [{k: t.get(k) for k in ("Name", "Node", "CurrentState", "Image")} for t in self.tasks(name)]
            for name in self.services()
        }
        sampled = sorted(self.engines())
        images = sorted({t["Image"] for ts in tasks.values() for t in ts if t.get("Image")})
        return {
            "stack": self.stack,
            "nodes": self.nodes(),
            "model": model_info(lambda: self._reach(NGINX, 80)),
            "tasks": tasks,  # each task's node: where every replica and Locust process ran
            # docker stats reaches the containers of these nodes' engines only.
            "sampled_nodes": sampled,
            "tasks_not_sampled": sorted(
                t["Name"] for ts in tasks.values() for t in ts if t.get("Node") not in sampled
            ),
            "images": [{"Repository": image, "ID": self._image_id(image)} for image in images],
            "classifier_env": self.classifier_settings(),
        }

    def _reach(self, name: str, target: int) -> tuple[str, int]:
        """(address, port) of the service's published port, on the node of its running task."""
        port = self._published(name, target)
        return self._address(self._node_of(name)), port

    def _published(self, name: str, target: int) -> int:
        port = published_port(self._inspect_service(name)["Endpoint"].get("Ports"), target)
        if port is None:
            raise StackError(f"{self._service(name)} publishes no port {target}")
        return port

    def _image_id(self, image: str) -> str | None:
        try:
            return self.cli("image", "inspect", "--format", "{{.Id}}", image).strip()
        except StackError:
            return None

    def classifier_settings(self) -> dict[str, str]:
        spec = self._inspect_service(CLASSIFIER)["Spec"]["TaskTemplate"]["ContainerSpec"]
        return classifier_vars(env_list_to_dict(spec.get("Env")))

    def locust_url(self) -> str | None:
        try:
            host, port = self._reach(LOCUST_MASTER, LOCUST_WEB_CONTAINER_PORT)
            return f"http://{host}:{port}"
        except StackError:
            if self.nodes_file is not None:
                # The master's docker_gwbridge address answers on its own node only.
                raise StackError(
                    f"the Locust UI of {self._service(LOCUST_MASTER)} is not published: "
                    "`scripts/swarm up --publish-ui ...` for lab to reach it on its node"
                ) from None
        # Not published (the default): the master's address on this node's docker_gwbridge.
        ids = self._task_containers_here(LOCUST_MASTER)
        if not ids:
            return None
        bridge = self.cli("network", "inspect", "docker_gwbridge", "--format", "{{json .Containers}}")
        endpoint_here = json.loads(bridge or "{}").get(ids[0])
        if not endpoint_here:
            return None
        return f"http://{endpoint_here['IPv4Address'].split('/')[0]}:{LOCUST_WEB_CONTAINER_PORT}"

    # ---- node faults (lab.faults' NodeOps, on scripts/nodes' nodes) ----

    def refuse_faults(self, specs: list[FaultSpec]) -> str | None:
        """Why lab cannot inject these faults here, before a run; None when it can."""
        for spec in specs:
            if fault_kind(spec.kind).acts_on != NODES:
                return f"the swarm stack injects node faults only, not {spec.kind}"
            if self.nodes_file is None:
                return f"{spec.kind} needs --nodes FILE (scripts/nodes' nodes.json)"
            node = self.nodes_file.node(str(spec.node))
            if node.container is None or self.nodes_file.network is None:
                return f"{spec.kind}: node {node.name} is not a container of this machine (a real host)"
            if node.manager:
                return f"{spec.kind}: {node.name} is the manager, which lab drives the swarm through"
        return None

    def _node(self, name: str) -> NodeRecord:
        if self.nodes_file is None:
            raise StackError("node faults need a nodes file")
        node = self.nodes_file.node(name)
        if node.container is None:
            raise StackError(f"node {name} is not a container of this machine")
        return node

    def _host(self) -> DockerCLI:
        """The engine that runs the node containers (this machine's), whatever DOCKER_HOST lab has."""
        assert self.nodes_file is not None
        env = {k: v for k, v in self.cli.env.items() if k != "DOCKER_HOST"}
        if self.nodes_file.host_engine:
            env["DOCKER_HOST"] = self.nodes_file.host_engine
        return DockerCLI(self.cli.cwd, env, self.cli.docker)

    def kill_node(self, node: str) -> str:
        self._host()("kill", str(self._node(node).container))
        return f"docker kill of {self._node(node).container} (engine and tasks gone at once)"

    def disconnect_node(self, node: str) -> str:
        assert self.nodes_file is not None and self.nodes_file.network is not None
        self._host()("network", "disconnect", self.nodes_file.network, str(self._node(node).container))
        return f"docker network disconnect from {self.nodes_file.network}"

    def connect_node(self, node: str) -> None:
        assert self.nodes_file is not None and self.nodes_file.network is not None
        record = self._node(node)
        self._host()("network", "connect", "--ip", record.ip, self.nodes_file.network, str(record.container))

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]:
        if fault_kind(spec.kind).acts_on != NODES:
            raise StackError(f"this stack cannot inject {spec.kind}")
        node = str(spec.node)
        held = sorted({name for name in self.services() for t in self.tasks(name) if t.get("Node") == node})
        t0 = time.time()
        self._node_faulted = True
        target, detail = apply_fault(self, spec)
        self._watches[spec.text] = NodeWatch(self, node, held, t0)
        return target, f"{detail}; it ran {', '.join(held) or 'no task'}"

    def end_fault(self, spec: FaultSpec, target: str | None) -> None:
        end_fault_of_kind(self, spec, target)
        watch = self._watches.get(spec.text)
        if watch is not None:
            watch.ended_at = time.time()

    def fault_events(self, spec: FaultSpec, target: str | None) -> dict[str, float]:
        watch = self._watches.pop(spec.text, None)
        return watch.stop() if watch is not None else {}

    def heal(self, replicas: int, locust_workers: int | None) -> None:
        """After node faults: every node container running and on its network, every node Ready, and the
        classifier's tasks spread over the nodes again (Swarm leaves them where it moved them)."""
        for watch in self._watches.values():
            watch.stop()
        self._watches.clear()
        if self.nodes_file is None or not self._node_faulted:
            return
        self._node_faulted = False
        host = self._host()
        for node in self.nodes_file.nodes:
            if node.container is None:
                continue
            state = json.loads(host("inspect", "--format", "{{json .State.Running}}", node.container))
            if not state:
                host("start", node.container)
            networks = json.loads(
                host("inspect", "--format", "{{json .NetworkSettings.Networks}}", node.container) or "{}"
            )
            if self.nodes_file.network and self.nodes_file.network not in (networks or {}):
                self.connect_node(node.name)
        self._wait_nodes_ready()
        self.cli("service", "update", "--detach", "--force", self._service(CLASSIFIER))
        self.wait_ready(CLASSIFIER, replicas)
        if locust_workers:
            self.wait_ready(LOCUST_WORKER, locust_workers)

    def _wait_nodes_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        nodes: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            nodes = self.nodes()
            if nodes and all(n.get("Status") == "Ready" for n in nodes):
                return
            time.sleep(1.0)
        raise StackError(f"nodes not Ready within {self.ready_timeout_s:.0f}s: {nodes}")

    def process_stats(self) -> list[dict[str, Any]]:
        return []  # a soak's per-process samples read this machine's /proc: compose only

    def cgroup_targets(self) -> list[dict[str, Any]]:
        return []

    def restore(self, state: StackState) -> None:
        if not state.existed or state.details.get("started_by_lab"):
            self._swarm_script("down")
            return
        if state.replicas.get(CLASSIFIER) is not None:
            self._set_classifier(state.classifier_env, state.replicas[CLASSIFIER])
        workers = state.replicas.get(LOCUST_WORKER)
        if workers is not None and workers != self.locust_worker_count():
            self.scale_locust_workers(workers)
