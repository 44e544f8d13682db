"""A measurement over time: per-second client results (timeline.json, the master's GET /timeline), what
each fault did to them, and the soak's drift. Reads raw files only; the report draws what this computes.

Windows are whole seconds of wall-clock time. A window's percentiles come from the merged histograms of
its seconds (3 significant digits), so a 5-second p95 is exact at that resolution, not an average of
per-second percentiles.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from lab.faults import AppliedFault, fault_kind
from lab.limits import (
    RECOVERY_CONFIDENCE,
    RECOVERY_P95_TOLERANCE,
    RECOVERY_RPS_TOLERANCE,
    SOAK_GROWTH_LIMIT,
    TIMELINE_WINDOW_S,
)
from lab.services import CLASSIFIER

RAMP_SKIP_S = 2  # seconds after the start that are left out of the pre-fault level (users spawning)


@dataclass(frozen=True)
class Second:
    t: int  # unix seconds
    requests: int  # ended in this second, failed ones too
    failures: int
    buckets: dict[float, int]  # response time (ms, 3 significant digits) -> requests, failed ones too
    # Recorded since the timeline kept them (an older timeline.json lacks them: its failed requests count
    # in the percentiles, its outages are whole seconds, and stalls cannot be told).
    failed_buckets: dict[float, int] = field(default_factory=dict)
    first_failure: float | None = None  # unix time the first / last failed request of the second ended
    last_failure: float | None = None
    started: int | None = None  # requests that started in this second (None: not recorded)
    spanned: int = 0  # requests in flight across the whole second (started before, ended after)

    @property
    def ok(self) -> int:
        return self.requests - self.failures

    @property
    def ok_buckets(self) -> dict[float, int]:
        """The successful requests' response times (all of them when the file does not say which failed)."""
        if not self.failed_buckets:
            return self.buckets
        failed = self.failed_buckets
        return {v: n - failed.get(v, 0) for v, n in self.buckets.items() if n > failed.get(v, 0)}


def _pairs(rows: Any) -> dict[float, int]:
    return {float(v): int(n) for v, n in rows or []}


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_timeline(data: Any) -> list[Second]:
    """The master's GET /timeline answer (as saved in timeline.json); [] for anything else."""
    try:
        rows = data.get("seconds") or []
        return [
            Second(
                int(r["t"]),
                int(r["requests"]),
                int(r["failures"]),
                _pairs(r["buckets"]),
                _pairs(r.get("failed_buckets")),
                _time(r.get("first_failure")),
                _time(r.get("last_failure")),
                None if r.get("started") is None else int(r["started"]),
                int(r.get("spanned") or 0),
            )
            for r in rows
        ]
    except (KeyError, TypeError, ValueError, AttributeError):
        return []


