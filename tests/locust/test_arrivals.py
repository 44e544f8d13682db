"""The arrival streams and the late/dropped tally, on a simulated clock with fixed seeds."""

from __future__ import annotations

import heapq
import math
import random
from itertools import pairwise

import pytest

from tests.locust._modules import load

arrivals = load("arrivals")


def simulate(
    streams: list[tuple[object, int]],
    rate: float,
    service_s: float,
    duration_s: float,
    tally: object,
    start: float = 1_800_000_000.0,
) -> list[float]:
    """Users that are free claim the next arrival and send at its time (at once if it has passed), then
    are busy for `service_s`: what the locustfile's users do, with the clock simulated.

    `streams` are (stream, users on it), one per worker; each stream runs at its share of `rate`.
    Returns the send times.
    """
    users_total = sum(n for _, n in streams)
    bound = users_total / rate
    free: list[tuple[float, int, int]] = []  # (free at, user id, stream index)
    uid = 0
    for i, (_, n) in enumerate(streams):
        for _ in range(n):
            heapq.heappush(free, (start, uid, i))
            uid += 1
    sends = []
    while free:
        now, user, i = heapq.heappop(free)
        stream, n = streams[i]
        claim = stream.claim(now, rate * n / users_total, bound)
        tally.add_claim(claim)
        if claim.at > start + duration_s:
            continue  # the test is over before this user's next send: the user stops
        sent = max(claim.at, now)
        tally.add_start(sent)
        sends.append(sent)
        heapq.heappush(free, (sent + service_s, user, i))
    return sends


def poisson(seed: int) -> object:
    return arrivals.ArrivalStream(arrivals.POISSON, random.Random(seed))


def test_poisson_over_two_workers_is_poisson_at_the_target_rate() -> None:
    tally = arrivals.ArrivalTally()
    rate, duration = 30.0, 700.0  # ~21000 arrivals: the rate is known to +-0.7 % (1 sigma)
    simulate([(poisson(1), 15), (poisson(2), 15)], rate, 0.005, duration, tally)
    s = tally.summary()
    assert s["achieved_rps"] == pytest.approx(rate, rel=0.025)
    assert s["interarrival_cv"] == pytest.approx(1.0, abs=0.04)
    # Poisson: a 100 ms window is empty with probability exp(-3) = 5 %.
    assert s["empty_100ms_share"] == pytest.approx(math.exp(-rate * 0.1), abs=0.01)
    assert s["late"] == s["dropped"] == 0  # 30 users, 0.15 of them busy on average
    assert s["intended"] == s["sent"] == s["starts"]
    # Exponential gaps: half of them below ln 2 / rate.
    times = sorted(tally.starts)
    gaps = [b - a for a, b in pairwise(times)]
    assert sum(g < math.log(2) / rate for g in gaps) / len(gaps) == pytest.approx(0.5, abs=0.015)


def test_even_workers_interleave_into_one_grid() -> None:
    rate = 30.0
    tally = arrivals.ArrivalTally()
    streams = [(arrivals.ArrivalStream(arrivals.EVEN, grid_offset_s=w / rate), 15) for w in range(2)]
    sends = simulate(streams, rate, 0.005, 60.0, tally, start=1_800_000_000.37)
    s = tally.summary()
    assert s["interarrival_cv"] < 0.01
    assert s["achieved_rps"] == pytest.approx(rate, rel=0.001)
    assert s["max_per_100ms"] <= 4 and s["empty_100ms_share"] == 0
    gaps = [b - a for a, b in pairwise(sorted(sends))]
    assert min(gaps) == pytest.approx(1 / rate, abs=1e-5) and max(gaps) == pytest.approx(1 / rate, abs=1e-5)


def test_random_phases_per_user_would_not_be_even() -> None:
    # Why `even` shifts workers by index instead of drawing a phase: 30 users, each evenly spaced with
    # its own random phase, add up to gaps about as irregular as Poisson's.
    rng = random.Random(3)
    period = 1.0
    times = sorted(rng.uniform(0, period) + k * period for _ in range(30) for k in range(100))
    assert arrivals.interarrival_stats(times)["interarrival_cv"] > 0.8


