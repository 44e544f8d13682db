"""The Grafana dashboard's queries, as tests evaluate them against Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"  # one folder per compose service: services/prometheus, services/grafana
PROMETHEUS_CONFIG = SERVICES / "prometheus" / "prometheus.yml"
DASHBOARD = SERVICES / "grafana" / "dashboards" / "loadlab.json"
DATASOURCES = SERVICES / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
