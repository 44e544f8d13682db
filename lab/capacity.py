"""From judged measurements to answers: capacity per configuration, scaling efficiency, the recommended
configuration, and the verdict. Decisions are taken on the numbers; the words are written afterwards."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace

from lab.budget import budget_sentences
from lab.intervals import SINGLE_RUN, MeanInterval, RatioInterval
from lab.limits import (
    FELL_BEHIND_RATIO,
    GENERATOR_CPU_LIMIT_PCT,
    GOOD_SCALING_EFFICIENCY,
    LATE_ARRIVALS_SHARE,
    MACHINE_CPU_FRACTION,
    NEAR_BEST_CAPACITY,
    SOAK_GROWTH_LIMIT,
    TIMELINE_WINDOW_S,
)
from lab.metrics import ConfigResult, Thresholds
from lab.results import Agreement, ClientBackoff
from lab.spread import SCALING, Comparison, RepeatAnalysis, efficiency_interval, repeat_analysis
from lab.stacks import stack_kind as stack_kind_of
from lab.timeline import FaultImpact


@dataclass(frozen=True)
class Knee:
    """The load level at which a configuration's capacity was measured."""

    users: int | None
    target_rps: float | None
    rps: float


@dataclass(frozen=True)
class Efficiency:
    replicas: int
    base: str  # the stack label with the fewest replicas in its group
    rps: float | None
    efficiency: float | None  # rps / (replicas / base replicas x base rps)
    interval: RatioInterval | None = None  # the efficiency over runs (None: no runs to go by)


@dataclass(frozen=True)
class Recommendation:
    label: str
    capacity: float
    replicas: int
    workers_per_replica: int | None
    backend: str | None
    batching: str | None
    why: str
    interval: MeanInterval | None = None  # the runs' throughput at the knee; capacity is its low end


@dataclass(frozen=True)
class Tradeoff:
    """A quantized model's throughput against another backend's at the same replica count, beside what its
    build measured of its accuracy against the float model: the speed is never shown without it."""

    label: str  # the quantized model's stack label
    against: str  # the other backend's
    comparison: Comparison
    agreement: Agreement

    def cell(self) -> str:
        return f"{self.comparison.ratio.text()} vs {self.against}"

    def text(self) -> str:
        return (
            f"{self.label} vs {self.against} throughput at the same replica count: "
            f"{self.comparison.ratio.text()}; its model {self.agreement.text()}"
        )


@dataclass(frozen=True)
class CapacityAnalysis:
    capacity: dict[str, float | None]  # per stack label: req/s within the SLO in every repeat
    knee: dict[str, Knee | None]
    peak_rps: dict[str, float | None]  # per stack label: req/s within the failure limit, any latency
    scaling_efficiency: dict[str, Efficiency]
    recommended: Recommendation | None
    repeats: RepeatAnalysis | None = None
    tradeoffs: list[Tradeoff] = field(default_factory=list)
    agreement: dict[str, Agreement] = field(default_factory=dict)  # per stack label with a quantized model

    def tradeoff_of(self, label: str) -> Tradeoff | None:
        return next((t for t in self.tradeoffs if t.label == label), None)


def _first_by_label(configs: list[ConfigResult]) -> dict[str, ConfigResult]:
    first: dict[str, ConfigResult] = {}
    for entry in configs:
        first.setdefault(entry.stack_label, entry)
    return first


def capacity_and_knees(configs: list[ConfigResult]) -> tuple[dict[str, float | None], dict[str, Knee | None]]:
    """The knee (the one definition: the table, the verdict and the charts use it): per stack label, the
    load level with the highest throughput among those that met the SLO in every repeat, the lowest
    repeat's throughput counting (sustained, not lucky). Capacity is that throughput; None when no level
    met the SLO in every repeat."""
    levels_of: dict[str, dict[tuple[int | None, float | None], list[ConfigResult]]] = defaultdict(
        lambda: defaultdict(list)
    )
    repeats: dict[str, set[int]] = defaultdict(set)
    for entry in configs:
        levels_of[entry.stack_label][entry.load_key].append(entry)
        repeats[entry.stack_label].add(entry.repeat)
    capacity: dict[str, float | None] = {}
    knees: dict[str, Knee | None] = {}
    for label, levels in levels_of.items():
        knee: Knee | None = None
        for (users, target), entries in levels.items():
            every_repeat = {e.repeat for e in entries} == repeats[label]
            if every_repeat and all(e.slo_met for e in entries):
                rps = min(e.metrics.rps for e in entries)
                if knee is None or rps > knee.rps:
                    knee = Knee(users, target, rps)
        capacity[label] = round(knee.rps, 3) if knee is not None else None
        knees[label] = knee
    return capacity, knees


