"""The open model, end to end: the project's locustfile on a master and 2 workers at 30 req/s against the
stand-in server, judged by the start times Locust itself records (the `request` event's `start_time`).

A test-only locustfile imports the project's users, options and listeners and adds one listener that
appends each start time to a file per process, so the check does not rely on the tally under test.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.locust._modules import IMAGES_DIR, LOCUST_DIR
from tests.locust.standin import StandIn, running_standin
from tests.locust.test_locustfile import URL_PREFIX, _env, _free_port

RATE = 30.0
USERS = 30
DURATION_S = 23  # >= 20 s while every worker sends (they start and stop up to ~0.5 s apart)
# A Poisson count over 21 s at 30/s varies by itself by 4.2 % (1 sigma): with a random seed the 5 % check
# would fail about one run in four with a faultless generator. The seed fixes the schedule, so the check
# measures the generator against it. Seeds 1-20 give schedules of 27.9-32.0 req/s over 21 s (2 workers,
# `random.Random(f"{seed}:{worker index}")`); 4 is the first within 1 % of 30 (30.2). Seed 12's schedule
# alone gives 27.9, and a run with it sent 27.7.
SEED = 4

RECORDER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, os.environ["LAB_LOCUST_DIR"])
    from locustfile import UploadUser, UrlUser  # noqa: F401 - the project's users, options, listeners
    from locust import events

    _out = open(os.path.join(os.environ["STARTS_DIR"], f"{os.getpid()}.txt"), "a", buffering=1)

    @events.request.add_listener
    def record_start(start_time=None, **_kw):
        if start_time is not None:
            _out.write(f"{start_time!r}\\n")
    """
)


