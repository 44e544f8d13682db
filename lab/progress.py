"""Progress of a run: "config i/n", what it is doing, and the time left from the run's own estimate."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from lab.units import format_duration


class RunProgress(Protocol):
    def start(self, total_s: float) -> None: ...

    def update(self, description: str, done_s: float, left_s: float) -> None: ...

    def stop(self) -> None: ...


class _TimeLeft(ProgressColumn):
    # Rich's own TimeRemainingColumn extrapolates from speed; the run knows its plan, so show that.
    def render(self, task: Task) -> Text:
        left = task.fields.get("left_s")
        return Text(f"~{format_duration(left)} left" if left is not None else "", style="progress.remaining")


class RichProgress:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _TimeLeft(),
            console=console,
            transient=False,
        )
        self._task: int | None = None

    def start(self, total_s: float) -> None:
        self._progress.start()
        self._task = self._progress.add_task("starting", total=max(total_s, 1.0), left_s=total_s)

    def update(self, description: str, done_s: float, left_s: float) -> None:
        if self._task is None:
            return
        total = done_s + left_s
        self._progress.update(
            self._task, description=description, completed=done_s, total=total, left_s=left_s
        )

    def stop(self) -> None:
        self._progress.stop()


class NullProgress:
    def start(self, total_s: float) -> None:
        return None

    def update(self, description: str, done_s: float, left_s: float) -> None:
        return None

    def stop(self) -> None:
        return None