def read_timeline(path: Path) -> list[Second]:
    if not path.is_file():
        return []
    try:
        return parse_timeline(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError:
        return []


def percentile(buckets: Counter[float] | dict[float, int], q: float) -> float | None:
    """Nearest-rank percentile of a histogram (as Locust and the locustfile's histograms compute it)."""
    total = sum(buckets.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= rank:
            return value
    return max(buckets)


@dataclass(frozen=True)
class Window:
    """Whole seconds of the timeline. Its percentiles are of the successful requests: a refused connection
    answered in 0.1 ms says nothing about the service's latency."""

    start: int  # first second (unix)
    seconds: int
    requests: int  # every request that ended in it, failed ones too
    failures: int
    p50_ms: float | None
    p95_ms: float | None

    @property
    def ok(self) -> int:
        return self.requests - self.failures

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        """Throughput: successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def window(by_t: dict[int, Second], start: int, seconds: int) -> Window:
    return window_of(by_t, list(range(start, start + seconds)))


def window_of(by_t: dict[int, Second], ts: list[int]) -> Window:
    """The seconds `ts` (in order; a run with a stalled generator's seconds taken out) as one window."""
    merged: Counter[float] = Counter()
    requests = failures = 0
    for t in ts:
        s = by_t.get(t)
        if s is not None:
            merged.update(s.ok_buckets)
            requests += s.requests
            failures += s.failures
    start = ts[0] if ts else 0
    return Window(start, len(ts), requests, failures, percentile(merged, 0.5), percentile(merged, 0.95))


@dataclass(frozen=True)
class Series:
    """What the timeline chart draws, t in seconds from the measurement's start: one point per whole
    second from timeline.json; users and healthy replicas at each sampling time."""

    t_s: list[float]
    rps: list[int]  # successful requests per second
    failures: list[int]
    p50_ms: list[float | None]
    p95_ms: list[float | None]
    users: list[tuple[float, int]] = field(default_factory=list)
    replicas: list[tuple[float, int]] = field(default_factory=list)


def series(
    seconds: list[Second],
    t_start: float,
    t_end: float,
    live: list[dict[str, Any]] | None = None,
    docker_samples: list[dict[str, Any]] | None = None,
) -> Series:
    by_t = {s.t: s for s in seconds}
    first, last = math.ceil(t_start), math.floor(t_end)  # whole seconds inside the window
    out = Series([], [], [], [], [])
    for t in range(first, last):
        w = window(by_t, t, 1)
        out.t_s.append(round(t - t_start, 2))
        out.rps.append(w.ok)
        out.failures.append(w.failures)
        out.p50_ms.append(w.p50_ms)
        out.p95_ms.append(w.p95_ms)
    for row in live or []:
        if isinstance(row.get("t"), int | float) and isinstance(row.get("user_count"), int):
            out.users.append((round(row["t"] - t_start, 2), row["user_count"]))
    healthy: Counter[float] = Counter()
    for row in docker_samples or []:
        if isinstance(row.get("t"), int | float) and row.get("service") == CLASSIFIER:
            # No health recorded (an older sample, or no healthcheck): running is all we know.
            healthy[row["t"]] += row.get("health", "") in ("healthy", "")
    out.replicas.extend((round(t - t_start, 2), n) for t, n in sorted(healthy.items()))
    return out


@dataclass(frozen=True)
class LocustReaction:
    """What the Locust master did about a lost worker, from its live view (sampled every few seconds)."""

    users_before: int | None
    users_lowest: int | None
    workers_before: int | None
    missing_after_s: float | None  # the master marked a worker missing (no heartbeat for ~3 s)
    users_back_after_s: float | None  # the user count was back to users_before (re-dispatched)


def locust_reaction(live: list[dict[str, Any]], fault_t: float) -> LocustReaction:
    rows = sorted((r for r in live if "t" in r and "user_count" in r), key=lambda r: r["t"])
    before = [r for r in rows if r["t"] <= fault_t]
    after = [r for r in rows if r["t"] > fault_t]
    users_before = before[-1]["user_count"] if before else None
    workers_before = before[-1].get("worker_count") if before else None
    missing = next(
        (r["t"] for r in after if any(w.get("state") == "missing" for w in r.get("workers") or [])), None
    )
    lowest = min((r["user_count"] for r in after), default=None)
    back = None
    if users_before is not None and lowest is not None and lowest < users_before:
        dropped_at = next(r["t"] for r in after if r["user_count"] < users_before)
        back = next((r["t"] for r in after if r["t"] > dropped_at and r["user_count"] >= users_before), None)
    return LocustReaction(
        users_before=users_before,
        users_lowest=lowest,
        workers_before=workers_before,
        missing_after_s=round(missing - fault_t, 1) if missing is not None else None,
        users_back_after_s=round(back - fault_t, 1) if back is not None else None,
    )


@dataclass(frozen=True)
class Stall:
    """Whole seconds in which no request started and none ended while the users ran. Either the generator
    stopped sending (`generator`: no request was in flight across them, or the master lost a worker's
    heartbeat), or the service held every request it had (requests in flight across them, workers
    reporting). `workers` is what the master's live view said about the workers meanwhile."""

    start: int  # first second (unix)
    seconds: int
    in_flight: int  # requests in flight across its seconds (at most, per second)
    generator: bool
    workers: str
    at_s: float  # its start, from the measurement's start

    @property
    def end(self) -> int:
        return self.start + self.seconds

    def overlaps(self, start: int, seconds: int) -> bool:
        return start < self.end and self.start < start + seconds

    def describe(self) -> str:
        what = "the generator stalled" if self.generator else "every request waited on the service"
        return f"{what} for {self.seconds} s from {self.at_s:g} s ({self.workers})"


def _workers_said(live: list[dict[str, Any]], start: int, end: int) -> tuple[str, bool]:
    """The master's live rows from a second before to a second after: worker states, users, worker CPU;
    and whether a worker was missing (its heartbeats stopped: the process itself was stuck)."""
    rows = [r for r in live if isinstance(r.get("t"), int | float) and start - 1 <= r["t"] <= end + 1]
    if not rows:
        return "no live sample of the workers meanwhile", False
    states: Counter[str] = Counter()
    cpu: list[float] = []
    for row in rows:
        for w in row.get("workers") or []:
            if isinstance(w, dict):
                states[str(w.get("state"))] += 1
                if isinstance(w.get("cpu_usage"), int | float):
                    cpu.append(float(w["cpu_usage"]))
    users = sorted({r["user_count"] for r in rows if isinstance(r.get("user_count"), int)})
    seen = ", ".join(f"{state} in {n} worker samples" for state, n in sorted(states.items()))
    parts = [f"{len(rows)} live samples: {seen or 'no worker reported'}"]
    if users:
        parts.append(f"users {'/'.join(map(str, users))}")
    if cpu:
        parts.append(f"worker CPU up to {max(cpu):g} %")
    return ", ".join(parts), states.get("missing", 0) > 0


def find_stalls(
    seconds: list[Second], first: int, last: int, t_start: float, live: list[dict[str, Any]] | None = None
) -> list[Stall]:
    """Runs of whole seconds in [first, last) in which nothing started or ended. Needs a timeline that
    records starts (an older one: [])."""
    if not any(s.started is not None for s in seconds):
        return []
    by_t = {s.t: s for s in seconds}
    quiet = [
        t for t in range(first, last) if (s := by_t.get(t)) is None or (s.requests == 0 and not s.started)
    ]
    stalls: list[Stall] = []
    run: list[int] = []
    for t in [*quiet, None]:
        if run and (t is None or t != run[-1] + 1):
            spans = [by_t[u].spanned if u in by_t else 0 for u in run]
            said, missing = _workers_said(live or [], run[0], run[-1] + 1)
            in_flight = max(spans)
            generator = in_flight == 0 or missing
            stalls.append(Stall(run[0], len(run), in_flight, generator, said, round(run[0] - t_start, 2)))
            run = []
        if t is not None:
            run.append(t)
    return stalls


@dataclass(frozen=True)
class Outage:
    """Time without service after a fault: from the first failed (or unanswered) second's first failure to
    the last one's last failure, the bad seconds joined while fewer than TIMELINE_WINDOW_S good seconds part
    them. A second is bad when a request failed in it, or when none succeeded while the load was on. Times
    to the millisecond from the failures' own times (whole seconds for a second without them). A lower
    bound by up to the clients' probing interval: the service came back between the last failure and the
    next success."""

    start: float | None  # unix time; None: no bad second after the fault
    end: float | None

    @property
    def seconds(self) -> float:
        return 0.0 if self.start is None or self.end is None else max(0.0, self.end - self.start)

    @classmethod
    def after(cls, by_t: dict[int, Second], fault_t: int, last: int, stalls: Sequence[Stall] = ()) -> Outage:
        def bad(t: int) -> bool:
            if any(st.generator and st.overlaps(t, 1) for st in stalls):
                return False  # the generator sent nothing: no sign of the service either way
            s = by_t.get(t)
            return s is None or s.failures > 0 or s.ok == 0

        bad_seconds = [t for t in range(fault_t, last) if bad(t)]
        if not bad_seconds:
            return cls(None, None)
        first = prev = bad_seconds[0]
        for t in bad_seconds[1:]:
            if t - prev > TIMELINE_WINDOW_S:
                break
            prev = t
        head, tail = by_t.get(first), by_t.get(prev)
        start = head.first_failure if head is not None and head.first_failure is not None else float(first)
        # The last failure is the last sign of no service (clients backing off may find it back only
        # later); a second without an answer at all was out to its end.
        end = tail.last_failure if tail is not None and tail.last_failure is not None else float(prev + 1)
        return cls(start, max(start, end))


@dataclass(frozen=True)
class FaultImpact:
    """What one fault did. Times in seconds from the fault; rates in req/s; latencies in ms.

    Throughput and latency are of the successful requests: a refused request answered in microseconds is
    no service, and in the closed model its count says as much about how fast the generator retries as about
    the outage (the locustfile backs off after a connection error, as a real client does). So the summary's
    loss is time without service (`outage_s`), the seconds with a failure and the worst failures/s; in the
    open model each arrival is a client, so `failed_arrivals` is the honest count."""

    fault: str  # its spec, e.g. kill-replica@15s
    applied: bool
    error: str | None
    target: str | None
    detail: str
    at_s: float | None  # when it was applied, from the measurement's start
    lasted_s: float  # 0 for an instantaneous fault
    before_rps: float | None  # successful req/s before it (from RAMP_SKIP_S after the start to the fault)
    before_p95_ms: float | None
    worst_p95_ms: float | None  # the worst TIMELINE_WINDOW_S-second window from the fault on
    worst_rps: float | None  # the lowest such window's successful req/s
    failures_during: int  # from the fault until it recovered (or the end, if it did not)
    failures_after: int  # from the recovery to the end
    requests_during: int
    recovered: bool
    recovery_s: float | None  # from the fault until successful RPS and p95 stayed near the level before,
    # and not before the outage ended
    replicas_expected: int | None  # replicas that should serve after it
    replicas_serving_after: int | None  # replicas whose X-Served-By count grew after it
    not_serving_after: list[str] = field(default_factory=list)
    locust: LocustReaction | None = None  # kill-locust-worker: what Locust did about it
    # A node kind: seconds from the fault until the manager marked the node Down ("node_down"), every task
    # that ran there ran elsewhere ("tasks_elsewhere"), the node was Ready again ("node_ready"); an event
    # not seen before the measurement ended is absent.
    node_events_s: dict[str, float] = field(default_factory=dict)
    outage_s: float = 0.0  # time without service (Outage)
    outage_from_s: float | None = None  # when it began, from the fault
    failed_seconds: int = 0  # seconds with any failure, from the fault to the end
    worst_failures_per_s: int = 0
    failures: int = 0  # from the fault to the end
    failed_arrivals: int | None = None  # open model: the failed requests are failed arrivals (clients)
    band_min_rps: float | None = None  # the recovery band (Band): successful req/s at least this
    band_max_p95_ms: float | None = None  # and p95 at most this
    band_min_second_rps: float | None = None  # and a single second's successful requests at least this
    # A restarted target (restart-nginx): seconds from the fault until it ran again (its container's start),
    # then from that until the first whole second without a failure at the band's per-second load.
    back_s: float | None = None
    resumed_s: float | None = None
    # Seconds after it with nothing started or ended: a stalled generator is not the service's doing, so
    # its windows are left out of the worst window and the recovery, and its seconds out of the outage.
    stalls: list[Stall] = field(default_factory=list)

    @property
    def generator_stalled(self) -> bool:
        return any(s.generator for s in self.stalls)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Band:
    """Where the service counts as back to the level before a fault: a window's successful RPS at least
    `min_rps`, its p95 of the successful requests at most `max_p95_ms`; a single second's successful
    requests at least `min_second_rps`.

    Each bound is the widest of three: the tolerance around the level before (lab.limits), the range the
    service's own windows spanned before the fault, and the noise of its seconds before the fault (the
    lower end of the RECOVERY_CONFIDENCE prediction interval of a window's, or a second's, mean from the
    seconds before, Student's t). A service whose throughput already swung by 20 % between windows before
    the fault is back when it swings like that again, not only when it beats its own average."""

    min_rps: float
    max_p95_ms: float
    min_second_rps: float

    @classmethod
    def before(cls, by_t: dict[int, Second], first: int, fault_t: int) -> Band | None:
        level = window(by_t, first, fault_t - first)
        if level.p95_ms is None:
            return None
        pre = [window(by_t, t, TIMELINE_WINDOW_S) for t in range(first, fault_t - TIMELINE_WINDOW_S + 1)]
        pre_p95 = [w.p95_ms for w in pre if w.p95_ms is not None]
        per_second = np.array([by_t[t].ok if t in by_t else 0 for t in range(first, fault_t)], dtype=float)
        return cls(
            min_rps=min(
                (1 - RECOVERY_RPS_TOLERANCE) * level.ok_rps,
                *(w.ok_rps for w in pre),
                _noise_floor(per_second, TIMELINE_WINDOW_S),
            ),
            max_p95_ms=max((1 + RECOVERY_P95_TOLERANCE) * level.p95_ms, *pre_p95),
            min_second_rps=min((1 - RECOVERY_RPS_TOLERANCE) * level.ok_rps, _noise_floor(per_second, 1)),
        )

    def holds(self, w: Window) -> bool:
        return w.ok_rps >= self.min_rps and w.p95_ms is not None and w.p95_ms <= self.max_p95_ms

    def holds_from(self, by_t: dict[int, Second], ts: list[int]) -> list[bool]:
        """For each i, whether the seconds ts[i:] taken as one window hold: one pass from the end that adds
        each second once, so a long measurement costs a merge per second, not per second squared."""
        merged: Counter[float] = Counter()
        ok = 0
        out = [False] * len(ts)
        for i in range(len(ts) - 1, -1, -1):
            s = by_t.get(ts[i])
            if s is not None:
                merged.update(s.ok_buckets)
                ok += s.ok
            if ok / (len(ts) - i) >= self.min_rps:  # the cheap test first: p95 sorts the merged buckets
                p95 = percentile(merged, 0.95)
                out[i] = p95 is not None and p95 <= self.max_p95_ms
        return out


def _noise_floor(per_second: np.ndarray, seconds: int) -> float:
    """The lower end of the prediction interval for the mean of `seconds` new seconds, from the seconds
    before the fault: mean - t(n-1) * sd * sqrt(1/seconds + 1/n). Infinite (no bound) below 3 seconds."""
    n = len(per_second)
    if n < 3:
        return math.inf
    sd = float(np.std(per_second, ddof=1))
    t = float(stats.t.ppf(RECOVERY_CONFIDENCE, n - 1))
    return float(per_second.mean()) - t * sd * math.sqrt(1 / seconds + 1 / n)


def _resumed(by_t: dict[int, Second], band: Band, back: float, last: int) -> float | None:
    """From the target running again (`back`, unix time) to the start of the first whole second without a
    failure whose successful requests reach the band's per-second floor: the load was back at its level by
    then. None if no second was."""
    for t in range(math.floor(back), last):
        s = by_t.get(t)
        if s is not None and s.ok >= band.min_second_rps and s.failures == 0:
            return max(0.0, t - back)
    return None


def fault_impact(
    record: AppliedFault,
    seconds: list[Second],
    t_start: float,
    t_end: float,
    replicas: int,
    served_final: dict[str, int],
    live: list[dict[str, Any]] | None = None,
    open_model: bool = False,
) -> FaultImpact:
    spec = record.spec
    kind = fault_kind(spec.kind)
    expected = kind.replicas_expected(spec, replicas)
    if record.t is None:  # the measurement ended (or was cut) before the fault's time
        return FaultImpact(
            spec.text, False, record.error, record.target, record.detail, None, 0.0, None, None, None, None,
            0, 0, 0, False, None, expected, None,
        )  # fmt: skip
    by_t = {s.t: s for s in seconds}
    fault_t = math.floor(record.t)
    first, last = math.ceil(t_start) + RAMP_SKIP_S, math.floor(t_end)  # [first, last): whole seconds
    before = window(by_t, first, fault_t - first) if fault_t - first >= TIMELINE_WINDOW_S else None
    stalls = find_stalls(seconds, fault_t, last, t_start, live)
    # Sliding windows from the fault to the end, one second apart, over the seconds the generator sent in:
    # a stalled generator's seconds are taken out, so they neither sink the worst window nor the recovery.
    active = [t for t in range(fault_t, last) if not any(st.generator and st.overlaps(t, 1) for st in stalls)]
    windows = [
        window_of(by_t, active[i : i + TIMELINE_WINDOW_S]) for i in range(len(active) - TIMELINE_WINDOW_S + 1)
    ]
    worst_p95 = max((w.p95_ms for w in windows if w.p95_ms is not None), default=None)
    worst_rps = min((w.ok_rps for w in windows), default=None)
    recovery_t: int | None = None
    band = Band.before(by_t, first, fault_t) if before is not None else None
    if band is not None and windows:
        # The first window that is back in the band and from which the rest of the measurement, taken as
        # one window, is too: recovered, and stays so. One later window that dips as far as the noise
        # carries it does not undo a recovery; a lasting drop (a replica that never came back) does.
        rest_holds = band.holds_from(by_t, active)
        for i, w in enumerate(windows):
            if band.holds(w) and rest_holds[i]:
                recovery_t = w.start
                break
    outage = Outage.after(by_t, fault_t, last, stalls)
    back = record.events.get("started")  # a restarted target running again (lab.faults.FaultKind.restarts)
    resumed = _resumed(by_t, band, back, last) if back is not None and band is not None else None
    recovered_at: float | None = None
    if recovery_t is not None:
        # A 5-s window can sit in the band with a second of refusals in it: not back before they ended,
        # nor before a restarted target ran again.
        recovered_at = max(float(recovery_t), outage.end or 0.0, back or 0.0)
    end_of_impact = math.ceil(recovered_at) if recovered_at is not None else last
    during = window(by_t, fault_t, end_of_impact - fault_t)
    after = window(by_t, end_of_impact, last - end_of_impact)
    since = window(by_t, fault_t, last - fault_t)
    per_second = [by_t[t].failures for t in range(fault_t, last) if t in by_t]
    serving: int | None = None
    not_serving: list[str] = []
    if record.served_by_at_fault is not None and served_final:
        grew = {h for h, n in served_final.items() if n > record.served_by_at_fault.get(h, 0)}
        serving = len(grew)
        not_serving = sorted((set(served_final) | set(record.served_by_at_fault)) - grew)
    lasted = (record.t_end - record.t) if record.t_end is not None else 0.0
    return FaultImpact(
        fault=spec.text,
        applied=record.error is None,
        error=record.error,
        target=record.target,
        detail=record.detail,
        at_s=round(record.t - t_start, 2),
        lasted_s=round(lasted, 2),
        before_rps=round(before.ok_rps, 2) if before is not None else None,
        before_p95_ms=before.p95_ms if before is not None else None,
        worst_p95_ms=worst_p95,
        worst_rps=round(worst_rps, 2) if worst_rps is not None else None,
        failures_during=during.failures,
        failures_after=after.failures,
        requests_during=during.requests,
        recovered=recovered_at is not None,
        recovery_s=round(max(0.0, recovered_at - record.t), 1) if recovered_at is not None else None,
        replicas_expected=expected,
        replicas_serving_after=serving,
        not_serving_after=not_serving,
        locust=locust_reaction(live or [], record.t) if kind.on_load_generator else None,
        node_events_s={
            name: round(t - record.t, 1) for name, t in sorted(record.events.items(), key=lambda e: e[1])
        },
        outage_s=round(outage.seconds, 2),
        outage_from_s=round(outage.start - record.t, 2) if outage.start is not None else None,
        failed_seconds=sum(1 for n in per_second if n > 0),
        worst_failures_per_s=max(per_second, default=0),
        failures=since.failures,
        failed_arrivals=since.failures if open_model else None,
        band_min_rps=round(band.min_rps, 2) if band is not None else None,
        band_max_p95_ms=band.max_p95_ms if band is not None else None,
        band_min_second_rps=round(band.min_second_rps, 2) if band is not None else None,
        back_s=round(back - record.t, 2) if back is not None else None,
        resumed_s=round(resumed, 2) if resumed is not None else None,
        stalls=stalls,
    )


@dataclass(frozen=True)
class ReplicaDrift:
    container: str
    rss_start_mb: float
    rss_end_mb: float
    rss_slope_mb_per_min: float
    fds_start: int
    fds_end: int
    rss_grew: bool
    fds_grew: bool


@dataclass(frozen=True)
class SoakResult:
    """Drift over a long measurement: per replica RSS and file descriptors, and p95 first vs last part."""

    edge_s: int  # length of the first and last part compared
    p95_first_ms: float | None
    p95_last_ms: float | None
    p95_drift: float | None  # (last - first) / first
    p95_grew: bool
    replicas: list[ReplicaDrift]

    @property
    def flagged(self) -> bool:
        return self.p95_grew or any(r.rss_grew or r.fds_grew for r in self.replicas)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}


def _grew(start: float, end: float) -> bool:
    return start > 0 and (end - start) / start > SOAK_GROWTH_LIMIT


def soak_result(
    samples: list[dict[str, Any]], seconds: list[Second], t_start: float, t_end: float
) -> SoakResult:
    """The first and last minute are compared, or a third of the window each when it is shorter."""
    by_t = {s.t: s for s in seconds}
    first, last = math.ceil(t_start) + RAMP_SKIP_S, math.floor(t_end)
    edge = max(1, min(60, (last - first) // 3))
    p95_first = window(by_t, first, edge).p95_ms
    p95_last = window(by_t, last - edge, edge).p95_ms
    drift = (p95_last - p95_first) / p95_first if p95_first and p95_last is not None else None
    by_container: dict[str, list[dict[str, Any]]] = {}
    for row in samples:
        if "rss_mb" in row and "t" in row:
            by_container.setdefault(str(row["container"]), []).append(row)
    replicas: list[ReplicaDrift] = []
    for name, rows in sorted(by_container.items()):
        rows.sort(key=lambda r: r["t"])
        head = [r for r in rows if r["t"] < rows[0]["t"] + edge] or rows[:1]
        tail = [r for r in rows if r["t"] > rows[-1]["t"] - edge] or rows[-1:]
        rss_start = float(np.mean([r["rss_mb"] for r in head]))
        rss_end = float(np.mean([r["rss_mb"] for r in tail]))
        fds_start, fds_end = int(head[0]["fds"]), int(tail[-1]["fds"])
        slope = 0.0
        if len(rows) >= 2 and rows[-1]["t"] > rows[0]["t"]:
            ts = np.array([r["t"] for r in rows], dtype=float) / 60.0
            slope = float(np.polyfit(ts - ts[0], [r["rss_mb"] for r in rows], 1)[0])
        replicas.append(
            ReplicaDrift(
                name,
                round(rss_start, 2),
                round(rss_end, 2),
                round(slope, 3),
                fds_start,
                fds_end,
                _grew(rss_start, rss_end),
                _grew(fds_start, fds_end),
            )
        )
    return SoakResult(
        edge_s=edge,
        p95_first_ms=p95_first,
        p95_last_ms=p95_last,
        p95_drift=round(drift, 4) if drift is not None else None,
        p95_grew=drift is not None and drift > SOAK_GROWTH_LIMIT,
        replicas=replicas,
    )
