"""Coordinated omission, measured: the real locustfile in the open model against a stand-in that pauses,
and the lab's report of that measurement.

One user at 50 arrivals/s against a server that pauses 1.2 s at the end of every 4 s. The user is stuck in
each pause, so Locust records one slow request per pause among ~140 fast ones: its p99 (from each send)
stays at a few ms. The ~60 arrivals of each pause were meant to be sent meanwhile; none was (the user was
busy, and one user's dropping bound is 1/50 s), and from their intended time they waited up to the end of
the pause. Over all arrivals the share that waited longer than y is (1.2 s - y) / 4 s, so the p99 from the
intended start is about 1.2 - 0.04 = 1.16 s and the p95 about 1.0 s. (A pause of exactly 1 s would put the
p99 at 0.96 s: a p99 above the pause length needs 1 % of the period more, hence 1.2 s.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.grid import ExperimentSettings
from lab.locust_csv import read_stats_csv
from lab.report import INTENDED_COLUMN, MEASUREMENT_HEADER, write_report
from tests.lab.golden import Config, Measurement, row_with, write_run
from tests.locust._modules import IMAGES_DIR, LOCUSTFILE
from tests.locust.standin import Stall, running_standin
from tests.locust.test_locustfile import URL_PREFIX, _env

RATE, USERS, SECONDS = 50, 1, 16
STALL = Stall(every_s=4.0, for_s=1.2)
SLO_P95_MS = 500.0


@pytest.mark.slow
def test_a_stalling_server_shows_in_the_latency_from_intended_start(tmp_path: Path) -> None:
    with running_standin(URL_PREFIX, STALL) as standin:
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS), "-r", "1",
            "-t", f"{SECONDS}s", "--host", standin.base_url, "--images-dir", str(IMAGES_DIR),
            "--image-base-url", URL_PREFIX, "--target-rps", str(RATE), "--arrivals", "even",
            "--arrivals-file", str(tmp_path / "arrivals.json"), "--csv", str(tmp_path / "locust"),
            "--only-summary",
        ]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=_env(), cwd=tmp_path)
    arrivals = json.loads((tmp_path / "arrivals.json").read_text())
    stats = read_stats_csv(tmp_path / "locust_stats.csv")
    assert stats.requests > 300 and stats.failures == 0, run.stderr[-3000:]
    intended, locust_p99 = arrivals["from_intended_start"], stats.percentile(0.99)
    assert locust_p99 is not None
    locust = f"{stats.percentile(0.5)} / {stats.percentile(0.95)} / {locust_p99}"
    print(f"Locust p50/p95/p99 {locust} ms; from intended start {intended}; "
          f"sent {arrivals['sent']}, dropped {arrivals['dropped']}")  # fmt: skip
    assert intended["p99_ms"] >= 1000, intended
    assert locust_p99 < 1000, f"Locust's own p99 {locust_p99} ms"
    assert arrivals["dropped"] > 0 and intended["count"] == arrivals["intended"]

    # The lab's report of this measurement: both, side by side, and the SLO judged from the intended start.
    settings = ExperimentSettings(replicas=[1], rates=[float(RATE)], slo_p95_ms=SLO_P95_MS)
    placeholder = row_with("/predict", 1, 1.0, 1.0, 1.0, 1.0)
    config = Config(1, [Measurement(USERS, [placeholder], target_rps=float(RATE), arrivals=arrivals)])
    run_dir = write_run(tmp_path / "run", settings, [config])
    (mdir,) = [d for d in run_dir.iterdir() if d.is_dir()]
    (mdir / "stats.csv").write_text((tmp_path / "locust_stats.csv").read_text())
    summary = write_report(run_dir)
    (entry,) = summary.configs
    m = entry.metrics
    assert (m.p99_ms, m.intended_p99_ms) == (locust_p99, intended["p99_ms"])
    assert not entry.slo_met and any(r.startswith("p95 from intended start") for r in entry.slo_reasons)
    assert m.p95_ms is not None and m.p95_ms < SLO_P95_MS  # Locust's own p95 would have passed
    row = next(
        line
        for line in (run_dir / "summary.md").read_text().splitlines()
        if line.startswith(f"| {entry.label}")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[MEASUREMENT_HEADER.index("p99 ms")]) == locust_p99
    assert cells[MEASUREMENT_HEADER.index(INTENDED_COLUMN)].endswith(f" / {intended['p99_ms']:g}")