def test_next_arrival_counts_from_the_intended_time_not_the_answer() -> None:
    # One user, an arrival every 100 ms, answers in 30 ms: it sends on the grid, not every 130 ms.
    tally = arrivals.ArrivalTally()
    stream = arrivals.ArrivalStream(arrivals.EVEN)
    sends = simulate([(stream, 1)], 10.0, 0.03, 10.0, tally, start=1000.0)
    assert [round(t - sends[0], 6) for t in sends[:4]] == [0.0, 0.1, 0.2, 0.3]
    assert tally.late == tally.dropped == 0

    # Poisson with one user: an arrival while the answer is pending is late and sent on the answer; the
    # rate holds. A single server with Poisson arrivals is busy rho = rate x service of the time.
    tally = arrivals.ArrivalTally()
    simulate([(poisson(4), 1)], 10.0, 0.03, 1000.0, tally)
    s = tally.summary()
    assert s["achieved_rps"] == pytest.approx(10.0, rel=0.03)
    assert s["late"] / s["sent"] == pytest.approx(10.0 * 0.03, abs=0.02)
    # Dropped only when arrivals pile up for more than 100 ms (the bound): rare at rho 0.3.
    assert s["dropped"] <= 0.001 * s["intended"]


def test_late_then_dropped_past_one_gap_per_user() -> None:
    stream = arrivals.ArrivalStream(arrivals.EVEN)
    rate, bound = 10.0, 0.1  # one user: bound = 1 / rate
    first = stream.claim(1000.0, rate, bound)
    assert first.at == pytest.approx(1000.1) and first.late == 0 and first.dropped == 0
    # Busy until 1000.35: 1000.2 is 150 ms late (dropped), 1000.3 is 50 ms late (sent now).
    claim = stream.claim(1000.35, rate, bound)
    assert claim.at == pytest.approx(1000.3) and claim.late == pytest.approx(0.05) and claim.dropped == 1
    # Free again at once: the next one is ahead, on time.
    claim = stream.claim(1000.36, rate, bound)
    assert claim.at == pytest.approx(1000.4) and claim.late == 0 and claim.dropped == 0

    tally = arrivals.ArrivalTally()
    tally.add_claim(arrivals.Claim(at=1.0, late=0.05, dropped=1))
    tally.add_claim(arrivals.Claim(at=2.0, late=0.0, dropped=2))
    tally.add_start(1.05)
    tally.add_start(2.0)
    s = tally.summary()
    assert (s["intended"], s["sent"], s["late"], s["dropped"]) == (5, 2, 1, 3)
    assert s["late_share"] == pytest.approx(4 / 5)
    assert s["mean_late_ms"] == pytest.approx(50.0) and s["max_late_ms"] == pytest.approx(50.0)


def test_arrivals_nobody_claims_are_dropped_by_the_sweep() -> None:
    # Every user stuck waiting: without the sweep, nothing would count the arrivals passing by.
    stream = arrivals.ArrivalStream(arrivals.EVEN)
    rate, bound = 10.0, 0.1
    assert stream.expire(1000.0, rate, bound) == []  # not started: no user has claimed yet
    assert stream.claim(1000.0, rate, bound).at == pytest.approx(1000.1)
    assert stream.expire(1000.15, rate, bound) == []  # nothing older than the bound
    # 1000.2 and 1000.3, 290 and 190 ms late; 1000.4 is only 90 ms old.
    assert stream.expire(1000.49, rate, bound) == pytest.approx([0.29, 0.19])
    assert stream.expire(1000.49, rate, bound) == []  # swept once, counted once
    claim = stream.claim(1000.49, rate, bound)
    assert claim.at == pytest.approx(1000.4) and claim.late == pytest.approx(0.09) and claim.dropped == 0
    assert stream.claim(1000.49, rate, bound).at == pytest.approx(1000.5)
    assert stream.claim(1000.49, rate, bound).at == pytest.approx(1000.6)  # the grid, nothing twice

    poisson_stream = poisson(8)
    start = poisson_stream.claim(1000.0, rate, 0.5).at
    dropped = len(poisson_stream.expire(start + 5.0, rate, 0.5))
    assert 45 - 3 * math.sqrt(45) < dropped < 45 + 3 * math.sqrt(45)  # 4.5 s of arrivals at 10/s
    assert poisson_stream.claim(start + 5.0, rate, 0.5).at >= start + 4.5


