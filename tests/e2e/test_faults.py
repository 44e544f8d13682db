"""End to end: faults and soaks as part of an experiment on the real compose stack.

`lab compare --fault kill-replica@15s` SIGKILLs one replica's main process mid-measurement; the summary
must show what that did (failures, the worst window) and that Docker restarted the replica, and the report
must draw the timeline with the fault marked (screenshot kept under artifacts/). Whether and when the
traffic recovered depends on the machine's noise: reported (printed, artifacts/e2e/faults-reported.txt).
`lab soak` must report each replica's RSS and open files and p95's drift.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lab.limits import TIMELINE_WINDOW_S
from tests.e2e.compose import ROOT, Stack
from tests.e2e.conftest import REPLICAS, web_master_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = ROOT / "artifacts" / "e2e"


def _lab(stack: Stack, out: Path, *args: str) -> Path:
    web_master_ready(stack)
    cmd = [sys.executable, "-m", "lab.cli", *args, "--out", str(out), "--project-name", stack.project]
    done = subprocess.run(cmd, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=900)
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0, (
        f"lab exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _only_config(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    (config,) = summary["configs"]
    return config


def test_kill_replica_mid_measurement(stack: Stack, tmp_path: Path) -> None:
    run = _lab(
        stack, tmp_path, "compare", "--replicas", str(REPLICAS), "--users", "8", "--duration", "50s",
        "--warmup", "5s", "--fault", "kill-replica@15s",
    )  # fmt: skip
    config = _only_config(run)
    (fault,) = config["faults"]
    print(json.dumps(fault, indent=1))
    assert fault["fault"] == "kill-replica@15s" and fault["applied"], fault
    assert fault["detail"].startswith("SIGKILL to host pid"), fault["detail"]
    # Not before its offset (to the wall clock's 0.1 s); after it by the master's answer to GET /served-by
    # (read at the fault), which a busy machine slows: within one of the product's timeline windows.
    assert 14.9 <= fault["at_s"] < 15.0 + TIMELINE_WINDOW_S, fault["at_s"]
    # nginx retries a request on the other replica: at most 0.1 % of requests fail.
    assert config["failures"] <= 0.001 * config["requests"], (config["failures"], config["requests"])
    assert fault["before_rps"] > 0 and fault["worst_p95_ms"] is not None
    # The other replica serves throughout: the restarted one answers 503 while its model loads, which nginx
    # sends on, instead of holding every request in its listen backlog until the model is ready (that was
    # 7 s without a successful answer). A request to the dead address waits out nginx's 2-s connect timeout.
    assert fault["outage_s"] < TIMELINE_WINDOW_S, fault["outage_s"]
    # Whether the traffic came back to the level before the kill, and when, depends on what else the
    # machine runs during the 35 s after it (it failed a busy machine with the product behaving: RPS fell
    # from 92 to ~50 and stayed there, 0 failures, both replicas serving). It is reported, not asserted;
    # tests/lab/test_faults.py asserts the recovery arithmetic on timelines it controls.
    _report(fault)
    # Docker's restart policy brought the killed replica back (a SIGKILL, not a manual stop); the other
    # served on; after the measurement every replica is healthy (lab's healing waits for it).
    assert fault["replicas_expected"] == REPLICAS
    assert _restarts(fault["target"]) >= 1, f"Docker did not restart {fault['target']}"
    assert fault["replicas_serving_after"] >= REPLICAS - 1, fault["not_serving_after"]
    assert stack.health("classifier") == ["healthy"] * REPLICAS
    assert "kill-replica@15s in" in (run / "summary.md").read_text()
    html = (run / "report.html").read_text()
    label = f"recovered +{fault['recovery_s']:g} s" if fault["recovered"] else "not recovered"
    assert "Timeline: " in html and f"kill-replica, {label}" in html
    _screenshot(run / "report.html", "faults-report.png")
    shutil.copytree(run, ARTIFACTS / "faults-run", dirs_exist_ok=True)


def test_reload_nginx_costs_no_request(stack: Stack, tmp_path: Path) -> None:
    """SIGHUP to nginx's master under load, twice: new workers take over, the old ones finish their
    requests, the listening socket stays open. Not one request may fail, and nginx is not restarted."""
    started = stack.inspect("nginx", "{{.State.StartedAt}}")
    workers = _nginx_workers(stack)
    run = _lab(
        stack, tmp_path, "compare", "--replicas", str(REPLICAS), "--users", "8", "--duration", "20s",
        "--warmup", "3s", "--fault", "reload-nginx@6s", "--fault", "reload-nginx@12s",
    )  # fmt: skip
    config = _only_config(run)
    print(json.dumps(config["faults"], indent=1))
    assert [f["fault"] for f in config["faults"]] == ["reload-nginx@6s", "reload-nginx@12s"]
    for fault in config["faults"]:
        assert fault["applied"] and fault["detail"].startswith("SIGHUP"), fault
        assert fault["failures"] == 0 and fault["outage_s"] == 0.0, fault
    assert config["failures"] == 0 and config["requests"] > 0, (config["failures"], config["requests"])
    assert stack.inspect("nginx", "{{.State.StartedAt}}") == started, "a reload must not restart nginx"
    # It did reload: the master runs new workers (the old ones exited once their requests were done).
    assert workers and not workers & _nginx_workers(stack), workers


RESTARTS = 5
# The bound: load back at its level within 2 s of nginx running again, every time. Clients back off
# at most LOCUST_BACKOFF_MAX_MS (1 s) after a refused connection, so each user has tried again by then.
LOAD_BACK_S = 2.0


def test_restart_nginx_load_is_back_within_2_s_every_time(stack: Stack, tmp_path: Path) -> None:
    """`docker restart` of nginx under load, in 5 measurements in a row: each time the clients find it
    back and the load is at its level within 2 s of its container running again, and the generator never
    stalls (the issue's 19 s without a request). How long nginx was out is reported."""
    run = _lab(
        stack, tmp_path, "compare", "--replicas", str(REPLICAS), "--users", "8", "--duration", "18s",
        "--warmup", "3s", "--fault", "restart-nginx@9s", "--repeat", str(RESTARTS),
    )  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    faults = [f for config in summary["configs"] for f in config["faults"]]
    lines = [
        f"restart {k}: ran again after {f['back_s']} s, load back {f['resumed_s']} s later; "
        f"{f['outage_s']} s without service, {f['failures']} failed ({f['failed_seconds']} s, "
        f"worst {f['worst_failures_per_s']}/s); before {f['before_rps']} req/s, "
        f"worst window {f['worst_rps']}; recovered after {f['recovery_s']} s"
        for k, f in enumerate(faults, 1)
    ]
    print("\n".join(lines))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "restart-nginx-reported.txt").write_text("\n".join(lines) + "\n")
    assert len(faults) == RESTARTS, [c["label"] for c in summary["configs"]]
    for f in faults:
        assert f["applied"] and f["detail"] == "docker restart", f
        assert f["back_s"] is not None and 0 < f["back_s"] < 15, f  # the container's own start, read at once
        assert not [s for s in f["stalls"] if s["generator"]], f["stalls"]
        assert f["resumed_s"] is not None and f["resumed_s"] <= LOAD_BACK_S, f
    stack.wait_healthy("nginx", 1, timeout=60)


