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

    server_events = []
    events.request.add_listener(
        lambda request_type, name, response_time, response_length, **kw: server_events.append(
            [name, response_time, response_length]) if request_type == "SERVER" else None)

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

    report = {}
    events.report_to_master.fire(client_id="w1", data=report)   # worker side: hands over its delta
    after_drain = lf.served_by.snapshot()
    events.worker_report.fire(client_id="w1", data=report)      # master side: adds it up
    events.worker_report.fire(client_id="w2", data={"served_by": {"replica-b": 5}})
    merged = lf.served_by.snapshot()
    events.reset_stats.fire()

    bad = []
    for weights in [(-1, 1), (0, 0)]:
        try:
            lf.weights_from(argparse.Namespace(upload_weight=weights[0], url_weight=weights[1]))
        except ValueError:
            bad.append(weights)
    print(json.dumps({
        "server_events": server_events, "report": report, "after_drain": after_drain, "merged": merged,
        "after_reset": lf.served_by.snapshot(), "bad_weights": bad,
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
    assert out["server_events"] == [["queue", 0.5, 0], ["infer", 3.0, 0], ["total", 4.0, 0]]
    assert out["report"] == {"served_by": {"replica-a": 1, "replica-b": 1}}
    assert out["after_drain"] == {}
    assert out["merged"] == {"replica-a": 1, "replica-b": 6}
    assert out["after_reset"] == {}
    assert out["bad_weights"] == [[-1, 1], [0, 0]]
    assert out["weights_ok"] == [0, 2]


def test_bad_weights_stop_locust_at_start(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-t", "1s",
           "--host", "http://127.0.0.1:9", "--upload-weight", "0", "--url-weight", "0"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert run.returncode != 0
    assert "must be >= 0 and not both 0" in run.stderr and "Ramping" not in run.stderr


@pytest.mark.slow
def test_headless_run_records_server_rows_without_failures(standin: StandIn, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "4", "-r", "4", "-t", "8s",
        "--host", standin.base_url, "--images-dir", str(IMAGES_DIR), "--image-base-url", URL_PREFIX,
        "--csv", str(tmp_path / "run"), "--json-file", str(tmp_path / "run"),
        "--served-by-file", str(tmp_path / "served_by.json"), "--only-summary",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=_env(), cwd=tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]

    with (tmp_path / "run_stats.csv").open() as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    assert {("SERVER", m) for m in METRICS} <= set(rows), sorted(rows)
    assert int(rows[("POST", "/predict")]["Request Count"]) > 0
    assert int(rows[("POST", "/predict/tf")]["Request Count"]) > 0
    assert all(int(row["Failure Count"]) == 0 for row in rows.values())
    assert float(rows[("SERVER", "infer")]["Average Response Time"]) == pytest.approx(3.0)
    assert float(rows[("SERVER", "decode")]["Average Response Time"]) == pytest.approx(1.25)

    # The JSON file has the exact totals (the single-process CSV is a per-second snapshot).
    stats = {(s["method"], s["name"]): s for s in json.loads((tmp_path / "run.json").read_text())}
    real = stats[("POST", "/predict")]["num_requests"] + stats[("POST", "/predict/tf")]["num_requests"]
    assert all(stats[("SERVER", m)]["num_requests"] == real for m in METRICS)
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
        deadline = time.monotonic() + 30
        while not live and time.monotonic() < deadline and master.poll() is None:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/served-by", timeout=2) as reply:
                    live = json.loads(reply.read())
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

    assert '"UploadUser": 2, "UrlUser": 6' in log, log[-3000:]
    stats = {(s["method"], s["name"]): s for s in json.loads((tmp_path / "run.json").read_text())}
    upload, url = stats[("POST", "/predict")], stats[("POST", "/predict/tf")]
    assert upload["num_failures"] == url["num_failures"] == 0
    real = upload["num_requests"] + url["num_requests"]
    assert stats[("SERVER", "total")]["num_requests"] == real

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

        swarm(upload=0, url=1)
        _http("POST", f"{web}/stop")
        kept = _http("GET", f"{web}/served-by")  # kept after the test stops
        first = dict(standin.requests)
        swarm(upload=1, url=0)  # a new test: new weights, counts from zero
        _http("POST", f"{web}/stop")
        served = _http("GET", f"{web}/served-by")
        second = {k: v - first.get(k, 0) for k, v in standin.requests.items()}
        assert _http("POST", f"{web}/stats/reset") == "ok"
        after_reset = _http("GET", f"{web}/served-by")
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=30)
    assert first.get("/predict 200", 0) == 0 and first["/predict/tf 200"] > 0, first
    assert second.get("/predict/tf 200", 0) == 0 and second["/predict 200"] > 0, second
    assert isinstance(kept, dict) and sum(kept.values()) >= first["/predict/tf 200"] - 2  # 2 users in flight
    assert isinstance(served, dict) and 0 < sum(served.values()) <= second["/predict 200"]
    assert after_reset == {}
    assert '"UploadUser": 0, "UrlUser": 2' in log and '"UploadUser": 2, "UrlUser": 0' in log, log[-2000:]
