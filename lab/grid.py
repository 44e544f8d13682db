"""The experiment grid: what `lab compare` will measure, in which order, with which labels, and how long."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from lab.arrivals import PROCESSES
from lab.faults import FaultSpec, check_fits
from lab.rounds import ORDERS, ROTATE, RoundOrder
from lab.stability import DEFAULT_STABILITY_PCT, DEFAULT_WINDOW_S, StabilityRule

# The classifier's CLASSIFIER_BACKEND choices (classifier/backends BACKEND_KINDS; a test keeps them in step:
# the lab runs on the host and imports no service code).
BACKENDS = ("tf", "litert", "litert-uint8", "litert-int8")
BATCHING = ("off", "on")

# Seconds a measurement costs beyond its duration: POST /stop, Locust's worker stats flush
# (workers report every 3 s), CSV and HTML downloads.
MEASUREMENT_OVERHEAD_S = 6.0


@dataclass(frozen=True)
class StackConfig:
    """What a configuration asks of the serving stack. None means: leave the stack's current setting."""

    replicas: int
    workers_per_replica: int | None = None
    backend: str | None = None
    batching: str | None = None
    cpus_per_replica: float | None = None  # CLASSIFIER_CPUS: each replica's CPU limit in cores

    @property
    def label(self) -> str:
        parts = [f"r{self.replicas}"]
        if self.workers_per_replica is not None:
            parts.append(f"w{self.workers_per_replica}")
        if self.cpus_per_replica is not None:
            parts.append(f"c{_num(self.cpus_per_replica)}")
        if self.backend is not None:
            parts.append(self.backend)
        if self.batching is not None:
            parts.append("batch" if self.batching == "on" else "nobatch")
        return "-".join(parts)


@dataclass(frozen=True)
class LoadLevel:
    """Closed model: `users` loop without pause. Open model: `target_rps` arrivals per second over the
    swarm, sent by a pool of `users` whatever the answers take (the locustfile's --target-rps)."""

    users: int
    target_rps: float | None = None

    @property
    def mode(self) -> str:
        return "closed" if self.target_rps is None else "open"

    @property
    def label(self) -> str:
        return load_label(self.users, self.target_rps)


def load_label(users: int | None, target_rps: float | None) -> str:
    """The one name of a load level: u32 (closed), rate50-u100 (open). Folder names and report rows use it."""
    if not target_rps:
        return f"u{users}"
    return f"rate{_num(target_rps)}-u{users}"


def config_label(stack_label: str, load: str, repeat: int = 1, repeats: int = 1) -> str:
    """The one name of a planned configuration (and of a ramp step, with its step's load)."""
    label = f"{stack_label}-{load}"
    return f"{label}-rep{repeat}" if repeats > 1 else label


def config_dirname(index: int, label: str) -> str:
    return f"{index:02d}-{label}"


@dataclass(frozen=True)
class PlannedConfig:
    index: int  # 1-based position in the run
    stack: StackConfig
    load: LoadLevel  # for a ramp: its first step
    repeat: int  # 1-based
    repeats: int

    @property
    def label(self) -> str:
        return config_label(self.stack.label, self.load.label, self.repeat, self.repeats)

    @property
    def dirname(self) -> str:
        return config_dirname(self.index, self.label)


DEFAULT_MAX_FAILURE_RATIO = 0.01