PAUSE_S = 6  # past Locust's heartbeat liveness (3 missed 1-s heartbeats): the master marks them missing


def test_a_paused_generator_is_named_not_blamed_on_the_service(stack: Stack, tmp_path: Path) -> None:
    """Both Locust workers frozen (docker pause) for 6 s mid-measurement, the service untouched: the
    summary names a generator stall over those seconds, keeps them out of the outage, and its verdict says
    so instead of "not back to the earlier level". reload-nginx@4s is there so that the fault analysis
    looks at the seconds after it (it costs no request: test_reload_nginx_costs_no_request). Measured
    here: a 5-s stall from the freeze (the master marked both workers missing), then 10 s without users
    (Locust's master had given the missing workers' users up), both named."""
    workers = stack.container_ids("locust-worker")
    paused: dict[str, float] = {}

    def freeze() -> None:
        # The measurement has started when its live samples appear (the warm-up writes none).
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob("*/*/locust_live.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(8)
        subprocess.run(["docker", "pause", *workers], check=True, capture_output=True)
        paused["at"] = time.time()
        time.sleep(PAUSE_S)
        subprocess.run(["docker", "unpause", *workers], check=True, capture_output=True)
        paused["until"] = time.time()

    freezer = threading.Thread(target=freeze, daemon=True)
    freezer.start()
    try:
        run = _lab(
            stack, tmp_path, "compare", "--replicas", str(REPLICAS), "--users", "8", "--duration", "25s",
            "--warmup", "3s", "--fault", "reload-nginx@4s",
        )  # fmt: skip
    finally:
        freezer.join(timeout=60)
        subprocess.run(["docker", "unpause", *workers], capture_output=True)  # never leave them frozen
    (fault,) = _only_config(run)["faults"]
    print(json.dumps(fault["stalls"], indent=1), paused)
    stalls = fault["stalls"]
    assert stalls and all(s["generator"] for s in stalls), stalls
    # The first starts with the freeze and ends with it (a second in which a request ended before the
    # freeze, or after it, is not quiet); what the workers said: their heartbeats stopped.
    first = stalls[0]
    assert paused["at"] - 1 <= first["start"] <= paused["at"] + 2, (first, paused)
    assert first["start"] + first["seconds"] <= paused["until"] + 1 and first["seconds"] >= PAUSE_S - 2, first
    assert "missing" in first["workers"], first["workers"]
    # Locust's master gave the missing workers' users up: back, the workers idled (a later stall, named
    # too). None of it is the service's: no failure, no second without service, recovery not judged.
    assert fault["outage_s"] == 0.0 and fault["failures"] == 0, fault
    said = " ".join((run / "summary.md").read_text().split())
    for stall in stalls:
        assert f"the generator stalled for {stall['seconds']} s" in said, said
    assert "not back to the earlier level" not in said and "recovery not judged" in said


def _nginx_workers(stack: Stack) -> set[str]:
    (container,) = stack.container_ids("nginx")
    top = subprocess.run(
        ["docker", "top", container, "-o", "pid,args"], capture_output=True, text=True, check=True
    )
    return {line.split()[0] for line in top.stdout.splitlines() if "worker process" in line}


def _report(fault: dict[str, Any]) -> None:
    """What depends on the machine's noise, printed and kept under artifacts/ for a person to read."""
    restarted_served = fault["replicas_serving_after"] == fault["replicas_expected"]
    lines = [
        f"recovered: {fault['recovered']} (after {fault['recovery_s']} s)",
        f"before: {fault['before_rps']} req/s, p95 {fault['before_p95_ms']} ms; "
        f"worst 5-s window: {fault['worst_rps']} req/s, p95 {fault['worst_p95_ms']} ms",
        f"replicas serving after it: {fault['replicas_serving_after']} of {fault['replicas_expected']}"
        + ("" if restarted_served else f" (not serving: {fault['not_serving_after']})"),
    ]
    print("\n".join(lines))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "faults-reported.txt").write_text("\n".join(lines) + "\n")


def _restarts(container: str) -> int:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.RestartCount}}", container],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return int(out.strip())


def test_soak_reports_rss_files_and_p95_drift(stack: Stack, tmp_path: Path) -> None:
    run = _lab(stack, tmp_path, "soak", "--duration", "45s", "--users", "4", "--warmup", "5s")
    config = _only_config(run)
    soak = config["soak"]
    print(json.dumps(soak, indent=1))
    assert soak is not None and soak["edge_s"] >= 10
    assert (
        soak["p95_first_ms"] is not None and soak["p95_last_ms"] is not None and soak["p95_drift"] is not None
    )
    assert len(soak["replicas"]) == REPLICAS
    for replica in soak["replicas"]:
        assert replica["rss_start_mb"] > 50 and replica["rss_end_mb"] > 50  # a model is loaded
        assert replica["fds_start"] > 0 and replica["fds_end"] > 0
        assert "rss_slope_mb_per_min" in replica
    assert "### Soak" in (run / "summary.md").read_text()


def _screenshot(page: Path, name: str) -> None:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the report: install Debian's chromium")
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,4200"]
    subprocess.run([browser, *flags, f"--screenshot={ARTIFACTS / name}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
