"""Drive the real compose stack from tests: one project, on its own ports, always taken down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose_v2_missing_reason() -> str | None:
    """Why the stack cannot be driven here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    probe = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "Docker Compose v2 (`docker compose`) is missing; only v1 or nothing is installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker daemon is not reachable"
    return None


@dataclass
class Stack:
    project: str
    api_port: int
    web_port: int
    env: dict[str, str] = field(default_factory=dict)

    def compose(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 900,
        capture: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", "--project-directory", str(ROOT), "-p", self.project, *args]
        result = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            text=True,
            capture_output=capture,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def container_ids(self, service: str) -> list[str]:
        out = self.compose("ps", "-q", service).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def inspect(self, service: str, template: str) -> list[str]:
        """`docker inspect --format template` of each of a service's containers, one line each."""
        ids = self.container_ids(service)
        if not ids:
            return []
        out = subprocess.run(
            ["docker", "inspect", "--format", template, *ids], capture_output=True, text=True, check=True
        ).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def hostnames(self, service: str) -> set[str]:
        """Hostnames of a service's containers: what the classifier puts in X-Served-By."""
        return set(self.inspect(service, "{{.Config.Hostname}}"))

    def health(self, service: str) -> list[str]:
        out = self.compose("ps", "--format", "json", service).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        return [row.get("Health", "") for row in rows]

    def wait_healthy(self, service: str, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            states = self.health(service)
            if len(states) == count and all(state == "healthy" for state in states):
                return
            time.sleep(2)
        raise AssertionError(f"{service}: wanted {count} healthy, have {states}")

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--tail", "200", *services, check=False).stdout


@contextmanager
def running_stack(project: str, api_port: int, web_port: int, up_args: Sequence[str]) -> Iterator[Stack]:
    env = {
        **os.environ,
        "API_PORT": str(api_port),
        "LOCUST_WEB_PORT": str(web_port),
        "API_BIND": "127.0.0.1",
        # Off the default 5557, so a lab the user runs on this machine does not collide with the tests'.
        "LOCUST_MASTER_PORT": str(web_port - 8089 + 5557),
    }
    stack = Stack(project=project, api_port=api_port, web_port=web_port, env=env)
    try:
        stack.compose("up", "-d", "--build", "--wait", "--wait-timeout", "600", *up_args, timeout=2400)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
