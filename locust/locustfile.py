"""Load for the lab's classifier, through nginx: uploads (POST /predict) and image URLs (POST /predict/tf).

Options (flag / env var / web UI field, defaults in `add_options`): --upload-weight, --url-weight,
--images-dir, --image-glob, --image-base-url, --target-rps, --arrivals, --arrivals-seed, --backoff-first-ms,
--backoff-max-ms, --served-by-file, --server-timing-file, --arrivals-file. Set them on the master: Locust
forwards custom options to the workers with every spawn message, replacing the workers' own values.

With --target-rps > 0 the load is an open model (`arrivals`): each process that runs users draws its
share of the arrivals, its users claim them, and late or dropped arrivals are counted. In the closed model
a user whose request fails with a connection error waits before its next one, as a real client backs off
(`Backoff`: --backoff-first-ms, doubling up to --backoff-max-ms, reset by a success); without it a refused
connection, answered in microseconds, is retried at once, and a sub-second outage becomes hundreds of
failures that measure the generator's speed.

Locust's stats hold only the real requests. Beside them, from every successful response:
- its `Server-Timing` stages go into per-name histograms (`stagestats`): GET /server-timing and the
  "Server timing" tab on the master's web UI, optionally --server-timing-file at exit;
- its `X-Served-By` is counted per replica: GET /served-by on the master's web UI, logged as JSON at test
  stop, optionally written to --served-by-file at exit.
And from every request, failed or not:
- its start time: the swarm's achieved rate and inter-arrival CV, with the late and dropped arrivals and,
  in the open model, the latency from each arrival's intended time to its answer: GET /arrivals and the
  "Arrivals" tab, optionally --arrivals-file;
- its second, response time and outcome (`timeline`): GET /timeline, for `lab`'s timelines.
GET /metrics on the master's web UI serves all of it for Prometheus (promexport.py: the monitoring profile).
Each is a `Tally` (tally.py), wired once by `setup_tally_listeners`: workers send deltas with their stats
reports, the master adds them up and serves them.

The defaults of --upload-weight, --url-weight and the back-off are the lab's `.env` values (labdefaults.py).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import imageset
import keepalive
import promexport
from arrivals import PROCESSES, ArrivalStream, ArrivalTally, check_process
from backoff import Backoff
from flask import Response
from labdefaults import dotenv_default
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.event import Events
from locust.runners import MasterRunner, WorkerRunner
from servedby import ServedByCounter
from servertiming import parse_server_timing
from stagestats import ServerTimingStats
from tally import Tally
from timeline import Timeline
from webui import Tab, add_json_route, add_route, add_tab

PACING_MESSAGE = "lab_pacing_total_users"
# In a request's context (open model): when its user meant to send it, and the arrival's own time.
SEND_AT_KEY = "lab_send_at"
INTENDED_KEY = "lab_intended_at"

log = logging.getLogger("locustfile")
keepalive.retry_lost_requests()  # a reload of nginx must cost no request (keepalive.py says why)


@dataclass
class RunState:
    """What users need during one test, loaded at test start where users run (worker or local)."""

    uploads: list[imageset.Upload] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    load_error: str | None = "test has not started"
    # All users across all workers, for --target-rps pacing; 0 until known.
    total_users: int = 0
    # This process's open-model arrivals, made at test start where users run (None: closed model).
    stream: ArrivalStream | None = None
    weights: tuple[int, int] | None = None  # set at init from the options (master or local run)
    backoff: Backoff = field(default_factory=lambda: Backoff(0.0, 0.0))  # set at test start from the options
    # Set at init: some events (quit, spawning_complete) carry no environment.
    environment: Environment | None = None


state = RunState()


# The locustfile's own options (argparse dests), as add_options declares them.
LAB_OPTIONS: list[str] = []


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    def add(flag: str, **kwargs: Any) -> None:
        dest = flag.removeprefix("--").replace("-", "_")
        if dest not in LAB_OPTIONS:
            LAB_OPTIONS.append(dest)
        parser.add_argument(flag, **kwargs)

    add(
        "--upload-weight",
        type=int,
        default=dotenv_default("LOCUST_UPLOAD_WEIGHT"),
        env_var="LOCUST_UPLOAD_WEIGHT",
        help="Relative share of UploadUser (POST /predict, multipart). Applied when a test starts.",
    )
    add(
        "--url-weight",
        type=int,
        default=dotenv_default("LOCUST_URL_WEIGHT"),
        env_var="LOCUST_URL_WEIGHT",
        help="Relative share of UrlUser (POST /predict/tf with img_url). Applied when a test starts.",
    )
    add(
        "--images-dir",
        default="/images",
        env_var="LOCUST_IMAGES_DIR",
        help="Folder of photos to upload; their names also make the img_urls. Same path on every worker.",
    )
    add(
        "--image-glob",
        default="*",
        env_var="LOCUST_IMAGE_GLOB",
        help="Glob selecting files in --images-dir, e.g. 'chelsea_640x480.jpg' to send one photo only.",
    )
    add(
        "--image-base-url",
        default="http://nginx/images",
        env_var="LOCUST_IMAGE_BASE_URL",
        help="URL of --images-dir as the classifier fetches it (the img_url prefix).",
    )
    add(
        "--target-rps",
        type=float,
        default=0.0,
        env_var="LOCUST_TARGET_RPS",
        help="0: closed model, each user sends its next request as soon as the last one answered. "
        ">0: open model, this many arrivals per second over the whole swarm, independent of the answers; "
        "users are the pool that sends them (give more than rps x latency).",
    )
    add(
        "--arrivals",
        default=PROCESSES[0],
        choices=PROCESSES,
        env_var="LOCUST_ARRIVALS",
        help="Arrival process with --target-rps > 0: poisson (exponential gaps, as independent clients "
        "make) or even (evenly spaced).",
    )
    add(
        "--arrivals-seed",
        type=int,
        default=0,
        env_var="LOCUST_ARRIVALS_SEED",
        include_in_web_ui=False,
        help="0: new random arrival times every test; >0: the same Poisson gaps every test (reproducible).",
    )
    add(
        "--backoff-first-ms",
        type=float,
        default=dotenv_default("LOCUST_BACKOFF_FIRST_MS"),
        env_var="LOCUST_BACKOFF_FIRST_MS",
        help="Closed model: after a connection error a user waits this long before its next request, "
        "doubling with each further one up to --backoff-max-ms; a success resets it. 0: no back-off.",
    )
    add(
        "--backoff-max-ms",
        type=float,
        default=dotenv_default("LOCUST_BACKOFF_MAX_MS"),
        env_var="LOCUST_BACKOFF_MAX_MS",
        help="Closed model: the longest back-off after connection errors (ms).",
    )
    add(
        "--served-by-file",
        default="",
        env_var="LOCUST_SERVED_BY_FILE",
        include_in_web_ui=False,
        help="If set, the master (or a local run) writes the X-Served-By counts as JSON here at exit.",
    )
    add(
        "--server-timing-file",
        default="",
        env_var="LOCUST_SERVER_TIMING_FILE",
        include_in_web_ui=False,
        help="If set, the master (or a local run) writes the Server-Timing split (GET /server-timing) "
        "as JSON here at exit.",
    )
    add(
        "--arrivals-file",
        default="",
        env_var="LOCUST_ARRIVALS_FILE",
        include_in_web_ui=False,
        help="If set, the master (or a local run) writes the arrivals summary (GET /arrivals) as JSON "
        "here at exit.",
    )


def weights_from(options: Any) -> tuple[int, int]:
    if options.upload_weight is None or options.url_weight is None:
        raise ValueError(
            "--upload-weight/--url-weight are not set: give them, or LOCUST_UPLOAD_WEIGHT/LOCUST_URL_WEIGHT "
            "(the lab's .env has the defaults, and compose passes them)"
        )
    weights = (int(options.upload_weight), int(options.url_weight))
    if min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"--upload-weight/--url-weight must be >= 0 and not both 0, got {weights}")
    return weights


def apply_weights(options: Any) -> None:
    # The master's (or local runner's) user dispatcher reads `weight` from the classes when a test's
    # first dispatch runs, which is after test_start: setting it here covers CLI, env and web UI values.
    # Workers only spawn what the master tells them, so their class weights do not matter.
    try:
        state.weights = weights_from(options)
    except ValueError as e:
        log.error("%s; keeping %s", e, state.weights)
    if state.weights is not None:
        UploadUser.weight, UrlUser.weight = state.weights


def set_total_users(n: int) -> None:
    if n > 0:
        state.total_users = n


def load_images(options: Any) -> None:
    try:
        files = imageset.list_images(options.images_dir, options.image_glob)
    except FileNotFoundError as e:
        state.uploads, state.image_names, state.load_error = [], [], str(e)
        log.error("%s", e)
        return
    state.uploads = imageset.load_uploads(files)
    state.image_names = [p.name for p in files]
    state.load_error = None
    log.info("loaded %d images from %s: %s", len(files), options.images_dir, ", ".join(state.image_names))


def backoff_from(options: Any) -> Backoff:
    """The closed model's back-off (none in the open model: arrivals come whatever the answers were)."""
    if target_rps(options) > 0:
        return Backoff(0.0, 0.0)
    first, most = getattr(options, "backoff_first_ms", None), getattr(options, "backoff_max_ms", None)
    if first is None or most is None:
        raise ValueError(
            "--backoff-first-ms/--backoff-max-ms are not set: give them, or LOCUST_BACKOFF_FIRST_MS/"
            "LOCUST_BACKOFF_MAX_MS (the lab's .env has the defaults, and compose passes them)"
        )
    return Backoff(float(first) / 1000, float(most) / 1000)


