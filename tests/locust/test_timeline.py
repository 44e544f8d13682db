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
    (row,) = tl.rows()
    assert row == {
        "t": 5, "requests": 1, "failures": 1, "sum_ms": 12.0, "buckets": [[12.0, 1]],
        "failed_buckets": [[12.0, 1]], "first_failure": 5.5, "last_failure": 5.5, "started": 0, "spanned": 0,
    }  # fmt: skip
    tl.reset()
    assert tl.rows() == []


def test_failures_starts_and_spans_cross_the_wire() -> None:
    """Each second keeps the failed requests' own times, its first and last failure, the requests that
    started in it and those in flight across it; an older worker's delta (without them) still merges."""
    worker, master = timeline.Timeline(), timeline.Timeline()
    worker.add(100.2, 5.0, failed=False, start_time=100.195)
    worker.add(100.7, 0.2, failed=True, start_time=100.7)
    worker.add(100.9, 0.3, failed=True, start_time=100.9)
    worker.add(104.5, 3500.0, failed=False, start_time=101.0)  # in flight across 102 and 103
    master.merge(_roundtrip(worker.drain()))
    master.merge({"100": {"failures": 1, "buckets": [[1.0, 1]]}})  # an older worker: none of the new keys
    rows = {r["t"]: r for r in master.rows()}
    assert rows[100]["requests"] == 4 and rows[100]["failures"] == 3
    assert rows[100]["failed_buckets"] == [[0.2, 1], [0.3, 1]]
    assert (rows[100]["first_failure"], rows[100]["last_failure"]) == (100.7, 100.9)
    assert rows[100]["started"] == 3 and rows[101]["started"] == 1
    assert [rows[t]["spanned"] for t in (100, 101, 102, 103, 104)] == [0, 0, 1, 1, 0]
    assert rows[102]["requests"] == 0 and rows[104]["requests"] == 1
    # A malformed new key drops that second's delta, as any malformed delta does.
    before = master.rows()
    master.merge({"100": {"failures": 1, "buckets": [[1.0, 1]], "failed": {"buckets": [[1.0, 2]]}}})
    master.merge({"100": {"failures": 0, "buckets": [], "started": -1}})
    assert master.rows() == before
