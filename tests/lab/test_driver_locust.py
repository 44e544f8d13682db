"""The driver against a REAL Locust master + worker (subprocesses, the lab's own locustfile) and the
stand-in classifier from tests/locust, with a fake stack (no Docker). Locust is never imported here:
it would gevent-patch the pytest process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.compare import Driver
from lab.grid import ExperimentSettings, StackConfig
from lab.locust_api import LocustAPI
from lab.locust_csv import read_stats_csv
from lab.metrics import Thresholds
from lab.report import write_report
from lab.results import SCHEMA_VERSION
from lab.stacks import ExternalStack
from lab.summary import ramp_judge
from tests.lab.fakes import RecordingProgress, RecordingStack
from tests.locust.standin import StandIn, running_standin

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "locust" / "locustfile.py"
URL_PREFIX = "http://nginx/images/"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


@dataclass
class LocustCluster:
    url: str
    server: StandIn
    master: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    def served(self) -> int:
        with self.server.lock:
            return sum(n for key, n in self.server.requests.items() if key.endswith(" 200"))

    def state(self) -> str:
        return str(_get_json(f"{self.url}/stats/requests")["state"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocustCluster]:
    """A Locust master in web-UI mode (as in the compose stack) with one worker, both on 127.0.0.1."""
    with pytest.MonkeyPatch.context() as patch:
        # socketserver's listen backlog is 5: a burst of 30 new connections overflows it and the kernel
        # retries the SYN after 1 s, which showed up as 1 s outliers in p95/p99.
        patch.setattr(StandIn, "request_queue_size", 128)
        with running_standin(URL_PREFIX) as server:
            yield from _locust_processes(server, tmp_path_factory.mktemp("locust"))


def _locust_processes(server: StandIn, logs: Path) -> Iterator[LocustCluster]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env.update(LOCUST_IMAGES_DIR=str(ROOT / "images"), LOCUST_IMAGE_BASE_URL=URL_PREFIX)
    master_port, web_port = _free_port(), _free_port()
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    master = subprocess.Popen(
        [*base, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
         "--web-host", "127.0.0.1", "--web-port", str(web_port), "--host", server.base_url],
        stdout=(logs / "master.log").open("wb"), stderr=subprocess.STDOUT, env=env, cwd=logs,
    )  # fmt: skip
    worker = subprocess.Popen(
        [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
        stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT, env=env, cwd=logs,
    )  # fmt: skip
    url = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get_json(f"{url}/worker-count")["worker_count"] >= 1:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (logs / "master.log").read_text()[-2000:]
            assert master.poll() is None and worker.poll() is None, (logs / "master.log").read_text()
            time.sleep(0.3)
        yield LocustCluster(url, server, master, worker)
    finally:
        for proc in (worker, master):
            proc.terminate()
        for proc in (worker, master):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class FakeStack(RecordingStack):
    """No containers: the Locust processes and the test process (which runs the stand-in) play them,
    sampled with psutil and reported in `docker stats`' JSON shape."""

    def __init__(self, url: str, processes: dict[str, int]) -> None:
        super().__init__(url, expect_workers=1)
        self.processes = {service: psutil.Process(pid) for service, pid in processes.items()}
        for proc in self.processes.values():
            proc.cpu_percent(None)  # psutil's first reading is always 0: prime it

    def container_stats(self) -> list[dict[str, Any]]:
        samples = []
        for service, proc in self.processes.items():
            cpu = proc.cpu_percent(None)
            mem = proc.memory_info().rss / 2**20
            raw = {"Name": f"fake-{service}-1", "CPUPerc": f"{cpu:.2f}%", "MemUsage": f"{mem:.1f}MiB / 1GiB"}
            samples.append({"service": service, "raw": raw})
        return samples


