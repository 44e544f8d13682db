"""Where a prediction's time went, answered as a `Server-Timing` header (milliseconds).

`queue;dur=0.41, decode;dur=3.12, infer;dur=6.20, total;dur=9.95` (plus `fetch` for `img_url` requests).
Locust records each entry as its own row, so the load test shows the server-side split.
"""

from __future__ import annotations

import time

TOTAL = "total"
# The stages in the order a request passes them, `total` (the whole request) last; `fetch` exists only for
# img_url requests. The canonical list: the Locust image (locust/stagestats.py) and the lab
# (lab/server_timing.py) cannot import this package and keep copies, which tests/locust/test_stage_list.py
# keeps equal to it.
STAGES = ("fetch", "queue", "decode", "infer", TOTAL)


class Timings:
    __slots__ = ("stages", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def finish(self) -> dict[str, float]:
        """All stages plus `total` (seconds since this request started)."""
        return {**self.stages, TOTAL: time.perf_counter() - self.started}


def server_timing(stages: dict[str, float]) -> str:
    """Header value for stages given in seconds, in STAGES' order; one it does not know comes before `total`,
    which always comes last."""
    names = [s for s in STAGES[:-1] if s in stages] + [s for s in stages if s not in STAGES]
    if TOTAL in stages:
        names.append(TOTAL)
    return ", ".join(f"{name};dur={stages[name] * 1000.0:.2f}" for name in names)