def at_knee(configs: list[ConfigResult], knees: dict[str, Knee | None]) -> list[ConfigResult]:
    """One entry per measured configuration and repeat: every measurement of a fixed load, and for a ramp
    the step at its stack label's knee (the same load level in every repeat), or its first step when
    there is no knee."""
    chosen: list[ConfigResult] = []
    ramps: dict[tuple[str, int], list[ConfigResult]] = defaultdict(list)
    for entry in configs:
        if entry.step is None:
            chosen.append(entry)
        else:
            ramps[(entry.stack_label, entry.repeat)].append(entry)
    for (label, _repeat), steps in ramps.items():
        knee = knees.get(label)
        at = [s for s in steps if knee is not None and s.load_key == (knee.users, knee.target_rps)]
        chosen.append(at[0] if at else steps[0])
    return chosen


def peak_rps(configs: list[ConfigResult], thresholds: Thresholds) -> dict[str, float | None]:
    """Per stack label: the highest median-over-repeats throughput with failures within the limit,
    whatever the latency (what the replicas could push, for scaling efficiency)."""
    levels_of: dict[str, dict[tuple[int | None, float | None], list[float]]] = {
        e.stack_label: defaultdict(list) for e in configs
    }
    for entry in configs:
        m = entry.metrics
        if m.status == "complete" and m.failure_ratio <= thresholds.max_failure_ratio and m.requests:
            levels_of[entry.stack_label][entry.load_key].append(m.rps)
    return {
        label: round(max(statistics.median(v) for v in levels.values()), 3) if levels else None
        for label, levels in levels_of.items()
    }


def scaling_efficiency(configs: list[ConfigResult], peak: dict[str, float | None]) -> dict[str, Efficiency]:
    """RPS_N / (N/N0 x RPS_N0) within each group of configs that differ only by replicas (N0: fewest
    replicas measured in the group, ideally 1)."""
    groups: dict[tuple[int | None, str | None, str | None, float | None], list[ConfigResult]] = defaultdict(
        list
    )
    for entry in _first_by_label(configs).values():
        groups[(entry.workers_per_replica, entry.backend, entry.batching, entry.cpus_per_replica)].append(
            entry
        )
    out: dict[str, Efficiency] = {}
    for members in groups.values():
        members.sort(key=lambda e: e.replicas)
        base = members[0]
        base_rps = peak.get(base.stack_label)
        for entry in members:
            rps = peak.get(entry.stack_label)
            value = None
            if rps is not None and base_rps:
                value = round(rps / ((entry.replicas / base.replicas) * base_rps), 3)
            out[entry.stack_label] = Efficiency(entry.replicas, base.stack_label, rps, value)
    return out


def recommend(
    configs: list[ConfigResult], capacity: dict[str, float | None], thresholds: Thresholds, ramp: bool
) -> Recommendation | None:
    """Fewest classifier processes (replicas x workers), then fewest replicas, then highest capacity,
    among configs that meet the SLO (and serve `need_rps` when given). A ramp without a need picks
    among the configurations near the best capacity, so one is not chosen for being cheap at a light load."""
    first = _first_by_label(configs)
    candidates = {label: cap for label, cap in capacity.items() if cap is not None}
    need = thresholds.need_rps
    why = "meets the SLO with the fewest classifier processes"
    if need is not None:
        candidates = {label: cap for label, cap in candidates.items() if cap >= need}
        why = f"serves {need:g} req/s within the SLO with the fewest classifier processes"
    elif ramp and candidates:
        best = max(candidates.values())
        candidates = {label: cap for label, cap in candidates.items() if cap >= NEAR_BEST_CAPACITY * best}
        why = (
            f"has (within {1 - NEAR_BEST_CAPACITY:.0%}) the highest capacity, "
            "with the fewest classifier processes"
        )
    if not candidates:
        return None
    label = min(candidates, key=lambda k: (first[k].processes, first[k].replicas, -candidates[k]))
    entry = first[label]
    return Recommendation(
        label,
        candidates[label],
        entry.replicas,
        entry.workers_per_replica,
        entry.backend,
        entry.batching,
        why,
    )


