"""`lab plan`: the fewest replicas predicted to serve a traffic level within a p95 SLO, past what was
measured, with how sure the prediction is and how wrong it was where it can be checked.

Per group of configurations that differ only in replica count: each run's capacity (its highest
throughput with failures within the limit: a ramp's top or a saturated closed load) is fitted with the
USL (lab/usl.py) and bootstrapped over runs; each replica's latency at lambda / N comes from the queue
simulator (lab/queueing.py) with the service time measured at the lightest load of the fewest replicas,
slowed by the fit's contention at N. A count meets the need when the band's low end of capacity reaches
it and the p95 simulated with that pessimistic contention is within the SLO: the pessimistic end decides.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lab.intervals import MeanInterval, mean_interval
from lab.limits import EXTRAPOLATION_LIMIT, LIGHT_LOAD_UTILISATION
from lab.metrics import ConfigResult, Thresholds
from lab.queueing import QueueResult, ServiceTime, service_from_timing, simulate
from lab.server_timing import ServerTiming
from lab.usl import Band, UslFit, band, fit

PLAN_SCHEMA_VERSION = 1
FORCED_LIMIT = 64  # with --force, look this far at most
SHARED_CORES = (
    "no CPU budget per replica was set: the fit describes this host's shared cores (every replica, "
    "Locust and nginx on the same cores), not replicas on separate nodes"
)


@dataclass(frozen=True)
class PlanRequest:
    need_rps: float
    slo_p95_ms: float
    holdout: tuple[int, ...] = ()
    force: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.need_rps > 0 and math.isfinite(self.need_rps)):
            raise ValueError("--need-rps must be > 0")
        if not (self.slo_p95_ms > 0 and math.isfinite(self.slo_p95_ms)):
            raise ValueError("--slo-p95-ms must be > 0")
        if any(h < 1 for h in self.holdout):
            raise ValueError("--holdout: replica counts are >= 1")


@dataclass(frozen=True)
class CountPrediction:
    """What the model predicts for N replicas at the needed rate. Capacity in req/s, p95 in ms."""

    replicas: int
    capacity_low: float
    capacity: float
    capacity_high: float
    utilisation: float  # of each replica's servers, with the fit's contention
    p95_ms: float | None  # None: the queue grows without bound
    p95_pessimistic_ms: float | None  # with the contention at the band's low end of capacity
    meets: bool  # the pessimistic end: capacity_low >= need and p95_pessimistic <= SLO
    meets_central: bool
    meets_optimistic: bool


@dataclass(frozen=True)
class LatencyCheck:
    label: str
    target_rps: float
    measured_p95_ms: float | None
    predicted_p95_ms: float | None
    error_pct: float | None


@dataclass(frozen=True)
class HoldoutCheck:
    """A replica count left out of the fit: predicted against measured."""

    replicas: int
    predicted_rps: float
    predicted_low: float
    predicted_high: float
    measured: MeanInterval  # the held-out runs' capacities
    rps_error_pct: float  # (predicted - measured mean) / measured mean
    latency: list[LatencyCheck] = field(default_factory=list)
    latency_note: str | None = None


@dataclass(frozen=True)
class CountRuns:
    """What one replica count measured: each run's capacity, and whether the fit used them."""

    replicas: int
    runs: list[float]
    interval: MeanInterval
    fitted: bool


