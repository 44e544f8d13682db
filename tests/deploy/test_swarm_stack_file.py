"""scripts/swarm's stack file, rendered offline (`up --print`): what Swarm needs, from the compose file."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.deploy.manifests import compose_services
from tests.test_settings_in_step import ROOT, dotenv

SWARM = ROOT / "scripts" / "swarm"
PLACEMENT = ROOT / "deploy" / "swarm" / "placement.yml"


def rendered(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    # The file's own defaults: a knob exported in the shell (CI exports the offline images' settings, e.g.
    # CLASSIFIER_BACKEND) would win over .env, as it does for compose.
    knobs = set(dotenv())
    base = {k: v for k, v in os.environ.items() if k not in knobs}
    done = subprocess.run(
        [str(SWARM), "up", "--print", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 and "docker compose" in done.stderr and not os.environ.get("CI"):
        pytest.skip(f"docker compose is not usable here: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return rendered()


def test_same_services_images_and_settings_as_compose(stack: dict[str, Any]) -> None:
    compose = compose_services()
    assert set(stack["services"]) == set(compose)
    for name, service in stack["services"].items():
        assert service["image"] == compose[name]["image"]
        assert service.get("environment", {}) == compose[name].get("environment", {})
    assert stack["services"]["classifier"]["deploy"]["replicas"] == int(dotenv()["CLASSIFIER_REPLICAS"])


def test_optional_profiles_stay_out_of_the_stack_file() -> None:
    # Even with the profiles enabled in the shell: `docker stack deploy` rejects `profiles`.
    services = rendered(env={"COMPOSE_PROFILES": "monitoring,grafana"})["services"]
    profiled = {name for name, s in compose_services(with_profiles=True).items() if "profiles" in s}
    assert profiled >= {"prometheus", "nginx-exporter", "node-exporter", "grafana"}
    assert not profiled & set(services)
    assert all("profiles" not in s for s in services.values())


def test_monitoring_flag_adds_the_profile_for_swarm() -> None:
    services = rendered("--monitoring")["services"]
    profiled = compose_services(with_profiles=True)
    assert set(services) == set(compose_services()) | {"prometheus", "nginx-exporter", "node-exporter"}
    for name in ("prometheus", "nginx-exporter", "node-exporter"):
        assert services[name]["image"] == profiled[name]["image"]
        assert "profiles" not in services[name] and services[name]["deploy"]["endpoint_mode"] == "dnsrr"
    assert services["node-exporter"]["deploy"]["mode"] == "global"  # each node's CPU and memory
    # Prometheus's UI has no login: published (on every address, Swarm's only way) only when asked for.
    assert "ports" not in services["prometheus"]
    (ui,) = rendered("--monitoring", "--publish-ui")["services"]["prometheus"]["ports"]
    assert ui["target"] == 9090 and ui["mode"] == "host"
    assert rendered("--monitoring")["volumes"] == {"prometheus-data": {}}


def test_only_keys_swarm_reads(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        assert not {"build", "depends_on", "restart", "pull_policy"} & service.keys(), name
        assert None not in service.values(), name
        for volume in service.get("volumes", []):
            assert "create_host_path" not in volume.get("bind", {}), name
    assert stack["networks"]["lab"]["driver"] == "overlay"


def test_no_virtual_ips_and_host_mode_ports(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
    (api,) = stack["services"]["nginx"]["ports"]
    assert api == {"target": 80, "published": int(dotenv()["API_PORT"]), "protocol": "tcp", "mode": "host"}


def test_locust_ui_published_only_when_asked() -> None:
    assert "ports" not in rendered()["services"]["locust-master"]
    (ui,) = rendered("--publish-ui", env={"LOCUST_WEB_PORT": "18189"})["services"]["locust-master"]["ports"]
    assert ui == {"target": 8089, "published": 18189, "protocol": "tcp", "mode": "host"}


def test_placement_override_puts_load_and_replicas_apart() -> None:
    services = rendered("-f", str(PLACEMENT))["services"]
    constraint = {name: s["deploy"]["placement"]["constraints"] for name, s in services.items()}
    assert constraint["classifier"] == constraint["nginx"] == ["node.labels.loadlab.serve == true"]
    assert constraint["locust-master"] == constraint["locust-worker"] == ["node.labels.loadlab.load == true"]
    assert all(s["deploy"]["endpoint_mode"] == "dnsrr" for s in services.values())


def test_cpu_budget_is_the_swarm_limit_and_none_by_default(stack: dict[str, Any]) -> None:
    def limits(services: dict[str, Any], name: str) -> dict[str, Any]:
        return services[name].get("deploy", {}).get("resources", {}).get("limits", {})

    # Default (.env's CLASSIFIER_CPUS=0.0) and an empty value: no limit at all, not a limit of 0.
    assert "cpus" not in limits(stack["services"], "classifier")
    assert "cpus" not in limits(rendered(env={"CLASSIFIER_CPUS": ""})["services"], "classifier")
    budgeted = rendered(env={"CLASSIFIER_CPUS": "0.5"})["services"]
    assert limits(budgeted, "classifier")["cpus"] == 0.5
    # The replica reads the same value (its inference threads follow it); nothing else is limited.
    assert budgeted["classifier"]["environment"]["CLASSIFIER_CPUS"] == "0.5"
    assert all(not limits(budgeted, name) for name in ("nginx", "locust-master", "locust-worker"))