def decision_capacity(capacity: dict[str, float | None], spread: RepeatAnalysis) -> dict[str, float | None]:
    """What the recommendation goes by: with repeats, the low end of the knee's confidence interval
    (a configuration is not chosen on a lucky mean); with one run, the capacity itself."""
    out: dict[str, float | None] = {}
    for label, cap in capacity.items():
        interval = spread.capacity.get(label)
        low = interval.low if interval is not None and interval.has_interval else None
        out[label] = round(max(0.0, low), 3) if cap is not None and low is not None else cap
    return out


def analyse(configs: list[ConfigResult], thresholds: Thresholds, ramp: bool) -> CapacityAnalysis:
    capacity, knees = capacity_and_knees(configs)
    peak = peak_rps(configs, thresholds)
    keys = {label: (k.users, k.target_rps) if k is not None else None for label, k in knees.items()}
    spread = repeat_analysis(configs, keys, thresholds)
    efficiency = scaling_efficiency(configs, peak)
    for label, eff in efficiency.items():
        base = efficiency[eff.base]
        if label != eff.base:
            interval = efficiency_interval(
                spread.peak_runs.get(label, []),
                spread.peak_runs.get(eff.base, []),
                eff.replicas,
                base.replicas,
            )
            if interval is not None:
                # Over runs the efficiency is the ratio of the runs' means, so value and interval agree.
                runs = spread.peak_runs[label]
                eff = replace(eff, rps=round(sum(runs) / len(runs), 3), efficiency=round(interval.ratio, 3))
            efficiency[label] = replace(eff, interval=interval)
    rec = recommend(configs, decision_capacity(capacity, spread), thresholds, ramp)
    if rec is not None:
        rec = replace(rec, interval=spread.capacity.get(rec.label))
    agreement = {
        e.stack_label: e.served_model.agreement
        for e in configs
        if e.served_model is not None and e.served_model.agreement is not None
    }
    return CapacityAnalysis(
        capacity, knees, peak, efficiency, rec, spread, tradeoffs(spread.comparisons, agreement), agreement
    )


def tradeoffs(comparisons: list[Comparison], agreement: dict[str, Agreement]) -> list[Tradeoff]:
    """Each comparison of a quantized model (first, spread.comparisons puts it there) with one that is not."""
    return [
        Tradeoff(c.a, c.b, c, agreement[c.a])
        for c in comparisons
        if c.kind != SCALING and c.a in agreement and c.b not in agreement
    ]


def _unstable(entry: ConfigResult) -> bool:
    return entry.metrics.stability is not None and not entry.metrics.stability.stable


def _efficiency_text(eff: Efficiency) -> str:
    value = f"{eff.efficiency:.0%}" if eff.efficiency is not None else "—"
    i = eff.interval
    if i is None or not i.has_interval:
        return f"{value}, {SINGLE_RUN}" if i is not None else value
    return f"{value}, {i.confidence:.0%} CI {i.low:.0%} to {i.high:.0%}"


def _names(entries: list[ConfigResult]) -> str:
    labels = list(dict.fromkeys(e.label for e in entries))
    return ", ".join(labels[:6]) + (f" and {len(labels) - 6} more" if len(labels) > 6 else "")


def slo_text(thresholds: Thresholds) -> str:
    slo = thresholds.slo_p95_ms
    return (
        f"p95 ≤ {slo:g} ms and " if slo is not None else ""
    ) + f"failures ≤ {thresholds.max_failure_ratio:.1%}"