def target_rps(options: Any) -> float:
    return float(getattr(options, "target_rps", 0) or 0)


def start_arrivals(environment: Environment) -> None:
    """A new arrival stream for this process's users, or none for the closed model."""
    options = environment.parsed_options
    rate = target_rps(options)
    if rate <= 0:
        state.stream = None
        return
    runner = environment.runner
    index = max(runner.worker_index, 0) if isinstance(runner, WorkerRunner) else 0
    seed = int(options.arrivals_seed)
    rng = random.Random(f"{seed}:{index}") if seed > 0 else random.Random()
    try:
        process = check_process(options.arrivals)
    except ValueError as e:  # argparse checks the CLI and env; a hand-made web UI request gets here
        log.error("%s; using %s", e, PROCESSES[0])
        process = PROCESSES[0]
    # With `even`, worker k's grid starts k arrivals after worker 0's: equal workers interleave.
    state.stream = ArrivalStream(process, rng, grid_offset_s=index / rate)


def stream_rate(environment: Environment) -> tuple[float, float]:
    """This process's share of the arrivals per second, and the dropping bound in seconds."""
    rate = target_rps(environment.parsed_options)
    runner = environment.runner
    users = state.total_users or max(runner.user_count, 1)
    # The share follows the users dispatched here (this process's target), so a worker's rate does not
    # lag behind while its users are still starting.
    local = min(max(runner.target_user_count, runner.user_count, 1), users)
    return rate * local / users, users / rate