def test_too_few_users_drop_arrivals_and_count_them() -> None:
    # 3 users, 200 ms answers: at most 15 req/s of the 30 asked for. The shortfall is counted, not hidden.
    tally = arrivals.ArrivalTally()
    duration = 200.0
    simulate([(poisson(5), 3)], 30.0, 0.2, duration, tally)
    s = tally.summary()
    assert 13.5 < s["achieved_rps"] <= 15.0 + 1e-9  # users sometimes idle while waiting for an arrival
    assert s["intended"] / duration == pytest.approx(30.0, rel=0.05)
    assert s["dropped"] > 0.3 * s["intended"] and s["late"] > 0.5 * s["sent"]

    # Enough users for the same load (Little: 6 busy on average): late is rare, none dropped.
    tally = arrivals.ArrivalTally()
    simulate([(poisson(6), 30)], 30.0, 0.2, duration, tally)
    s = tally.summary()
    assert s["dropped"] == 0 and s["late"] <= 0.001 * s["sent"]
    assert s["achieved_rps"] == pytest.approx(30.0, rel=0.05)


def test_a_stopped_users_arrival_goes_to_the_next_free_user() -> None:
    stream = poisson(7)
    a = stream.claim(1000.0, 10.0, 1.0)
    b = stream.claim(1000.0, 10.0, 1.0)
    stream.give_back(a.at)
    assert stream.claim(1000.0, 10.0, 1.0).at == a.at
    assert stream.claim(1000.0, 10.0, 1.0).at > b.at
    stream.reset()
    assert stream.claim(2000.0, 10.0, 1.0).at > 2000.0


def test_bad_process_and_rate() -> None:
    with pytest.raises(ValueError, match="poisson, even"):
        arrivals.check_process("burst")
    with pytest.raises(ValueError, match="> 0"):
        poisson(1).claim(0.0, 0.0, 1.0)


def test_worker_deltas_add_up_on_the_master() -> None:
    master, worker_a, worker_b = (arrivals.ArrivalTally() for _ in range(3))
    for t in (0.0, 0.24, 0.48):
        worker_a.add_start(t)
    worker_b.add_start(0.12)
    worker_b.add_start(0.36)
    worker_b.add_claim(arrivals.Claim(at=0.25, late=0.05, dropped=1))
    worker_b.add_start(0.6, due=0.58)  # the generator itself 20 ms behind
    worker_a.add_start(0.72, due=0.715)
    master.merge(worker_a.drain())
    master.merge(worker_b.drain())
    assert worker_a.drain()["sent"] == 0 and worker_a.drain()["starts"] == []
    s = master.summary()
    assert (s["sent"], s["late"], s["dropped"], s["intended"]) == (7, 1, 1, 8)
    assert s["lagging_sends"] == 1 and s["max_send_lag_ms"] == pytest.approx(20.0)
    # The swarm's sends are evenly spaced although each worker's are not alone.
    assert s["achieved_rps"] == pytest.approx(6 / 0.72)
    assert s["interarrival_cv"] == pytest.approx(0.0, abs=1e-9)
    assert s["max_per_100ms"] == 1 and s["first_start"] == 0.0 and s["last_start"] == 0.72

    master.merge(None)  # a worker without the tally (older image)
    good = worker_a.drain()
    master.merge({**good, "sent": "3"})
    master.merge({**good, "late_s": -1.0, "starts": [9.0]})
    master.merge({**good, "starts": None})
    assert master.summary()["sent"] == 7 and master.summary()["last_start"] == 0.72
    master.reset()
    assert master.summary()["intended"] == 0 and master.summary()["achieved_rps"] is None


def test_send_times_kept_are_bounded() -> None:
    tally = arrivals.ArrivalTally()
    for i in range(arrivals.MAX_STARTS + 10):
        tally.add_start(float(i))
    assert tally.sent == arrivals.MAX_STARTS + 10 and len(tally.starts) == arrivals.MAX_STARTS
    assert tally.summary()["first_start"] == 10.0