@dataclass(frozen=True)
class LatencyModel:
    service: ServiceTime
    measured_at: str  # the measurement it comes from
    measured_replicas: int
    measured_utilisation: float
    overhead_ms: float  # outside the replica's decode + infer: nginx, network, the client
    arrival_cv: float
    servers: int  # per replica
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GroupPlan:
    group: str  # the configuration without its replica count, e.g. "litert" ("all" when nothing varies)
    fit: UslFit
    band: Band
    latency: LatencyModel | None
    predictions: list[CountPrediction]
    answer: int | None  # fewest replicas at the pessimistic end
    answer_central: int | None
    answer_optimistic: int | None
    refused: str | None  # why no answer was given
    next_counts: list[int]
    holdout: list[HoldoutCheck] = field(default_factory=list)
    measured: list[CountRuns] = field(default_factory=list)
    p95_checks: list[LatencyCheck] = field(default_factory=list)  # every --rate run: model vs measured

    def headline(self, need_rps: float, slo_p95_ms: float) -> str:
        head = f"{self.group}: "
        if self.answer is None:
            return head + (self.refused or "no replica count predicted to meet the need")
        at = next(p for p in self.predictions if p.replicas == self.answer)
        spread = ""
        if self.answer_optimistic is not None and self.answer_optimistic != self.answer:
            spread = f" ({self.answer_optimistic} at the band's optimistic end)"
        p95 = f"{at.p95_pessimistic_ms:.0f} ms" if at.p95_pessimistic_ms is not None else "unbounded"
        return (
            head
            + f"{self.answer} replicas{spread} to serve {need_rps:g} req/s with p95 ≤ {slo_p95_ms:g} ms: "
            f"capacity {at.capacity:.0f} req/s ({self.band.confidence:.0%} band {at.capacity_low:.0f} to "
            f"{at.capacity_high:.0f}), predicted p95 {p95} at {need_rps:g} req/s "
            f"(fit on {', '.join(str(c) for c in self.fit.counts)} replicas)"
        )


@dataclass(frozen=True)
class Plan:
    need_rps: float
    slo_p95_ms: float
    cpus_per_replica: float | None
    budget_note: str
    seed: int
    holdout: list[int]
    groups: list[GroupPlan]
    schema_version: int = PLAN_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for group, data in zip(self.groups, out["groups"], strict=True):
            data["fit"] = group.fit.to_dict()
        return out


