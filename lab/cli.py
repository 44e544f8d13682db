"""The `lab` command: `lab compare` measures a grid of configurations, `lab report` rebuilds its reports,
`lab plan` predicts the replicas a traffic level needs from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from lab.arrivals import PROCESSES
from lab.budget import check_pin
from lab.compare import Driver
from lab.faults import fault_help
from lab.grid import (
    DEFAULT_MAX_FAILURE_RATIO,
    USERS_FOR_RATE_RULE,
    ExperimentSettings,
    RunPlan,
)
from lab.metrics import Thresholds
from lab.plan import (
    HOLDOUT_HEADER,
    LATENCY_HEADER,
    PREDICTION_HEADER,
    Measured,
    Plan,
    PlanRequest,
    holdout_rows,
    latency_rows,
    make_plan,
    plan_text,
    prediction_rows,
)
from lab.progress import RichProgress
from lab.report import capacity_header, capacity_rows, write_report
from lab.results import SchemaError, read_run, write_json
from lab.rounds import ORDERS, new_seed
from lab.services import CLASSIFIER
from lab.stacks import (
    DEFAULT_READY_TIMEOUT_S,
    DEFAULT_STACK,
    STACKS,
    ComposeStack,
    StackError,
    StackOptions,
    find_project_dir,
    make_stack,
)
from lab.summary import measured_of, ramp_judge, read_configs
from lab.units import format_duration, parse_duration, parse_list

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SLO_UNMET = 3  # k6-style: a threshold given on the command line was met by no configuration
EXIT_INTERRUPTED = 130

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)


def _default(name: str) -> str:
    """`lab compare`'s default for a setting, as its help shows it (ExperimentSettings holds the value)."""
    value = ExperimentSettings.default(name)
    if name.endswith("_s"):
        return f"{value:g}s"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _given(**options: Any) -> dict[str, Any]:
    """The options the command line gave; the others keep ExperimentSettings' defaults."""
    return {name: value for name, value in options.items() if value is not None}


# Options that `compare` and `soak` share, declared once.
Out = Annotated[Path, typer.Option(help="Folder for results/<run-id>/.")]
RunId = Annotated[str | None, typer.Option(help="Name of the run folder (default: a timestamp).")]
SloP95 = Annotated[float | None, typer.Option(help="Latency SLO: p95 in milliseconds.")]
Warmup = Annotated[
    str | None,
    typer.Option(help=f"Load before each measurement, not counted (default: {_default('warmup_s')})."),
]
ProjectDir = Annotated[
    Path | None, typer.Option(help="Compose project folder (default: nearest with a compose file).")
]
ProjectName = Annotated[
    str | None, typer.Option(help="Compose project name (default: COMPOSE_PROJECT_NAME or the file's).")
]
Faults = Annotated[
    list[str] | None,
    typer.Option("--fault", help=fault_help()),
]


def _list(value: str | None, convert: Callable[[str], T], what: str) -> list[T] | None:
    return parse_list(value, convert, what) if value is not None else None


def _options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--locust-option wants KEY=VALUE, got {pair!r}")
        options[key.strip()] = value
    return options


