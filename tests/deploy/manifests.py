"""The compose file as Compose resolves it (with .env's defaults), and rendered Kubernetes manifests."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.test_settings_in_step import ROOT, dotenv

K8S = ROOT / "deploy" / "k8s"

_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """`${VAR}` and `${VAR:-default}` replaced as Compose does, in every string of a parsed YAML tree."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    return value


def compose_services(with_profiles: bool = False) -> dict[str, dict[str, Any]]:
    """docker-compose.yml's services with .env's values filled in (no shell overrides: the defaults);
    without the optional profiles' services (monitoring, grafana) unless asked for."""
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = interpolate(raw["services"], dotenv())
    return {k: v for k, v in services.items() if with_profiles or "profiles" not in v}


def compose_command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def render(path: Path = K8S) -> list[dict[str, Any]]:
    """`kubectl kustomize <path>`, parsed: one dict per resource."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values