def _headline(configs: list[ConfigResult], analysis: CapacityAnalysis, thresholds: Thresholds) -> str:
    rec = analysis.recommended
    if rec is not None:
        knee = analysis.knee.get(rec.label)
        at_knee = [
            c.metrics.p95_ms or 0.0
            for c in configs
            if c.stack_label == rec.label
            and c.slo_met
            and knee is not None
            and c.load_key == (knee.users, knee.target_rps)
        ]
        if rec.interval is not None and rec.interval.has_interval:
            how = f"{rec.interval.text('req/s')} at its knee, the low end {rec.capacity:.1f} req/s deciding"
        else:
            how = f"{rec.capacity:.1f} req/s ({SINGLE_RUN})"
        text = (
            f"Recommended: {rec.label} ({rec.replicas} replica(s)), which {rec.why}: "
            f"{how} with {slo_text(thresholds)} "
            f"(p95 {max(at_knee, default=0.0):g} ms at that load)."
        )
        agreement = analysis.agreement.get(rec.label)
        if agreement is not None:
            tradeoff = analysis.tradeoff_of(rec.label)
            text += " Its model is quantized" + (
                f": {tradeoff.comparison.ratio.text()} the throughput of {tradeoff.against} at the same "
                f"replica count, and it {agreement.text()}."
                if tradeoff is not None
                else f", and it {agreement.text()}."
            )
        unsettled = [c for c in configs if c.stack_label == rec.label and _unstable(c)]
        if unsettled:
            text += (
                f" This rests on measurements that never became stable ({_names(unsettled)}): "
                "a longer --duration may move it."
            )
        return text
    if not any(c.metrics.status == "complete" for c in configs):
        return "No measurement ran to its end, so no configuration can be recommended."
    measured = [c for c in configs if c.metrics.p95_ms is not None and c.metrics.status == "complete"]
    text = f"No configuration met {slo_text(thresholds)}"
    if thresholds.need_rps:
        text += f" at {thresholds.need_rps:g} req/s"
    if measured:
        best = min(measured, key=lambda c: c.metrics.p95_ms or 0.0)
        text += (
            f"; the lowest p95 was {best.metrics.p95_ms:g} ms ({best.label}, {best.metrics.rps:.1f} req/s)"
        )
    return text + "."


