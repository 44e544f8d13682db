from __future__ import annotations

import json
import random

import msgpack
import numpy as np
import pytest

from tests.locust._modules import load

stagestats = load("stagestats")


def _samples(rng: random.Random, n: int, scale: float) -> list[float]:
    # Already at the histogram's resolution, so its percentiles must equal numpy's exactly.
    return [stagestats.bucket(rng.lognormvariate(0, 1) * scale) for _ in range(n)]


def _wire_roundtrip(delta: dict) -> dict:
    # What a worker's report goes through on its way to the master (Locust's RPC uses msgpack).
    return msgpack.loads(msgpack.dumps(delta), raw=False, strict_map_key=False)


@pytest.mark.parametrize("value, expected", [(0.0, 0.0), (0.012345, 0.0123), (1.2345, 1.23), (987.6, 988.0)])
def test_bucket_keeps_three_significant_digits(value: float, expected: float) -> None:
    assert stagestats.bucket(value) == expected


def test_master_merge_of_worker_deltas_is_exact_against_numpy() -> None:
    rng = random.Random(7)
    master = stagestats.ServerTimingStats()
    every: dict[tuple[str, str], list[float]] = {}
    for worker in range(3):
        local = stagestats.ServerTimingStats()
        for _report in range(4):  # several reports per worker, each a delta since the last
            for name, scale in (("/predict", 5.0), ("/predict/tf", 20.0)):
                n = rng.randint(50, 400)
                infer, total = _samples(rng, n, scale), _samples(rng, n, 2 * scale)
                for i in range(n):
                    local.add(name, [("infer", infer[i]), ("total", total[i])])
                every.setdefault((name, "infer"), []).extend(infer)
                every.setdefault((name, "total"), []).extend(total)
            master.merge(_wire_roundtrip(local.drain()))
        assert local.drain() == {}, f"worker {worker} kept samples after a drain"

    snap = json.loads(json.dumps(master.snapshot()))  # what GET /server-timing sends
    for (name, stage), values in every.items():
        got = snap["by_name"][name][stage]
        assert got["count"] == len(values)
        assert got["mean_ms"] == pytest.approx(np.mean(values), rel=1e-6)
        for key, q in stagestats.PERCENTILES.items():
            assert got[key] == np.percentile(values, q * 100, method="inverted_cdf"), (name, stage, key)
    for stage in ("infer", "total"):
        both = every[("/predict", stage)] + every[("/predict/tf", stage)]
        got = snap["stages"][stage]
        assert got["count"] == len(both)
        assert got["p95_ms"] == np.percentile(both, 95, method="inverted_cdf")
    assert list(snap["stages"]) == ["infer", "total"]


def test_percentiles_are_ordered_and_stages_in_request_order() -> None:
    stats = stagestats.ServerTimingStats()
    rng = random.Random(1)
    for _ in range(1000):
        stats.add("/p", [("total", rng.expovariate(0.1)), ("queue", rng.expovariate(2)), ("fetch", 1.0)])
    snap = stats.snapshot()
    assert list(snap["stages"]) == ["fetch", "queue", "total"]
    for s in snap["stages"].values():
        assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"]
    rows = stats.table_rows()
    first = [(r["name"], r["stage"]) for r in rows[:3]]
    assert first == [("All requests", "fetch"), ("All requests", "queue"), ("All requests", "total")]
    assert {r["name"] for r in rows} == {"All requests", "/p"}


@pytest.mark.parametrize(
    "delta",
    [None, [], {"/p": None}, {"/p": {"infer": {"buckets": [[1.0, -2]]}}}, {"/p": {"infer": {"buckets": "x"}}},
     {"/p": {"infer": {"buckets": [["nan", 1]]}}}, {1: {"infer": {"buckets": [[1.0, 1]]}}}],
)  # fmt: skip
def test_malformed_worker_reports_are_ignored(delta: object) -> None:
    stats = stagestats.ServerTimingStats()
    stats.merge(delta)
    assert stats.snapshot() == {"stages": {}, "by_name": {}}


def test_empty_and_reset() -> None:
    stats = stagestats.ServerTimingStats()
    stats.add("/p", [("infer", 3.0)])
    assert stats.snapshot()["stages"]["infer"] == {
        "count": 1, "mean_ms": 3.0, "p50_ms": 3.0, "p95_ms": 3.0, "p99_ms": 3.0,
    }  # fmt: skip
    stats.reset()
    assert stats.snapshot() == {"stages": {}, "by_name": {}}
    assert stagestats.StageHistogram().summary()["p50_ms"] is None
