"""Background sampling during a measurement: container CPU/memory, the Locust master's live view and the
machine's busy cores.

Each sample is one JSON line with its wall-clock time, so the report can line samples up with the
measurement window. Sampling errors are recorded as lines too, never raised into the measurement.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import psutil


class Sampler:
    def __init__(
        self, path: Path, sample: Callable[[], list[dict[str, Any]]], interval_s: float = 2.0
    ) -> None:
        self.path = path
        self._sample = sample
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sampler-{path.name}", daemon=True)
        self.count = 0

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._take(out)
                next_at += self.interval_s
                # A slow sample (docker stats takes ~1-2 s) shortens the wait instead of drifting.
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _take(self, out: TextIO) -> None:
        t = time.time()
        try:
            records = self._sample()
        except Exception as err:  # a failed sample must not end the measurement
            records = [{"error": f"{type(err).__name__}: {err}"}]
        for record in records:
            out.write(json.dumps({"t": round(t, 3), **record}) + "\n")
        out.flush()
        self.count += 1


class HostCpu:
    """Busy cores of the whole machine between successive calls (psutil; idle and iowait are not busy):
    what the containers' own CPU misses, other processes on a shared machine. Call it from one thread
    (its Sampler's): psutil keeps the previous reading per thread, so the first call only starts the
    count. On Docker Desktop the containers run in a VM with its own cores, so this says nothing there."""

    def __init__(self) -> None:
        self._started = False

    def __call__(self) -> list[dict[str, Any]]:
        percent = psutil.cpu_percent(interval=None)
        if not self._started:
            self._started = True
            return []
        cores = psutil.cpu_count() or 1
        return [{"busy_cores": round(percent / 100.0 * cores, 3), "cores": cores}]
