"""A refused-connection outage under the real locustfile: what the clients lost must be time, not how fast
the generator can retry. The stand-in goes away for 1 s as a restarted nginx does (connections reset, new
ones refused, then the same port again); the run's own timeline (the locustfile's `timeline` tally) must
give an outage of about that second, a failure count bounded by the back-off (the same order of magnitude
with 4 and 16 users, not thousands), and in the open model about one failed arrival per arrival due.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.timeline import Outage, parse_timeline
from tests.locust._modules import IMAGES_DIR, LOCUST_DIR
from tests.locust.standin import Restarting, restarting_standin
from tests.locust.test_locustfile import URL_PREFIX, _env

OUTAGE_S = 1.0
RUN_S = 5
# The stand-in goes away this long after it served its first request (Locust is up and sending).
OUTAGE_AFTER_S = 1.5

DUMPER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, os.environ["LAB_LOCUST_DIR"])
    import locustfile
    from locustfile import UploadUser, UrlUser  # noqa: F401 - the project's users, options, listeners
    from locust import events

    @events.quit.add_listener
    def dump(**_kw):
        with open(os.environ["TIMELINE_OUT"], "w") as out:
            data = {"timeline": locustfile.timeline.snapshot(), "arrivals": locustfile.arrivals_summary()}
            json.dump(data, out)
    """
)


@dataclass
class OutageRun:
    outage_s: float  # measured from the run's timeline
    down_s: float  # how long the stand-in was really gone
    failures: int
    requests: int
    backoff: dict[str, float] | None
    log: str


def run_outage(server: Restarting, tmp_path: Path, users: int, *args: str) -> OutageRun:
    dumper = tmp_path / "dump_timeline.py"
    dumper.write_text(DUMPER)
    out = tmp_path / "timeline.json"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(dumper), "--headless", "-u", str(users), "-r", str(users),
        "-t", f"{RUN_S}s", "--host", server.base_url, "--images-dir", str(IMAGES_DIR),
        "--image-base-url", URL_PREFIX, "--stop-timeout", "0", "--only-summary", *args,
    ]  # fmt: skip
    env = _env(LAB_LOCUST_DIR=str(LOCUST_DIR), TIMELINE_OUT=str(out))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 30
        while sum(server.server.requests.values()) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.outage(time.time() + OUTAGE_AFTER_S, OUTAGE_S)
        log, _ = proc.communicate(timeout=RUN_S + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode in (0, 1), log[-3000:]  # 1: some requests failed, as they must here
    data = json.loads(out.read_text())
    seconds = parse_timeline(data["timeline"])
    ((gone, back),) = server.down
    by_t = {s.t: s for s in seconds}
    outage = Outage.after(by_t, math.floor(gone), max(by_t))
    return OutageRun(
        outage_s=outage.seconds,
        down_s=back - gone,
        failures=sum(s.failures for s in seconds),
        requests=sum(s.requests for s in seconds),
        backoff=data["arrivals"].get("backoff"),
        log=log,
    )


@pytest.mark.slow
def test_a_one_second_outage_costs_time_not_a_retry_storm(tmp_path: Path) -> None:
    runs: dict[int, OutageRun] = {}
    for users in (4, 8, 16):
        with restarting_standin(URL_PREFIX) as server:
            (tmp_path / str(users)).mkdir()
            runs[users] = run_outage(server, tmp_path / str(users), users)
        r = runs[users]
        print(f"{users} closed users: outage {r.outage_s:.2f} s (down {r.down_s:.2f} s), {r.failures} failed "
              f"of {r.requests}")  # fmt: skip
    eight = runs[8]
    assert eight.backoff == {"first_ms": 100.0, "max_ms": 1000.0}  # .env's defaults, reported by the run
    assert abs(eight.outage_s - eight.down_s) <= 0.5, (eight.outage_s, eight.down_s)
    for users, r in runs.items():
        # With 100 ms doubling, a user tries at most at +0, +0.1, +0.3, +0.7 s of a 1 s outage: about 4
        # failures each, plus the request the reset cut (without the back-off: thousands each).
        assert users <= r.failures <= 6 * users * max(1.0, r.down_s / OUTAGE_S), (
            users,
            r.failures,
            r.log[-2000:],
        )
    assert runs[16].failures / runs[4].failures < 10  # the same order of magnitude


@pytest.mark.slow
def test_open_model_fails_the_arrivals_due_during_the_outage(tmp_path: Path) -> None:
    with restarting_standin(URL_PREFIX) as server:
        r = run_outage(server, tmp_path, 30, "--target-rps", "30", "--arrivals", "even")
    print(f"open model at 30 req/s: outage {r.outage_s:.2f} s (down {r.down_s:.2f} s), {r.failures} failed")
    assert r.backoff is None  # arrivals come whatever the answers were
    expected = 30 * r.down_s
    assert abs(r.failures - expected) <= 8, (r.failures, expected)