# ---- what the runs measured ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """A judged measurement, the run it came from (a plan may read several: a closed sweep for capacity,
    open-model runs to check latency against) and its Server-Timing split."""

    source: str  # the run (its folder or id): runs of different sources are different runs
    entry: ConfigResult
    server_timing: ServerTiming | None = None


def _group_key(entry: ConfigResult) -> tuple[int | None, str | None, str | None, float | None]:
    return (entry.workers_per_replica, entry.backend, entry.batching, entry.cpus_per_replica)


def _group_name(key: tuple[int | None, str | None, str | None, float | None]) -> str:
    workers, backend, batching, cpus = key
    parts = [f"w{workers}"] if workers is not None else []
    parts += [f"c{cpus:g}"] if cpus is not None else []
    parts += [backend] if backend else []
    parts += [("batch" if batching == "on" else "nobatch")] if batching else []
    return "-".join(parts) or "all"


def run_capacities(measured: list[Measured], thresholds: Thresholds) -> list[tuple[int, float]]:
    """(replicas, capacity) per run: a run's highest throughput with failures within the limit, from a
    closed load or a ramp (a fixed open-model rate measures latency at that rate, not capacity)."""
    best: dict[tuple[str, str, int], tuple[int, float]] = {}
    for item in measured:
        entry, m = item.entry, item.entry.metrics
        if m.status != "complete" or not m.requests or m.failure_ratio > thresholds.max_failure_ratio:
            continue
        if m.target_rps and entry.step is None:
            continue
        key = (item.source, entry.stack_label, entry.repeat)
        if key not in best or m.rps > best[key][1]:
            best[key] = (entry.replicas, m.rps)
    return sorted(best.values())


def latency_model(measured: list[Measured]) -> LatencyModel | None:
    """The service time at the lightest load of the fewest replicas that carried a Server-Timing split."""
    candidates = [c for c in measured if c.entry.metrics.status == "complete" and c.entry.metrics.requests]
    if not candidates:
        return None
    fewest = min(c.entry.replicas for c in candidates)
    configs = [c.entry for c in measured]

    def lightest(c: Measured) -> tuple[bool, float]:
        # An open-model rate leaves the replica idle between arrivals; a closed load keeps it busy. A closed
        # load is lighter with fewer users: past saturation more users lower nothing but the throughput.
        m = c.entry.metrics
        return (not m.target_rps, m.target_rps or m.users or m.rps)

    for item in sorted((c for c in candidates if c.entry.replicas == fewest), key=lightest):
        entry = item.entry
        timing = item.server_timing
        service = service_from_timing(timing) if timing is not None else None
        if service is None:
            continue
        m = entry.metrics
        servers = entry.workers_per_replica or 1
        notes = []
        utilisation = m.rps / entry.replicas * service.mean_ms / 1000.0 / servers
        if utilisation > 1.0:
            # Busier than busy: the replica ran requests side by side (its thread pool), and each one's
            # decode + infer time counted the others' work. A FIFO server that kept this throughput could
            # take at most servers x replicas / throughput per request: the measured shape, scaled to that.
            most_ms = servers * entry.replicas / m.rps * 1000.0
            notes.append(
                f"decode + infer at {entry.label} ({service.mean_ms:.1f} ms mean) would have kept each "
                f"replica {utilisation:.0%} busy at its {m.rps:.1f} req/s: requests overlapped inside the "
                f"replica, so the service time is scaled to {most_ms:.1f} ms, the most that throughput allows"
            )
            service, utilisation = service.scaled(most_ms / service.mean_ms), 1.0
        # Outside decode + infer at this load: the server's other stages and nginx, network, client.
        # The server's own queue is what the simulator models, so it is not counted twice.
        server_other = max(0.0, (m.server_total_ms or 0.0) - (m.server_queue_ms or 0.0) - service.mean_ms)
        light = utilisation <= LIGHT_LOAD_UTILISATION
        overhead = server_other + ((m.outside_server_ms or 0.0) if light else 0.0)
        cvs = [cv for c in configs if c.metrics.target_rps and (cv := c.metrics.interarrival_cv) is not None]
        cv = float(np.mean(cvs)) if cvs else 1.0
        if not light:
            notes.append(
                f"the lightest load measured ({entry.label}) kept each replica {utilisation:.0%} busy: its "
                f"time outside the server ({m.outside_server_ms or 0.0:.1f} ms) includes requests waiting "
                "before it and is left out (nginx and the network are not in the prediction), and its "
                "service time may include contention: measure at a light --rate for a better model"
            )
        if not cvs:
            notes.append("no measured arrival CV (open model with arrivals.json): arrivals assumed Poisson")
        return LatencyModel(service, entry.label, entry.replicas, utilisation, overhead, cv, servers, notes)
    return None


# ---- prediction ------------------------------------------------------------------------------------------


def _p95(
    model: LatencyModel, total_rps: float, replicas: int, factor: float, seed: int
) -> tuple[QueueResult, float | None]:
    service = model.service.scaled(factor)
    result = simulate(
        total_rps / replicas,
        service,
        servers=model.servers,
        arrival_cv=model.arrival_cv,
        overhead_ms=model.overhead_ms,
        seed=seed,
    )
    return result, result.p95_ms


def predict_p95(
    model: LatencyModel, usl_fit: UslFit, total_rps: float, replicas: int, seed: int
) -> float | None:
    """p95 at `total_rps` over `replicas`, with the fit's contention relative to where it was measured."""
    factor = usl_fit.contention_factor(replicas) / usl_fit.contention_factor(model.measured_replicas)
    return _p95(model, total_rps, replicas, factor, seed)[1]