@app.command()
def compare(
    replicas: Annotated[str, typer.Option(help="Classifier replica counts, e.g. 1,2,4.")],
    workers_per_replica: Annotated[
        str | None, typer.Option(help="gunicorn workers per replica, e.g. 1,2 (default: as configured).")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated of tf, litert, litert-uint8, litert-int8 (.env: which files the image has; "
            "default: as configured)."
        ),
    ] = None,
    batching: Annotated[str | None, typer.Option(help="off, on or off,on (default: as configured).")] = None,
    cpus_per_replica: Annotated[
        str | None,
        typer.Option(help="CPU budget of each replica in cores, e.g. 0.5 or 1,2 (default: as configured)."),
    ] = None,
    pin: Annotated[
        bool,
        typer.Option(help="Each replica on its own cores, nginx and Locust on the rest (needs the cores)."),
    ] = False,
    users: Annotated[
        str | None, typer.Option(help="Closed model: concurrent users, e.g. 32 or 8,16,32.")
    ] = None,
    rate: Annotated[str | None, typer.Option(help="Open model: target arrivals per second, e.g. 50.")] = None,
    ramp: Annotated[
        bool, typer.Option(help="Step the load up until the SLO or failure limit breaks.")
    ] = False,
    ramp_step: Annotated[
        float | None, typer.Option(help="Added to users/rate each ramp step (default: the start value).")
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(help=f"Most ramp steps per configuration (default: {_default('max_steps')})."),
    ] = None,
    step_duration: Annotated[
        str | None, typer.Option(help=f"Duration of each ramp step (default: {_default('step_duration_s')}).")
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(help=f"Measurement window per configuration (default: {_default('duration_s')})."),
    ] = None,
    warmup: Warmup = None,
    slo_p95_ms: SloP95 = None,
    max_failure_ratio: Annotated[
        float | None,
        typer.Option(help=f"Highest acceptable failure ratio (default: {DEFAULT_MAX_FAILURE_RATIO:g})."),
    ] = None,
    need_rps: Annotated[
        float | None, typer.Option(help="Traffic to serve: recommend the cheapest config reaching it.")
    ] = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            help="Measure in this many rounds, each configuration once a round "
            f"(default: {_default('repeat')})."
        ),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(
            help=f"Order of the rounds: {' or '.join(ORDERS)} the configurations "
            f"(default: {_default('order')})."
        ),
    ] = None,
    order_seed: Annotated[
        int | None, typer.Option(help="Seed of --order shuffle (default: a new one, recorded in run.json).")
    ] = None,
    until_stable: Annotated[
        bool,
        typer.Option(
            help="Stop a measurement once the last 3 windows agree within --stability (at most --duration)."
        ),
    ] = False,
    window: Annotated[
        int | None,
        typer.Option(help=f"--until-stable's window in seconds (default: {_default('window_s')})."),
    ] = None,
    stability: Annotated[
        float | None,
        typer.Option(help=f"--until-stable's tolerance in % (default: {_default('stability_pct')})."),
    ] = None,
    out: Out = Path("results"),
    run_id: RunId = None,
    expected_latency_ms: Annotated[
        float | None,
        typer.Option(
            help=f"Open model: users = {USERS_FOR_RATE_RULE} (default: {_default('expected_latency_ms')})."
        ),
    ] = None,
    arrivals: Annotated[
        str | None,
        typer.Option(
            help=f"Open model: {' or '.join(PROCESSES)} (independent clients / evenly spaced) "
            f"(default: {_default('arrivals')})."
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            help=f"CLASSIFIER_MAX_BATCH_SIZE when batching is on (default: {_default('max_batch_size')})."
        ),
    ] = None,
    max_batch_delay_ms: Annotated[
        float | None,
        typer.Option(help="CLASSIFIER_MAX_BATCH_DELAY_MS when batching is on (default: as set)."),
    ] = None,
    locust_workers: Annotated[
        int | None, typer.Option(help="Scale locust-worker to this for the run (restored after).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Target host (default: the master's, i.e. nginx).")] = None,
    locust_option: Annotated[
        list[str] | None,
        typer.Option(
            "--locust-option", "-o", help="Custom locustfile option for /swarm, KEY=VALUE (repeatable)."
        ),
    ] = None,
    project_dir: ProjectDir = None,
    project_name: ProjectName = None,
    stack: Annotated[
        str, typer.Option(help="; ".join(f"{name}: {cls.kind.help}" for name, cls in STACKS.items()) + ".")
    ] = DEFAULT_STACK,
    locust_url: Annotated[
        str | None, typer.Option(help="Locust master web UI (default: from `docker compose port`).")
    ] = None,
    expect_workers: Annotated[
        int | None, typer.Option(help="external stack: Locust workers to wait for.")
    ] = None,
    nodes: Annotated[
        Path | None,
        typer.Option(
            help="swarm stack: the nodes file (scripts/nodes' nodes.json, lab/nodes.py): sample every "
            "node's containers through its engine, reach ports at their node's address."
        ),
    ] = None,
    ready_timeout: Annotated[
        str, typer.Option(help="Longest wait for replicas to be healthy.")
    ] = f"{DEFAULT_READY_TIMEOUT_S:.0f}s",
    dry_run: Annotated[bool, typer.Option(help="Print the grid and the time estimate, then stop.")] = False,
    fault: Faults = None,
    soak: Annotated[
        bool, typer.Option(help="Sample every replica's RSS and open files; report their drift and p95's.")
    ] = False,
) -> None:
    """Measure every configuration of the grid through the running Locust master; write results/<run-id>/."""
    try:
        settings = ExperimentSettings(
            replicas=_list(replicas, int, "replica count") or [],
            **_given(
                workers_per_replica=_list(workers_per_replica, int, "worker count"),
                backends=_list(backend, str, "backend"),
                batching=_list(batching, str, "batching value"),
                cpus_per_replica=_list(cpus_per_replica, float, "CPU budget"),
                pin=pin,
                users=_list(users, int, "user count"),
                rates=_list(rate, float, "rate"),
                ramp=ramp,
                ramp_step=ramp_step,
                max_steps=max_steps,
                step_duration_s=parse_duration(step_duration) if step_duration is not None else None,
                duration_s=parse_duration(duration) if duration is not None else None,
                warmup_s=parse_duration(warmup) if warmup is not None else None,
                slo_p95_ms=slo_p95_ms,
                max_failure_ratio=max_failure_ratio,
                need_rps=need_rps,
                repeat=repeat,
                order=order,
                order_seed=order_seed if order_seed is not None else new_seed(),
                until_stable=until_stable,
                window_s=window,
                stability_pct=stability,
                expected_latency_ms=expected_latency_ms,
                arrivals=arrivals,
                max_batch_size=max_batch_size,
                max_batch_delay_ms=max_batch_delay_ms,
                locust_workers=locust_workers,
                host=host,
                locust_options=_options(locust_option or []),
                faults=list(fault or []),
                soak=soak,
            ),
        )
        if stack not in STACKS:
            raise ValueError(f"--stack must be one of {', '.join(STACKS)}")
        kind = STACKS[stack].kind
        plan = RunPlan.of(settings, kind.change_s)
        timeout_s = parse_duration(ready_timeout)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(EXIT_USAGE) from None
    console.print(
        f"{len(plan.configs)} configuration(s), {settings.mode} model, "
        f"estimated {format_duration(plan.total_s)}"
        + (" at most (ramps stop early)" if settings.ramp else "")
    )
    if dry_run:
        for planned, seconds in zip(plan.configs, plan.estimates, strict=True):
            console.print(f"  {planned.index:>3}. {planned.label}  ~{format_duration(seconds)}")
        raise typer.Exit(0)
    try:
        directory = (project_dir or find_project_dir(Path.cwd())).resolve()
        cannot = sorted({s.kind for s in settings.fault_specs} - set(kind.fault_kinds))
        if cannot:
            able = [name for name, cls in STACKS.items() if set(cannot) <= set(cls.kind.fault_kinds)]
            raise StackError(
                f"--fault needs --stack {' or '.join(able) or 'of one kind'} (lab cannot inject "
                f"{', '.join(cannot)} into the {stack} stack)"
            )
        options = StackOptions(
            directory, timeout_s, project_name, locust_url, expect_workers, nodes_file=nodes
        )
        the_stack = make_stack(stack, options)
        refused = the_stack.refuse_faults(settings.fault_specs) if settings.fault_specs else None
        if refused:
            raise StackError(f"--fault: {refused}")
        if settings.pin:
            if not kind.pins_cpus:
                able = [name for name, cls in STACKS.items() if cls.kind.pins_cpus]
                raise StackError(f"--pin needs --stack {' or '.join(able)}")
            check_pin(settings, the_stack.host_cpus())
    except (StackError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(EXIT_USAGE) from None
    driver = Driver(
        settings,
        the_stack,
        out,
        locust_url=locust_url,
        project_dir=directory,
        run_id=run_id,
        progress=RichProgress(console),
        log=lambda message: console.print(message),
        plan=plan,
        judge=ramp_judge(Thresholds.from_settings(settings)),
    )
    result = driver.run()
    code = _finish(result.run_dir, None)
    if result.interrupted:
        console.print(f"interrupted: partial results in {result.run_dir}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.error:
        console.print(f"[red]error:[/red] {result.error}")
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(code)


@app.command("soak")
def soak_command(
    duration: Annotated[str, typer.Option(help="How long to hold the load, e.g. 10m.")] = "10m",
    users: Annotated[int | None, typer.Option(help="Closed model: concurrent users.")] = None,
    rate: Annotated[float | None, typer.Option(help="Open model: target arrivals per second.")] = None,
    replicas: Annotated[
        int | None, typer.Option(help="Classifier replicas (default: as many as are running).")
    ] = None,
    warmup: Warmup = None,
    slo_p95_ms: SloP95 = None,
    out: Out = Path("results"),
    run_id: RunId = None,
    project_dir: ProjectDir = None,
    project_name: ProjectName = None,
    fault: Faults = None,
) -> None:
    """Hold one load for a long time on the compose stack: per-replica RSS and open files at the start and
    end with their slope, and p95 drift between the first and last minute; growth over 10 % is flagged."""
    if replicas is None:
        try:
            directory = (project_dir or find_project_dir(Path.cwd())).resolve()
            running = ComposeStack(directory, project_name=project_name).capture().replicas
        except StackError as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(EXIT_USAGE) from None
        replicas = running.get(CLASSIFIER) or 1
    compare(
        replicas=str(replicas),
        users=str(users) if users is not None else None,
        rate=str(rate) if rate is not None else None,
        duration=duration,
        warmup=warmup,
        slo_p95_ms=slo_p95_ms,
        out=out,
        run_id=run_id,
        project_dir=project_dir,
        project_name=project_name,
        fault=fault,
        soak=True,
    )


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A results/<run-id> folder written by `lab compare`.")],
    slo_p95_ms: Annotated[float | None, typer.Option(help="Override the run's p95 SLO (ms).")] = None,
    max_failure_ratio: Annotated[float | None, typer.Option(help="Override the run's failure limit.")] = None,
    need_rps: Annotated[float | None, typer.Option(help="Override the traffic to serve (req/s).")] = None,
) -> None:
    """Rebuild summary.json, summary.md and report.html from a run's raw files."""
    try:
        saved = read_run(run_dir).settings
        overrides = None
        if slo_p95_ms is not None or max_failure_ratio is not None or need_rps is not None:
            overrides = Thresholds(
                slo_p95_ms if slo_p95_ms is not None else saved.slo_p95_ms,
                max_failure_ratio if max_failure_ratio is not None else saved.failure_limit,
                need_rps if need_rps is not None else saved.need_rps,
            )
        code = _finish(run_dir, overrides)
    except FileNotFoundError:
        console.print(f"[red]error:[/red] {run_dir} has no run.json: not a `lab compare` result folder")
        raise typer.Exit(EXIT_USAGE) from None
    except SchemaError as err:
        console.print(f"[red]error:[/red] cannot read this run: {err}")
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(code)


@app.command("plan")
def plan_command(
    results: Annotated[
        list[Path],
        typer.Argument(help="results/<run-id> folders: a replica sweep, and runs to check against."),
    ],
    need_rps: Annotated[float, typer.Option(help="Traffic to serve (req/s).")],
    slo_p95_ms: Annotated[float, typer.Option(help="Latency SLO: p95 in milliseconds.")],
    holdout: Annotated[
        list[int] | None,
        typer.Option(help="Fit without this replica count and compare with what it measured (repeatable)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Predict past 4x the largest measured replica count.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the queue simulation.")] = 0,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the plan's record (as summary.json's `plan`) to this file."),
    ] = None,
) -> None:
    """The fewest replicas predicted to serve --need-rps within --slo-p95-ms: a scalability fit (USL) and a
    queue model of the measured runs, with a band; --holdout checks it against counts left out."""
    measured: list[Measured] = []
    try:
        request = PlanRequest(need_rps, slo_p95_ms, tuple(holdout or ()), force, seed)
        failure_limits = []
        for run_dir in results:
            if not (run_dir / "run.json").is_file():
                raise ValueError(f"{run_dir} has no run.json: not a `lab compare` result folder")
            run = read_run(run_dir)
            thresholds = Thresholds(slo_p95_ms, run.settings.failure_limit, need_rps)
            # Each folder is its own source of runs, whatever its run id says.
            measured += [
                replace(m, source=str(run_dir)) for m in measured_of(run, read_configs(run_dir), thresholds)
            ]
            failure_limits.append(run.settings.failure_limit)
        limit = Thresholds(slo_p95_ms, max(failure_limits), need_rps)
        plan = make_plan(measured, limit, request)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(EXIT_USAGE) from None
    _print_plan(plan)
    if json_out is not None:
        write_json(json_out, plan.to_dict())
        console.print(f"plan: {json_out}")
    raise typer.Exit(0 if all(g.answer is not None for g in plan.groups) else EXIT_SLO_UNMET)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _print_plan(plan: Plan) -> None:
    for g in plan.groups:
        _print_table(
            f"{g.group}: predicted at {plan.need_rps:g} req/s ({g.fit.model} fit)",
            PREDICTION_HEADER,
            prediction_rows(g),
        )
        if g.p95_checks:
            _print_table(
                f"{g.group}: p95 model vs measured (open-model runs)", LATENCY_HEADER, latency_rows(g)
            )
        if g.holdout:
            _print_table(f"{g.group}: model vs measured (held out)", HOLDOUT_HEADER, holdout_rows(g))
    for line in plan_text(plan):
        console.print(line, highlight=False)


def _finish(run_dir: Path, overrides: Thresholds | None) -> int:
    """Write the reports, print the capacity table, and return the exit code for the thresholds."""
    summary = write_report(run_dir, overrides)
    table = Table(title=f"run {summary.run_id}")
    for column in capacity_header(summary):
        table.add_column(column)
    for row in capacity_rows(summary):
        table.add_row(*row.cells)
    console.print(table)
    console.print(summary.verdict)
    if summary.plan is not None:
        _print_plan(summary.plan)
    elif summary.plan_error:
        console.print(f"no plan: {summary.plan_error}")
    console.print(f"report: {run_dir / 'report.html'}  summary: {run_dir / 'summary.json'}")
    given = overrides is not None or ExperimentSettings.from_dict(summary.settings).thresholds_given
    reason = summary.unmet_reason()
    if given and reason:
        console.print(f"[red]SLO not met:[/red] {reason}")
        return EXIT_SLO_UNMET
    return 0


def main() -> None:
    app()


if __name__ == "__main__":
    main()