@dataclass
class ExperimentSettings:
    """Everything the command line decided; saved verbatim in run.json so a report can be rebuilt.

    The defaults here are `lab compare`'s: cli.py leaves an option it was not given out, and its help
    shows the value from `default()`. None means "not given" where that matters afterwards."""

    replicas: list[int]
    workers_per_replica: list[int | None] = field(default_factory=lambda: [None])
    backends: list[str | None] = field(default_factory=lambda: [None])
    batching: list[str | None] = field(default_factory=lambda: [None])
    cpus_per_replica: list[float | None] = field(default_factory=lambda: [None])
    pin: bool = False  # each replica on its own cores (cpusets), nginx and Locust on the rest
    users: list[int] | None = None
    rates: list[float] | None = None
    ramp: bool = False
    ramp_step: float | None = None  # added to users (closed) or to the rate (open) each step
    max_steps: int = 8
    step_duration_s: float = 30.0
    duration_s: float = 60.0
    warmup_s: float = 15.0
    slo_p95_ms: float | None = None
    max_failure_ratio: float | None = None  # None: not given, DEFAULT_MAX_FAILURE_RATIO applies
    need_rps: float | None = None  # the traffic to serve: a config must reach it within the SLO
    repeat: int = 1
    expected_latency_ms: float = 250.0
    arrivals: str = PROCESSES[0]  # the open model's arrival process (the locustfile's --arrivals)
    max_batch_size: int = 8
    max_batch_delay_ms: float | None = None
    locust_workers: int | None = None
    host: str | None = None
    locust_options: dict[str, str] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)  # --fault specs, applied in every measurement
    soak: bool = False  # sample every replica's RSS and open files, and report their drift
    # --repeat N measures in N rounds, each holding every configuration once (lab/rounds.py).
    order: str = ROTATE  # rotate or shuffle the configurations from one round to the next
    order_seed: int | None = None  # the shuffle's seed; None until the command line draws one
    # --until-stable: stop a measurement once perf_analyzer's rule holds (lab/stability.py), else at
    # --duration (a ramp step: at --step-duration).
    until_stable: bool = False
    window_s: int = DEFAULT_WINDOW_S
    stability_pct: float = DEFAULT_STABILITY_PCT

    @property
    def fault_specs(self) -> list[FaultSpec]:
        return [FaultSpec.parse(text) for text in self.faults]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSettings:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def round_order(self) -> RoundOrder:
        return RoundOrder(self.order, self.order_seed or 0, self.repeat)

    @property
    def stability_rule(self) -> StabilityRule:
        return StabilityRule(self.window_s, self.stability_pct / 100)

    @property
    def mode(self) -> str:
        base = "open" if self.rates else "closed"
        return f"ramp-{base}" if self.ramp else base

    @property
    def failure_limit(self) -> float:
        return DEFAULT_MAX_FAILURE_RATIO if self.max_failure_ratio is None else self.max_failure_ratio

    @property
    def thresholds_given(self) -> bool:
        """A k6-style threshold was given on the command line, so `lab` exits non-zero when none meets it."""
        return any(v is not None for v in (self.slo_p95_ms, self.max_failure_ratio, self.need_rps))

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default (what `lab compare` uses when the option is not given)."""
        spec = next(f for f in fields(cls) if f.name == name)
        if spec.default is not MISSING:
            return spec.default
        if spec.default_factory is not MISSING:
            return spec.default_factory()
        raise KeyError(f"{name} has no default")

    def validate(self) -> None:
        errors: list[str] = []
        if not self.replicas or any(r < 1 for r in self.replicas):
            errors.append("--replicas: each value must be >= 1")
        if any(w is not None and w < 1 for w in self.workers_per_replica):
            errors.append("--workers-per-replica: each value must be >= 1")
        if any(b is not None and b not in BACKENDS for b in self.backends):
            errors.append(f"--backend: choose from {', '.join(BACKENDS)}")
        if any(c is not None and not (c > 0 and math.isfinite(c)) for c in self.cpus_per_replica):
            errors.append("--cpus-per-replica: each value must be > 0 (cores, e.g. 0.5)")
        if self.pin and None in self.cpus_per_replica:
            errors.append("--pin needs --cpus-per-replica (the cores to give each replica)")
        if any(b is not None and b not in BATCHING for b in self.batching):
            errors.append(f"--batching: choose from {', '.join(BATCHING)}")
        if (self.users is None) == (self.rates is None):
            errors.append("give exactly one of --users (closed model) or --rate (open model)")
        if self.users is not None and any(u < 1 for u in self.users):
            errors.append("--users: each value must be >= 1")
        if self.rates is not None and any(not (r > 0 and math.isfinite(r)) for r in self.rates):
            errors.append("--rate: each value must be > 0")
        if self.ramp and len(self.users or self.rates or []) > 1:
            errors.append("--ramp starts from one load value: give a single --users or --rate")
        if self.ramp_step is not None and self.ramp_step <= 0:
            errors.append("--ramp-step must be > 0")
        if self.max_steps < 1:
            errors.append("--max-steps must be >= 1")
        if self.duration_s <= 0 or self.step_duration_s <= 0:
            errors.append("--duration and --step-duration must be > 0")
        if self.warmup_s < 0:
            errors.append("--warmup must be >= 0")
        if self.slo_p95_ms is not None and self.slo_p95_ms <= 0:
            errors.append("--slo-p95-ms must be > 0")
        if not 0 <= self.failure_limit <= 1:
            errors.append("--max-failure-ratio must be between 0 and 1")
        if self.need_rps is not None and self.need_rps <= 0:
            errors.append("--need-rps must be > 0")
        if self.repeat < 1:
            errors.append("--repeat must be >= 1")
        if self.expected_latency_ms <= 0:
            errors.append("--expected-latency-ms must be > 0")
        if self.arrivals not in PROCESSES:
            errors.append(f"--arrivals: choose from {', '.join(PROCESSES)}")
        if "on" in self.batching and self.max_batch_size < 2:
            errors.append("--max-batch-size must be >= 2 when batching is on")
        if self.locust_workers is not None and self.locust_workers < 1:
            errors.append("--locust-workers must be >= 1")
        if self.faults and self.ramp:
            errors.append("--fault goes with a fixed load, not --ramp")
        if self.order not in ORDERS:
            errors.append(f"--order: choose from {', '.join(ORDERS)}")
        try:
            rule = self.stability_rule
            longest = self.step_duration_s if self.ramp else self.duration_s
            if self.until_stable and rule.windows * rule.window_s > longest:
                errors.append(
                    f"--until-stable compares {rule.windows} windows of {rule.window_s} s: "
                    f"{'--step-duration' if self.ramp else '--duration'} must hold them"
                )
        except ValueError as err:
            errors.append(str(err))
        try:
            check_fits(self.fault_specs, self.duration_s)
        except ValueError as err:
            errors.append(str(err))
        if errors:
            raise ValueError("; ".join(errors))


# Open model: the pool of users that sends `rate` arrivals/s holds this many seconds of arrivals, at
# least OPEN_MIN_WINDOW_S and OPEN_LATENCY_FACTOR x the expected latency. Measured (2 LiteRT replicas,
# Poisson): at 15 req/s with p99 650 ms, 1 s worth of users (15) left 6 of 465 arrivals late and 2 s
# worth (30) none; idle Locust users cost next to nothing, so the floor is 2 s.
OPEN_MIN_WINDOW_S = 2.0
OPEN_LATENCY_FACTOR = 4.0
USERS_FOR_RATE_RULE = f"ceil(rate x max({OPEN_MIN_WINDOW_S:g} s, {OPEN_LATENCY_FACTOR:g} x expected latency))"


def users_for_rate(rate: float, expected_latency_ms: float) -> int:
    """Enough users to send `rate` arrivals/s on time: on average `rate x latency` of them wait for an
    answer (Little's law); the window above leaves room for the tail, so that an arrival rarely finds
    every user busy (counted as late or dropped, in arrivals.json)."""
    window_s = max(OPEN_MIN_WINDOW_S, OPEN_LATENCY_FACTOR * expected_latency_ms / 1000.0)
    return max(1, math.ceil(rate * window_s))


def load_levels(settings: ExperimentSettings) -> list[LoadLevel]:
    if settings.rates is not None:
        return [LoadLevel(users_for_rate(r, settings.expected_latency_ms), r) for r in settings.rates]
    assert settings.users is not None
    return [LoadLevel(u) for u in settings.users]


def ramp_levels(settings: ExperimentSettings) -> list[LoadLevel]:
    """The steps a ramp may climb: start, start + step, ... (at most max_steps). Linear steps keep the
    throughput-vs-p95 curve evenly sampled; the ramp stops early at the first failing step."""
    first = load_levels(settings)[0]
    steps: list[LoadLevel] = []
    if first.target_rps is not None:
        step = settings.ramp_step or first.target_rps
        for k in range(settings.max_steps):
            rate = first.target_rps + k * step
            steps.append(LoadLevel(users_for_rate(rate, settings.expected_latency_ms), rate))
    else:
        step = settings.ramp_step or first.users
        for k in range(settings.max_steps):
            steps.append(LoadLevel(max(1, round(first.users + k * step))))
    return steps


def stack_configs(settings: ExperimentSettings) -> list[StackConfig]:
    # Replicas vary fastest: changing only the replica count scales without recreating containers,
    # while changing workers/backend/batching/CPU budget recreates every classifier (a model load each).
    return [
        StackConfig(replicas, workers, backend, batching, cpus)
        for backend in settings.backends
        for batching in settings.batching
        for workers in settings.workers_per_replica
        for cpus in settings.cpus_per_replica
        for replicas in settings.replicas
    ]


def expand(settings: ExperimentSettings) -> list[PlannedConfig]:
    settings.validate()
    loads = [load_levels(settings)[0]] if settings.ramp else load_levels(settings)
    grid = [(stack, load) for stack in stack_configs(settings) for load in loads]
    # Rounds, not back-to-back repeats: a drift of the machine falls on every configuration alike.
    plan = [
        PlannedConfig(i, stack, load, round_k, settings.repeat)
        for i, (round_k, (stack, load)) in enumerate(settings.round_order.arrange(grid), start=1)
    ]
    labels = [p.label for p in plan]
    if len(set(labels)) != len(labels):
        raise ValueError("the grid has duplicate configurations")
    return plan


def estimate_config_seconds(
    settings: ExperimentSettings, stack_changes: bool, stack_change_s: float
) -> float:
    seconds = stack_change_s if stack_changes else 0.0
    if settings.warmup_s > 0:
        seconds += settings.warmup_s + MEASUREMENT_OVERHEAD_S
    if settings.ramp:
        # An upper bound: the ramp stops at the first failing step.
        seconds += settings.max_steps * (settings.step_duration_s + MEASUREMENT_OVERHEAD_S)
    else:
        seconds += settings.duration_s + MEASUREMENT_OVERHEAD_S
    return seconds


@dataclass(frozen=True)
class RunPlan:
    """The configurations a run will measure, in order, with each one's estimated seconds: computed once
    (the command line prints it, the driver follows it and counts down its estimate)."""

    configs: tuple[PlannedConfig, ...]
    estimates: tuple[float, ...]

    @classmethod
    def of(cls, settings: ExperimentSettings, stack_change_s: float) -> RunPlan:
        configs = expand(settings)
        return cls(tuple(configs), tuple(estimate_seconds(settings, configs, stack_change_s)))

    @property
    def total_s(self) -> float:
        return sum(self.estimates)


def estimate_seconds(
    settings: ExperimentSettings, plan: list[PlannedConfig], stack_change_s: float
) -> list[float]:
    """Estimated seconds per planned configuration (a list, so progress can count down what is left);
    `stack_change_s` is what a configuration change costs on the stack (its kind's change_s)."""
    estimates: list[float] = []
    previous: StackConfig | None = None
    for planned in plan:
        changes = previous is None or _recreates(previous, planned.stack)
        estimates.append(estimate_config_seconds(settings, changes, stack_change_s))
        previous = planned.stack
    return estimates


def _recreates(old: StackConfig, new: StackConfig) -> bool:
    return (old.workers_per_replica, old.backend, old.batching, old.cpus_per_replica) != (
        new.workers_per_replica,
        new.backend,
        new.batching,
        new.cpus_per_replica,
    ) or new.replicas > old.replicas


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