def _predict(
    n: int, usl_fit: UslFit, the_band: Band, model: LatencyModel | None, request: PlanRequest
) -> CountPrediction:
    low, mid, high = the_band.at(n)
    need, slo = request.need_rps, request.slo_p95_ms
    base = usl_fit.contention_factor(model.measured_replicas) if model is not None else 1.0
    p95 = p95_pess = None
    utilisation = math.nan
    if model is not None:
        central = usl_fit.contention_factor(n) / base
        # The band's low end of capacity as a slower replica: gamma N / X_low(N) against the fit's.
        pessimistic = central * mid / low if low > 0 else math.inf
        result, p95 = _p95(model, need, n, central, request.seed)
        utilisation = result.utilisation
        if math.isfinite(pessimistic):
            p95_pess = _p95(model, need, n, pessimistic, request.seed)[1]
    latency_ok = model is None or (p95_pess is not None and p95_pess <= slo)
    central_ok = model is None or (p95 is not None and p95 <= slo)
    return CountPrediction(
        n,
        low,
        mid,
        high,
        utilisation,
        p95,
        p95_pess,
        meets=low >= need and latency_ok,
        meets_central=mid >= need and central_ok,
        meets_optimistic=high >= need and central_ok,
    )


def _next_counts(usl_fit: UslFit, answer: int | None, largest: int, limit: int) -> list[int]:
    """Replica counts whose measurement would narrow this prediction most: the answer itself when it lies
    past what was measured, one between, and a third count when beta could not be fitted."""
    wanted: set[int] = set()
    target = answer if answer is not None else limit
    if target > largest:
        wanted.add(target)
        middle = round(math.sqrt(target * largest))
        if largest < middle < target:
            wanted.add(middle)
    if usl_fit.model != "usl" and len(usl_fit.counts) < 3:
        wanted.add(2 * largest)
    return sorted(wanted)


def latency_checks(
    configs: list[ConfigResult], model: LatencyModel | None, usl_fit: UslFit, seed: int
) -> list[LatencyCheck]:
    """The latency model against every open-model (--rate) measurement: the p95 it predicts at that
    rate and replica count next to the measured one. Closed-model latency is set by the users in flight,
    not by an arrival rate, so it is not compared."""
    out: list[LatencyCheck] = []
    for c in configs if model is not None else []:
        if not c.metrics.target_rps or c.metrics.status != "complete":
            continue
        rate = float(c.metrics.target_rps)
        predicted = predict_p95(model, usl_fit, rate, c.replicas, seed)
        got = c.metrics.p95_ms
        error = (predicted - got) / got * 100 if predicted is not None and got else None
        out.append(LatencyCheck(c.label, rate, got, predicted, error))
    return out


def _checks(
    held: list[int],
    runs: list[tuple[int, float]],
    configs: list[ConfigResult],
    usl_fit: UslFit,
    the_band: Band,
    model: LatencyModel | None,
    seed: int,
) -> list[HoldoutCheck]:
    checks: list[HoldoutCheck] = []
    for h in held:
        measured = mean_interval([x for n, x in runs if n == h], floor=0.0)
        low, mid, high = the_band.at(h)
        latency = latency_checks([c for c in configs if c.replicas == h], model, usl_fit, seed)
        note = None
        if model is None:
            note = "no Server-Timing split in the fitted counts: no latency model"
        elif not latency:
            note = (
                "no open-model (--rate) measurement at this count (closed-model latency is set by the users)"
            )
        error = (mid - measured.mean) / measured.mean * 100
        checks.append(HoldoutCheck(h, mid, low, high, measured, error, latency, note))
    return checks


