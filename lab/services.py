"""The compose services the lab knows by name (docker-compose.yml's; Swarm's are `loadlab_<name>`)."""

from __future__ import annotations

CLASSIFIER = "classifier"
NGINX = "nginx"
LOCUST_MASTER = "locust-master"
LOCUST_WORKER = "locust-worker"