def verdict(
    configs: list[ConfigResult],
    analysis: CapacityAnalysis,
    thresholds: Thresholds,
    host_cpus: int,
    stack_kind: str | None,
) -> str:
    """A plain-language paragraph computed from the numbers."""
    if not configs:
        return "Nothing was measured."
    sentences = [_headline(configs, analysis, thresholds)]
    # Whether a scaling sentence already blamed the machine: then the saturation sentence would repeat it.
    machine_named = False
    last_by_label = {c.stack_label: c for c in configs}
    for label, eff in analysis.scaling_efficiency.items():
        if label == eff.base or eff.efficiency is None:
            continue
        base = analysis.scaling_efficiency[eff.base]
        used = max(
            (
                c.metrics.cpu_cores_used
                for c in configs
                if c.stack_label == label and c.metrics.cpu_cores_used is not None
            ),
            default=None,
        )
        runs = analysis.repeats.peak_runs if analysis.repeats is not None else {}
        ratio = next(
            (
                c.ratio
                for c in (analysis.repeats.comparisons if analysis.repeats is not None else [])
                if c.kind == SCALING and c.a == label and c.b == eff.base
            ),
            None,
        )
        mean_of = {k: sum(v) / len(v) for k, v in runs.items() if v}
        means = " (means over runs)" if len(runs.get(label, [])) > 1 else ""
        sentence = (
            f"From {eff.base} to {label}, throughput went from {mean_of.get(eff.base, base.rps or 0):.1f} "
            f"to {mean_of.get(label, eff.rps or 0):.1f} req/s{means}"
            + (f": {ratio.text()}" if ratio is not None else "")
            + f", scaling efficiency {_efficiency_text(eff)}"
        )
        if used is not None and used >= MACHINE_CPU_FRACTION * host_cpus:
            machine_named = True
            sentence += (
                f"; the classifiers already used {used:.2f} of the machine's {host_cpus} cores, "
                "so the machine, not the replica count, was the limit"
            )
        elif eff.efficiency < GOOD_SCALING_EFFICIENCY and last_by_label[label].metrics.generator_saturated:
            sentence += "; the load generator was saturated, so this understates the replicas"
        sentences.append(sentence + ".")
    traded = {(t.label, t.against): t for t in analysis.tradeoffs}
    rec = analysis.recommended
    told = analysis.tradeoff_of(rec.label) if rec is not None else None  # the headline said it already
    for comparison in analysis.repeats.comparisons if analysis.repeats is not None else []:
        if comparison.kind != SCALING:
            tradeoff = traded.get((comparison.a, comparison.b))
            if tradeoff is not None and tradeoff == told:
                continue
            text = tradeoff.text() if tradeoff is not None else comparison.text()
            sentences.append(text[0].upper() + text[1:] + ".")
    unstable = [c for c in configs if _unstable(c)]
    if unstable:
        found = next(c.metrics.stability for c in unstable if c.metrics.stability is not None)
        sentences.append(
            f"Never stable ({found.rule.describe()}) in {_names(unstable)}: "
            "their numbers may move with a longer --duration."
        )
    saturated = [c for c in configs if c.metrics.generator_saturated]
    if saturated:
        sentences.append(
            f"A Locust worker went above {GENERATOR_CPU_LIMIT_PCT:.0f} % CPU in {_names(saturated)}: "
            "there the generator, not the service, may have been the limit "
            "(add workers: --locust-workers N)."
        )
    machine = [c for c in configs if c.metrics.machine_cpu_saturated]
    if machine and not machine_named:
        busiest = max((c.metrics.host_busy_cores or c.metrics.total_cores_used or 0.0) for c in machine)
        sentences.append(
            f"In {_names(machine)} the machine's {host_cpus} cores were nearly all busy (up to "
            f"{busiest:.2f} cores, the load generator and any other process included): "
            + (
                # Budgets that fitted: the rest was other processes, which the quotas do not keep away.
                "the replicas' CPU budgets fitted the machine, so other processes took the rest and may "
                "have delayed the replicas within their quota."
                if all(c.metrics.cpu_budget is not None and c.metrics.cpu_budget.real for c in machine)
                else "more replicas cannot add throughput there; give each replica its own cores "
                "(--cpus-per-replica, --pin) for a fair comparison."
            )
        )
    sentences += budget_sentences([(c.label, c.metrics.cpu_budget) for c in configs], host_cpus)
    behind = [c for c in configs if c.metrics.fell_behind]
    if behind:
        sentences.append(
            f"The arrivals fell behind the target rate (achieved < {FELL_BEHIND_RATIO:.0%}) "
            f"in {_names(behind)}: "
            "latency there is measured at a lower load than asked (coordinated omission); "
            + (
                "the generator was saturated."
                if any(c.metrics.generator_saturated for c in behind)
                else "the service could not keep up, or too few users: raise --expected-latency-ms."
            )
        )
    crowded = [c for c in configs if c.metrics.too_few_users]
    if crowded:
        worst = max(c.metrics.arrivals_late_share or 0.0 for c in crowded)
        sentences.append(
            f"In {_names(crowded)} up to {worst:.1%} of the arrivals found no user free "
            f"(late or dropped; more than {LATE_ARRIVALS_SHARE:.0%}): the load was less open than asked, "
            "too few users for the latency: raise --expected-latency-ms."
        )
    failed = [c for c in configs if c.metrics.failure_ratio > thresholds.max_failure_ratio]
    if failed:
        sentences.append(f"Failures exceeded {thresholds.max_failure_ratio:.1%} in {_names(failed)}.")
    partial = [
        c for c in configs if c.metrics.replicas_served is not None and c.metrics.replicas_served < c.replicas
    ]
    if partial and stack_kind_of(stack_kind).sets_replicas:
        sentences.append(f"Not every replica answered requests in {_names(partial)} (see served-by counts).")
    interrupted = [c for c in configs if c.metrics.status != "complete"]
    if interrupted:
        sentences.append(f"Incomplete measurements (not counted): {_names(interrupted)}.")
    sentences += [_fault_sentence(c, f) for c in configs for f in c.metrics.faults]
    sentences += [
        f"In {c.label} no request started or ended for a while: "
        + "; ".join(st.describe() for st in c.metrics.stalls)
        + "."
        for c in configs
        if c.metrics.stalls and not c.metrics.faults  # with a fault, its sentence names them
    ]
    sentences += [_soak_sentence(c) for c in configs if c.metrics.soak is not None]
    return " ".join(sentences)


