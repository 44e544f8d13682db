from __future__ import annotations

import json
import random

import msgpack
import numpy as np

from tests.locust._modules import load

timeline = load("timeline")
stagestats = load("stagestats")


def _roundtrip(delta: dict) -> dict:
    return json.loads(json.dumps(msgpack.loads(msgpack.dumps(delta), raw=False, strict_map_key=False)))


def test_seconds_from_several_workers_merge_exactly() -> None:
    rng = random.Random(3)
    master = timeline.Timeline()
    truth: dict[int, list[tuple[float, bool]]] = {}
    for _worker in range(3):
        local = timeline.Timeline()
        for _report in range(3):
            for _ in range(500):
                t = 1_800_000_000 + rng.uniform(0, 10)
                ms = stagestats.bucket(rng.lognormvariate(3, 0.5))
                failed = rng.random() < 0.05
                local.add(t, ms, failed)
                truth.setdefault(int(t), []).append((ms, failed))
            master.merge(_roundtrip(local.drain()))
        assert local.rows() == []
    rows = master.rows()
    assert [r["t"] for r in rows] == sorted(truth)
    for row in rows:
        samples = truth[row["t"]]
        assert row["requests"] == len(samples)
        assert row["failures"] == sum(failed for _, failed in samples)
        values = np.repeat([v for v, _ in row["buckets"]], [n for _, n in row["buckets"]])
        assert sorted(values) == sorted(ms for ms, _ in samples)


def test_malformed_deltas_are_ignored_and_reset_empties() -> None:
    tl = timeline.Timeline()
    for bad in (None, [], {"x": {"buckets": [[1.0, 1]]}}, {"5": {"failures": 2, "buckets": [[1.0, 1]]}},
                {"5": {"failures": -1, "buckets": [[1.0, 1]]}}, {"5": "junk"}):  # fmt: skip
        tl.merge(bad)
    assert tl.rows() == []
    tl.add(5.5, 12.0, failed=True)
    assert tl.rows() == [{"t": 5, "requests": 1, "failures": 1, "sum_ms": 12.0, "buckets": [[12.0, 1]]}]
    tl.reset()
    assert tl.rows() == []
