"""The Compose stack (`lab compare --stack compose`, the default): scale and configure with the plain
`docker compose` commands, so it honors whatever environment the caller exported (e.g.
`scripts/offline-prepare`'s); wait until ready; sample container CPU/memory and, for a soak, every
replica's processes; inject faults; put everything back as it was."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.budget import cpusets, pin_containers
from lab.faults import FaultSpec, apply_fault, end_fault, fault_kind
from lab.grid import ExperimentSettings, StackConfig
from lab.services import (
    CLASSIFIER,
    LOCUST_MASTER,
    LOCUST_WORKER,
    MONITORING_PROFILE,
    NGINX,
    PROMETHEUS,
    PROMETHEUS_CONTAINER_PORT,
)
from lab.stacks.base import (
    LOCUST_WEB_CONTAINER_PORT,
    StackError,
    StackKind,
    StackOptions,
    StackState,
    classifier_env_for,
)
from lab.stacks.docker import DockerStack, classifier_vars, loopback, model_info, parse_json_records

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

COMPOSE = StackKind(
    name="compose",
    help="scale the compose stack",
    # Seconds to recreate classifier containers (model load and warm-up) when a configuration changes the
    # stack: the lab's first estimate, kept; `stack_setup_s` in every config.json is the measured one.
    change_s=45.0,
    samples_host_cpu=True,  # compose runs on this machine's Docker engine
    sets_replicas=True,
    nodes=1,
    injects_faults=True,
    pins_cpus=True,  # every container runs on this machine: `docker update --cpuset-cpus` reaches it
)


def find_project_dir(start: Path) -> Path:
    """The nearest directory at or above `start` holding a compose file."""
    for directory in [start, *start.parents]:
        if any((directory / name).is_file() for name in COMPOSE_FILES):
            return directory
    raise StackError(
        f"no compose file ({', '.join(COMPOSE_FILES)}) in {start} or its parents: use --project-dir"
    )


def compose_command(docker: str = "docker", env: Mapping[str, str] | None = None) -> list[str]:
    path = shutil.which(docker)
    if path:
        probe = subprocess.run(
            [path, "compose", "version"], capture_output=True, text=True, check=False, env=env
        )
        if probe.returncode == 0:
            return [path, "compose"]
    raise StackError(
        "`docker compose` (Compose v2) is not available; the old docker-compose v1 lacks `ps --format json`"
    )


def _ps_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("Name", "Service", "ID", "Image", "State", "Health", "Status")}


class ComposeStack(DockerStack):
    kind = COMPOSE

    def __init__(self, project_dir: Path, *, project_name: str | None = None, **docker: Any) -> None:
        """`docker`: DockerStack's env, ready_timeout_s and docker (the binary)."""
        super().__init__(project_dir, **docker)
        # Without a name, compose takes COMPOSE_PROJECT_NAME or the compose file's `name:`, as a user's
        # own `docker compose` commands in that folder would.
        self.compose = compose_command(self.cli.docker, self.cli.env) + (
            ["-p", project_name] if project_name else []
        )
        self._current_env: dict[str, str] = {}
        self._cpusets: dict[str, str] = {}  # --pin: the cpuset each container was given

    @classmethod
    def from_options(cls, options: StackOptions) -> ComposeStack:
        return cls(options.project_dir, project_name=options.project_name, **cls.docker_options(options))

    def _compose(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        return self.cli.run([*self.compose, *args], env=env)

    def ps(self, service: str | None = None, all_states: bool = False) -> list[dict[str, Any]]:
        # Filtered here, not by compose: `ps <service>` fails for a service the project does not have.
        rows = parse_json_records(self._compose("ps", "--format", "json", *(["--all"] if all_states else [])))
        return [r for r in rows if service is None or r.get("Service") == service]

    def capture(self) -> StackState:
        rows = self.ps(all_states=True)
        running = [r for r in rows if r.get("State") == "running"]
        replicas: dict[str, int] = {}
        for row in running:
            replicas[row["Service"]] = replicas.get(row["Service"], 0) + 1
        classifier_env = self.classifier_settings()
        self._base_env = dict(classifier_env)
        return StackState(
            replicas=replicas,
            classifier_env=classifier_env,
            existed=bool(rows),
            details={"ps": [_ps_summary(r) for r in rows]},
        )

    def ensure_up(self, state: StackState) -> None:
        if state.replicas.get(LOCUST_MASTER) and state.replicas.get(CLASSIFIER):
            return
        # The stack (or part of it) is down: start it as the compose file says, without building, so the
        # images measured are the ones already built.
        self._compose("up", "-d", "--no-build")
        self.wait_ready(CLASSIFIER, None)
        fresh = self.capture()
        state.details["started_by_lab"] = True
        self._base_env = dict(fresh.classifier_env)

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        overrides = classifier_env_for(config, settings, self._base_env)
        self._current_env = overrides
        # Compose recreates the replicas whose configuration changed and adds/removes the rest.
        self.scale(CLASSIFIER, config.replicas)
        self.wait_ready(CLASSIFIER, config.replicas)
        if settings.pin and config.cpus_per_replica is not None:
            others = [
                r["Name"] for r in self.ps() if r.get("Service") != CLASSIFIER and r.get("State") == "running"
            ]
            sets = cpusets(config.replicas, config.cpus_per_replica, self.host_cpus())
            self._cpusets = pin_containers(self._cpuset, self.running(CLASSIFIER), others, sets)
        return overrides

    def _cpuset(self, cpus: str, containers: list[str]) -> None:
        self.cli("update", "--cpuset-cpus", cpus, *containers)

    def scale(self, service: str, count: int, env: Mapping[str, str] | None = None) -> None:
        """The service at `count` containers, with the current configuration's settings (or `env`'s)."""
        # --no-deps: `up <service>` would otherwise also reconcile the services it depends on (nginx, the
        # Locust master), recreating them mid-experiment whenever the compose file or .env changed since
        # they started. --no-build: measure the images that are there.
        self._compose(
            "up", "-d", "--no-build", "--no-deps", "--scale", f"{service}={count}", service,
            env={**self.cli.env, **(self._current_env if env is None else env)},
        )  # fmt: skip

    def wait_ready(self, service: str, replicas: int | None) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = [r for r in self.ps(service) if r.get("State") == "running"]
            # No healthcheck means Health is empty: then running is all we can know.
            healthy = [r for r in rows if r.get("Health") in ("healthy", "")]
            count_ok = len(rows) == replicas if replicas is not None else bool(rows)
            if count_ok and len(healthy) == len(rows):
                return
            # An "unhealthy" replica may still recover (health checks retry), so wait for the deadline.
            time.sleep(1.0)
        states = ", ".join(f"{r.get('Name')}: {r.get('Status')}" for r in rows) or "no running container"
        raise StackError(
            f"{service} not ready within {self.ready_timeout_s:.0f}s (want {replicas}): {states}"
        )

    def scale_locust_workers(self, workers: int) -> None:
        self.scale(LOCUST_WORKER, workers)
        self.wait_ready(LOCUST_WORKER, workers)

    def locust_worker_count(self) -> int | None:
        return len(self.running(LOCUST_WORKER))

    def container_stats(self) -> list[dict[str, Any]]:
        rows = [r for r in self.ps() if r.get("State") == "running"]
        if not rows:
            return []
        service_of = {r["Name"]: r["Service"] for r in rows}
        # Health too: a replica Docker restarted after a crash runs, but serves only once healthy again.
        health_of = {r["Name"]: r.get("Health", "") for r in rows}
        # One call for all containers: `docker stats --no-stream` takes about a second to measure CPU.
        stats = parse_json_records(
            self.cli("stats", "--no-stream", "--format", "{{json .}}", *service_of, timeout=30)
        )
        samples = []
        for raw in stats:
            name = raw.get("Name", "")
            service, health = service_of.get(name, ""), health_of.get(name, "")
            samples.append({"service": service, "health": health, "raw": raw})
        return samples

    def describe(self) -> dict[str, Any]:
        images = parse_json_records(self._compose("images", "--format", "json"))
        return {
            "model": model_info(lambda: self._published(NGINX, 80)),
            "ps": [_ps_summary(r) for r in self.ps()],
            "images": [
                {k: img.get(k) for k in ("ContainerName", "Repository", "Tag", "ID", "Size")}
                for img in images
            ],
            "classifier_env": self.classifier_settings(),
            "cpusets": dict(self._cpusets),
        }

    def _published(self, service: str, port: int, *profile: str) -> tuple[str, int]:
        address = self._compose(*profile, "port", service, str(port)).strip()
        if ":" not in address:
            raise StackError(f"{service} publishes no port {port}")
        host, published = address.rsplit(":", 1)
        return host, int(published)

    def classifier_settings(self) -> dict[str, str]:
        running = self.running(CLASSIFIER)
        return classifier_vars(self.cli.container_env(running[0])) if running else {}

    def locust_url(self) -> str | None:
        try:
            host, port = self._published(LOCUST_MASTER, LOCUST_WEB_CONTAINER_PORT)
        except (StackError, ValueError):
            return None
        return f"http://{loopback(host)}:{port}"

    def prometheus_url(self) -> str | None:
        try:
            # A profiled service is known to compose only with its profile enabled.
            host, port = self._published(
                PROMETHEUS, PROMETHEUS_CONTAINER_PORT, "--profile", MONITORING_PROFILE
            )
        except (StackError, ValueError):
            return None
        return f"http://{loopback(host)}:{port}"

    def replica_addresses(self) -> dict[str, str]:
        names = self.running(CLASSIFIER)
        if not names:
            return {}
        out = self.cli(
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}{{.Config.Hostname}}",
            *names,
        )
        addresses: dict[str, str] = {}
        for line in out.splitlines():
            *ips, hostname = line.split() or [""]
            addresses.update({ip: hostname for ip in ips})
        return addresses

    def restore(self, state: StackState) -> None:
        if self._cpusets:  # --pin: every container back on every core
            running = [r["Name"] for r in self.ps() if r.get("State") == "running"]
            self._cpuset(f"0-{self.host_cpus() - 1}", running)
            self._cpusets = {}
        if not state.existed:
            self._compose("down")
            return
        if state.details.get("started_by_lab"):
            # Stop only what lab started; what was already running is put back below.
            started = sorted({r["Service"] for r in self.ps()} - set(state.replicas))
            if started:
                self._compose("stop", *started)
            if not state.replicas.get(CLASSIFIER):
                return
        classifiers = state.replicas.get(CLASSIFIER, 0)
        self.scale(CLASSIFIER, classifiers, state.classifier_env)
        if classifiers:
            self.wait_ready(CLASSIFIER, classifiers)
        workers = state.replicas.get(LOCUST_WORKER)
        if workers is not None and workers != self.locust_worker_count():
            self.scale(LOCUST_WORKER, workers)

    # ---- faults (lab.faults.FaultOps) and soaks -------------------------------------------------------

    def running(self, service: str) -> list[str]:
        return sorted(r["Name"] for r in self.ps(service) if r.get("State") == "running")

    def docker(self, *args: str) -> None:
        self.cli(*args)

    def sigkill(self, container: str) -> str:
        """SIGKILL of the container's main process from the host, as the kernel's OOM killer does: Docker
        sees the process die (exit 137) and applies the restart policy. `docker kill` would instead count
        as a manual stop, after which the policy does not restart the container."""
        try:
            pid = self.cli.main_pid(container)
            if pid <= 0:
                raise ProcessLookupError(f"{container} has no main process")
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL to host pid {pid}"
        except (PermissionError, ProcessLookupError, ValueError):
            # Docker Desktop and rootless Docker: the container's processes are not ours to signal.
            self.cli("kill", "--signal", "KILL", container)
            return "docker kill --signal KILL (no host pid access: the restart policy may not apply)"

    def refuse_faults(self, specs: list[FaultSpec]) -> str | None:
        return None  # every kind COMPOSE allows (the container kinds)

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]:
        return apply_fault(self, spec)

    def end_fault(self, spec: FaultSpec, target: str | None) -> None:
        end_fault(self, spec, target)

    def fault_events(self, spec: FaultSpec, target: str | None) -> dict[str, float]:
        """When the container it hit last started ("started"; the injector keeps it only when that was
        after the fault: a restart, or Docker's restart policy after a kill). The timeline and
        X-Served-By say the rest."""
        if target is None or fault_kind(spec.kind).whole_service:
            return {}
        try:
            return {"started": self.cli.started_at(target)}
        except (StackError, ValueError):
            return {}  # gone (a scale-down removed it): it did not start again

    def heal(self, replicas: int, locust_workers: int | None) -> None:
        """Put the stack back after a measurement with faults: unpaused, the configuration's replica count
        healthy, nginx running, the Locust workers there. Compose starts what a fault stopped."""
        for row in self.ps(all_states=True):
            if row.get("State") == "paused":
                self.cli("unpause", row["Name"])
        self.scale(CLASSIFIER, replicas)
        stopped = [r["Name"] for r in self.ps(NGINX, all_states=True) if r.get("State") != "running"]
        if stopped:
            self.cli("start", *stopped)
        if locust_workers:
            self.scale(LOCUST_WORKER, locust_workers)
        self.wait_ready(CLASSIFIER, replicas)
        self.wait_ready(NGINX, None)

    def process_stats(self) -> list[dict[str, Any]]:
        """Per replica: resident memory and open file descriptors of every process in the container, from
        the host's /proc (psutil). Empty where the containers' processes are not visible (Docker Desktop)."""
        import psutil  # the lab's dependency; imported here so the rest of the module does not need it

        rows: list[dict[str, Any]] = []
        for name in self.running(CLASSIFIER):
            try:
                root = psutil.Process(self.cli.main_pid(name))
                procs = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs)
                fds = sum(p.num_fds() for p in procs)
            except (psutil.Error, StackError, ValueError) as err:
                rows.append({"container": name, "error": f"{type(err).__name__}: {err}"})
                continue
            rows.append(
                {"container": name, "rss_mb": round(rss / 2**20, 2), "fds": fds, "processes": len(procs)}
            )
        return rows

    def cgroup_targets(self) -> list[dict[str, Any]]:
        """Every running container of the project with its service and main process's host PID, whose
        cgroup lab.cgroups reads (CPU used, quota, throttling)."""
        rows = [r for r in self.ps() if r.get("State") == "running"]
        if not rows:
            return []
        out = self.cli("inspect", "--format", "{{.Name}} {{.State.Pid}}", *[r["Name"] for r in rows])
        pids = {name.lstrip("/"): int(pid) for name, pid in (line.split() for line in out.splitlines())}
        return [
            {"container": r["Name"], "service": r["Service"], "pid": pids.get(r["Name"], 0)} for r in rows
        ]
