"""Every tally the locustfile wires (tally.py's protocol): its delta crosses to the master intact, the
master's totals are the worker's, a reset empties it, and its names do not collide."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.locust._modules import LOCUSTFILE, load

servedby, stagestats, timeline, arrivals = (
    load(n) for n in ("servedby", "stagestats", "timeline", "arrivals")
)


def filled() -> list[Any]:
    counter = servedby.ServedByCounter()
    counter.add("replica-a", 3)
    timing = stagestats.ServerTimingStats()
    timing.add("/predict", [("queue", 0.5), ("infer", 3.0), ("total", 4.0)])
    seconds = timeline.Timeline()
    seconds.add(1000.2, 12.0, failed=False)
    seconds.add(1001.7, 40.0, failed=True)
    tally = arrivals.ArrivalTally()
    tally.add_start(1000.0, due=1000.0, intended=1000.0, response_ms=10.0)
    tally.add_start(1000.5, due=1000.3, intended=1000.2, response_ms=20.0)
    tally.add_dropped([0.25])
    return [counter, timing, seconds, tally]


@pytest.mark.parametrize("index", range(4))
def test_a_worker_s_delta_makes_the_same_totals_on_the_master(index: int) -> None:
    worker, master = filled()[index], type(filled()[index])()
    before = worker.snapshot()
    delta = json.loads(json.dumps(worker.drain()))  # what msgpack carries, JSON-safe
    assert worker.snapshot() == type(worker)().snapshot()  # drained: empty again
    master.merge(delta)
    master.merge(None)  # a worker without this tally (an older image)
    assert master.snapshot() == before
    master.reset()
    assert master.snapshot() == type(master)().snapshot()


def test_names_are_distinct_and_file_options_are_locustfile_options() -> None:
    tallies = filled()
    assert len({t.key for t in tallies}) == len({t.route for t in tallies}) == len(tallies)
    assert all(t.route.startswith("/") for t in tallies)
    flags = set(re.findall(r'"--([a-z-]+)"', LOCUSTFILE.read_text()))
    options = {t.file_option for t in tallies} - {None}
    assert options == {"served_by_file", "server_timing_file", "arrivals_file"}
    assert {o.replace("_", "-") for o in options} <= flags


def test_latency_from_intended_start_counts_lateness_lag_and_response() -> None:
    s = filled()[3].summary()["from_intended_start"]
    # 10 ms on time; 300 ms late + 20 ms; a drop 250 ms late (a lower bound: never answered).
    assert s["count"] == 3 and (s["p50_ms"], s["p99_ms"]) == (250.0, 320.0)
    assert arrivals.ArrivalTally().summary()["from_intended_start"] is None  # closed model
