from __future__ import annotations

from tests.locust._modules import load

servedby = load("servedby")


def test_worker_deltas_add_up_on_the_master() -> None:
    master, worker_a, worker_b = (servedby.ServedByCounter() for _ in range(3))
    for _ in range(3):
        worker_a.add("classifier-1")
    worker_b.add("classifier-2", 2)
    worker_b.add("classifier-1")

    # First report interval.
    master.merge(worker_a.drain())
    master.merge(worker_b.drain())
    assert master.snapshot() == {"classifier-1": 4, "classifier-2": 2}

    # A drained worker reports only what it counted since: nothing is counted twice.
    worker_a.add("classifier-2")
    master.merge(worker_a.drain())
    master.merge(worker_b.drain())
    assert master.snapshot() == {"classifier-1": 4, "classifier-2": 3}
    assert master.total() == 7


def test_reset_and_malformed_reports() -> None:
    master = servedby.ServedByCounter()
    master.merge({"b": 2, "a": 1})
    assert list(master.snapshot()) == ["a", "b"]  # sorted, stable JSON
    master.merge(None)  # a worker without the counts (older image)
    master.merge({"c": "7", "d": -1, 5: 3})  # type: ignore[dict-item]
    assert master.snapshot() == {"a": 1, "b": 2}
    master.reset()
    assert master.snapshot() == {} and master.drain() == {}
