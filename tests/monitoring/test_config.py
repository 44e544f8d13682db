"""The monitoring profile's files: off by default, in step with .env and the services, valid for promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import compose_services
from tests.monitoring.dashboard import DASHBOARD, DATASOURCES, PROMETHEUS_CONFIG, ROOT, panel_queries
from tests.test_settings_in_step import dotenv

MONITORING = {"prometheus", "nginx-exporter", "node-exporter"}


def compose_config(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["docker", "compose", "--project-directory", str(ROOT), *args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        # Only .env's values: no profile or knob from the shell.
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"},
    )
    if done.returncode != 0 and "compose" in done.stderr and "is not a docker command" in done.stderr:
        pytest.skip("docker compose v2 is missing")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_profile_is_off_by_default() -> None:
    services = set(compose_config()["services"])
    assert services == {"classifier", "nginx", "locust-master", "locust-worker"}
    assert set(compose_config("--profile", "monitoring")["services"]) == services | MONITORING
    with_grafana = compose_config("--profile", "monitoring", "--profile", "grafana")["services"]
    assert set(with_grafana) == services | MONITORING | {"grafana"}


def test_uis_are_bound_to_loopback_and_retention_bounded() -> None:
    services = compose_config("--profile", "monitoring", "--profile", "grafana")["services"]
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        (published,) = services[name]["ports"]
        assert published["host_ip"] == "127.0.0.1" and published["target"] == port, published
    command = services["prometheus"]["command"]
    assert f"--storage.tsdb.retention.time={dotenv()['PROMETHEUS_RETENTION_TIME']}" in command
    assert f"--storage.tsdb.retention.size={dotenv()['PROMETHEUS_RETENTION_SIZE']}" in command
    # No other service publishes an exporter: only Prometheus reads them, on the lab network.
    assert "ports" not in services["nginx-exporter"] and "ports" not in services["node-exporter"]


def test_scrape_targets_match_the_services() -> None:
    jobs = scrape_jobs()
    assert set(jobs) == {"classifier", "nginx", "node", "locust"}
    (dns,) = jobs["classifier"]["dns_sd_configs"]
    # Replicas found through Docker's DNS by service name, at the classifier's port.
    assert dns["names"] == ["classifier"] and dns["type"] == "A"
    assert dns["port"] == int(dotenv()["CLASSIFIER_PORT"])
    services = compose_services(with_profiles=True)
    locust_ports = [p.split(":")[-1] for p in services["locust-master"]["ports"]]
    assert jobs["locust"]["static_configs"] == [{"targets": [f"locust-master:{locust_ports[0]}"]}]
    assert jobs["nginx"]["static_configs"] == [{"targets": ["nginx-exporter:9113"]}]
    (node,) = jobs["node"]["dns_sd_configs"]
    assert node["names"] == ["node-exporter"] and node["port"] == 9100
    # The exporter reads the status page nginx serves to the compose network.
    (uri,) = [a for a in services["nginx-exporter"]["command"] if a.startswith("--nginx.scrape-uri=")]
    assert uri.endswith("/nginx-status")
    assert "location = /nginx-status" in (ROOT / "services" / "nginx" / "nginx.conf.template").read_text()


def test_offline_images_are_the_dotenv_knobs() -> None:
    text = (ROOT / "scripts" / "offline-prepare").read_text()
    for knob in ("PROMETHEUS_IMAGE", "NGINX_EXPORTER_IMAGE", "NODE_EXPORTER_IMAGE"):
        assert f'"{knob}": (' in text and knob in dotenv()
    assert "GRAFANA_IMAGE" not in text  # no Debian Grafana: the grafana profile is for the internet path


def test_dashboard_names_the_provisioned_datasource() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    queries = panel_queries()
    # Grafana-only variables would not evaluate in the test that runs every query against Prometheus.
    assert all("$" not in expr for _, expr in queries)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_promtool_accepts_the_config() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
