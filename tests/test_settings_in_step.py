"""`.env`, docker-compose.yml and the classifier's settings name the same knobs with the same defaults."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from classifier.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def dotenv() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def as_env(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def test_every_classifier_setting_is_in_dotenv_with_its_default() -> None:
    env = dotenv()
    for name, field in Settings.model_fields.items():
        key = f"CLASSIFIER_{name.upper()}"
        assert key in env, f"{key} is missing from .env"
        assert env[key] == as_env(field.default), f"{key}: .env says {env[key]!r}, settings {field.default!r}"
    known = {f"CLASSIFIER_{name.upper()}" for name in Settings.model_fields} | {"CLASSIFIER_REPLICAS"}
    strays = {key for key in env if key.startswith("CLASSIFIER_")} - known
    assert not strays, f".env has CLASSIFIER_ knobs no code reads: {strays}"


def test_compose_passes_every_classifier_setting_from_dotenv() -> None:
    environment = compose()["services"]["classifier"]["environment"]
    expected = {f"CLASSIFIER_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) == expected
    for key, value in environment.items():
        assert value == f"${{{key}}}", f"{key} must come from .env (or the shell) by interpolation"


def test_compose_limits_each_replica_to_its_cpu_budget() -> None:
    # The same variable the replica reads (its threads follow it); `:-0` because an empty value would not
    # parse, and Compose drops a limit of 0 (tests/deploy/test_swarm_stack_file.py renders both cases).
    limits = compose()["services"]["classifier"]["deploy"]["resources"]["limits"]
    assert limits == {"cpus": "${CLASSIFIER_CPUS:-0}"}
    assert float(dotenv()["CLASSIFIER_CPUS"]) == Settings.model_fields["cpus"].default == 0.0


def test_every_variable_compose_interpolates_is_in_dotenv() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    missing = used - set(dotenv())
    assert not missing, f"compose uses variables .env does not define: {missing}"


def test_service_names_are_folder_names() -> None:
    services = compose()["services"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = Path(build["context"] if isinstance(build, dict) else build)
            assert context.name == name or name.startswith(context.name + "-"), (name, context)
        assert "container_name" not in service, f"{name} must stay scalable"
