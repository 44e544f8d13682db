"""A stack `lab` does not manage (`lab compare --stack external`): a Locust master and a target you started
yourself. Configurations are labels only; nothing is scaled; no container statistics unless a subclass
provides them (the tests' recording stack does)."""

from __future__ import annotations

import os
from typing import Any

from lab.grid import ExperimentSettings, StackConfig
from lab.stacks.base import NoFaults, StackError, StackKind, StackOptions, StackState

EXTERNAL = StackKind(
    name="external",
    help="Locust and target are yours",
    change_s=0.0,  # nothing is changed: a configuration is a label
    samples_host_cpu=False,  # the target may be anywhere
    sets_replicas=False,
    nodes=None,
    injects_faults=False,
)


class ExternalStack(NoFaults):
    kind = EXTERNAL

    def __init__(self, url: str | None = None, expect_workers: int | None = None) -> None:
        self._url = url
        self._expect_workers = expect_workers

    @classmethod
    def from_options(cls, options: StackOptions) -> ExternalStack:
        if not options.locust_url:
            raise StackError("--stack external needs --locust-url")
        return cls(options.locust_url, options.expect_workers)

    def capture(self) -> StackState:
        return StackState(details={"stack": "external"})

    def ensure_up(self, state: StackState) -> None:
        return None

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        return {}

    def scale_locust_workers(self, workers: int) -> None:
        self._expect_workers = workers

    def locust_worker_count(self) -> int | None:
        return self._expect_workers

    def container_stats(self) -> list[dict[str, Any]]:
        return []

    def describe(self) -> dict[str, Any]:
        return {"stack": "external"}

    def classifier_settings(self) -> dict[str, str]:
        return {}

    def host_cpus(self) -> int:
        return os.cpu_count() or 1

    def locust_url(self) -> str | None:
        return self._url

    def prometheus_url(self) -> str | None:
        return None

    def replica_addresses(self) -> dict[str, str]:
        return {}

    def restore(self, state: StackState) -> None:
        return None
