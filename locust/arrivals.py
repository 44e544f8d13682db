"""Open-model arrivals: when requests are sent at a target rate, and what became of those sent late.

An open model fixes the arrival process, independent of the answers (k6's constant-arrival-rate
executor; Schroeder et al., NSDI 2006). Each process that runs users (a worker, or a local run) draws
one arrival stream at its share of the target rate λ, `λ x its users / all users`; the streams of all
workers add up to the swarm's stream at λ:

- `poisson`: exponential gaps with mean `1 / share`, each measured from the previous *intended* time,
  never from an answer. The first gap starts at the test's start, and an exponential gap has no memory,
  so that is a random phase. Independent Poisson streams add up to a Poisson stream at λ.
- `even`: a grid with period `1 / share`, aligned to the wall clock (which every worker shares) and
  shifted by `worker index / λ`, so that equal workers interleave into one grid of period `1 / λ`. A
  random phase per user or per worker would not do: N evenly spaced streams with independent phases add
  up to gaps as irregular as Poisson's.

The process's users share its stream, like k6's pool of virtual users: a user that is free claims the
next arrival nobody has claimed and sleeps until its time. An arrival is *late* when no user was free at
its time (all were waiting for answers): the first user to become free sends it at once. It is
*dropped*, never sent, when that happens more than `users / λ` seconds after its time (the mean gap of
one user's share of the arrivals): past that bound the swarm has fallen more than one arrival per user
behind, and catching up would send the backlog as a burst. Arrivals nobody claimed are also dropped by a
periodic sweep, so that they are counted while every user is stuck waiting, not only afterwards. Enough
users make both rare: Little's law gives `λ x latency` users busy on average, and the lab gives `λ x
max(2 s, 4 x expected latency)`.

The tally also keeps the latency from each arrival's *intended* time to its answer, in a histogram merged
across workers like `stagestats`' (wrk2 measures from the intended send time for the same reason): Locust
times a request from when it was sent, so an arrival sent late because every user was waiting on a stalled
server has its wait in no Locust number (coordinated omission). A sent arrival counts its lateness, the
generator's lag and Locust's response time, failed or not; a dropped one counts its lateness when it was
dropped: it got no answer, so that is a lower bound, and the summary says how many there were. In the
closed model nothing has an intended time and the histogram stays empty.

The tally counts late and dropped arrivals and keeps the send times (Locust's `start_time`) for the
achieved rate and the inter-arrival CV of the whole swarm, as deltas from workers to the master like
`servedby.py`. It also times the generator itself: a send that starts more than 10 ms after its time
(with a user free for it) means the generator's process did not get the CPU when it needed it, which
bunches arrivals that the stream had spaced. Kept free of Locust imports so tests can use it without
gevent monkey-patching.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, ClassVar

from stagestats import StageHistogram

POISSON = "poisson"
EVEN = "even"
PROCESSES = (POISSON, EVEN)

REPORT_KEY = "arrivals"  # key of the tally in the worker -> master stats report
# Send times kept for the rate and CV: the most recent ones (100k = 55 min at 30 req/s, ~1 MB).
MAX_STARTS = 100_000
WINDOW_S = 0.1  # the burst check: most sends in one 100 ms window
SEND_LAG_LIMIT_S = 0.010  # a send this much behind its time is counted as lagging
# Grid arithmetic on wall-clock times (~1.8e9 s) loses ~1e-7 s; a point this close (in periods) to the
# previous intended time counts as that time, so an arrival is never scheduled twice.
_GRID_SLACK = 1e-3


def check_process(process: str) -> str:
    if process not in PROCESSES:
        raise ValueError(f"--arrivals must be one of {', '.join(PROCESSES)}, got {process!r}")
    return process


@dataclass
class Claim:
    """What a free user should do: send at `at` (wall-clock seconds); `late` > 0 if that time has passed."""

    at: float
    late: float = 0.0
    dropped: int = 0
    dropped_late_s: tuple[float, ...] = ()  # how late each dropped arrival was when it was dropped


class ArrivalStream:
    """One process's arrival times, shared by its users.

    `rate` is this process's share in arrivals/s and `bound_s` the dropping bound, both passed with each
    claim so that a change in the number of users applies from the next arrival on.
    """

    def __init__(self, process: str, rng: random.Random | None = None, grid_offset_s: float = 0.0) -> None:
        self.process = check_process(process)
        self.rng = rng or random.Random()
        self.grid_offset_s = grid_offset_s
        self._last: float | None = None  # the latest arrival handed out
        self._returned: list[float] = []  # claimed by users that stopped before sending (a heap)

    def reset(self) -> None:
        self._last = None
        self._returned.clear()

    def following(self, t: float, rate: float) -> float:
        """The intended time after `t`."""
        if self.process == POISSON:
            return t + self.rng.expovariate(rate)
        # Count periods from the grid's origin: k-th point is offset + k / rate.
        k = math.floor((t - self.grid_offset_s) * rate + _GRID_SLACK) + 1
        return self.grid_offset_s + k / rate

    def first(self, now: float, rate: float) -> float:
        if self.process == POISSON:
            return now + self.rng.expovariate(rate)  # memoryless: a random phase
        return self.following(now - _GRID_SLACK / rate, rate)  # the first grid point from now on

    def claim(self, now: float, rate: float, bound_s: float) -> Claim:
        """Hand the next unclaimed arrival to a user that is free at `now`."""
        if rate <= 0:
            raise ValueError(f"arrival rate must be > 0, got {rate}")
        dropped: list[float] = []
        while True:
            if self._returned:
                t = heapq.heappop(self._returned)
            elif self._last is None:
                t = self._last = self.first(now, rate)
            else:
                t = self._last = self.following(self._last, rate)
            late = now - t
            if late <= bound_s:
                return Claim(at=t, late=max(late, 0.0), dropped=len(dropped), dropped_late_s=tuple(dropped))
            dropped.append(late)

    def expire(self, now: float, rate: float, bound_s: float) -> list[float]:
        """Drop the arrivals nobody claimed that are more than `bound_s` old; return how late each was."""
        if rate <= 0:
            return []
        dropped: list[float] = []
        while self._returned and now - self._returned[0] > bound_s:
            dropped.append(now - heapq.heappop(self._returned))
        if self._returned or self._last is None or now - self._last <= bound_s:
            # Every later arrival is younger than one already waiting (or the stream has not started).
            return dropped
        while True:
            t = self.following(self._last, rate)
            if now - t <= bound_s:
                # Not due for dropping: hand this very time out next. A Poisson gap is drawn once.
                heapq.heappush(self._returned, t)
                self._last = t
                return dropped
            self._last = t
            dropped.append(now - t)

    def give_back(self, t: float) -> None:
        """A user stopped while waiting to send at `t`: the next free user takes that arrival."""
        heapq.heappush(self._returned, t)


def interarrival_stats(starts: Iterable[float]) -> dict[str, float | int | None]:
    """Achieved rate, inter-arrival CV and the busiest 100 ms window of a set of send times (seconds)."""
    times = sorted(starts)
    n = len(times)
    out: dict[str, float | int | None] = {
        "starts": n,
        "first_start": times[0] if n else None,
        "last_start": times[-1] if n else None,
        "span_s": times[-1] - times[0] if n else 0.0,
        "achieved_rps": None,
        "interarrival_cv": None,
        "max_per_100ms": None,
        "empty_100ms_share": None,
    }
    if n < 2 or times[-1] <= times[0]:
        return out
    span = times[-1] - times[0]
    gaps = [b - a for a, b in pairwise(times)]
    out["achieved_rps"] = (n - 1) / span  # n starts bound n - 1 gaps
    if n >= 3:
        out["interarrival_cv"] = statistics.pstdev(gaps) / statistics.fmean(gaps)
    counts = Counter(int((t - times[0]) / WINDOW_S) for t in times)
    windows = int(span / WINDOW_S) + 1
    out["max_per_100ms"] = max(counts.values())
    out["empty_100ms_share"] = (windows - len(counts)) / windows
    return out


@dataclass
class ArrivalTally:
    """Sent, late and dropped arrivals; workers `drain()` deltas, the master `merge()`s them (a `Tally`)."""

    key: ClassVar[str] = REPORT_KEY
    route: ClassVar[str] = "/arrivals"
    file_option: ClassVar[str | None] = "arrivals_file"

    sent: int = 0
    late: int = 0
    dropped: int = 0
    late_s: float = 0.0  # total lateness of the late arrivals
    max_late_s: float = 0.0
    lagging: int = 0  # sends that started more than SEND_LAG_LIMIT_S after the time they were due
    max_lag_s: float = 0.0
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_STARTS))
    # Open model: from each arrival's intended time to its answer (ms), dropped ones at their lateness.
    from_intended: StageHistogram = field(default_factory=StageHistogram)

    def add_start(
        self, t: float, due: float | None = None, intended: float | None = None, response_ms: float = 0.0
    ) -> None:
        """A request started at `t` and took `response_ms` (Locust's response time). Open model: `due` is
        when its user meant to send it (to time the generator), `intended` the arrival's own time."""
        self.sent += 1
        self.starts.append(t)
        if due is not None:
            lag = t - due
            self.max_lag_s = max(self.max_lag_s, lag)
            if lag > SEND_LAG_LIMIT_S:
                self.lagging += 1
        if intended is not None:
            self.from_intended.add(max(0.0, 1000 * (t - intended) + response_ms))

    def add_dropped(self, late_s: Iterable[float]) -> None:
        """Arrivals dropped this late (seconds after their time): never sent, never answered."""
        for late in late_s:
            self.dropped += 1
            self.from_intended.add(1000 * max(late, 0.0))

    def add_claim(self, claim: Claim) -> None:
        # A hand-made Claim may give only the count: those count as dropped, at no known lateness.
        self.dropped += claim.dropped - len(claim.dropped_late_s)
        self.add_dropped(claim.dropped_late_s)
        if claim.late > 0:
            self.late += 1
            self.late_s += claim.late
            self.max_late_s = max(self.max_late_s, claim.late)

    def drain(self) -> dict[str, Any]:
        """The counts and send times since the last drain, then start again from zero."""
        delta = {
            "sent": self.sent,
            "late": self.late,
            "dropped": self.dropped,
            "late_s": self.late_s,
            "max_late_s": self.max_late_s,
            "lagging": self.lagging,
            "max_lag_s": self.max_lag_s,
            "starts": list(self.starts),
            "from_intended": self.from_intended.to_wire(),
        }
        self.reset()
        return delta

    def merge(self, delta: Mapping[str, Any] | None) -> None:
        """Add a worker's delta; ignores a missing or malformed report (an older worker image)."""
        if not isinstance(delta, Mapping):
            return
        counts = [delta.get(k) for k in ("sent", "late", "dropped", "lagging")]
        seconds = [delta.get(k) for k in ("late_s", "max_late_s", "max_lag_s")]
        starts = delta.get("starts")
        if not (
            all(isinstance(v, int) and v >= 0 for v in counts)
            and all(isinstance(v, int | float) and v >= 0 for v in seconds)
            and isinstance(starts, list)
        ):
            return
        sent, late, dropped, lagging = counts
        self.sent += sent
        self.late += late
        self.dropped += dropped
        self.lagging += lagging
        self.late_s += float(seconds[0])
        self.max_late_s = max(self.max_late_s, float(seconds[1]))
        self.max_lag_s = max(self.max_lag_s, float(seconds[2]))
        self.starts.extend(float(t) for t in starts if isinstance(t, int | float))
        hist = StageHistogram.from_wire(delta.get("from_intended"))  # None from an older worker image
        if hist is not None:
            self.from_intended.merge(hist)

    def reset(self) -> None:
        self.sent = self.late = self.dropped = self.lagging = 0
        self.late_s = self.max_late_s = self.max_lag_s = 0.0
        self.starts.clear()
        self.from_intended = StageHistogram()

    def snapshot(self) -> dict[str, Any]:
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The JSON the master serves and writes: counts, lateness, and the swarm's send statistics."""
        intended = self.sent + self.dropped
        return {
            "intended": intended,
            "sent": self.sent,
            "late": self.late,
            "dropped": self.dropped,
            "late_share": (self.late + self.dropped) / intended if intended else 0.0,
            "mean_late_ms": 1000 * self.late_s / self.late if self.late else 0.0,
            "max_late_ms": 1000 * self.max_late_s,
            "lagging_sends": self.lagging,
            "max_send_lag_ms": 1000 * self.max_lag_s,
            # None in the closed model (no arrival has an intended time).
            "from_intended_start": self.from_intended.summary() if self.from_intended.count else None,
            **interarrival_stats(self.starts),
        }