def _fault_sentence(entry: ConfigResult, fault: FaultImpact) -> str:
    head = f"{fault.fault} in {entry.label}"
    if not fault.applied:
        return f"{head} was not applied ({fault.error or 'the measurement ended first'})."
    parts = [_loss(fault, entry.metrics.client_backoff)]
    if fault.before_p95_ms is not None and fault.worst_p95_ms is not None:
        parts.append(
            f"worst {TIMELINE_WINDOW_S}-s p95 {fault.worst_p95_ms:g} ms "
            f"against {fault.before_p95_ms:g} ms before"
        )
    if fault.back_s is not None:
        parts.append(
            f"{fault.target or 'its target'} ran again after {fault.back_s:g} s, "
            + (
                f"the load at its level {fault.resumed_s:g} s later"
                if fault.resumed_s is not None
                else "the load not at its level again by the end of the measurement"
            )
        )
    if fault.recovery_s is not None:
        parts.append(f"back to the earlier level after {fault.recovery_s:g} s")
    elif fault.generator_stalled:
        parts.append("the service's recovery not judged: the load generator stopped sending")
    elif fault.before_rps is not None:
        parts.append("not back to the earlier level by the end of the measurement")
    # Named, so that a stalled generator is never read as a service that did not recover.
    parts += [stall.describe() for stall in fault.stalls]
    if fault.replicas_expected is not None and fault.replicas_serving_after is not None:
        parts.append(f"{fault.replicas_serving_after} of {fault.replicas_expected} replicas served after it")
    if fault.locust is not None:
        reaction = fault.locust
        if reaction.missing_after_s is not None:
            parts.append(f"Locust marked the worker missing after {reaction.missing_after_s:g} s")
        if reaction.users_lowest is not None and reaction.users_before is not None:
            back = (
                f", back after {reaction.users_back_after_s:g} s"
                if reaction.users_back_after_s is not None
                else ", not re-dispatched within the measurement"
            )
            parts.append(f"users went from {reaction.users_before} to {reaction.users_lowest}{back}")
    return f"{head}: " + "; ".join(parts) + "."


def _loss(fault: FaultImpact, backoff: ClientBackoff | None) -> str:
    """What the clients lost: time without service first; the count as the model makes it honest."""
    if not fault.failures and not fault.outage_s:
        return "no failed request and no second without service"
    text = f"{fault.outage_s:g} s without service"
    if fault.failures:
        text += f" ({fault.failed_seconds} s with failures, at worst {fault.worst_failures_per_s} failed/s)"
    if fault.failed_arrivals is not None:
        return text + f", {fault.failed_arrivals} failed arrivals"
    closed = (
        f"closed model: users back off {backoff.first_ms:g} ms doubling to {backoff.max_ms:g} ms after a "
        "connection error"
        if backoff is not None
        else "closed model without a recorded back-off: the count grows with the generator's retry speed"
    )
    return text + f", {fault.failures} failed requests ({closed})"


def _soak_sentence(entry: ConfigResult) -> str:
    soak = entry.metrics.soak
    assert soak is not None
    grew = [r.container for r in soak.replicas if r.rss_grew or r.fds_grew]
    text = f"Soak {entry.label}: "
    if soak.p95_drift is not None:
        text += f"p95 moved {soak.p95_drift:+.0%} from the first to the last {soak.edge_s} s"
    if grew:
        text += f"; memory or open files grew by more than {SOAK_GROWTH_LIMIT:.0%} in {', '.join(grew)}"
    elif soak.replicas:
        text += f"; no replica's memory or open files grew by more than {SOAK_GROWTH_LIMIT:.0%}"
    return text + (" (flagged)." if soak.flagged else ".")
