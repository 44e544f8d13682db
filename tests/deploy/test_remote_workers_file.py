"""locust/remote-workers.yml is read without .env: its defaults must be .env's, its worker the lab's."""

from __future__ import annotations

import re

import yaml

from tests.deploy.manifests import compose_services
from tests.test_settings_in_step import ROOT, dotenv

REMOTE = ROOT / "locust" / "remote-workers.yml"


def test_defaults_are_dotenv_values() -> None:
    text = REMOTE.read_text()
    defaults = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text))
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