def plan_group(
    name: str, measured: list[Measured], thresholds: Thresholds, request: PlanRequest
) -> GroupPlan:
    runs = run_capacities(measured, thresholds)
    configs = [m.entry for m in measured]
    held = sorted(set(request.holdout) & {n for n, _ in runs})
    fit_runs = [(n, x) for n, x in runs if n not in held]
    counts = sorted({n for n, _ in fit_runs})
    if len(counts) < 2:
        raise ValueError(
            f"{name}: a fit needs at least 2 replica counts"
            + (f" left after --holdout {','.join(map(str, held))}" if held else "")
            + f" (measured: {', '.join(str(n) for n in sorted({n for n, _ in runs})) or 'none'})"
        )
    n_fit, x_fit = [n for n, _ in fit_runs], [x for _, x in fit_runs]
    usl_fit = fit(n_fit, x_fit)
    largest = max(counts)
    limit = EXTRAPOLATION_LIMIT * largest
    search = FORCED_LIMIT * largest if request.force else limit
    grid = sorted(set(range(1, search + 1)) | set(held))
    the_band = band(n_fit, x_fit, grid, usl_fit, seed=request.seed)
    model = latency_model([m for m in measured if m.entry.replicas in counts])
    predictions: list[CountPrediction] = []
    answer = central = optimistic = None
    for n in range(1, search + 1):
        p = _predict(n, usl_fit, the_band, model, request)
        predictions.append(p)
        optimistic = optimistic or (n if p.meets_optimistic else None)
        central = central or (n if p.meets_central else None)
        answer = answer or (n if p.meets else None)
        if answer is not None and n >= largest:
            break
    refused = None
    if answer is None:
        peak = usl_fit.peak_n
        if peak is not None and float(usl_fit.at(peak)) < request.need_rps:
            refused = (
                f"the fit peaks at N* = {peak:.1f} replicas with {float(usl_fit.at(peak)):.0f} req/s, "
                f"below {request.need_rps:g} req/s: no replica count of this configuration serves it"
            )
        elif request.force:
            refused = f"no count up to {search} replicas is predicted to meet the need"
        else:
            refused = (
                f"not met within {EXTRAPOLATION_LIMIT}x the largest measured count ({limit} replicas); "
                "a prediction further out would rest on too little: measure more counts, or --force"
            )
    return GroupPlan(
        name,
        usl_fit,
        the_band,
        model,
        predictions,
        answer,
        central,
        optimistic,
        refused,
        _next_counts(usl_fit, answer, largest, limit),
        _checks(held, runs, configs, usl_fit, the_band, model, request.seed),
        [
            CountRuns(n, xs, mean_interval(xs, floor=0.0), n not in held)
            for n in sorted({n for n, _ in runs})
            if (xs := [x for m, x in runs if m == n])
        ],
        latency_checks(configs, model, usl_fit, request.seed),
    )


def budget_note(budgets: set[float | None]) -> tuple[float | None, str]:
    """The CPU budget per replica the fits assume (one for all groups, or None) and the plan's words for
    it. The budget is each measurement's own (`cpus_per_replica`), the one its group is keyed by."""
    given = sorted(b for b in budgets if b is not None)
    if not given:
        return None, SHARED_CORES
    if len(budgets) == 1:
        return given[
            0
        ], f"each replica limited to {given[0]:g} CPUs: the fit describes replicas with that budget"
    note = (
        "each group's fit describes replicas with its own CPU budget per replica "
        f"({', '.join(f'{b:g}' for b in given)} CPUs: the c in the group's name)"
    )
    if None in budgets:
        note += "; a group without one describes this host's shared cores, not replicas on separate nodes"
    return None, note


def make_plan(measured: list[Measured], thresholds: Thresholds, request: PlanRequest) -> Plan:
    groups: dict[tuple[int | None, str | None, str | None, float | None], list[Measured]] = defaultdict(list)
    for item in measured:
        groups[_group_key(item.entry)].append(item)
    plans = [plan_group(_group_name(key), members, thresholds, request) for key, members in groups.items()]
    budget, note = budget_note({item.entry.cpus_per_replica for item in measured})
    return Plan(
        request.need_rps,
        request.slo_p95_ms,
        budget,
        note,
        request.seed,
        sorted(set(request.holdout)),
        plans,
    )


# ---- tables, for the terminal, summary.md and report.html -----------------------------------------------

PREDICTION_HEADER = ["Replicas", "Capacity req/s (band)", "Utilisation", "p95 ms (pessimistic)", "Meets"]
MODEL_HEADER = ["Replicas", "Measured capacity req/s", "Model req/s (band)", "Error", "Used by the fit"]
HOLDOUT_HEADER = ["Held out", "Predicted req/s (band)", "Measured req/s", "Error", "p95 predicted / measured"]


