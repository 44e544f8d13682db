"""deploy/k8s renders with kustomize and agrees with docker-compose.yml, .env and the classifier's settings.

Offline: no cluster is needed (or used). Each check compares a value in the rendered manifests with the
place that value is defined for the compose stack, so a change on one side that forgets the other fails.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from classifier.api import router
from classifier.settings import Settings, inference_threads_for
from tests.deploy.manifests import (
    K8S,
    ROOT,
    by_kind,
    compose_command,
    compose_services,
    env_file,
    render,
)
from tests.test_settings_in_step import dotenv

if shutil.which("kubectl") is None:
    if os.environ.get("CI"):
        pytest.fail("CI must check the Kubernetes manifests: kubectl is missing", pytrace=False)
    pytest.skip("kubectl (with kustomize) is not installed", allow_module_level=True)

NAMESPACE = "loadlab"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def deployments(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_kind(rendered, "Deployment")


@pytest.fixture(scope="module")
def services(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_kind(rendered, "Service")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def config_map(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A generated ConfigMap, by its name before kustomize's hash suffix."""
    maps = [r for r in rendered if r["kind"] == "ConfigMap"]
    (found,) = [r for r in maps if r["metadata"]["name"].startswith(f"{name}-")]
    return found


def cpu_quantity(text: str) -> float:
    """A Kubernetes CPU quantity in cores: "1", "0.5" or "500m"."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def port_by_name(c: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in c["ports"] if p["name"] == name)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def dockerfile_user(path: Path) -> tuple[int, int]:
    match = re.search(r"^USER (\d+):(\d+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path} has no numeric USER"
    return int(match.group(1)), int(match.group(2))


def test_every_compose_service_is_a_deployment_in_one_namespace(
    rendered: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    assert set(deployments) == set(compose_services())
    namespaced = [r for r in rendered if r["kind"] != "Namespace"]
    assert {r["metadata"].get("namespace") for r in namespaced} == {NAMESPACE}
    assert by_kind(rendered, "Namespace").keys() == {NAMESPACE}


def test_images_are_the_ones_compose_builds(deployments: dict[str, dict[str, Any]]) -> None:
    compose = compose_services()
    for name, deployment in deployments.items():
        c = container(deployment)
        assert c["image"] == compose[name]["image"], name
        # No registry in the loop by default: nodes use the image they were given (README).
        assert c["imagePullPolicy"] == "IfNotPresent", name


def test_classifier_config_map_is_every_setting_with_its_dotenv_value(
    rendered: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    env = dotenv()
    # The CPU budget is the pod's own limit (test_classifier_budget_is_its_cpu_limit), not a ConfigMap value.
    keys = [f"CLASSIFIER_{name.upper()}" for name in Settings.model_fields if name != "cpus"]
    expected = {key: env[key] for key in keys}
    data = config_map(rendered, "classifier")["data"]
    assert data == expected
    (source,) = container(deployments["classifier"])["envFrom"]
    assert source["configMapRef"]["name"] == config_map(rendered, "classifier")["metadata"]["name"]
    assert deployments["classifier"]["spec"]["replicas"] == int(env["CLASSIFIER_REPLICAS"])


def test_classifier_budget_is_its_cpu_limit(deployments: dict[str, dict[str, Any]]) -> None:
    c = container(deployments["classifier"])
    (budget,) = [e for e in c["env"] if e["name"] == "CLASSIFIER_CPUS"]
    ref = budget["valueFrom"]["resourceFieldRef"]
    assert ref == {"containerName": c["name"], "resource": "limits.cpu", "divisor": "1"}
    # The key compose and Swarm turn into deploy.resources.limits.cpus (test_swarm_stack_file.py).
    assert "CLASSIFIER_CPUS" in compose_services()["classifier"]["environment"]
    # A budget is real only as a reservation too: request = limit, so replicas do not share the cores.
    resources = c["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    # What the pod then runs: the downward API's value (whole cores, rounded up) through the settings' rule.
    cores = math.ceil(cpu_quantity(resources["limits"]["cpu"]))
    pod_env = env_file(K8S / "base" / "classifier.env")
    assert pod_env["CLASSIFIER_THREADS"] == "0", "the pods derive their threads from the budget"
    assert inference_threads_for(cores, int(pod_env["CLASSIFIER_WORKERS"])) == 1


def test_locust_config_map_is_what_compose_gives_master_and_workers(
    rendered: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    compose = compose_services()
    data = config_map(rendered, "locust")["data"]
    assert data == compose["locust-master"]["environment"] == compose["locust-worker"]["environment"]
    assert data == env_file(K8S / "base" / "locust.env")
    name = config_map(rendered, "locust")["metadata"]["name"]
    for role in ("locust-master", "locust-worker"):
        assert [s["configMapRef"]["name"] for s in container(deployments[role])["envFrom"]] == [name]


def test_locust_arguments_and_ports_are_compose_s(
    deployments: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    compose = compose_services()
    master, worker = container(deployments["locust-master"]), container(deployments["locust-worker"])
    # LOCUST_MASTER_ARGS is empty by default, so compose's master command is exactly these arguments.
    assert master["args"] == compose_command(compose["locust-master"])
    assert worker["args"] == compose_command(compose["locust-worker"])
    assert port_by_name(master, "web") == int(flag(master["args"], "--web-port"))
    assert port_by_name(master, "workers") == int(flag(master["args"], "--master-bind-port"))
    # compose publishes the UI's container port 8089.
    web_target = compose["locust-master"]["ports"][0].rsplit(":", 1)[1]
    assert port_by_name(master, "web") == int(web_target)
    # Workers find the master by the Service's name and port.
    service = services[flag(worker["args"], "--master-host")]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["workers"]["port"] == int(flag(worker["args"], "--master-port"))
    assert ports["workers"]["targetPort"] == "workers"
    assert ports["web"]["targetPort"] == "web"


def test_classifier_port_probes_and_headless_service(
    deployments: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    env = dotenv()
    c = container(deployments["classifier"])
    assert port_by_name(c, "http") == int(env["CLASSIFIER_PORT"])
    routes = {route.path for route in router.routes}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"/readyz", "/healthz"} <= routes
    # compose's health check asks the same readiness endpoint.
    assert "/readyz" in " ".join(compose_services()["classifier"]["healthcheck"]["test"])
    # The model loads before gunicorn answers at all: the startup probe must outwait the worker timeout.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > int(env["CLASSIFIER_TIMEOUT_S"])
    grace = deployments["classifier"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(env["CLASSIFIER_GRACEFUL_TIMEOUT_S"])
    service = services["classifier"]["spec"]
    assert service["clusterIP"] == "None", "nginx balances over the pod IPs itself"
    (port,) = service["ports"]
    assert port["port"] == int(env["CLASSIFIER_PORT"]) and port["targetPort"] == "http"


def test_nginx_reaches_the_classifier_like_in_compose(
    rendered: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    compose = compose_services()["nginx"]
    c = container(deployments["nginx"])
    env = {e["name"]: e for e in c["env"]}
    assert set(env) == set(compose["environment"]) | {"NGINX_RESOLVER"}
    # Same service and port as compose's classifier:<port>, by the full name nginx's resolver needs.
    compose_host, compose_port = compose["environment"]["NGINX_UPSTREAM"].split(":")
    assert env["NGINX_UPSTREAM"]["value"] == f"{compose_host}.{NAMESPACE}.svc.cluster.local:{compose_port}"
    for name in ("NGINX_WORKER_PROCESSES", "NGINX_ACCESS_LOG"):
        assert env[name]["value"] == compose["environment"][name]
    # The classifier's settings nginx needs come from the classifier's own ConfigMap, key by key.
    shared = [name for name in compose["environment"] if name.startswith("CLASSIFIER_")]
    assert shared
    for name in shared:
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert ref == {"name": config_map(rendered, "classifier")["metadata"]["name"], "key": name}
    assert port_by_name(c, "http") == int(compose["ports"][0].rsplit(":", 1)[1])
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "http://127.0.0.1/healthz" in compose["healthcheck"]["test"]


def test_photos_are_mounted_where_compose_mounts_them(deployments: dict[str, dict[str, Any]]) -> None:
    compose = compose_services()
    for name in ("nginx", "locust-master", "locust-worker"):
        (compose_mount,) = compose[name]["volumes"]
        target = compose_mount.split(":")[1]
        pod = deployments[name]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container(deployments[name])["volumeMounts"]}
        assert mounts[target]["readOnly"] is True
        assert volumes[mounts[target]["name"]]["configMap"]["name"] == "loadlab-images"


def test_selectors_pick_their_own_pods(
    rendered: list[dict[str, Any]],
    deployments: dict[str, dict[str, Any]],
    services: dict[str, dict[str, Any]],
) -> None:
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert labels["app.kubernetes.io/name"] == name
    for name, service in services.items():
        selector = service["spec"]["selector"]
        chosen = [
            d
            for d, deployment in deployments.items()
            if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert chosen == [name], f"Service {name} selects {chosen}"
        ports = {p["name"] for p in container(deployments[name]).get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_pods_run_as_the_images_users_with_bounded_resources(deployments: dict[str, dict[str, Any]]) -> None:
    users = {
        "classifier": dockerfile_user(ROOT / "services" / "classifier" / "Dockerfile"),
        "locust-master": dockerfile_user(ROOT / "locust" / "Dockerfile"),
        "locust-worker": dockerfile_user(ROOT / "locust" / "Dockerfile"),
    }
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= c["resources"][kind].keys(), (name, kind)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        if name in users:
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True
            assert (context["runAsUser"], context["runAsGroup"]) == users[name]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            # HOME=/tmp in both images (and the classifier's metrics directory is under it): writable.
            tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    metrics_dir = Path(dotenv()["CLASSIFIER_METRICS_DIR"])
    assert Path("/tmp") in metrics_dir.parents


def test_hpa_overlay_scales_the_classifier_deployment() -> None:
    rendered = render(K8S / "hpa")
    (hpa,) = by_kind(rendered, "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] in by_kind(rendered, "Deployment")
    assert hpa["metadata"]["namespace"] == NAMESPACE
    classifier = by_kind(rendered, "Deployment")["classifier"]
    assert hpa["spec"]["minReplicas"] == classifier["spec"]["replicas"]
    # CPU utilisation is relative to the request: the request must exist.
    assert container(classifier)["resources"]["requests"]["cpu"]


def test_scrape_annotations_point_at_the_metrics_ports(deployments: dict[str, dict[str, Any]]) -> None:
    # The compose profile's scrape targets (services/prometheus/prometheus.yml), as pod annotations.
    scraped = {"classifier": int(dotenv()["CLASSIFIER_PORT"]), "locust-master": 8089}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        annotations = pod["metadata"].get("annotations", {})
        if name not in scraped:
            assert "prometheus.io/scrape" not in annotations, name
            continue
        assert (
            annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        )
        ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert int(annotations["prometheus.io/port"]) == scraped[name] and scraped[name] in ports, name
