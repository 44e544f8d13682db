"""What the repeats say: each configuration's throughput and p95 over its runs with a confidence interval,
and every comparison the summary prints (scaling, backend vs backend, batching on vs off, workers) as a
ratio with its interval (lab/intervals.py). The run is the unit: one value per run, never per request."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from lab.grid import config_label, load_label
from lab.intervals import MeanInterval, RatioInterval, mean_interval, ratio_interval
from lab.metrics import ConfigResult, Thresholds

# The dimensions a comparison varies, as (ConfigResult attribute, words): two stack labels that differ
# in exactly one of them (and have the same replica count) are compared on their per-run peak throughput.
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("backend", "backend"),
    ("batching", "batching"),
    ("workers_per_replica", "workers per replica"),
)
SCALING = "scaling"


@dataclass(frozen=True)
class ConfigSpread:
    """One configuration (stack and load) over its runs."""

    label: str
    stack_label: str
    runs: int
    rps: MeanInterval
    p95_ms: MeanInterval | None
    unstable_runs: int  # measured with --until-stable and never settled


@dataclass(frozen=True)
class Comparison:
    """mean(a) / mean(b) of per-run peak throughput; scaling: a's efficiency against b (scale = N_b / N_a)."""

    kind: str  # scaling, or a DIMENSIONS attribute
    what: str  # words for the kind
    a: str
    b: str
    ratio: RatioInterval

    def text(self) -> str:
        return f"{self.a} vs {self.b} throughput ({self.what}): {self.ratio.text()}"


@dataclass(frozen=True)
class RepeatAnalysis:
    configs: list[ConfigSpread]
    capacity: dict[str, MeanInterval]  # per stack label: its runs' throughput at the knee's load level
    peak_runs: dict[str, list[float]]  # per stack label: each run's peak throughput (failures in limit)
    comparisons: list[Comparison]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _runs_of(configs: list[ConfigResult]) -> dict[str, int]:
    repeats: dict[str, set[int]] = defaultdict(set)
    for entry in configs:
        repeats[entry.stack_label].add(entry.repeat)
    return {label: len(r) for label, r in repeats.items()}


def peak_runs(configs: list[ConfigResult], thresholds: Thresholds) -> dict[str, list[float]]:
    """Per stack label, each run's highest throughput among its load levels with failures within the
    limit (complete measurements only), in run order."""
    best: dict[str, dict[int, float]] = defaultdict(dict)
    for entry in configs:
        m = entry.metrics
        if m.status == "complete" and m.requests and m.failure_ratio <= thresholds.max_failure_ratio:
            runs = best[entry.stack_label]
            runs[entry.repeat] = max(runs.get(entry.repeat, 0.0), m.rps)
    return {label: [runs[k] for k in sorted(runs)] for label, runs in best.items()}


def config_spreads(configs: list[ConfigResult]) -> list[ConfigSpread]:
    """Fixed loads: per configuration and load level, over its complete runs (ramp steps are left to the
    knee: their loads differ from run to run)."""
    groups: dict[tuple[str, int | None, float | None], list[ConfigResult]] = defaultdict(list)
    for entry in configs:
        if entry.step is None and entry.metrics.status == "complete" and entry.metrics.requests:
            groups[(entry.stack_label, *entry.load_key)].append(entry)
    out = []
    for (stack_label, users, target), entries in groups.items():
        p95s = [e.metrics.p95_ms for e in entries if e.metrics.p95_ms is not None]
        out.append(
            ConfigSpread(
                config_label(stack_label, load_label(users, target)),
                stack_label,
                len(entries),
                mean_interval([e.metrics.rps for e in entries], floor=0.0),
                mean_interval(p95s, floor=0.0) if p95s else None,
                sum(1 for e in entries if e.metrics.stability is not None and not e.metrics.stability.stable),
            )
        )
    return out


def knee_capacity(
    configs: list[ConfigResult], knees: dict[str, tuple[int | None, float | None] | None]
) -> dict[str, MeanInterval]:
    """Per stack label with a knee: the runs' throughput at that load level."""
    at: dict[str, list[float]] = defaultdict(list)
    for entry in configs:
        key = knees.get(entry.stack_label)
        if key is not None and entry.load_key == key and entry.metrics.status == "complete":
            at[entry.stack_label].append(entry.metrics.rps)
    return {label: mean_interval(values, floor=0.0) for label, values in at.items() if values}


def _safe_ratio(a: list[float], b: list[float], scale: float = 1.0) -> RatioInterval | None:
    if not a or not b or min(a) <= 0 or min(b) <= 0:
        return None
    return ratio_interval(a, b, scale=scale)


def quantized(entry: ConfigResult) -> bool:
    """It served a model whose build checked it against a float model (the int8 one)."""
    return entry.served_model is not None and entry.served_model.agreement is not None


def comparisons(configs: list[ConfigResult], runs: dict[str, list[float]]) -> list[Comparison]:
    first: dict[str, ConfigResult] = {}
    for entry in configs:
        first.setdefault(entry.stack_label, entry)
    out: list[Comparison] = []
    # Scaling: each replica count against the fewest replicas of its group.
    groups: dict[tuple[Any, ...], list[ConfigResult]] = defaultdict(list)
    for entry in first.values():
        groups[tuple(getattr(entry, attr) for attr, _ in DIMENSIONS)].append(entry)
    for members in groups.values():
        members.sort(key=lambda e: e.replicas)
        base = members[0]
        for entry in members[1:]:
            ratio = _safe_ratio(runs.get(entry.stack_label, []), runs.get(base.stack_label, []))
            if ratio is not None:
                out.append(Comparison(SCALING, "replicas", entry.stack_label, base.stack_label, ratio))
    # One dimension at a time, at the same replica count.
    labels = sorted(first)
    for i, la in enumerate(labels):
        for lb in labels[i + 1 :]:
            a, b = first[la], first[lb]
            if a.replicas != b.replicas:
                continue
            differ = [(attr, words) for attr, words in DIMENSIONS if getattr(a, attr) != getattr(b, attr)]
            if len(differ) != 1:
                continue
            # The quantized model first: its ratio then reads as what quantizing bought.
            num, den = (lb, la) if quantized(b) and not quantized(a) else (la, lb)
            ratio = _safe_ratio(runs.get(num, []), runs.get(den, []))
            if ratio is not None:
                out.append(Comparison(differ[0][0], differ[0][1], num, den, ratio))
    return out


def repeat_analysis(
    configs: list[ConfigResult],
    knees: dict[str, tuple[int | None, float | None] | None],
    thresholds: Thresholds,
) -> RepeatAnalysis:
    runs = peak_runs(configs, thresholds)
    return RepeatAnalysis(
        config_spreads(configs), knee_capacity(configs, knees), runs, comparisons(configs, runs)
    )


def efficiency_interval(
    rps_n: list[float], rps_base: list[float], n: int, n_base: int
) -> RatioInterval | None:
    """Scaling efficiency rps_N / (N / N0 x rps_N0) with its interval: the throughput ratio scaled."""
    return _safe_ratio(rps_n, rps_base, scale=n_base / n)