@dataclass
class Starts:
    """The swarm's start times while every worker was sending: from the last worker's first start to the
    first worker's last. A worker that starts its users 0.4 s after the other (seen here on a busy machine)
    leaves the first one sending alone at half the rate: the ramp-up, which Locust's --reset-stats also
    leaves out, not the arrival process."""

    times: list[float]
    all_times: int  # before trimming to the window

    @classmethod
    def of(cls, per_process: list[list[float]]) -> Starts:
        sending = [t for t in per_process if t]
        start, end = max(t[0] for t in sending), min(t[-1] for t in sending)
        every = sorted(x for t in sending for x in t)
        return cls([x for x in every if start <= x <= end], len(every))

    @property
    def rate(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    @property
    def cv(self) -> float:
        gaps = [b - a for a, b in pairwise(self.times)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps)

    @property
    def max_per_100ms(self) -> int:
        return max(Counter(int((t - self.times[0]) / 0.1) for t in self.times).values())

    def describe(self) -> str:
        span = self.times[-1] - self.times[0]
        return (
            f"{len(self.times)} starts over {span:.1f} s: {self.rate:.2f} req/s, CV {self.cv:.3f}, "
            f"max {self.max_per_100ms} per 100 ms"
        )


@dataclass
class SwarmRun:
    starts: Starts
    summary: dict[str, Any] | None  # --arrivals-file
    live: dict[str, Any]  # GET /arrivals during the run
    tab_keys: list[str]  # extended_stats keys in GET /stats/requests
    log: str


def run_swarm(
    standin: StandIn, tmp_path: Path, env: dict[str, str], locust_dir: Path = LOCUST_DIR, workers: int = 2
) -> SwarmRun:
    """Master (web UI on loopback, autostart) + workers, USERS users at RATE for DURATION_S."""
    recorder = tmp_path / "record_starts.py"
    recorder.write_text(RECORDER)
    starts_dir = tmp_path / "starts"
    starts_dir.mkdir()
    master_port, web_port = _free_port(), _free_port()
    common = _env(
        LAB_LOCUST_DIR=str(locust_dir), STARTS_DIR=str(starts_dir), LOCUST_TARGET_RPS=str(RATE),
        LOCUST_IMAGES_DIR=str(IMAGES_DIR), LOCUST_IMAGE_BASE_URL=URL_PREFIX,
        LOCUST_ARRIVALS_FILE=str(tmp_path / "arrivals.json"), **env,
    )  # fmt: skip
    base = [sys.executable, "-m", "locust", "-f", str(recorder)]
    master = subprocess.Popen(
        [
            *base, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
            "--web-host", "127.0.0.1", "--web-port", str(web_port), "--autostart", "--autoquit", "1",
            "--expect-workers", str(workers), "-u", str(USERS), "-r", str(USERS), "-t", f"{DURATION_S}s",
            "--host", standin.base_url,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=common, cwd=tmp_path,
    )  # fmt: skip
    worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
    procs = [
        subprocess.Popen(
            worker_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=common, cwd=tmp_path
        )
        for _ in range(workers)
    ]
    live: dict[str, Any] = {}
    tab_keys: list[str] = []
    try:
        deadline = time.monotonic() + 40
        while not live.get("sent") and time.monotonic() < deadline and master.poll() is None:
            time.sleep(1)
            try:
                live = _get_json(f"http://127.0.0.1:{web_port}/arrivals")
                stats = _get_json(f"http://127.0.0.1:{web_port}/stats/requests")
                tab_keys = [t["key"] for t in stats.get("extended_stats", [])]
            except OSError:
                pass
        log, _ = master.communicate(timeout=DURATION_S + 60)
    finally:
        for proc in (master, *procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    assert master.returncode == 0, log[-3000:]
    per_process = [sorted(float(line) for line in f.read_text().split()) for f in starts_dir.iterdir()]
    summary_path = tmp_path / "arrivals.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return SwarmRun(Starts.of(per_process), summary, live, tab_keys, log)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return json.loads(reply.read())


@pytest.mark.slow
@pytest.mark.parametrize("process", ["poisson", "even"])
def test_open_model_over_two_workers(process: str, tmp_path: Path) -> None:
    with running_standin(URL_PREFIX) as standin:
        run = run_swarm(standin, tmp_path, {"LOCUST_ARRIVALS": process, "LOCUST_ARRIVALS_SEED": str(SEED)})
    starts, s = run.starts, run.summary
    assert s is not None, run.log[-3000:]
    print(f"{process}: {starts.describe()}")
    # A send that started late with a user free for it: this machine did not give the generator the CPU
    # in time (other work on the cores). Such stalls bunch sends; the messages say how many there were.
    lag = f"{s['lagging_sends']} sends > 10 ms behind time, max {s['max_send_lag_ms']:.0f} ms"
    assert starts.times[-1] - starts.times[0] >= 20
    assert starts.rate == pytest.approx(RATE, rel=0.05), starts.describe()
    assert starts.max_per_100ms <= 12, f"{starts.describe()}; {lag}"
    if process == "poisson":
        assert 0.8 <= starts.cv <= 1.25, f"{starts.describe()}; {lag}"
    else:
        assert starts.cv < 0.3, f"{starts.describe()}; {lag}"

    # The tally the master kept from the workers' reports: the same sends, none late at this load.
    assert s["model"] == "open" and s["arrivals"] == process, s
    # It counts every send, the ramp-up included.
    assert s["sent"] == starts.all_times and s["late"] == 0 and s["dropped"] == 0, s
    assert s["achieved_rps"] == pytest.approx(starts.rate, rel=0.05)
    # Every arrival, merged from both workers, timed from its intended start: at this load about Locust's
    # own ~2 ms, plus the generator's lag on a busy machine.
    assert s["from_intended_start"]["count"] == s["intended"], s["from_intended_start"]
    assert f"arrivals: {json.dumps(s)} (final)" in run.log
    assert run.live.get("sent", 0) > 0 and run.live["target_rps"] == RATE, run.live
    assert run.tab_keys == ["server-timing", "arrivals"]


@pytest.mark.slow
def test_arrivals_that_find_every_user_stuck_are_counted_as_dropped(tmp_path: Path) -> None:
    """A server that never answers: the one user waits for its first answer until the test stops, and the
    arrivals passing by are dropped and counted, not lost from sight."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody reads or answers
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LOCUST_DIR / "locustfile.py"), "--headless",
            "-u", "1", "-r", "1", "-t", "5s", "--host", host, "--images-dir", str(IMAGES_DIR),
            "--image-base-url", URL_PREFIX, "--target-rps", "20", "--arrivals", "even",
            "--arrivals-file", str(tmp_path / "arrivals.json"), "--stop-timeout", "0", "--only-summary",
        ]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    s = json.loads((tmp_path / "arrivals.json").read_text())
    assert s["sent"] <= 1 and s["late"] == 0, s
    # 5 s at 20/s: up to 100 arrivals, less the start-up before the first and the last 50 ms (the bound,
    # 1 user / 20 per s). One run here: 89 dropped; the request in flight was never answered (sent 0).
    assert 60 <= s["dropped"] <= 100 and s["intended"] == s["sent"] + s["dropped"], (s, run.stderr[-2000:])
    # Each dropped arrival is in the latency from the intended start, at least the bound (50 ms) late.
    assert s["from_intended_start"]["count"] >= s["dropped"] and s["from_intended_start"]["p50_ms"] >= 50, s
