"""The real locustfile, always in child processes (importing it gevent-patches a process).

A glue test drives its event listeners directly; the run tests start real Locust processes, bounded in
time, against the stand-in server on 127.0.0.1 and check what they send and what they record.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.locust._modules import IMAGES_DIR, LOCUST_DIR, LOCUSTFILE
from tests.locust.standin import REPLICAS, StandIn, running_standin

URL_PREFIX = "http://nginx/images/"
METRICS = ("queue", "decode", "infer", "total")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _served_by_lines(log: str) -> list[dict[str, int]]:
    return [json.loads(m.group(1)) for m in re.finditer(r"served-by: (\{.*?\})", log)]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with running_standin(URL_PREFIX) as server:
        yield server


GLUE = textwrap.dedent(
    """
    import argparse, json, sys
    sys.path.insert(0, sys.argv[1])
    import locustfile as lf
    from geventhttpclient.header import Headers
    from locust import events

    fired = []
    events.request.add_listener(lambda request_type, name, **kw: fired.append([request_type, name]))

    class Response:
        def __init__(self, **headers):
            self.headers = Headers(headers)

    ok = Response(**{"Server-Timing": "queue;dur=0.5, infer;dur=3, total;dur=4", "X-Served-By": "replica-a"})
    def fire(response, exception=None):
        events.request.fire(request_type="POST", name="/predict", response_time=9.0, response_length=99,
                            response=response, exception=exception, context={})
    fire(ok)
    fire(Response(**{"X-Served-By": "replica-b"}))
    fire(ok, exception=RuntimeError("HTTP 503"))  # failures are neither timed nor counted
    fire(None, exception=ConnectionError("refused"))

    before_report = lf.server_timing.snapshot()
    report = {}
    events.report_to_master.fire(client_id="w1", data=report)   # worker side: hands over its delta
    after_drain = [lf.served_by.snapshot(), lf.server_timing.snapshot()]
    events.worker_report.fire(client_id="w1", data=report)      # master side: adds it up
    events.worker_report.fire(client_id="w2", data={"served_by": {"replica-b": 5}})
    merged = lf.served_by.snapshot()
    merged_timing = lf.server_timing.snapshot()
    events.reset_stats.fire()

    bad = []
    for weights in [(-1, 1), (0, 0)]:
        try:
            lf.weights_from(argparse.Namespace(upload_weight=weights[0], url_weight=weights[1]))
        except ValueError:
            bad.append(weights)
    print(json.dumps({
        "fired": fired, "before_report": before_report, "report": report, "after_drain": after_drain,
        "merged": merged, "merged_timing": merged_timing,
        "after_reset": [lf.served_by.snapshot(), lf.server_timing.snapshot()], "bad_weights": bad,
        "weights_ok": lf.weights_from(argparse.Namespace(upload_weight=0, url_weight=2)),
    }))
    """
)


def test_listeners_record_server_timing_and_served_by() -> None:
    run = subprocess.run(
        [sys.executable, "-c", GLUE, str(LOCUST_DIR)],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=LOCUST_DIR.parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # Only the four real requests: no synthetic request events for the server-side split.
    assert out["fired"] == [["POST", "/predict"]] * 4
    one = {"count": 1, "p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    expected = {
        stage: one | {"mean_ms": ms, "p50_ms": ms, "p95_ms": ms, "p99_ms": ms}
        for stage, ms in (("queue", 0.5), ("infer", 3.0), ("total", 4.0))
    }
    assert out["before_report"] == {"stages": expected, "by_name": {"/predict": expected}}
    assert out["report"]["served_by"] == {"replica-a": 1, "replica-b": 1}
    assert set(out["report"]["server_timing"]["/predict"]) == {"queue", "infer", "total"}
    empty = {"stages": {}, "by_name": {}}
    assert out["after_drain"] == [{}, empty]
    assert out["merged"] == {"replica-a": 1, "replica-b": 6}
    assert out["merged_timing"] == out["before_report"]
    assert out["after_reset"] == [{}, empty]
    assert out["bad_weights"] == [[-1, 1], [0, 0]]
    assert out["weights_ok"] == [0, 2]


def test_bad_weights_stop_locust_at_start(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-t", "1s",
           "--host", "http://127.0.0.1:9", "--upload-weight", "0", "--url-weight", "0"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert run.returncode != 0
    assert "must be >= 0 and not both 0" in run.stderr and "Ramping" not in run.stderr


@pytest.mark.slow
def test_headless_run_records_server_timing_without_failures(standin: StandIn, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "4", "-r", "4", "-t", "8s",
        "--host", standin.base_url, "--images-dir", str(IMAGES_DIR), "--image-base-url", URL_PREFIX,
        "--csv", str(tmp_path / "run"), "--json-file", str(tmp_path / "run"),
        "--served-by-file", str(tmp_path / "served_by.json"),
        "--server-timing-file", str(tmp_path / "server_timing.json"), "--only-summary",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=_env(), cwd=tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]

    with (tmp_path / "run_stats.csv").open() as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    assert set(rows) == {("POST", "/predict"), ("POST", "/predict/tf"), ("", "Aggregated")}, sorted(rows)
    assert int(rows[("POST", "/predict")]["Request Count"]) > 0
    assert int(rows[("POST", "/predict/tf")]["Request Count"]) > 0
    assert all(int(row["Failure Count"]) == 0 for row in rows.values())

    # The JSON file has the exact totals (the single-process CSV is a per-second snapshot).
    stats = {(s["method"], s["name"]): s for s in json.loads((tmp_path / "run.json").read_text())}
    assert set(stats) == {("POST", "/predict"), ("POST", "/predict/tf")}
    real = stats[("POST", "/predict")]["num_requests"] + stats[("POST", "/predict/tf")]["num_requests"]
    timing = json.loads((tmp_path / "server_timing.json").read_text())
    assert {m: timing["stages"][m]["count"] for m in METRICS} == dict.fromkeys(METRICS, real)
    assert timing["stages"]["infer"]["mean_ms"] == pytest.approx(3.0)
    assert timing["stages"]["decode"]["mean_ms"] == pytest.approx(1.25)
    for name in ("/predict", "/predict/tf"):
        assert timing["by_name"][name]["total"]["count"] == stats[("POST", name)]["num_requests"]
    served = json.loads((tmp_path / "served_by.json").read_text())
    assert sum(served.values()) == real
    assert set(served) == set(REPLICAS)
    # The stand-in saw every request Locust recorded, plus at most one in flight per user at the stop.
    answered = standin.requests["/predict 200"] + standin.requests["/predict/tf 200"]
    assert 0 <= answered - real <= 4
    assert sum(standin.requests.values()) == answered, standin.requests  # no 4xx: well-formed requests
    # Weights 3:1 with 4 users: three uploaders, one URL user; every photo sent both ways.
    assert '"UploadUser": 3, "UrlUser": 1' in log
    names = {p.name for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png", ".webp"}}
    assert standin.uploaded_names == names
    assert standin.fetched_urls <= {URL_PREFIX + n for n in names} and standin.fetched_urls
    assert _served_by_lines(log)[-1] == served


@pytest.mark.slow
def test_distributed_run_takes_options_from_master_and_totals_served_by(
    standin: StandIn, tmp_path: Path
) -> None:
    """Master + 2 workers: weights, pacing and images folder come from the master's env; counts add up."""
    master_port, web_port, target_rps, users = _free_port(), _free_port(), 150.0, 8
    master_env = _env(
        LOCUST_UPLOAD_WEIGHT="1", LOCUST_URL_WEIGHT="3", LOCUST_TARGET_RPS=str(target_rps),
        LOCUST_IMAGES_DIR=str(IMAGES_DIR), LOCUST_IMAGE_BASE_URL=URL_PREFIX,
    )  # fmt: skip
    # Workers parse their own (different) options: the master's must win, or uploads would fail.
    worker_env = _env(LOCUST_URL_WEIGHT="0", LOCUST_TARGET_RPS="0", LOCUST_IMAGES_DIR=str(tmp_path / "none"))
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    master = subprocess.Popen(
        [
            *base, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
            "--web-host", "127.0.0.1", "--web-port", str(web_port), "--autostart", "--autoquit", "1",
            "--expect-workers", "2", "-u", str(users), "-r", str(users), "-t", "10s",
            "--host", standin.base_url,
            "--json-file", str(tmp_path / "run"), "--served-by-file", str(tmp_path / "served_by.json"),
            "--server-timing-file", str(tmp_path / "server_timing.json"),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=master_env, cwd=tmp_path,
    )  # fmt: skip
    worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
    workers = [
        subprocess.Popen(
            worker_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=worker_env, cwd=tmp_path
        )
        for _ in range(2)
    ]
    try:
        live: dict[str, int] = {}
        live_timing: dict = {}
        tab: list = []
        deadline = time.monotonic() + 30
        while not (live and live_timing.get("stages") and tab) and time.monotonic() < deadline:
            if master.poll() is not None:
                break
            time.sleep(0.5)
            try:
                web = f"http://127.0.0.1:{web_port}"
                live, live_timing, requests_view = (
                    _http("GET", f"{web}/{path}") for path in ("served-by", "server-timing", "stats/requests")
                )
                assert isinstance(live, dict) and isinstance(live_timing, dict)
                assert isinstance(requests_view, dict)
                tab = [t for t in requests_view.get("extended_stats", []) if t["key"] == "server-timing"]
                tab = tab if tab and tab[0]["data"] else []
            except OSError:
                pass
        log, _ = master.communicate(timeout=90)
    finally:
        for proc in (master, *workers):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    assert master.returncode == 0, log[-3000:]
    assert live and set(live) <= set(REPLICAS), f"GET /served-by during the run gave {live}"
    assert set(live_timing["stages"]) == {"queue", "decode", "infer", "total"}, live_timing
    # The web UI's "Server timing" tab: one row per stage over all requests, then per request name.
    rows = {(r["name"], r["stage"]): r for r in tab[0]["data"]}
    assert rows[("All requests", "infer")]["p95"] == 3.0, rows
    assert rows[("/predict/tf", "total")]["count"] > 0

    assert '"UploadUser": 2, "UrlUser": 6' in log, log[-3000:]
    stats = {(s["method"], s["name"]): s for s in json.loads((tmp_path / "run.json").read_text())}
    upload, url = stats[("POST", "/predict")], stats[("POST", "/predict/tf")]
    assert upload["num_failures"] == url["num_failures"] == 0
    real = upload["num_requests"] + url["num_requests"]
    assert set(stats) == {("POST", "/predict"), ("POST", "/predict/tf")}
    # Every worker's histograms reached the master, the last report included.
    timing = json.loads((tmp_path / "server_timing.json").read_text())
    assert {stage: s["count"] for stage, s in timing["stages"].items()} == dict.fromkeys(METRICS, real)
    assert timing["by_name"]["/predict"]["decode"]["count"] == upload["num_requests"]

    served = json.loads((tmp_path / "served_by.json").read_text())
    assert sum(served.values()) == real and set(served) == set(REPLICAS)
    assert _served_by_lines(log)[-1] == served

    # Paced at target_rps in total, not per worker or per user (the stand-in answers in about 1 ms).
    first = min(upload["start_time"], url["start_time"])
    last = max(upload["last_request_timestamp"], url["last_request_timestamp"])
    achieved = real / (last - first)
    assert 0.75 * target_rps <= achieved <= 1.15 * target_rps, f"{achieved:.0f} req/s for {target_rps}"


def _http(method: str, url: str, form: dict[str, str] | None = None) -> object:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=5) as reply:
        body = reply.read()
    try:
        return json.loads(body)
    except ValueError:
        return body.decode()


