"""locust/remote-workers.yml is read without .env: its defaults must be .env's, its worker the lab's; it
stops and lists without LOCUST_MASTER_HOST, and only `up` refuses without it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import compose_services
from tests.test_settings_in_step import ROOT, dotenv

REMOTE = ROOT / "locust" / "remote-workers.yml"
CHECK = "check-locust-master-host"


def test_defaults_are_dotenv_values() -> None:
    text = REMOTE.read_text()
    # An empty default (`${VAR:-}`) is "no default": only the check service gives it a meaning.
    defaults = {k: v for k, v in re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text) if v}
    assert defaults, "remote-workers.yml names no defaults"
    env = dotenv()
    for name, value in defaults.items():
        assert env[name] == value, f"{name}: {value!r} here, {env[name]!r} in .env"


def test_worker_is_the_lab_s_worker_pointed_elsewhere() -> None:
    remote = yaml.safe_load(REMOTE.read_text())["services"]["locust-worker"]
    lab = compose_services()
    assert remote["image"] == lab["locust-worker"]["image"]
    assert "--worker" in remote["command"] and "/locust/locustfile.py" in remote["command"]
    # The lab's master listens for workers on the container port the lab publishes.
    published = lab["locust-master"]["ports"]
    assert any(p.endswith(":5557") and p.split(":")[1] == dotenv()["LOCUST_MASTER_PORT"] for p in published)
    # The same photos, at the path the master's --images-dir names.
    assert remote["volumes"] == ["../images:/images:ro"]
    assert lab["locust-worker"]["environment"]["LOCUST_IMAGES_DIR"] == "/images"


def test_no_variable_is_required_by_interpolation() -> None:
    # `${VAR:?}` would refuse every command, `down` and `ps` included: Compose interpolates the whole file.
    assert not re.search(r"\$\{[A-Z0-9_]+:?\?", REMOTE.read_text())


def _config(env: dict[str, str]) -> dict[str, Any]:
    if shutil.which("docker") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must check remote-workers.yml with `docker compose config`", pytrace=False)
        pytest.skip("docker (with compose) is not installed")
    # `config` reads and interpolates the file as `down`, `ps` and `up` do, without the Docker engine.
    run = subprocess.run(
        ["docker", "compose", "-f", str(REMOTE), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "LOCUST_MASTER_HOST" not in run.stderr, run.stderr  # not even a warning
    return yaml.safe_load(run.stdout)


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_the_file_reads_with_and_without_the_master_s_address() -> None:
    without = _config(_without("LOCUST_MASTER_HOST", "LOCUST_MASTER_PORT"))["services"]
    assert without["locust-worker"]["environment"]["LOCUST_MASTER_NODE_HOST"] == ""
    assert (
        without["locust-worker"]["environment"]["LOCUST_MASTER_NODE_PORT"] == dotenv()["LOCUST_MASTER_PORT"]
    )
    given = _config({**_without("LOCUST_MASTER_PORT"), "LOCUST_MASTER_HOST": "192.0.2.2"})["services"]
    assert given["locust-worker"]["environment"]["LOCUST_MASTER_NODE_HOST"] == "192.0.2.2"
    assert given[CHECK]["environment"]["LOCUST_MASTER_HOST"] == "192.0.2.2"


def test_up_waits_for_the_check_which_refuses_without_the_address() -> None:
    services = yaml.safe_load(REMOTE.read_text())["services"]
    worker, check = services["locust-worker"], services[CHECK]
    assert worker["depends_on"] == {CHECK: {"condition": "service_completed_successfully"}}
    assert check["image"] == worker["image"] and check["restart"] == "no"
    # The check's own program, run here as the container would run it.
    assert check["entrypoint"] == ["python3", "-c"]
    (program,) = check["command"]

    def run(value: str | None) -> subprocess.CompletedProcess[str]:
        env = _without("LOCUST_MASTER_HOST") | ({} if value is None else {"LOCUST_MASTER_HOST": value})
        return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env)

    assert run("192.0.2.2").returncode == 0
    for missing in ("", "  "):
        refused = run(missing)
        assert refused.returncode == 1
        assert "set LOCUST_MASTER_HOST to the address of the lab's Locust master" in refused.stderr