def expire_arrivals(environment: Environment) -> None:
    """Count the arrivals nobody claimed in time as dropped now, not when some user gets free."""
    if state.stream is not None:
        arrival_tally.add_dropped(state.stream.expire(time.time(), *stream_rate(environment)))


class LiveArrivals(ArrivalTally):
    """The arrivals tally with what only the running test knows: arrivals nobody claimed are swept before
    each report, and the totals say which model and rate the test ran."""

    def drain(self) -> dict[str, Any]:
        if state.environment is not None:
            expire_arrivals(state.environment)
        return super().drain()

    def snapshot(self) -> dict[str, Any]:
        return arrivals_summary()


served_by = ServedByCounter()
server_timing = ServerTimingStats()
timeline = Timeline()  # every request per second, for timelines and faults (GET /timeline)
arrival_tally = LiveArrivals()
TALLIES: tuple[Tally, ...] = (served_by, server_timing, timeline, arrival_tally)

SERVER_TIMING_TAB = Tab(
    key="server-timing",
    title="Server timing",
    columns=(
        ("name", "Request"),
        ("stage", "Stage"),
        ("count", "Count"),
        ("mean", "Mean (ms)"),
        ("p50", "p50 (ms)"),
        ("p95", "p95 (ms)"),
        ("p99", "p99 (ms)"),
    ),
    rows=server_timing.table_rows,
)


