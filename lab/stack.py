"""The serving stack as `lab compare` sees it: scale and configure, wait until ready, sample container
CPU/memory, describe (images, settings), and put everything back as it was.

`ComposeStack` does this with the plain `docker compose` commands, so it honors whatever environment the
caller exported (e.g. `scripts/offline-prepare`'s). `ExternalStack` does nothing to any stack: it is for a
Locust master you run yourself, and the base of the fake that tests use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from lab.budget import cpusets, pin_containers
from lab.faults import FaultSpec
from lab.grid import ExperimentSettings, StackConfig

CLASSIFIER = "classifier"
NGINX = "nginx"
LOCUST_MASTER = "locust-master"
LOCUST_WORKER = "locust-worker"
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
LOCUST_WEB_CONTAINER_PORT = 8089


class StackError(RuntimeError):
    pass


@dataclass
class StackState:
    """What was running before the experiment, enough to put it back."""

    replicas: dict[str, int] = field(default_factory=dict)  # running containers per service
    classifier_env: dict[str, str] = field(default_factory=dict)  # CLASSIFIER_* of a running replica
    existed: bool = True  # any container of the project, running or not
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "classifier_env": self.classifier_env,
            "existed": self.existed,
            **self.details,
        }


class Stack(Protocol):
    """The stack operations `lab compare` needs; everything else talks to Locust's web API."""

    kind: str
    injects_faults: bool

    def capture(self) -> StackState: ...

    def ensure_up(self, state: StackState) -> None: ...

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]: ...

    def scale_locust_workers(self, workers: int) -> None: ...

    def locust_worker_count(self) -> int | None: ...

    def container_stats(self) -> list[dict[str, Any]]: ...

    def describe(self) -> dict[str, Any]: ...

    def classifier_settings(self) -> dict[str, str]: ...

    def host_cpus(self) -> int: ...

    def locust_url(self) -> str | None: ...

    def restore(self, state: StackState) -> None: ...

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]: ...

    def end_fault(self, spec: FaultSpec, target: str | None) -> None: ...

    def heal(self, replicas: int, locust_workers: int | None) -> None: ...

    def process_stats(self) -> list[dict[str, Any]]: ...

    def cgroup_targets(self) -> list[dict[str, Any]]: ...


def classifier_env_for(
    config: StackConfig, settings: ExperimentSettings, base: Mapping[str, str]
) -> dict[str, str]:
    """The CLASSIFIER_* variables that give `config`, starting from `base` (the stack's settings before
    the run, so that a dimension the grid leaves alone keeps its original value)."""
    env = dict(base)
    env["CLASSIFIER_REPLICAS"] = str(config.replicas)
    if config.workers_per_replica is not None:
        env["CLASSIFIER_WORKERS"] = str(config.workers_per_replica)
    if config.backend is not None:
        env["CLASSIFIER_BACKEND"] = config.backend
    if config.cpus_per_replica is not None:
        env["CLASSIFIER_CPUS"] = f"{config.cpus_per_replica:g}"  # the limit, and the threads derived from it
    if config.batching == "off":
        env["CLASSIFIER_MAX_BATCH_SIZE"] = "1"
    elif config.batching == "on":
        env["CLASSIFIER_MAX_BATCH_SIZE"] = str(settings.max_batch_size)
        if settings.max_batch_delay_ms is not None:
            env["CLASSIFIER_MAX_BATCH_DELAY_MS"] = f"{settings.max_batch_delay_ms:g}"
    return env


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


