"""End to end: the real compose stack, load through nginx, scaling under load, real predictions.

Brings the stack up with 2 classifier replicas and 2 Locust workers (built from whatever base images and
model the environment names: Docker Hub and TF Hub for users, `scripts/offline-prepare` in CI), and takes
it down afterwards, also when a test fails.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from classifier.backends import BACKEND_KINDS
from tests.e2e.compose import ROOT, Stack
from tests.e2e.conftest import REPLICAS, WORKERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURES = ROOT.parent / "shared" / "fixtures" / "imagenet"

RUN_SECONDS = 75
SCALE_AT_SECONDS = 5
# The added replica is judged on its traffic only when it was healthy this long before the run ended.
SERVE_AT_LEAST_S = 15


def test_every_service_is_healthy(stack: Stack) -> None:
    assert stack.health("classifier") == ["healthy"] * REPLICAS
    assert stack.health("nginx") == ["healthy"]
    assert stack.health("locust-master") == ["healthy"]
    assert stack.health("locust-worker") == ["healthy"] * WORKERS


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"real ImageNet fixtures not found at {FIXTURES}")
def test_real_prediction_through_nginx(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.api_port}"
    with (FIXTURES / "parrot.jpg").open("rb") as photo:
        reply = httpx.post(f"{base}/predict", files={"file": ("parrot.jpg", photo, "image/jpeg")}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["predicted_label"] == "macaw"
    assert 0.0 < body["probability"] <= 1.0
    assert len(body["top_k"]) == 5
    assert reply.headers["x-served-by"] in stack.hostnames("classifier")
    assert "infer;dur=" in reply.headers["server-timing"]


def test_img_url_through_nginx_and_bad_input(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.api_port}"
    image = sorted(p.name for p in (ROOT / "images").iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})[0]
    reply = httpx.post(f"{base}/predict/tf", json={"img_url": f"http://nginx/images/{image}"}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["top_k"]
    # Bad input through the whole path: a clear 4xx with a JSON error, and every replica still ready.
    bad = httpx.post(f"{base}/predict", files={"file": ("x.jpg", b"not an image", "image/jpeg")}, timeout=30)
    assert 400 <= bad.status_code < 500 and "error" in bad.json()
    refused = httpx.post(f"{base}/predict/tf", json={"img_url": "http://127.0.0.1:8000/readyz"}, timeout=30)
    assert 400 <= refused.status_code < 500 and "error" in refused.json()
    assert stack.health("classifier") == ["healthy"] * REPLICAS


def _scale_up_when_loaded(stack: Stack, errors: list[BaseException], joined: list[float]) -> None:
    """Adds a replica under load; `joined` gets the seconds after the scale-up at which it was healthy."""
    try:
        time.sleep(SCALE_AT_SECONDS)
        started = time.monotonic()
        stack.compose(
            "up", "-d", "--no-deps", "--no-recreate", "--scale", f"classifier={REPLICAS + 1}", "classifier"
        )
        # Loading a model next to a loaded machine takes what the machine gives it: wait as long as
        # the classifier's own health check allows (start_period 120 s), and judge its traffic only
        # when it joined early enough to get some.
        stack.wait_healthy("classifier", REPLICAS + 1, timeout=180)
        joined.append(time.monotonic() - started)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_headless_locust_run_scales_and_balances(stack: Stack) -> None:
    """A bounded headless run through nginx; a third replica joins under load and gets traffic."""
    out = Path(tempfile.mkdtemp(prefix="loadlab-e2e-"))
    out.chmod(0o777)  # the Locust image runs as an unprivileged user
    # The UI master steps aside; a headless master takes its name, and the workers connect to it.
    stack.compose("stop", "locust-master", "locust-worker")
    stack.compose("up", "-d", "--no-deps", "--scale", f"locust-worker={WORKERS}", "locust-worker")
    errors: list[BaseException] = []
    joined: list[float] = []
    scaler = threading.Thread(target=_scale_up_when_loaded, args=(stack, errors, joined))
    scaler.start()
    run = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "--use-aliases",
        "-v",
        f"{out}:/out",
        "locust-master",
        "--master",
        "--locustfile",
        "/locust/locustfile.py",
        "--host",
        "http://nginx",
        "--headless",
        "--users",
        "16",
        "--spawn-rate",
        "16",
        "--run-time",
        f"{RUN_SECONDS}s",
        "--expect-workers",
        str(WORKERS),
        "--expect-workers-max-wait",
        "120",
        "--csv",
        "/out/run",
        "--json-file",
        "/out/run",
        "--server-timing-file",
        "/out/server_timing.json",
        "--only-summary",
        check=False,
        timeout=RUN_SECONDS + 300,
    )
    scaler.join()
    replicas = stack.hostnames("classifier")
    # Back as the other tests found it: the web UI master, its workers, REPLICAS classifiers.
    stack.compose(
        "up", "-d", "--no-deps", "--scale", f"locust-worker={WORKERS}", "locust-master", "locust-worker"
    )
    stack.compose("up", "-d", "--no-deps", "--scale", f"classifier={REPLICAS}", "classifier")
    log = run.stdout + run.stderr
    (out / "master.log").write_text(log)
    if errors:
        raise errors[0]
    assert run.returncode == 0, f"headless Locust failed ({run.returncode}):\n{log[-4000:]}"

    # Both workers joined before the run started.
    assert re.search(rf"\b{WORKERS} workers? (connected|ready)", log) or f"worker_count={WORKERS}" in log, (
        log[-3000:]
    )

    # Zero failures, on real traffic of both kinds; Locust's CSV holds only real requests.
    with (out / "run_stats.csv").open() as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    real = {key: row for key, row in rows.items() if key != ("", "Aggregated")}
    assert set(real) == {("POST", "/predict"), ("POST", "/predict/tf")}, sorted(rows)
    requests = sum(int(row["Request Count"]) for row in real.values())
    assert requests > 100
    assert int(rows[("", "Aggregated")]["Request Count"]) == requests
    assert sum(int(row["Failure Count"]) for row in real.values()) == 0
    # The server-side split of every one of them, with the workers' last reports.
    timing = json.loads((out / "server_timing.json").read_text())
    assert timing["stages"]["infer"]["count"] == timing["stages"]["total"]["count"] == requests

    # Every replica served requests, the one added under load too (by X-Served-By), when it was healthy
    # early enough to get traffic; how fast it loaded its model on this machine is reported.
    served = _served_by(log)
    assert len(replicas) == REPLICAS + 1
    (joined_after_s,) = joined
    print(f"the added replica was healthy {joined_after_s:.0f} s after the scale-up; served by {served}")
    if SCALE_AT_SECONDS + joined_after_s <= RUN_SECONDS - SERVE_AT_LEAST_S:
        assert replicas <= set(served), f"served by {served}, replicas {replicas}"
        assert all(served[host] > 0 for host in replicas)
    else:
        print("it joined too late in the run to be judged on its traffic (a busy machine)")
        assert len(set(served) & replicas) >= REPLICAS, f"served by {served}, replicas {replicas}"


def test_backend_switches_with_one_setting(stack: Stack) -> None:
    """CLASSIFIER_BACKEND picks the runtime and file; every backend the image holds names the cat (offline:
    tf and litert with the fixture's real weights rebuilt as float, litert-uint8 the fixture itself,
    litert-int8 quantized at build time)."""
    base = f"http://127.0.0.1:{stack.api_port}"
    found = stack.env.get("CLASSIFIER_BACKEND", "tf")
    files = set(stack.compose("exec", "-T", "classifier", "ls", "/opt/model").stdout.split())
    others = [name for name, kind in BACKEND_KINDS.items() if name != found and kind.model_file in files]
    assert "litert" in others or found == "litert", files
    scale = ["up", "-d", "--no-deps", "--wait", "--scale", f"classifier={REPLICAS}", "classifier"]
    photo = (ROOT / "images" / "chelsea_640x480.jpg").read_bytes()
    try:
        for other in [found, *others]:
            stack.compose(*scale, extra_env={"CLASSIFIER_BACKEND": other})
            for _ in range(2 * REPLICAS):
                files_ = {"file": ("c.jpg", photo, "image/jpeg")}
                reply = httpx.post(f"{base}/predict", files=files_, timeout=30)
                assert reply.status_code == 200, reply.text
                assert (reply.json()["backend"], reply.json()["predicted_label"]) == (other, "Egyptian cat")
            assert httpx.get(f"{base}/model", timeout=10).json()["backend"] == other
    finally:
        stack.compose(*scale, extra_env={"CLASSIFIER_BACKEND": found})
    assert httpx.get(f"{base}/model", timeout=10).json()["backend"] == found


def _served_by(log: str) -> dict[str, int]:
    """The master's X-Served-By tally, printed as one JSON line when the run stops."""
    for line in reversed(log.splitlines()):
        match = re.search(r"served-by: (\{.*\})", line)
        if match:
            return {str(k): int(v) for k, v in json.loads(match.group(1)).items()}
    raise AssertionError("the master printed no served-by tally")