class LabUser(FastHttpUser):
    abstract = True
    _claimed_at: float = 0.0  # intended time of the arrival this user waits to send
    _send_at: float | None = None  # when it should start: that time, or at once if it has passed
    _backoff_s: float = 0.0  # closed model: the wait before the next request after connection errors

    def on_start(self) -> None:
        if state.stream is not None:
            self.wait()  # the first request waits for its arrival too

    def on_stop(self) -> None:
        if state.stream is not None and self._claimed_at > time.time():
            state.stream.give_back(self._claimed_at)  # stopped before its send: another user takes it

    def wait_time(self) -> float:
        stream = state.stream
        if stream is None:  # closed model: at once, or after the back-off that connection errors set
            return self._backoff_s
        now = time.time()
        claim = stream.claim(now, *stream_rate(self.environment))
        arrival_tally.add_claim(claim)
        self._claimed_at = claim.at
        self._send_at = max(claim.at, now)
        return self._send_at - now

    def context(self) -> dict[str, Any]:
        if state.stream is None:
            return {}
        return {SEND_AT_KEY: self._send_at, INTENDED_KEY: self._claimed_at}

    def check(self, resp: Any) -> None:
        if resp.status_code == 0:  # no HTTP answer: refused, reset, DNS, timeout
            self._backoff_s = state.backoff.after_error(self._backoff_s)
            resp.failure(f"HTTP 0: {resp.error}")
            return
        if resp.status_code != 200:
            resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
            return
        self._backoff_s = 0.0  # answered: the next request goes at once
        try:
            body = resp.json()
        except ValueError:
            resp.failure("answer is not JSON")
            return
        if not isinstance(body, dict) or not isinstance(body.get("predicted_label"), str):
            resp.failure(f"no predicted_label in answer: {str(body)[:200]}")


# No `weight` here: apply_weights sets both from the options before the first dispatch.
class UploadUser(LabUser):
    @task
    def predict_upload(self) -> None:
        if not state.uploads:
            raise RuntimeError(f"UploadUser has no images: {state.load_error}")
        upload = random.choice(state.uploads)
        with self.client.post(
            "/predict",
            data=upload.body,
            headers={"Content-Type": upload.content_type},
            name="/predict",
            catch_response=True,
        ) as resp:
            self.check(resp)


class UrlUser(LabUser):
    @task
    def predict_url(self) -> None:
        if not state.image_names:
            raise RuntimeError(f"UrlUser has no images: {state.load_error}")
        base = self.environment.parsed_options.image_base_url.rstrip("/")
        url = f"{base}/{quote(random.choice(state.image_names))}"
        with self.client.post(
            "/predict/tf", json={"img_url": url}, name="/predict/tf", catch_response=True
        ) as resp:
            self.check(resp)


def _header(headers: Any, name: str) -> str | list[str] | None:
    return headers.get(name) if headers else None


