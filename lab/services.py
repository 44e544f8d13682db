"""The compose services the lab knows by name (docker-compose.yml's; Swarm's are `loadlab_<name>`)."""

from __future__ import annotations

CLASSIFIER = "classifier"
NGINX = "nginx"
LOCUST_MASTER = "locust-master"
LOCUST_WORKER = "locust-worker"
# The `monitoring` profile's Prometheus and the port its UI and API listen on inside the container.
MONITORING_PROFILE = "monitoring"
PROMETHEUS = "prometheus"
PROMETHEUS_CONTAINER_PORT = 9090
