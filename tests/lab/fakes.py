"""Recorders for the driver tests: a stack and a progress display that remember what the driver asked."""

from __future__ import annotations

from lab.grid import ExperimentSettings, StackConfig
from lab.progress import NullProgress
from lab.stacks import ExternalStack, StackState


class RecordingStack(ExternalStack):
    def __init__(self, url: str | None = None, expect_workers: int | None = None) -> None:
        super().__init__(url, expect_workers)
        self.applied: list[StackConfig] = []
        self.restored: list[StackState] = []

    def apply(self, config: StackConfig, settings: ExperimentSettings) -> dict[str, str]:
        self.applied.append(config)
        return super().apply(config, settings)

    def restore(self, state: StackState) -> None:
        self.restored.append(state)
        super().restore(state)


class RecordingProgress(NullProgress):
    def __init__(self) -> None:
        self.updates: list[str] = []

    def update(self, description: str, done_s: float, left_s: float) -> None:
        if not self.updates or self.updates[-1] != description:
            self.updates.append(description)