def parse_json_records(text: str) -> list[dict[str, Any]]:
    """Compose prints a JSON array (older v2) or one JSON object per line (newer v2)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class ComposeStack:
    kind = "compose"
    injects_faults = True

    def __init__(
        self,
        project_dir: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 300.0,
        docker: str = "docker",
        project_name: str | None = None,
    ) -> None:
        self.project_dir = project_dir
        self.env = dict(os.environ if env is None else env)
        self.ready_timeout_s = ready_timeout_s
        self.docker = docker
        # Without a name, compose takes COMPOSE_PROJECT_NAME or the compose file's `name:`, as a user's
        # own `docker compose` commands in that folder would.
        self.compose = compose_command(docker, self.env) + (["-p", project_name] if project_name else [])
        # The CLASSIFIER_* values a config starts from: the stack's own, captured before the run.
        self._base_env: dict[str, str] = {}
        self._current_env: dict[str, str] = {}
        self._cpusets: dict[str, str] = {}  # --pin: the cpuset each container was given

    def _run(
        self, args: list[str], env: Mapping[str, str] | None = None, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            args,
            cwd=self.project_dir,
            env=dict(env if env is not None else self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def ps(self, service: str | None = None, all_states: bool = False) -> list[dict[str, Any]]:
        args = [*self.compose, "ps", "--format", "json"]
        if all_states:
            args.append("--all")
        # Filtered here, not by compose: `ps <service>` fails for a service the project does not have.
        rows = parse_json_records(self._run(args).stdout)
        return [r for r in rows if service is None or r.get("Service") == service]

    def _inspect_env(self, container: str) -> dict[str, str]:
        out = self._run([self.docker, "inspect", "--format", "{{json .Config.Env}}", container]).stdout
        pairs = [item.split("=", 1) for item in json.loads(out or "[]") if "=" in item]
        return {k: v for k, v in pairs}

    def capture(self) -> StackState:
        rows = self.ps(all_states=True)
        running = [r for r in rows if r.get("State") == "running"]
        replicas: dict[str, int] = {}
        for row in running:
            replicas[row["Service"]] = replicas.get(row["Service"], 0) + 1
        classifier_env: dict[str, str] = {}
        classifiers = [r for r in running if r.get("Service") == CLASSIFIER]
        if classifiers:
            env = self._inspect_env(classifiers[0]["Name"])
            classifier_env = {k: v for k, v in env.items() if k.startswith("CLASSIFIER_")}
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
        self._run([*self.compose, "up", "-d", "--no-build"])
        self.wait_ready(CLASSIFIER, None)
        fresh = self.capture()
        state.details["started_by_lab"] = True
        self._base_env = dict(fresh.classifier_env)

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        overrides = classifier_env_for(config, settings, self._base_env)
        env = {**self.env, **overrides}
        # Compose recreates the replicas whose configuration changed and adds/removes the rest.
        self._scale(CLASSIFIER, config.replicas, env)
        self.wait_ready(CLASSIFIER, config.replicas)
        self._current_env = overrides
        if settings.pin and config.cpus_per_replica is not None:
            others = [
                r["Name"] for r in self.ps() if r.get("Service") != CLASSIFIER and r.get("State") == "running"
            ]
            sets = cpusets(config.replicas, config.cpus_per_replica, self.host_cpus())
            self._cpusets = pin_containers(self._cpuset, self._running(CLASSIFIER), others, sets)
        return overrides

    def _cpuset(self, cpus: str, containers: list[str]) -> None:
        self._run([self.docker, "update", "--cpuset-cpus", cpus, *containers])

    def _scale(self, service: str, count: int, env: Mapping[str, str] | None = None) -> None:
        # --no-deps: `up <service>` would otherwise also reconcile the services it depends on (nginx, the
        # Locust master), recreating them mid-experiment whenever the compose file or .env changed since
        # they started. --no-build: measure the images that are there.
        self._run(
            [*self.compose, "up", "-d", "--no-build", "--no-deps", "--scale", f"{service}={count}", service],
            env=env,
        )

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
        self._scale(LOCUST_WORKER, workers)
        self.wait_ready(LOCUST_WORKER, workers)

    def locust_worker_count(self) -> int | None:
        return sum(1 for r in self.ps(LOCUST_WORKER) if r.get("State") == "running")

    def container_stats(self) -> list[dict[str, Any]]:
        rows = [r for r in self.ps() if r.get("State") == "running"]
        if not rows:
            return []
        service_of = {r["Name"]: r["Service"] for r in rows}
        # Health too: a replica Docker restarted after a crash runs, but serves only once healthy again.
        health_of = {r["Name"]: r.get("Health", "") for r in rows}
        # One call for all containers: `docker stats --no-stream` takes about a second to measure CPU.
        out = self._run(
            [self.docker, "stats", "--no-stream", "--format", "{{json .}}", *[r["Name"] for r in rows]],
            timeout=30,
        ).stdout
        samples = []
        for raw in parse_json_records(out):
            name = raw.get("Name", "")
            samples.append(
                {"service": service_of.get(name, ""), "health": health_of.get(name, ""), "raw": raw}
            )
        return samples

    def describe(self) -> dict[str, Any]:
        images = parse_json_records(self._run([*self.compose, "images", "--format", "json"]).stdout)
        return {
            "model": self.model_info(),
            "ps": [_ps_summary(r) for r in self.ps()],
            "images": [
                {k: img.get(k) for k in ("ContainerName", "Repository", "Tag", "ID", "Size")}
                for img in images
            ],
            "classifier_env": self.classifier_settings(),
            "cpusets": dict(self._cpusets),
        }

    def model_info(self) -> dict[str, Any]:
        """The classifier's GET /model through nginx (model, backend, batching, threads), for the record."""
        try:
            address = self._run([*self.compose, "port", NGINX, "80"]).stdout.strip()
            host, port = address.rsplit(":", 1)
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host
            response = httpx.get(f"http://{host}:{port}/model", timeout=10.0)
            response.raise_for_status()
            return dict(response.json())
        except (StackError, ValueError, httpx.HTTPError) as err:
            return {"error": str(err)}

    def classifier_settings(self) -> dict[str, str]:
        rows = [r for r in self.ps(CLASSIFIER) if r.get("State") == "running"]
        if not rows:
            return {}
        env = self._inspect_env(rows[0]["Name"])
        return {k: v for k, v in sorted(env.items()) if k.startswith("CLASSIFIER_")}

    def host_cpus(self) -> int:
        try:
            return int(self._run([self.docker, "info", "--format", "{{.NCPU}}"], timeout=30).stdout.strip())
        except (StackError, ValueError):
            return os.cpu_count() or 1

    def locust_url(self) -> str | None:
        try:
            out = self._run(
                [*self.compose, "port", LOCUST_MASTER, str(LOCUST_WEB_CONTAINER_PORT)]
            ).stdout.strip()
        except StackError:
            return None
        if not out or ":" not in out:
            return None
        host, port = out.rsplit(":", 1)
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def restore(self, state: StackState) -> None:
        if self._cpusets:  # --pin: every container back on every core
            running = [r["Name"] for r in self.ps() if r.get("State") == "running"]
            self._cpuset(f"0-{self.host_cpus() - 1}", running)
            self._cpusets = {}
        if not state.existed:
            self._run([*self.compose, "down"])
            return
        if state.details.get("started_by_lab"):
            # Stop only what lab started; what was already running is put back below.
            started = sorted({r["Service"] for r in self.ps()} - set(state.replicas))
            if started:
                self._run([*self.compose, "stop", *started])
            if not state.replicas.get(CLASSIFIER):
                return
        env = {**self.env, **state.classifier_env}
        classifiers = state.replicas.get(CLASSIFIER, 0)
        self._scale(CLASSIFIER, classifiers, env)
        if classifiers:
            self.wait_ready(CLASSIFIER, classifiers)
        workers = state.replicas.get(LOCUST_WORKER)
        if workers is not None and workers != self.locust_worker_count():
            self._scale(LOCUST_WORKER, workers)

    # ---- faults and soaks ---------------------------------------------------------------------------

    def _running(self, service: str) -> list[str]:
        return sorted(r["Name"] for r in self.ps(service) if r.get("State") == "running")

    def _main_pid(self, container: str) -> int:
        return int(self._run([self.docker, "inspect", "--format", "{{.State.Pid}}", container]).stdout)

    def _sigkill(self, container: str) -> str:
        """SIGKILL of the container's main process from the host, as the kernel's OOM killer does: Docker
        sees the process die (exit 137) and applies the restart policy. `docker kill` would instead count
        as a manual stop, after which the policy does not restart the container."""
        try:
            pid = self._main_pid(container)
            if pid <= 0:
                raise ProcessLookupError(f"{container} has no main process")
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL to host pid {pid}"
        except (PermissionError, ProcessLookupError, ValueError):
            # Docker Desktop and rootless Docker: the container's processes are not ours to signal.
            self._run([self.docker, "kill", "--signal", "KILL", container])
            return "docker kill --signal KILL (no host pid access: the restart policy may not apply)"

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]:
        if spec.kind == "scale-replicas":
            assert spec.count is not None
            self._scale(CLASSIFIER, spec.count, {**self.env, **self._current_env})
            return None, f"classifier scaled to {spec.count}"
        if spec.kind == "restart-nginx":
            target = self._running(NGINX)[0]
            self._run([self.docker, "restart", "--time", "2", target])
            return target, "docker restart"
        service = LOCUST_WORKER if spec.kind == "kill-locust-worker" else CLASSIFIER
        containers = self._running(service)
        if not containers:
            raise StackError(f"no running {service} container to {spec.kind}")
        target = containers[-1]  # the highest-numbered: the one a scale-down would remove too
        if spec.kind in ("kill-replica", "kill-locust-worker"):
            return target, self._sigkill(target)
        if spec.kind == "stop-replica":
            self._run([self.docker, "stop", target])
            return target, "docker stop (SIGTERM, then the grace period)"
        if spec.kind == "pause-replica":
            self._run([self.docker, "pause", target])
            return target, f"docker pause for {spec.duration_s:g} s"
        raise StackError(f"unknown fault {spec.kind}")

    def end_fault(self, spec: FaultSpec, target: str | None) -> None:
        if spec.kind == "pause-replica" and target:
            self._run([self.docker, "unpause", target])

    def heal(self, replicas: int, locust_workers: int | None) -> None:
        """Put the stack back after a measurement with faults: unpaused, the configuration's replica count
        healthy, nginx running, the Locust workers there. Compose starts what a fault stopped."""
        for row in self.ps(all_states=True):
            if row.get("State") == "paused":
                self._run([self.docker, "unpause", row["Name"]])
        self._scale(CLASSIFIER, replicas, {**self.env, **self._current_env})
        stopped = [r["Name"] for r in self.ps(NGINX, all_states=True) if r.get("State") != "running"]
        if stopped:
            self._run([self.docker, "start", *stopped])
        if locust_workers:
            self._scale(LOCUST_WORKER, locust_workers)
        self.wait_ready(CLASSIFIER, replicas)
        self.wait_ready(NGINX, None)

    def process_stats(self) -> list[dict[str, Any]]:
        """Per replica: resident memory and open file descriptors of every process in the container, from
        the host's /proc (psutil). Empty where the containers' processes are not visible (Docker Desktop)."""
        import psutil  # the lab's dependency; imported here so the rest of the module does not need it

        rows: list[dict[str, Any]] = []
        for name in self._running(CLASSIFIER):
            try:
                root = psutil.Process(self._main_pid(name))
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
        out = self._run(
            [self.docker, "inspect", "--format", "{{.Name}} {{.State.Pid}}", *[r["Name"] for r in rows]]
        )
        pids = {
            name.lstrip("/"): int(pid) for name, pid in (line.split() for line in out.stdout.splitlines())
        }
        return [
            {"container": r["Name"], "service": r["Service"], "pid": pids.get(r["Name"], 0)} for r in rows
        ]