@events.request.add_listener
def on_request(
    name: str,
    response_time: float = 0.0,
    response: Any = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if start_time is not None:  # every arrival sent, answered or not
        ctx = context or {}
        arrival_tally.add_start(
            start_time, due=ctx.get(SEND_AT_KEY), intended=ctx.get(INTENDED_KEY), response_ms=response_time
        )
    # The second it ended in, as Locust counts its own requests per second.
    timeline.add(time.time(), response_time, failed=exception is not None, start_time=start_time)
    # Only successful requests: an error answer's timings would mix into the server-side split.
    if exception is not None or response is None:
        return
    headers = getattr(response, "headers", None)
    server_timing.add(name, parse_server_timing(_header(headers, "Server-Timing")))
    host = _header(headers, "X-Served-By")
    if isinstance(host, list):
        host = host[0]
    if host:
        served_by.add(host.strip())


def arrivals_summary() -> dict[str, Any]:
    env = state.environment
    if env is not None and _runs_users(env):
        expire_arrivals(env)  # a local run: its users' stream is here
    options = env.parsed_options if env else None
    rate = target_rps(options)
    backoff = _backoff_summary(options)
    return {
        "model": "open" if rate > 0 else "closed",
        "arrivals": getattr(options, "arrivals", None) if rate > 0 else None,
        "target_rps": rate,
        "backoff": backoff,
        "users": state.total_users,
        **arrival_tally.summary(),
    }


def _backoff_summary(options: Any) -> dict[str, float] | None:
    """The back-off the users ran with, for the results (None in the open model or when unset)."""
    if options is None:
        return None
    try:
        backoff = backoff_from(options)
    except ValueError:
        return None
    return backoff.to_dict() if backoff.first_s > 0 else None


def _percentiles(p50: float | None, p95: float | None, p99: float | None) -> str:
    return " / ".join("" if v is None else f"{v:g}" for v in (p50, p95, p99))


def _arrival_rows() -> list[dict[str, Any]]:
    s = arrivals_summary()

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    late = s["from_intended_start"]
    if s["model"] == "closed":
        from_intended = "closed model: no intended time"
    else:
        from_intended = _percentiles(late["p50_ms"], late["p95_ms"], late["p99_ms"]) if late else ""
    total = state.environment.stats.total if state.environment is not None else None
    locust_times = (
        _percentiles(*(float(total.get_response_time_percentile(q)) for q in (0.5, 0.95, 0.99)))
        if total is not None and total.num_requests
        else ""
    )

    rows = [
        ("Load", f"open, {s['arrivals']}" if s["model"] == "open" else "closed (no target rate)"),
        ("Target rate (req/s)", num(s["target_rps"] or None, "g")),
        ("Achieved rate (req/s)", num(s["achieved_rps"], ".2f")),
        ("Inter-arrival CV (Poisson 1, even 0)", num(s["interarrival_cv"], ".3f")),
        ("Most sends in 100 ms", num(s["max_per_100ms"], "d")),
        ("100 ms windows without a send", num(s["empty_100ms_share"], ".1%")),
        ("Arrivals (sent + dropped)", str(s["intended"])),
        ("Sent", str(s["sent"])),
        ("Late (no user free at its time)", str(s["late"])),
        ("Dropped (later than users/rate)", str(s["dropped"])),
        ("Mean / max lateness (ms)", f"{s['mean_late_ms']:.1f} / {s['max_late_ms']:.1f}"),
        ("Sends > 10 ms behind time (busy generator)", str(s["lagging_sends"])),
        ("Max send lag (ms)", f"{s['max_send_lag_ms']:.1f}"),
        ("Locust's response time p50 / p95 / p99 (ms)", locust_times),
        ("From intended start to answer p50 / p95 / p99 (ms; dropped at their lateness)", from_intended),
    ]
    return [{"metric": k, "value": v} for k, v in rows]


ARRIVALS_TAB = Tab(
    key="arrivals", title="Arrivals", columns=(("metric", "Metric"), ("value", "Value")), rows=_arrival_rows
)


def swarm_state(environment: Environment) -> promexport.SwarmState:
    """What the master (or a local run) holds right now, for GET /metrics."""
    runner = environment.runner
    requests = [
        promexport.RequestSeries(
            method=entry.method or "",
            name=entry.name,
            requests=entry.num_requests,
            failures=entry.num_failures,
            current_rps=float(entry.current_rps),
            current_failures_per_s=float(entry.current_fail_per_sec),
            response_times_ms=dict(entry.response_times),
            response_time_sum_ms=float(entry.total_response_time),
        )
        for entry in environment.stats.entries.values()
    ]
    stages = {
        name: {stage: promexport.Histogram(dict(h.counts), h.sum_ms) for stage, h in by_stage.items()}
        for name, by_stage in server_timing.histograms().items()
    }
    # The counts only: arrivals_summary() also computes inter-arrival statistics, too much per scrape.
    arrivals = {
        "sent": arrival_tally.sent,
        "late": arrival_tally.late,
        "dropped": arrival_tally.dropped,
        "target_rps": target_rps(environment.parsed_options),
    }
    return promexport.SwarmState(
        users=runner.user_count if runner is not None else 0,
        workers=runner.worker_count if isinstance(runner, MasterRunner) else None,
        requests=requests,
        stages=stages,
        arrivals=arrivals,
    )


def metrics_response() -> Response:
    assert state.environment is not None  # the route exists only once init has run
    return Response(promexport.render(swarm_state(state.environment)), content_type=promexport.CONTENT_TYPE)


def _runs_users(environment: Environment) -> bool:
    return not isinstance(environment.runner, MasterRunner)


def _counts_totals(environment: Environment) -> bool:
    return not isinstance(environment.runner, WorkerRunner)


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    state.environment = environment
    options = environment.parsed_options
    if options is None:  # Environment built by hand (library use): keep the class defaults
        return
    if _counts_totals(environment):  # workers take the master's options with every spawn message
        try:
            weights_from(options)
            backoff_from(options)
        except ValueError as e:
            sys.exit(f"locustfile: {e}")  # SystemExit passes through Locust's event hooks: stop here
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(
            PACING_MESSAGE, lambda environment, msg, **_kw: set_total_users(int(msg.data["total_users"]))
        )
    if _counts_totals(environment):
        apply_weights(options)
    web_ui = environment.web_ui
    if web_ui:
        add_tab(web_ui, SERVER_TIMING_TAB)
        add_tab(web_ui, ARRIVALS_TAB)
        add_route(web_ui, "/metrics", metrics_response)
        # A value a /swarm form sets stays on the master for every later test (Locust keeps the form's
        # options), so a client that wants a test with the master's own settings sends these with it.
        started_with = {k: getattr(options, k) for k in LAB_OPTIONS if getattr(options, k, None) is not None}
        add_json_route(web_ui, "/options", lambda: started_with)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if _counts_totals(environment):
        apply_weights(environment.parsed_options)
        log.info("user weights: UploadUser=%d UrlUser=%d", *state.weights)
        # target_user_count is set before test_start fires. Workers learn it from this message, which the
        # master sends before the spawn messages, so their first users are paced right; a worker's own
        # test_start comes with the first spawn message, after it, so only here is the count cleared.
        state.total_users = 0
        set_total_users(runner.target_user_count)
        if isinstance(runner, MasterRunner):
            runner.send_message(PACING_MESSAGE, {"total_users": runner.target_user_count})
    if _runs_users(environment):
        load_images(environment.parsed_options)
        start_arrivals(environment)
        try:
            state.backoff = backoff_from(environment.parsed_options)
        except ValueError as e:
            log.error("%s; no back-off", e)
            state.backoff = Backoff(0.0, 0.0)


@events.spawning_complete.add_listener
def on_spawning_complete(user_count: int, **_: Any) -> None:
    # Fires on every node with the total across workers (the master forwards it), also after the
    # user count is changed in the web UI during a test.
    set_total_users(user_count)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    if _runs_users(environment):
        expire_arrivals(environment)  # those every user was too busy to claim up to the stop
    state.stream = None  # no more arrivals: none is dropped after the users stopped
    if _counts_totals(environment):
        # On a master the workers' last report (up to 3 s of counts) may still be on its way; the line
        # logged at exit and GET /served-by have it.
        log.info("served-by: %s", json.dumps(served_by.snapshot()))


@events.quit.add_listener
def on_quit(exit_code: int, **_: Any) -> None:
    env = state.environment
    if env is None or not _counts_totals(env):
        return
    # Same "served-by: {json}" shape as at test stop, so a log reader can take the last such line.
    log.info("served-by: %s (final, with the workers' last reports)", json.dumps(served_by.snapshot()))
    log.info("arrivals: %s (final)", json.dumps(arrivals_summary()))


def _write_json(path: str, data: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def setup_tally_listeners(events: Events, tallies: Sequence[Tally]) -> None:
    """Everything a tally needs from Locust, in one place (after Locust's own
    `setup_distributed_stats_event_listeners`): its route on the web UI, a reset when a test starts, by
    the UI's reset button and with --reset-stats, a worker's delta with every stats report and the master's
    merge of it, and its file at exit."""

    def reset(**_: Any) -> None:
        for tally in tallies:
            tally.reset()

    @events.init.add_listener
    def add_routes(environment: Environment, **_: Any) -> None:
        if environment.web_ui:
            for tally in tallies:
                add_json_route(environment.web_ui, tally.route, tally.snapshot)

    events.test_start.add_listener(reset)
    events.reset_stats.add_listener(reset)

    @events.spawning_complete.add_listener
    def reset_with_stats(**_: Any) -> None:
        env = state.environment
        if env is not None and env.reset_stats and _counts_totals(env):
            reset()  # mirror --reset-stats, which resets the request stats at this point

    @events.report_to_master.add_listener
    def hand_over(client_id: str, data: dict[str, Any], **_: Any) -> None:
        for tally in tallies:
            data[tally.key] = tally.drain()

    @events.worker_report.add_listener
    def add_up(client_id: str, data: dict[str, Any], **_: Any) -> None:
        for tally in tallies:
            tally.merge(data.get(tally.key))

    @events.quit.add_listener
    def write_files(**_: Any) -> None:
        env = state.environment
        if env is None or env.parsed_options is None or not _counts_totals(env):
            return
        for tally in tallies:
            if tally.file_option:
                _write_json(getattr(env.parsed_options, tally.file_option), tally.snapshot())


# After the listeners above, which write no tally: at a test's start the reset comes after them.
setup_tally_listeners(events, TALLIES)
