"""The Docker CLI as the stacks call it: one runner (errors become StackError), the JSON shapes it
prints, container environments, the engine's CPU count, and the classifier's GET /model."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from lab.stacks.base import DEFAULT_READY_TIMEOUT_S, StackError, StackOptions


def parse_json_records(text: str) -> list[dict[str, Any]]:
    """Docker prints a JSON array (compose's older v2) or one JSON object per line (newer CLIs)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def parse_docker_time(text: str) -> float:
    """Docker's time stamp (`2026-12-04T18:20:01.123456789Z`) as unix time; datetime takes 6 digits."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if m is None:
        raise ValueError(f"not a Docker time stamp: {text!r}")
    whole, fraction, zone = m.groups()
    stamp = f"{whole}.{(fraction or '0')[:6].ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}"
    return datetime.fromisoformat(stamp).timestamp()


def env_list_to_dict(items: list[str] | None) -> dict[str, str]:
    """`["KEY=value", ...]` (a container's or a service's Env) as a dict."""
    pairs = [item.split("=", 1) for item in items or [] if "=" in item]
    return {key: value for key, value in pairs}


def classifier_vars(env: Mapping[str, str]) -> dict[str, str]:
    """The classifier's own settings among an environment, sorted."""
    return {k: v for k, v in sorted(env.items()) if k.startswith("CLASSIFIER_")}


def loopback(host: str) -> str:
    """A published address on every interface is reached on loopback from here."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host


class DockerCLI:
    """Runs `docker ...` in the project folder with the stack's environment."""

    def __init__(self, cwd: Path, env: Mapping[str, str] | None = None, docker: str = "docker") -> None:
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        self.docker = docker

    def run(self, args: list[str], env: Mapping[str, str] | None = None, timeout: float = 600.0) -> str:
        """Stdout of the command `args` (a whole argv: compose's starts with its own prefix)."""
        proc = subprocess.run(
            args,
            cwd=self.cwd,
            env=dict(env if env is not None else self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def on(self, endpoint: str) -> DockerCLI:
        """The same CLI on another engine (DOCKER_HOST: a unix socket, tcp:// or ssh://)."""
        return DockerCLI(self.cwd, {**self.env, "DOCKER_HOST": endpoint}, self.docker)

    def __call__(self, *args: str, timeout: float = 600.0) -> str:
        """`docker ARGS...`"""
        return self.run([self.docker, *args], timeout=timeout)

    def records(self, *args: str, timeout: float = 600.0) -> list[dict[str, Any]]:
        return parse_json_records(self(*args, timeout=timeout))

    def container_env(self, container: str) -> dict[str, str]:
        return env_list_to_dict(
            json.loads(self("inspect", "--format", "{{json .Config.Env}}", container) or "[]")
        )

    def main_pid(self, container: str) -> int:
        return int(self("inspect", "--format", "{{.State.Pid}}", container))

    def started_at(self, container: str) -> float:
        """When the container last started: unix time, to the microsecond."""
        return parse_docker_time(self("inspect", "--format", "{{.State.StartedAt}}", container).strip())

    def host_cpus(self) -> int:
        """The engine's CPUs (the machine the containers run on), or this machine's when it cannot tell."""
        try:
            return int(self("info", "--format", "{{.NCPU}}", timeout=30).strip())
        except (StackError, ValueError):
            return os.cpu_count() or 1

    def node_name(self) -> str:
        return self("info", "--format", "{{.Name}}").strip()


class DockerStack:
    """What the stacks lab drives through the Docker CLI share: the project folder, the CLI, how long to
    wait for readiness, the classifier settings a configuration starts from, the engine's CPUs."""

    def __init__(
        self,
        project_dir: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        docker: str = "docker",
    ) -> None:
        self.project_dir = project_dir
        self.cli = DockerCLI(project_dir, env, docker)
        self.ready_timeout_s = ready_timeout_s
        # The CLASSIFIER_* values a config starts from: the stack's own, captured before the run.
        self._base_env: dict[str, str] = {}

    @classmethod
    def from_options(cls, options: StackOptions) -> Any:
        return cls(options.project_dir, **cls.docker_options(options))

    @staticmethod
    def docker_options(options: StackOptions) -> dict[str, Any]:
        """The constructor keywords every Docker-driven kind takes from the CLI's options."""
        return {"env": options.env, "ready_timeout_s": options.ready_timeout_s, "docker": options.docker}

    def host_cpus(self) -> int:
        return self.cli.host_cpus()

    # Only compose's monitoring profile is found by lab (README, "Monitoring"); other kinds have none.
    def prometheus_url(self) -> str | None:
        return None

    def replica_addresses(self) -> dict[str, str]:
        return {}


def model_info(address: Callable[[], tuple[str, int]]) -> dict[str, Any]:
    """The classifier's GET /model through nginx at `address()` (model, backend, batching, threads), for
    the record; what went wrong instead, so that a run is not lost for its description."""
    try:
        host, port = address()
        response = httpx.get(f"http://{loopback(host)}:{port}/model", timeout=10.0)
        response.raise_for_status()
        return dict(response.json())
    except (StackError, ValueError, httpx.HTTPError) as err:
        return {"error": str(err)}