def _ps_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("Name", "Service", "ID", "Image", "State", "Health", "Status")}


class NoFaults:
    """For stacks lab does not inject faults into or sample processes of; `lab compare` refuses --fault on
    them before a run, so these are only the last line."""

    injects_faults = False

    def inject_fault(self, spec: FaultSpec) -> tuple[str | None, str]:
        raise StackError("faults are implemented for --stack compose only")

    def end_fault(self, spec: FaultSpec, target: str | None) -> None:
        return None

    def heal(self, replicas: int, locust_workers: int | None) -> None:
        return None

    def process_stats(self) -> list[dict[str, Any]]:
        return []

    def cgroup_targets(self) -> list[dict[str, Any]]:
        return []


class ExternalStack(NoFaults):
    """A stack `lab` does not manage (a Locust master and a target you started yourself). Configurations
    are labels only; nothing is scaled; no container statistics unless a subclass provides them."""

    kind = "external"

    def __init__(self, url: str | None = None, expect_workers: int | None = None) -> None:
        self._url = url
        self._expect_workers = expect_workers

    def capture(self) -> StackState:
        return StackState(details={"stack": "external"})

    def ensure_up(self, state: StackState) -> None:
        return None

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        return {}

    def scale_locust_workers(self, workers: int) -> None:
        self._expect_workers = workers

    def locust_worker_count(self) -> int | None:
        return self._expect_workers

    def container_stats(self) -> list[dict[str, Any]]:
        return []

    def describe(self) -> dict[str, Any]:
        return {"stack": "external"}

    def classifier_settings(self) -> dict[str, str]:
        return {}

    def host_cpus(self) -> int:
        return os.cpu_count() or 1

    def locust_url(self) -> str | None:
        return self._url

    def restore(self, state: StackState) -> None:
        return None


def git_sha(directory: Path) -> str | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha
