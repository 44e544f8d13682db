"""Background sampling during a measurement: container CPU/memory and the Locust master's live view.

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
    """Busy cores of the whole machine from /proc/stat (Linux), between successive calls: what the
    containers' own CPU misses (other processes on a shared machine). Empty where /proc/stat is absent,
    e.g. Docker Desktop, whose containers run in a VM with its own cores."""

    def __init__(self, stat_path: Path = Path("/proc/stat")) -> None:
        self.stat_path = stat_path
        self._last = self._read()

    def _read(self) -> tuple[float, float, int] | None:
        try:
            lines = self.stat_path.read_text().splitlines()
        except OSError:
            return None
        fields = [float(x) for x in lines[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        return sum(fields[:8]), idle, cores

    def __call__(self) -> list[dict[str, Any]]:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] <= last[0]:
            return []
        busy = 1.0 - (now[1] - last[1]) / (now[0] - last[0])
        return [{"busy_cores": round(busy * now[2], 3), "cores": now[2]}]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by Ctrl-C
    return rows