@pytest.mark.slow
def test_web_ui_options_apply_per_test_and_served_by_resets(standin: StandIn, tmp_path: Path) -> None:
    web_port = _free_port()
    web = f"http://127.0.0.1:{web_port}"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--web-host", "127.0.0.1", "--web-port", str(web_port),
        "--images-dir", str(IMAGES_DIR), "--image-base-url", URL_PREFIX,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = _http("GET", f"{web}/")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "web UI did not come up"
                time.sleep(0.3)
        assert "upload_weight" in str(page) and "target_rps" in str(page)  # fields of the start form

        def swarm(upload: int, url: int) -> None:
            form = {"user_count": "2", "spawn_rate": "10", "host": standin.base_url}
            reply = _http(
                "POST", f"{web}/swarm", form | {"upload_weight": str(upload), "url_weight": str(url)}
            )
            assert isinstance(reply, dict) and reply["success"], reply
            time.sleep(3)

        def settled_counts() -> dict[str, int]:
            # /stop returns while a request may still be in flight; the stand-in counts it when it
            # answers, so wait until the counts hold still before taking them.
            before, deadline = dict(standin.requests), time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.5)
                now = dict(standin.requests)
                if now == before:
                    break
                before = now
            return before

        swarm(upload=0, url=1)
        _http("POST", f"{web}/stop")
        kept = _http("GET", f"{web}/served-by")  # kept after the test stops
        first = settled_counts()
        swarm(upload=1, url=0)  # a new test: new weights, counts from zero
        _http("POST", f"{web}/stop")
        served = _http("GET", f"{web}/served-by")
        timing = _http("GET", f"{web}/server-timing")
        seconds = _http("GET", f"{web}/timeline")
        second = {k: v - first.get(k, 0) for k, v in settled_counts().items()}
        assert _http("POST", f"{web}/stats/reset") == "ok"
        after_reset = _http("GET", f"{web}/served-by")
        timing_after_reset = _http("GET", f"{web}/server-timing")
        seconds_after_reset = _http("GET", f"{web}/timeline")
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=30)
    assert first.get("/predict 200", 0) == 0 and first["/predict/tf 200"] > 0, first
    assert second.get("/predict/tf 200", 0) == 0 and second["/predict 200"] > 0, second
    assert isinstance(kept, dict) and sum(kept.values()) >= first["/predict/tf 200"] - 2  # 2 users in flight
    assert isinstance(served, dict) and 0 < sum(served.values()) <= second["/predict 200"]
    assert after_reset == {}
    # The second test's split only: its uploads carry decode, and no URL fetches were timed.
    assert isinstance(timing, dict) and set(timing["by_name"]) == {"/predict"}, timing
    assert timing["stages"]["total"]["count"] == sum(served.values())
    assert timing_after_reset == {"stages": {}, "by_name": {}}
    # Every request of the second test, second by second (a local run: no report in flight).
    assert isinstance(seconds, dict) and sum(r["requests"] for r in seconds["seconds"]) == sum(
        served.values()
    )
    assert sum(r["failures"] for r in seconds["seconds"]) == 0
    assert [r["t"] for r in seconds["seconds"]] == sorted(r["t"] for r in seconds["seconds"])
    assert seconds_after_reset == {"seconds": []}
    assert '"UploadUser": 0, "UrlUser": 2' in log and '"UploadUser": 2, "UrlUser": 0' in log, log[-2000:]