def _ms(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "unbounded"


def prediction_rows(group: GroupPlan, measured_counts: set[int] | None = None) -> list[list[str]]:
    measured_counts = measured_counts if measured_counts is not None else set(group.fit.counts)
    rows = []
    for p in group.predictions:
        mark = " (measured)" if p.replicas in measured_counts else ""
        rows.append(
            [
                f"{p.replicas}{mark}",
                f"{p.capacity:.0f} ({p.capacity_low:.0f} to {p.capacity_high:.0f})",
                f"{p.utilisation:.0%}" if math.isfinite(p.utilisation) else "—",
                f"{_ms(p.p95_ms)} ({_ms(p.p95_pessimistic_ms)})",
                "yes" if p.meets else ("central only" if p.meets_central else "no"),
            ]
        )
    return rows


def model_rows(group: GroupPlan) -> list[list[str]]:
    """Model vs measured at every measured count (in the fit, or held out)."""
    rows = []
    for count in group.measured:
        low, mid, high = group.band.at(count.replicas)
        error = (mid - count.interval.mean) / count.interval.mean * 100
        rows.append(
            [
                str(count.replicas),
                count.interval.text(),
                f"{mid:.1f} ({low:.1f} to {high:.1f})",
                f"{error:+.1f} %",
                "yes" if count.fitted else "no (held out)",
            ]
        )
    return rows


LATENCY_HEADER = ["Measurement", "Rate req/s", "p95 ms predicted", "p95 ms measured", "Error"]


def latency_rows(group: GroupPlan) -> list[list[str]]:
    return [
        [
            c.label,
            f"{c.target_rps:g}",
            _ms(c.predicted_p95_ms),
            _ms(c.measured_p95_ms),
            f"{c.error_pct:+.0f} %" if c.error_pct is not None else "—",
        ]
        for c in group.p95_checks
    ]


def holdout_rows(group: GroupPlan) -> list[list[str]]:
    rows = []
    for h in group.holdout:
        latency = "; ".join(
            f"{c.target_rps:g} req/s: {_ms(c.predicted_p95_ms)} / {_ms(c.measured_p95_ms)} ms"
            + (f" ({c.error_pct:+.0f} %)" if c.error_pct is not None else "")
            for c in h.latency
        )
        rows.append(
            [
                str(h.replicas),
                f"{h.predicted_rps:.1f} ({h.predicted_low:.1f} to {h.predicted_high:.1f})",
                h.measured.text(),
                f"{h.rps_error_pct:+.1f} %",
                latency or (h.latency_note or "—"),
            ]
        )
    return rows


def group_text(plan: Plan, g: GroupPlan) -> list[str]:
    """One group's answer, its fit in words, its latency model and what to measure next."""
    lines = [g.headline(plan.need_rps, plan.slo_p95_ms)]
    lines += [f"  {w}" for w in g.fit.words()]
    lines.append(f"  band: {g.band.method} ({g.band.resamples} resamples, seed {g.band.seed})")
    if g.latency is not None:
        m = g.latency
        lines.append(
            f"  latency model: service {m.service.mean_ms:.1f} ms mean, p95 {_ms(m.service.p95_ms)} ms "
            f"(decode + infer at {m.measured_at}), {m.overhead_ms:.1f} ms outside the replica, "
            f"arrival CV {m.arrival_cv:.2f}, {m.servers} server(s) per replica"
        )
        lines += [f"  note: {n}" for n in m.notes]
    else:
        lines.append("  latency model: none (no Server-Timing split measured); capacity only")
    if g.next_counts:
        lines.append(f"  measure N = {', '.join(map(str, g.next_counts))} next to narrow this")
    return lines


def plan_text(plan: Plan) -> list[str]:
    """The plan's sentences: every group's, then the CPU budget the fits assume."""
    lines = [line for g in plan.groups for line in group_text(plan, g)]
    lines.append(plan.budget_note[0].upper() + plan.budget_note[1:] + ".")
    return lines