def test_driver_measures_each_config_and_summary_matches_locust(
    cluster: LocustCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = FakeStack(
        cluster.url,
        {"classifier": os.getpid(), "locust-worker": cluster.worker.pid, "locust-master": cluster.master.pid},
    )
    settings = ExperimentSettings(replicas=[1, 2], users=[3], duration_s=3, warmup_s=0, slo_p95_ms=1000)
    served_before = cluster.served()
    progress = RecordingProgress()
    stops: list[float] = []
    real_stop = LocustAPI.stop

    def timed_stop(api: LocustAPI) -> None:
        stops.append(time.time())
        time.sleep(0.3)  # a slow stop: users wind down after the window
        real_stop(api)

    monkeypatch.setattr(LocustAPI, "stop", timed_stop)
    result = Driver(
        settings,
        stack,
        tmp_path,
        locust_url=cluster.url,
        project_dir=ROOT,
        progress=progress,
        sample_interval_s=1,
    ).run()
    served = cluster.served() - served_before
    assert not result.interrupted and result.error is None, result.error
    assert stack.applied == [StackConfig(1), StackConfig(2)] and len(stack.restored) == 1
    assert any(u.startswith("config 2/2 r2-u3: measuring") for u in progress.updates), progress.updates
    assert cluster.state() == "stopped"

    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["status"] == "complete" and run["locust_workers"] == 1 and run["git_sha"]
    assert run["schema_version"] == SCHEMA_VERSION
    summary = write_report(result.run_dir).to_dict()
    assert [c["label"] for c in summary["configs"]] == ["r1-u3", "r2-u3"]
    locust_total = 0
    for entry in summary["configs"]:
        mdir = result.run_dir / entry["config_dir"]
        for name in (
            "stats.csv", "failures.csv", "locust_report.html", "served_by.json", "server_timing.json",
            "arrivals.json", "timeline.json", "measurement.json",
        ):  # fmt: skip
            assert (mdir / name).is_file(), name
        stats = read_stats_csv(mdir / "stats.csv")
        # Only real requests: Locust's own Aggregated row is exact, and the summary is that row.
        assert {(r.type, r.name) for r in stats.rows} == {("POST", "/predict"), ("POST", "/predict/tf")}
        total = stats.aggregated
        assert total is not None and total.requests == sum(r.requests for r in stats.rows)
        assert entry["requests"] == total.requests > 20
        assert entry["failures"] == 0 == total.failures
        assert entry["rps"] == round(total.rps, 3)
        assert (entry["p50_ms"], entry["p95_ms"], entry["p99_ms"]) == tuple(
            total.percentile(q) for q in (0.5, 0.95, 0.99)
        )
        assert entry["p50_ms"] is not None and entry["p95_ms"] >= entry["p50_ms"]
        # The master's merged Server-Timing histograms: every answer carried the stand-in's header.
        timing = json.loads((mdir / "server_timing.json").read_text())
        assert timing["stages"]["total"]["count"] == entry["requests"]
        assert set(timing["by_name"]) == {"/predict", "/predict/tf"}
        assert entry["server_infer_ms"] == 3.0 and entry["server_queue_ms"] == 0.5  # the stand-in's header
        assert entry["server_total_ms"] == 4.75 and entry["server_other_ms"] == 0.0
        # Workers' last stats arrived before the download: X-Served-By counts (sent with the same reports)
        # add up to exactly the requests Locust counted.
        assert sum(entry["served_by"].values()) == entry["requests"]
        # So do the send times: a closed model has no late arrivals, but its sends have a rate and a CV.
        arrivals = json.loads((mdir / "arrivals.json").read_text())
        assert arrivals["model"] == "closed" and arrivals["sent"] == entry["requests"]
        assert entry["arrivals_late"] is None and entry["arrival_rps"]
        assert entry["interarrival_cv"] is not None
        assert entry["slo_met"] and entry["status"] == "complete"
        meta = json.loads((mdir / "measurement.json").read_text())
        assert meta["schema_version"] == SCHEMA_VERSION
        assert json.loads((mdir / "config.json").read_text())["schema_version"] == SCHEMA_VERSION
        # Every custom option goes with the form, the master's own start values (.env's here) under the
        # load model's: a value one run's form set stays on the master for the next run otherwise.
        options = meta["options"]
        assert (options["target_rps"], options["arrivals"]) == ("0", "poisson")
        assert (options["backoff_first_ms"], options["backoff_max_ms"]) == ("100", "1000")
        assert meta["downloads"]["stats.csv"] == 200
        assert 3 <= meta["t_end"] - meta["t_start"] < 10
        # The window closes when the stop is asked for, before users wind down.
        assert any(0 <= stop - meta["t_end"] < 0.1 for stop in stops), (meta["t_end"], stops)
        # CPU samples (psutil in docker-stats shape) reached the summary.
        assert entry["cpu_cores_used"] is not None and entry["generator_cpu_max_pct"] is not None
        assert "fake-locust-worker-1" in entry["cpu_by_container"]
        locust_total += entry["requests"]
        # The per-second timeline holds every request of the window (the stats and it travel together).
        seconds = json.loads((mdir / "timeline.json").read_text())["seconds"]
        assert sum(s["requests"] for s in seconds) == entry["requests"]
    # The server saw every counted request; at most the few in flight at each stop were not counted.
    assert locust_total <= served <= locust_total + 2 * 3 * 2
    html = (result.run_dir / "report.html").read_text()
    assert html.count("<svg") == 5 + len(summary["configs"])  # the five charts and a timeline each


def test_a_locust_option_of_one_run_does_not_hold_in_the_next(cluster: LocustCluster, tmp_path: Path) -> None:
    """A run with `-o backoff_first_ms=0` (no back-off), then one without: the second runs with the back-off
    the master started with, and records it, though Locust keeps the first form's value on the master."""
    stack = FakeStack(
        cluster.url,
        {"classifier": os.getpid(), "locust-worker": cluster.worker.pid, "locust-master": cluster.master.pid},
    )
    backoffs = []
    for options in ({"backoff_first_ms": "0"}, {}):
        settings = ExperimentSettings(
            replicas=[1], users=[2], duration_s=2, warmup_s=0, slo_p95_ms=1000, locust_options=options
        )
        result = Driver(settings, stack, tmp_path / str(len(backoffs)), locust_url=cluster.url,
                        project_dir=ROOT, sample_interval_s=1).run()  # fmt: skip
        assert result.error is None, result.error
        (mdir,) = [d for d in result.run_dir.iterdir() if d.is_dir()]
        backoffs.append(json.loads((mdir / "arrivals.json").read_text())["backoff"])
    assert backoffs == [None, {"first_ms": 100.0, "max_ms": 1000.0}]
    assert LocustAPI(cluster.url).started_with()["backoff_first_ms"] == "100"


def test_ctrl_c_stops_the_swarm_keeps_the_measurement_and_writes_a_partial_summary(
    cluster: LocustCluster, tmp_path: Path
) -> None:
    cmd = [
        sys.executable, "-m", "lab.cli", "compare", "--stack", "external", "--locust-url", cluster.url,
        "--expect-workers", "1", "--replicas", "1,2", "--users", "2", "--duration", "60s", "--warmup", "0s",
        "--out", str(tmp_path), "--run-id", "ctrlc", "--slo-p95-ms", "1000", "--project-dir", str(ROOT),
    ]  # fmt: skip
    # The package may not be installed: run it from the repository.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run_dir = tmp_path / "ctrlc"
    measurement = run_dir / "01-r1-u2" / "measurement.json"
    try:
        deadline = time.monotonic() + 20
        while not (measurement.is_file() and cluster.state() == "running"):
            assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the first measurement did not start"
            time.sleep(0.3)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted: partial results in" in output
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["stack_restored"] is True
    meta = json.loads(measurement.read_text())
    assert meta["status"] == "interrupted"
    # What was measured before Ctrl-C is kept, and the second configuration never started.
    stats = read_stats_csv(run_dir / "01-r1-u2" / "stats.csv")
    assert stats.requests > 10
    assert not (run_dir / "02-r2-u2").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    (entry,) = summary["configs"]
    assert entry["status"] == "interrupted" and entry["requests"] == stats.requests and not entry["slo_met"]
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()
    deadline = time.monotonic() + 5  # /stats/requests is cached by the master for up to 2 s
    while cluster.state() != "stopped":
        assert time.monotonic() < deadline, "the swarm was left running"
        time.sleep(0.5)


def test_open_model_ramp_paces_arrivals_and_records_each_step(cluster: LocustCluster, tmp_path: Path) -> None:
    """--rate with --ramp: target_rps and --arrivals reach the locustfile, each step is its own measurement,
    and achieved vs target is reported (the stand-in answers in ~1 ms, so the rate is held)."""
    settings = ExperimentSettings(
        replicas=[1], rates=[15.0], ramp=True, ramp_step=15.0, max_steps=2, step_duration_s=4, warmup_s=0,
        slo_p95_ms=1000, arrivals="even",
    )  # fmt: skip
    stack = ExternalStack(cluster.url, expect_workers=1)
    judge = ramp_judge(Thresholds.from_settings(settings))
    result = Driver(
        settings, stack, tmp_path, locust_url=cluster.url, project_dir=ROOT, sample_interval_s=1, judge=judge
    ).run()
    assert not result.interrupted and result.error is None, result.error
    cdir = result.run_dir / "01-r1-rate15-u30"
    cfg = json.loads((cdir / "config.json").read_text())
    assert [(s["dir"], s["users"], s["target_rps"], s["passed"]) for s in cfg["steps"]] == [
        ("step-01", 30, 15.0, True),
        ("step-02", 60, 30.0, True),
    ]
    assert "knee" not in cfg  # the analysis names the knee, not the driver
    summary = write_report(result.run_dir).to_dict()
    assert summary["knee"] == {"r1": {"users": 60, "target_rps": 30.0, "rps": summary["configs"][1]["rps"]}}
    steps = summary["configs"]
    assert [(c["label"], c["step"]) for c in steps] == [("r1-rate15-u30", 1), ("r1-rate30-u60", 2)]
    for entry in steps:
        meta = json.loads((cdir / entry["dir"] / "measurement.json").read_text())
        assert meta["options"]["target_rps"] == f"{entry['target_rps']:g}"
        assert meta["options"]["arrivals"] == "even" == entry["arrivals"]
        # 30-60 users for a ~1 ms server: every arrival found a user free.
        assert entry["arrivals_late"] == entry["arrivals_dropped"] == 0 and not entry["too_few_users"]
        # Paced, not closed-loop: a closed loop against a ~1 ms server would run at hundreds of req/s.
        assert 0.7 <= entry["achieved_ratio"] <= 1.5, entry
        assert not entry["fell_behind"] and entry["slo_met"]
    assert summary["capacity"] == {"r1": steps[1]["rps"]}


def test_until_stable_stops_a_steady_measurement_early_and_records_when(
    cluster: LocustCluster, tmp_path: Path
) -> None:
    stack = FakeStack(cluster.url, {"classifier": os.getpid(), "locust-worker": cluster.worker.pid})
    settings = ExperimentSettings(
        replicas=[1], users=[3], duration_s=20, warmup_s=0, repeat=2, until_stable=True, window_s=1,
        stability_pct=50.0, order_seed=7,
    )  # fmt: skip
    started = time.monotonic()
    result = Driver(
        settings, stack, tmp_path, locust_url=cluster.url, project_dir=ROOT, sample_interval_s=1
    ).run()
    assert result.error is None, result.error
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["order"] == {"kind": "rotate", "seed": 7, "rounds": 2}
    assert [p["label"] for p in run["plan"]] == ["r1-u3-rep1", "r1-u3-rep2"]
    for entry in run["plan"]:
        meta = json.loads((result.run_dir / entry["dir"] / "measurement.json").read_text())
        stability = meta["stability"]
        assert stability["rule"] == {"window_s": 1, "tolerance": 0.5, "windows": 3}
        # The stand-in answers at a steady pace: settled on the first whole windows, long before 20 s.
        assert stability["stable"] and 3 <= stability["settled_after_s"] <= 10
        assert meta["t_end"] - meta["t_start"] < 15
    assert time.monotonic() - started < 40
    summary = write_report(result.run_dir)
    assert all(c.metrics.stability is not None and c.metrics.stability.stable for c in summary.configs)
    assert "stable after" in (result.run_dir / "summary.md").read_text()
