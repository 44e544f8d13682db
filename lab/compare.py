"""`lab compare`: for each configuration of the grid, set the stack up, warm up, measure through the running
Locust master, and write the raw files. Reports are built afterwards from those files alone.

Why each measurement is its own Locust test (swarm ... stop) rather than a reset inside one test:
POST /stats/reset clears only the master, while each worker still holds up to 3 s of unsent samples from
before the reset, which would land in the window (15 % of a 20 s run). A new test clears the master and
every worker, and after POST /stop the workers' last samples arrive within one report interval.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import __version__
from lab.budget import asked_budget
from lab.cgroups import CGROUP_CPU_FILE, CgroupCpu
from lab.faults import FaultInjector
from lab.grid import ExperimentSettings, LoadLevel, PlannedConfig, RunPlan, ramp_levels
from lab.locust_api import FLUSH_WAIT_S, LocustAPI, LocustError, format_option
from lab.progress import NullProgress, RunProgress
from lab.prometheus import STEP_S, Recorder, not_recorded
from lab.prometheus import write as write_prometheus
from lab.results import (
    CONFIG_FILE,
    MEASUREMENT_FILE,
    RUN_FILE,
    ClientBackoff,
    ConfigRecord,
    Effective,
    MeasurementRecord,
    PlanEntry,
    RunRecord,
    ServedModel,
    StepRecord,
    write_json,
    write_record,
)
from lab.sampler import HostCpu, Sampler
from lab.stability import Stability, judge, window_points
from lab.stacks import Stack, StackError, StackState, git_sha
from lab.timeline import parse_timeline

SPAWN_RATE_PER_WORKER_MAX = 100.0  # Locust warns above this many users/s per worker
SAFETY_RUN_TIME_S = 60.0  # the master stops a test by itself this long after it should have ended

# A ramp's pass/fail after each step (measurement folder -> passed, reasons): the analysis decides, the
# driver only stops climbing (summary.ramp_judge is the one `lab compare` uses).
Judge = Callable[[Path], tuple[bool, list[str]]]


@dataclass
class RunResult:
    run_dir: Path
    interrupted: bool = False
    error: str | None = None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_dir(out_root: Path, run_id: str | None = None) -> tuple[str, Path]:
    base = run_id or datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while (out_root / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    path = out_root / candidate
    path.mkdir(parents=True)
    return candidate, path


def spawn_rate_for(users: int, workers: int) -> float:
    # Spawn everybody within about half a second so the window measures the load, not the ramp-up.
    return float(max(1.0, min(2.0 * users, SPAWN_RATE_PER_WORKER_MAX * max(1, workers))))


def effective_settings(config_env: dict[str, str], planned: PlannedConfig) -> Effective:
    """What the classifier actually ran with: its CLASSIFIER_* environment when the stack can tell,
    else what the configuration asked for."""
    workers = config_env.get("CLASSIFIER_WORKERS")
    batch = config_env.get("CLASSIFIER_MAX_BATCH_SIZE")
    return Effective(
        workers_per_replica=int(workers)
        if workers and workers.isdigit()
        else planned.stack.workers_per_replica,
        backend=config_env.get("CLASSIFIER_BACKEND") or planned.stack.backend,
        batching=("on" if int(batch) > 1 else "off") if batch and batch.isdigit() else planned.stack.batching,
        max_batch_size=int(batch) if batch and batch.isdigit() else None,
        cpus_per_replica=asked_budget(config_env) if config_env else planned.stack.cpus_per_replica,
    )


class Driver:
    def __init__(
        self,
        settings: ExperimentSettings,
        stack: Stack,
        out_root: Path,
        *,
        locust_url: str | None = None,
        project_dir: Path | None = None,
        run_id: str | None = None,
        progress: RunProgress | None = None,
        log: Any = None,
        flush_wait_s: float = FLUSH_WAIT_S,
        sample_interval_s: float = 2.0,
        plan: RunPlan | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.out_root = out_root
        self.locust_url = locust_url
        self.project_dir = project_dir or Path.cwd()
        self.run_id = run_id
        self.progress = progress or NullProgress()
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.flush_wait_s = flush_wait_s
        self.sample_interval_s = sample_interval_s
        # The caller may have planned the run already (to print it): measure exactly that plan.
        run_plan = plan if plan is not None else RunPlan.of(settings, stack.kind.change_s)
        self.plan = list(run_plan.configs)
        self.estimates = list(run_plan.estimates)
        if settings.ramp and judge is None:
            raise ValueError("a ramp needs a judge: what decides, after each step, whether to go on")
        self.judge = judge
        self._locust: LocustAPI | None = None
        self._workers: int | None = None
        self._replicas = 1  # the current configuration's, which a fault's healing puts back
        self._started_with: dict[str, str] = {}  # the master's own locustfile options (GET /options)
        self._config: ConfigRecord | None = None  # the current configuration's record
        self._config_i = 0
        self._config_started = 0.0
        self._phase = ""
        # The monitoring profile's Prometheus (None: not up, and `_no_prometheus` says why).
        self._prometheus: Recorder | None = None
        self._no_prometheus = "the run did not get as far as looking for Prometheus"

    # ---- progress -------------------------------------------------------------------------------------

    def _tick(self) -> None:
        i = self._config_i
        elapsed = time.monotonic() - self._config_started
        current = self.estimates[i] if i < len(self.estimates) else 0.0
        done = sum(self.estimates[:i]) + min(elapsed, current * 0.99)
        left = max(0.0, current - elapsed) + sum(self.estimates[i + 1 :])
        label = self.plan[i].label if i < len(self.plan) else ""
        self.progress.update(f"config {i + 1}/{len(self.plan)} {label}: {self._phase}", done, left)

    def _phase_to(self, phase: str) -> None:
        self._phase = phase
        self._tick()

    def _sleep(self, seconds: float) -> None:
        """Sleep in small steps: progress stays live and Ctrl-C is taken at once."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
            self._tick()

    # ---- run ------------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        run_id, run_dir = new_run_dir(self.out_root, self.run_id)
        state: StackState | None = None
        run = RunRecord(
            run_id=run_id,
            settings=self.settings,
            git_sha=git_sha(self.project_dir),
            started_at=_now_iso(),
            lab_version=__version__,
            command=tuple(sys.argv),
            stack_kind=self.stack.kind.name,
            project_dir=str(self.project_dir),
            mode=self.settings.mode,
            plan=tuple(PlanEntry(p.index, p.label, p.dirname) for p in self.plan),
            estimate_s=round(sum(self.estimates)),
            order=self.settings.round_order.to_dict() if self.settings.repeat > 1 else None,
        )
        result = RunResult(run_dir)
        write_record(run_dir / RUN_FILE, run)
        self.progress.start(sum(self.estimates))
        try:
            try:
                run = replace(run, host_cpus=self.stack.host_cpus())
                state = self.stack.capture()
                run = replace(run, stack_before=state.to_dict())
                write_record(run_dir / RUN_FILE, run)
                self.stack.ensure_up(state)
                if self.settings.locust_workers is not None:
                    self.stack.scale_locust_workers(self.settings.locust_workers)
                url = self.locust_url or self.stack.locust_url()
                if not url:
                    raise LocustError("no Locust master URL: give --locust-url")
                self._locust = LocustAPI(url)
                self._started_with = self._locust.started_with()
                self._workers = self._locust.wait_workers(self.stack.locust_worker_count())
                run = replace(run, locust_url=url, locust_workers=self._workers)
                if str(self._locust.stats().get("state")) in ("running", "spawning"):
                    self.log("a Locust test was running on the master: stopping it first")
                    self._locust.stop()
                    self._sleep(self.flush_wait_s)
                write_record(run_dir / RUN_FILE, run)
                self._find_prometheus()
                for i, planned in enumerate(self.plan):
                    self._config_i = i
                    self._config_started = time.monotonic()
                    self._run_config(planned, run_dir / planned.dirname)
            except KeyboardInterrupt:
                result.interrupted = True
                self.log("interrupted: the measured part is kept; restoring the stack")
            except (StackError, LocustError, OSError) as err:
                result.error = str(err)
                self.log(f"error: {err}")
            except Exception as err:  # a bug must still restore the stack and leave an honest run.json
                result.error = f"{type(err).__name__}: {err}"
                self.log(f"unexpected error: {traceback.format_exc()}")
            finally:
                self._phase = "restoring the stack"
                self.progress.update("restoring the stack", sum(self.estimates), 0.0)
                if state is not None:
                    try:
                        self.stack.restore(state)
                        run = replace(run, stack_restored=True)
                    except (StackError, OSError) as err:
                        run = replace(run, stack_restored=False)
                        result.error = (
                            result.error + "; " if result.error else ""
                        ) + f"restore failed: {err}"
                        self.log(f"could not restore the stack: {err}")
                if self._locust is not None:
                    self._locust.close()
        except KeyboardInterrupt:
            # A second Ctrl-C during clean-up: record what we know and leave.
            result.interrupted = True
            run = replace(run, stack_restored=False)
        finally:
            self.progress.stop()
            status = "interrupted" if result.interrupted else ("error" if result.error else "complete")
            run = replace(run, finished_at=_now_iso(), status=status, error=result.error)
            write_record(run_dir / RUN_FILE, run)
        return result

    def _save_config(self, cdir: Path, **changes: Any) -> None:
        """Change the current configuration's record and rewrite its config.json."""
        assert self._config is not None
        self._config = replace(self._config, **changes)
        write_record(cdir / CONFIG_FILE, self._config)

    def _run_config(self, planned: PlannedConfig, cdir: Path) -> None:
        assert self._locust is not None
        cdir.mkdir(parents=True, exist_ok=True)
        self._config = ConfigRecord(
            index=planned.index,
            label=planned.label,
            stack=planned.stack,
            load=planned.load,
            ramp=self.settings.ramp,
            repeat=planned.repeat,
            started_at=_now_iso(),
        )
        self._save_config(cdir)
        self._replicas = planned.stack.replicas
        try:
            self._phase_to("setting up the stack")
            t0 = time.monotonic()
            env_applied = self.stack.apply(planned.stack, self.settings)
            setup_s = round(time.monotonic() - t0, 1)
            # After apply the replicas are healthy: describe() reads GET /model once, from one of them.
            after_setup = self.stack.describe()
            effective = effective_settings(self.stack.classifier_settings(), planned)
            self._workers = self._locust.wait_workers(self._workers)
            self._save_config(
                cdir,
                env_applied=env_applied,
                stack_setup_s=setup_s,
                stack_after_setup=after_setup,
                served_model=ServedModel.from_model_info(after_setup.get("model")),
                effective=effective,
                locust_workers=self._workers,
            )
            if self.settings.warmup_s > 0:
                self._warm_up(planned.load)
            if self.settings.ramp:
                self._ramp(cdir)
            else:
                self._measure(cdir, planned.load, self.settings.duration_s, "measuring")
            self._save_config(cdir, status="complete", finished_at=_now_iso())
        except KeyboardInterrupt:
            self._save_config(cdir, status="interrupted", finished_at=_now_iso())
            raise
        except Exception as err:
            self._save_config(cdir, status="error", error=str(err), finished_at=_now_iso())
            raise

    def _ramp(self, cdir: Path) -> None:
        """Climb the ramp's steps until the judge fails one (each step is listed in config.json)."""
        assert self.judge is not None and self._config is not None
        levels = ramp_levels(self.settings)
        for k, level in enumerate(levels, start=1):
            sdir = cdir / f"step-{k:02d}"
            self._measure(
                sdir, level, self.settings.step_duration_s, f"ramp step {k}/{len(levels)} ({level.label})"
            )
            passed, reasons = self.judge(sdir)
            step = StepRecord(sdir.name, level.users, level.target_rps, passed, tuple(reasons))
            self._save_config(cdir, steps=(*self._config.steps, step))
            if not passed:
                break
            self._locust_ready()

    def _swarm_options(self, level: LoadLevel) -> dict[str, str]:
        # Every custom option is sent: the master keeps a form's options for every later test, so one run's
        # --locust-option (a back-off of 0, say) would otherwise hold in the next run. Its own start values,
        # then this level's load model, then --locust-option.
        options = {
            **self._started_with,
            "target_rps": format_option(level.target_rps or 0.0),
            "arrivals": self.settings.arrivals,
        }
        options.update(self.settings.locust_options)
        return options

    def _locust_ready(self) -> None:
        assert self._locust is not None
        # After a stop each worker re-registers as ready; a test started before that misses it.
        self._workers = self._locust.wait_workers(self._workers)

    def _warm_up(self, level: LoadLevel) -> None:
        assert self._locust is not None
        self._phase_to(f"warming up ({level.label})")
        self._locust.swarm(
            level.users,
            spawn_rate_for(level.users, self._workers or 1),
            host=self.settings.host,
            run_time_s=self.settings.warmup_s + SAFETY_RUN_TIME_S,
            options=self._swarm_options(level),
        )
        try:
            self._sleep(self.settings.warmup_s)
        finally:
            self._locust.stop()
        self._phase_to("warm-up done, waiting for the workers' last stats")
        self._sleep(self.flush_wait_s)
        self._locust_ready()

    def _poll_locust(self) -> list[dict[str, Any]]:
        assert self._locust is not None
        stats = self._locust.stats()
        keep = ("state", "user_count", "worker_count", "total_rps", "current_rps", "fail_ratio")
        row = {k: stats.get(k) for k in keep}
        row["current_percentiles"] = stats.get("current_response_time_percentiles")
        row["workers"] = stats.get("workers")
        return [row]

    def _measure(self, mdir: Path, level: LoadLevel, duration_s: float, phase: str) -> None:
        """One Locust test: swarm, hold for `duration_s`, stop, then save everything the master has."""
        assert self._locust is not None
        mdir.mkdir(parents=True, exist_ok=True)
        workers = self._workers or 1
        meta = MeasurementRecord(
            users=level.users,
            target_rps=level.target_rps,
            status="running",
            spawn_rate=spawn_rate_for(level.users, workers),
            duration_s=duration_s,
            locust_workers=workers,
            options=self._swarm_options(level),
        )
        write_record(mdir / MEASUREMENT_FILE, meta)
        samplers = [
            Sampler(mdir / "docker_stats.jsonl", self.stack.container_stats, self.sample_interval_s),
            Sampler(mdir / "locust_live.jsonl", self._poll_locust, self.sample_interval_s),
            # Each container's CPU, CFS quota and throttling from its cgroup (none for an external stack).
            Sampler(mdir / CGROUP_CPU_FILE, CgroupCpu(self.stack.cgroup_targets), self.sample_interval_s),
        ]
        if self.stack.kind.samples_host_cpu:
            # On the Docker host itself: the machine's busy cores, other processes included.
            samplers.append(Sampler(mdir / "host_cpu.jsonl", HostCpu(), self.sample_interval_s))
        if self.settings.soak:
            samplers.append(
                Sampler(mdir / "processes.jsonl", self.stack.process_stats, self.sample_interval_s)
            )
        injector: FaultInjector | None = None
        if self.settings.faults:
            injector = FaultInjector(
                self.settings.fault_specs,
                mdir / "faults.json",
                self.stack.inject_fault,
                self.stack.end_fault,
                self._locust.served_by,
                self.stack.fault_events,
            )
        interrupted = False
        started = False
        try:
            self._phase_to(phase)
            t_start = time.time()
            meta = replace(meta, t_start=t_start)
            body = self._locust.swarm(
                level.users,
                meta.spawn_rate or 1.0,
                host=self.settings.host,
                run_time_s=duration_s + SAFETY_RUN_TIME_S,
                options=meta.options,
            )
            started = True
            meta = replace(meta, host=body.get("host"))
            for sampler in samplers:
                sampler.start()
            if injector is not None:
                injector.start(t_start)
            # /swarm answers before users exist; a master that cannot start (no ready worker) only logs.
            spawn_s = level.users / (meta.spawn_rate or 1.0)
            self._locust.wait_running(timeout_s=max(30.0, spawn_s + 20.0))
            meta = replace(meta, running_after_s=round(time.time() - t_start, 2))
            stability = self._hold(t_start, duration_s)
            if stability is not None:
                meta = replace(meta, stability=stability.to_dict())
        except KeyboardInterrupt:
            interrupted = True
        except LocustError as err:
            meta = replace(meta, error=str(err))
        finally:
            try:
                # The window ends when the stop is asked for: the seconds in which users wind down are not
                # load at the level measured (a timeline's last window would look like a drop).
                meta = replace(meta, t_end=time.time())
                if started:
                    self._locust.stop()
                if injector is not None:
                    injector.stop()  # ends a pause that still lasts
                for sampler in samplers:
                    sampler.stop()
                if started:
                    self._phase_to("collecting Locust's results")
                    self._sleep(self.flush_wait_s)
                    meta = self._save_results(mdir, meta)
                if injector is not None:
                    self._phase_to("healing the stack after the faults")
                    self.stack.heal(self._replicas, self.settings.locust_workers or self._workers)
                if started:
                    self._record_prometheus(mdir, meta)
            except KeyboardInterrupt:
                interrupted = True
                if meta.t_end is None:
                    meta = replace(meta, t_end=time.time())
            finally:
                status = "interrupted" if interrupted else ("error" if meta.error is not None else "complete")
                meta = replace(meta, status=status)
                write_record(mdir / MEASUREMENT_FILE, meta)
        if interrupted:
            raise KeyboardInterrupt
        if meta.error is not None:
            raise LocustError(meta.error)

    def _find_prometheus(self) -> None:
        url = self.stack.prometheus_url()
        if url is None:
            self._no_prometheus = (
                f"no Prometheus: the monitoring profile is not up on this {self.stack.kind.name} stack "
                "(`docker compose --profile monitoring up -d`)"
            )
            return
        recorder = Recorder(url)
        why = recorder.unavailable()
        if why is not None:
            self._no_prometheus = why
            self.log(f"not recording Prometheus series: {why}")
            return
        self._prometheus = recorder
        self.log(f"recording each measurement's series from Prometheus at {url}")

    def _record_prometheus(self, mdir: Path, meta: MeasurementRecord) -> None:
        """prometheus.json: the window's series, or why there are none (the report says which)."""
        if self._prometheus is None or meta.t_start is None or meta.t_end is None:
            write_prometheus(mdir, not_recorded(self._no_prometheus))
            return
        self._phase_to("reading the window's series from Prometheus")
        self._sleep(max(0.0, meta.t_end + STEP_S - time.time()))  # until a scrape has covered t_end
        try:
            replicas = self.stack.replica_addresses()
        except StackError:
            replicas = {}  # the series keep their addresses
        write_prometheus(mdir, self._prometheus.record(meta.t_start, meta.t_end, replicas))

    def _hold(self, t_start: float, duration_s: float) -> Stability | None:
        """Keep the load on for `duration_s`, or with --until-stable until perf_analyzer's rule holds on
        the timeline so far (judged each window; at most `duration_s`)."""
        deadline = t_start + duration_s
        if not self.settings.until_stable:
            self._sleep(max(0.0, deadline - time.time()))
            return None
        assert self._locust is not None
        rule = self.settings.stability_rule
        while True:
            self._sleep(max(0.0, min(rule.window_s, deadline - time.time())))
            now = time.time()
            # A worker's last seconds reach the master with its next report: judge only older windows.
            seconds = parse_timeline(self._locust.timeline() or {})
            points = window_points(seconds, t_start, now - self.flush_wait_s, rule.window_s)
            verdict = judge(points, rule)
            if verdict.stable or now >= deadline:
                return verdict

    def _save_results(self, mdir: Path, meta: MeasurementRecord) -> MeasurementRecord:
        """Download what the master has for this test; the record with what was saved."""
        assert self._locust is not None and meta.t_start is not None and meta.t_end is not None
        files = {
            "stats.csv": "/stats/requests/csv",
            "failures.csv": "/stats/failures/csv",
            "exceptions.csv": "/exceptions/csv",
            "locust_report.html": "/stats/report?download=1",
        }
        saved: dict[str, int] = {}
        for name, path in files.items():
            status, body = self._locust.download(path)
            saved[name] = status
            if status == 200:
                (mdir / name).write_bytes(body)
        status, body = self._locust.download("/stats/requests_full_history/csv")
        saved["history.csv"] = status
        if status == 200:
            # The master's history file spans every test since it started: keep this window's rows.
            (mdir / "history.csv").write_text(
                _history_window(body.decode("utf-8", "replace"), meta.t_start, meta.t_end),
                encoding="utf-8",
            )
        # Sent by the workers with the same reports as the stats, so after the flush wait both are complete.
        arrivals = self._locust.arrivals()
        for name, answer in (
            ("served_by.json", self._locust.served_by()),
            ("server_timing.json", self._locust.server_timing()),
            ("timeline.json", self._locust.timeline()),
            ("arrivals.json", arrivals),
        ):
            saved[name] = 200 if answer is not None else 404
            if answer is not None:
                write_json(mdir / name, answer)
        final = self._locust.stats()
        keep = ("state", "user_count", "worker_count", "total_rps")
        return replace(
            meta,
            locust_final={k: final.get(k) for k in keep},
            downloads=saved,
            client_backoff=ClientBackoff.from_answer(arrivals),
        )


def _history_window(text: str, t_start: float, t_end: float) -> str:
    lines = text.splitlines()
    if not lines:
        return ""
    kept = [lines[0]]
    for line in lines[1:]:
        stamp = line.split(",", 1)[0]
        try:
            t = float(stamp)
        except ValueError:
            continue
        if math.floor(t_start) <= t <= math.ceil(t_end):
            kept.append(line)
    return "\n".join(kept) + "\n"
