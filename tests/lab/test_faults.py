"""Fault specs, the injector's timing, and the arithmetic of what a fault did (windows, recovery)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lab.faults import (
    DURATION,
    FAULT_KINDS,
    AppliedFault,
    FaultInjector,
    FaultKind,
    FaultSpec,
    check_fits,
    read_faults,
)
from lab.stacks.docker import parse_docker_time
from lab.timeline import Second, fault_impact, locust_reaction, read_timeline, series, soak_result, window

T0 = 1_800_000_000  # a whole second, so window arithmetic is easy to follow


@pytest.mark.parametrize(
    "text, expected",
    [
        ("kill-replica@30s", FaultSpec("kill-replica", 30.0)),
        ("scale-replicas=1@1m", FaultSpec("scale-replicas", 60.0, count=1)),
        ("pause-replica=10s@15", FaultSpec("pause-replica", 15.0, duration_s=10.0)),
        ("restart-nginx@500ms", FaultSpec("restart-nginx", 0.5)),
    ],
)
def test_specs_parse_and_print_back(text: str, expected: FaultSpec) -> None:
    spec = FaultSpec.parse(text)
    assert spec == expected
    assert FaultSpec.parse(spec.text) == spec
    assert FaultSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("kill-replica", "KIND[=ARG]@OFFSET"),
        ("explode@3s", "KIND[=ARG]@OFFSET"),
        ("kill-replica=2@3s", "takes no =ARG"),
        ("scale-replicas@3s", "needs =count"),
        ("scale-replicas=0@3s", ">= 1"),
        ("pause-replica=0s@3s", "> 0 s"),
        ("kill-replica@soon", "invalid duration"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FaultSpec.parse(text)


def test_a_fault_must_end_inside_its_measurement() -> None:
    check_fits([FaultSpec.parse("pause-replica=10s@15s")], 40.0)
    for text in ("kill-replica@40s", "pause-replica=30s@15s"):
        with pytest.raises(ValueError, match="before the 40 s measurement ends"):
            check_fits([FaultSpec.parse(text)], 40.0)


def test_injector_applies_each_fault_at_its_offset_and_ends_a_pause(tmp_path: Path) -> None:
    calls: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def inject(spec: FaultSpec) -> tuple[str | None, str]:
        with lock:
            calls.append(("inject", spec.kind, time.time()))
        return "c-2", "done"

    def end(spec: FaultSpec, target: str | None) -> None:
        with lock:
            calls.append(("end", f"{spec.kind} {target}", time.time()))

    path = tmp_path / "faults.json"
    specs = [FaultSpec.parse("pause-replica=0.3s@0.2s"), FaultSpec.parse("kill-replica@0.1s")]
    injector = FaultInjector(specs, path, inject, end, lambda: {"a": 3})
    t0 = time.time()
    injector.start(t0)
    time.sleep(0.9)
    injector.stop()
    assert [(c[0], c[1]) for c in calls] == [
        ("inject", "kill-replica"), ("inject", "pause-replica"), ("end", "pause-replica c-2"),
    ]  # fmt: skip
    assert calls[0][2] - t0 == pytest.approx(0.1, abs=0.08)
    assert calls[1][2] - t0 == pytest.approx(0.2, abs=0.08)
    assert calls[2][2] - calls[1][2] == pytest.approx(0.3, abs=0.08)
    records = read_faults(path)
    assert [r.spec.kind for r in records] == ["kill-replica", "pause-replica"]
    assert records[1].t_end is not None and records[1].t is not None
    assert records[1].t_end - records[1].t == pytest.approx(0.3, abs=0.08)
    assert records[0].served_by_at_fault == {"a": 3} and records[0].target == "c-2"


def test_stopping_early_ends_a_pause_and_skips_later_faults(tmp_path: Path) -> None:
    ended: list[str] = []
    specs = [FaultSpec.parse("pause-replica=5s@0.05s"), FaultSpec.parse("kill-replica@3s")]
    injector = FaultInjector(
        specs, tmp_path / "f.json", lambda s: ("c-1", ""), lambda s, t: ended.append(str(t)), lambda: None
    )
    injector.start(time.time())
    time.sleep(0.3)
    injector.stop()
    assert ended == ["c-1"]  # a pause never outlives its measurement
    assert [r.spec.kind for r in read_faults(tmp_path / "f.json")] == ["pause-replica"]


def test_a_failing_fault_is_recorded_not_raised(tmp_path: Path) -> None:
    def inject(spec: FaultSpec) -> tuple[str | None, str]:
        raise RuntimeError("no container")

    injector = FaultInjector([FaultSpec.parse("kill-replica@0.01s")], tmp_path / "f.json", inject,
                             lambda s, t: None, lambda: None)  # fmt: skip
    injector.start(time.time())
    time.sleep(0.2)
    injector.stop()
    (record,) = read_faults(tmp_path / "f.json")
    assert record.error == "RuntimeError: no container"


def test_injector_reads_a_restarted_targets_start_at_once(tmp_path: Path) -> None:
    """restart-nginx twice: each record keeps the start the container had right after its own restart (read
    again at the end, the container's start is the second one's); a start from before a fault (a replica
    Docker never restarted) is not that fault's doing."""
    started = {"nginx-1": 50.0, "classifier-2": 50.0}

    def inject(spec: FaultSpec) -> tuple[str | None, str]:
        target = "nginx-1" if spec.kind == "restart-nginx" else "classifier-2"
        if spec.kind == "restart-nginx":
            started[target] = time.time()
        return target, "done"

    specs = [FaultSpec.parse(t) for t in ("restart-nginx@0.05s", "kill-replica@0.1s", "restart-nginx@0.2s")]
    injector = FaultInjector(specs, tmp_path / "f.json", inject, lambda s, t: None, lambda: None,
                             lambda spec, target: {"started": started[str(target)]})  # fmt: skip
    injector.start(time.time())
    time.sleep(0.4)
    injector.stop()
    first, kill, second = read_faults(tmp_path / "f.json")
    assert first.t is not None and second.t is not None
    assert first.t <= first.events["started"] < second.t <= second.events["started"]
    assert second.events["started"] == started["nginx-1"]
    assert kill.events == {}


def _steady(t: int, rps: int, ms: float, failures: int = 0) -> Second:
    return Second(t, rps, failures, {ms: rps - 1, ms * 1.5: 1})


def _seconds() -> list[Second]:
    """30 s at 20 req/s (p95 100 ms); a fault at +15 s: 5 s at 8 req/s, 400 ms, 2 failures/s; then back."""
    out = []
    for k in range(30):
        if 15 <= k < 20:
            out.append(Second(T0 + k, 8, 2, {400.0: 8}))
        else:
            out.append(_steady(T0 + k, 20, 100.0))
    return out


def test_window_merges_histograms_of_its_seconds() -> None:
    by_t = {s.t: s for s in _seconds()}
    w = window(by_t, T0 + 13, 4)  # two normal seconds, two faulty
    assert (w.requests, w.failures, w.rps) == (56, 4, 14.0)
    # 56 requests: 38 at 100 ms, 2 at 150 ms, 16 at 400 ms: p50 = 100, p95 = 400 (nearest rank).
    assert (w.p50_ms, w.p95_ms) == (100.0, 400.0)


def test_fault_impact_windows_and_recovery() -> None:
    record = AppliedFault(FaultSpec.parse("kill-replica@15s"), t=T0 + 15.0, t_end=T0 + 15.0, target="c-2",
                          served_by_at_fault={"a": 100, "b": 90})  # fmt: skip
    impact = fault_impact(record, _seconds(), T0, T0 + 30, 2, {"a": 300, "b": 90})
    assert impact.at_s == 15.0 and impact.applied
    # Before: seconds 2..14 at 20 req/s, p95 over them is 100 ms (1 in 20 at 150 ms is the 95th percentile's
    # neighbour: nearest rank 247 of 260 is still 100 ms).
    assert impact.before_rps == 20.0 and impact.before_p95_ms == 100.0
    # Successful req/s: 8 answered a second, 2 of them failed (this old-style file does not say which
    # response times failed, so all count in the p95).
    assert impact.worst_rps == 6.0 and impact.worst_p95_ms == 400.0
    # The first window that is back and stays back starts at +20 s (windows from +16 to +19 hold bad seconds).
    assert impact.recovered and impact.recovery_s == 5.0
    assert impact.failures_during == 10 and impact.failures_after == 0
    assert impact.requests_during == 40
    # Failures in seconds 15-19 and no failure times in the file: 5 whole seconds without service.
    assert (impact.outage_s, impact.outage_from_s, impact.failed_seconds, impact.worst_failures_per_s) == (
        5.0, 0.0, 5, 2,
    )  # fmt: skip
    assert impact.failures == 10 and impact.failed_arrivals is None  # closed model
    assert (impact.band_min_rps, impact.band_max_p95_ms) == (18.0, 120.0)
    assert impact.replicas_expected == 2 and impact.replicas_serving_after == 1
    assert impact.not_serving_after == ["b"]


def test_no_recovery_when_the_last_windows_stay_low() -> None:
    seconds = [s if s.t < T0 + 15 else Second(s.t, 10, 0, {300.0: 10}) for s in _seconds()]
    record = AppliedFault(FaultSpec.parse("scale-replicas=1@15s"), t=T0 + 15.2, t_end=T0 + 15.2)
    impact = fault_impact(record, seconds, T0, T0 + 30, 2, {})
    assert not impact.recovered and impact.recovery_s is None
    assert impact.replicas_expected == 1 and impact.replicas_serving_after is None
    assert impact.failures_during == 0


def test_a_fault_never_applied_says_so() -> None:
    impact = fault_impact(AppliedFault(FaultSpec.parse("kill-replica@15s")), _seconds(), T0, T0 + 30, 2, {})
    assert not impact.applied and impact.at_s is None


def test_locust_reaction_to_a_lost_worker() -> None:
    live = [{"t": T0 + k, "user_count": 8, "worker_count": 2, "workers": []} for k in range(0, 15, 2)]
    live += [
        {"t": T0 + 16, "user_count": 8, "worker_count": 2, "workers": []},
        {"t": T0 + 18, "user_count": 4, "worker_count": 1, "workers": [{"state": "missing"}]},
        {"t": T0 + 24, "user_count": 8, "worker_count": 2, "workers": [{"state": "running"}]},
    ]
    reaction = locust_reaction(live, T0 + 15.0)
    assert (reaction.users_before, reaction.users_lowest, reaction.workers_before) == (8, 4, 2)
    assert reaction.missing_after_s == 3.0 and reaction.users_back_after_s == 9.0


def test_series_and_soak_drift(tmp_path: Path) -> None:
    rows = [
        {
            "t": s.t,
            "requests": s.requests,
            "failures": s.failures,
            "buckets": [[v, n] for v, n in s.buckets.items()],
        }
        for s in _seconds()
    ]
    (tmp_path / "timeline.json").write_text(json.dumps({"seconds": rows}))
    seconds = read_timeline(tmp_path / "timeline.json")
    assert seconds == _seconds()
    docker = [
        {"t": T0 + 4.0, "service": "classifier"},
        {"t": T0 + 4.0, "service": "classifier"},
        {"t": T0 + 4.0, "service": "nginx"},
        {"t": T0 + 16.0, "service": "classifier", "health": "healthy"},
        {"t": T0 + 16.0, "service": "classifier", "health": "starting"},  # restarted, not serving yet
    ]
    s = series(seconds, T0 + 0.5, T0 + 29.5, [{"t": T0 + 1.0, "user_count": 8}], docker)
    assert s.t_s[0] == 0.5 and len(s.t_s) == 28  # whole seconds inside the window
    assert s.rps[14] == 6 and s.failures[14] == 2  # second T0+15: successful requests, failures beside
    assert s.replicas == [(3.5, 2), (15.5, 1)] and s.users == [(0.5, 8)]

    samples = [{"t": T0 + k, "container": "c-1", "rss_mb": 100 + k, "fds": 20} for k in range(0, 30, 2)]
    samples += [{"t": T0 + k, "container": "c-2", "rss_mb": 200.0, "fds": 20 + k} for k in range(0, 30, 2)]
    soak = soak_result(samples, seconds, T0, T0 + 30)
    assert soak.edge_s == 9  # a third of the 28 s after the ramp-up
    c1, c2 = soak.replicas
    assert c1.rss_slope_mb_per_min == pytest.approx(60.0) and c1.rss_grew and not c1.fds_grew
    assert not c2.rss_grew and c2.fds_grew and c2.fds_end == 48
    assert soak.p95_first_ms == 100.0 and soak.p95_last_ms == 100.0 and not soak.p95_grew
    assert soak.flagged


def test_report_has_the_fault_table_soak_table_timeline_and_verdict(tmp_path: Path) -> None:
    from lab.grid import ExperimentSettings
    from lab.report import write_report
    from tests.lab.golden import Config, Measurement, classifier_samples, row_with, write_run

    t_start = 1_795_600_000
    settings = ExperimentSettings(
        replicas=[2], users=[8], duration_s=30.0, faults=["kill-replica@15s"], soak=True
    )
    row = row_with("/predict", 540, 18.0, 100, 120, 400)
    m = Measurement(
        8, [row], docker=classifier_samples(2, 60.0), served_by={"a": 300, "b": 240}, duration_s=30.0
    )
    run = write_run(tmp_path / "run", settings, [Config(2, [m])])
    mdir = next(p for p in run.iterdir() if p.is_dir())
    shifted = [Second(s.t - T0 + t_start, s.requests, s.failures, s.buckets) for s in _seconds()]
    rows = [{"t": s.t, "requests": s.requests, "failures": s.failures, "buckets": list(s.buckets.items())}
            for s in shifted]  # fmt: skip
    (mdir / "timeline.json").write_text(json.dumps({"seconds": rows}))
    fault = AppliedFault(
        FaultSpec.parse("kill-replica@15s"), t=t_start + 15.0, t_end=t_start + 15.0,
        target="lab-classifier-2", detail="SIGKILL", served_by_at_fault={"a": 100, "b": 90},
    )  # fmt: skip
    (mdir / "faults.json").write_text(json.dumps([fault.to_dict()]))
    procs = [
        {"t": t_start + k, "container": "lab-classifier-1", "rss_mb": 300.0, "fds": 30}
        for k in range(0, 30, 3)
    ]
    (mdir / "processes.jsonl").write_text("\n".join(json.dumps(p) for p in procs) + "\n")
    record = json.loads((mdir / "measurement.json").read_text())
    record["client_backoff"] = {"first_ms": 100.0, "max_ms": 1000.0}  # what the master reported
    (mdir / "measurement.json").write_text(json.dumps(record))

    summary = write_report(run)
    (entry,) = summary.configs
    (impact,) = entry.metrics.faults
    assert impact.recovery_s == 5.0 and impact.failures_during == 10 and impact.replicas_serving_after == 2
    saved = json.loads((run / "summary.json").read_text())["configs"][0]
    assert saved["faults"][0]["recovery_s"] == 5.0 and "timeline" not in saved
    assert saved["soak"]["flagged"] is False and saved["soak"]["replicas"][0]["rss_slope_mb_per_min"] == 0.0
    assert (
        "kill-replica@15s in r2-u8: 5 s without service (5 s with failures, at worst 2 failed/s), 10 failed "
        "requests (closed model: users back off 100 ms doubling to 1000 ms" in summary.verdict
    )
    assert "back to the earlier level after 5 s" in summary.verdict
    assert "2 of 2 replicas served after it" in summary.verdict
    md = (run / "summary.md").read_text()
    assert "### Faults" in md and "### Soak" in md and "| 5.00 | — | 10 requests (5 s, 2/s) |" in md
    assert "5.0 (≥ 18.0 req/s, p95 ≤ 120.0 ms)" in md  # the recovery band used
    html = (run / "report.html").read_text()
    assert "Timeline: r2-u8" in html and "kill-replica, recovered +5 s" in html
    assert html.count("<svg") == 6  # the five charts and the timeline


def test_recovery_band_is_as_wide_as_the_swings_before_the_fault() -> None:
    def run(swing_before: bool) -> list[Second]:
        seconds = []
        for k in range(40):
            if 15 <= k < 20:
                seconds.append(Second(T0 + k, 8, 0, {600.0: 8}))  # the fault
            elif k == 20 or (k == 8 and swing_before):
                seconds.append(Second(T0 + k, 20, 0, {100.0: 10, 180.0: 10}))  # a slow second
            else:
                seconds.append(Second(T0 + k, 20, 0, {100.0: 20}))
        return seconds

    record = AppliedFault(FaultSpec.parse("kill-replica@15s"), t=T0 + 15.0, t_end=T0 + 15.0)
    # One slow second before the fault: the level's p95 stays 100 ms (10 of 260 requests at 180 ms), but
    # the 5-s windows around that second had p95 180 ms. The same swing after the fault is no fault.
    swinging = fault_impact(record, run(swing_before=True), T0, T0 + 40, 2, {})
    assert swinging.before_p95_ms == 100.0 and swinging.band_max_p95_ms == 180.0
    assert swinging.recovered and swinging.recovery_s == 5.0
    # Without that swing before, the window holding the slow second at +20 s is not back (180 > 120 ms):
    # recovered from +21 s.
    calm = fault_impact(record, run(swing_before=False), T0, T0 + 40, 2, {})
    assert calm.before_p95_ms == 100.0 and calm.band_max_p95_ms == 120.0
    assert calm.recovered and calm.recovery_s == 6.0


def _flat(t: int, rps: int) -> Second:
    return Second(t, rps, 0, {100.0: rps})


def test_a_later_dip_within_the_noise_does_not_undo_a_recovery() -> None:
    """Back at +20 s; at +32 s one second at 8 req/s (a busy machine). Windows holding it fall below the
    band, but the rest of the measurement, taken together, is back: recovered at +5 s, as without the dip.
    A drop that lasts is not noise (test_no_recovery_when_the_last_windows_stay_low)."""
    seconds = _seconds() + [_steady(T0 + k, 20, 100.0) for k in range(30, 40)]
    seconds[32] = _flat(T0 + 32, 8)
    record = AppliedFault(FaultSpec.parse("kill-replica@15s"), t=T0 + 15.0, t_end=T0 + 15.0)
    impact = fault_impact(record, seconds, T0, T0 + 40, 2, {})
    assert impact.band_min_rps == 18.0
    assert impact.worst_rps == 6.0  # the fault's windows; the dip's are 17.6 req/s, below the band too
    assert impact.recovered and impact.recovery_s == 5.0


def test_the_band_widens_with_the_noise_of_the_seconds_before() -> None:
    """Seconds before the fault alternating 14 and 26 req/s: the band's floor is the lower end of the 95 %
    prediction interval of a 5-s window's mean from those seconds (Student's t), below both the 10 %
    tolerance and the windows' own range; after the fault a steady 16 req/s is within that noise: back."""
    noisy = [_flat(T0 + k, 14 if k % 2 else 26) for k in range(15)]
    after = [_flat(T0 + k, 16) for k in range(15, 40)]
    record = AppliedFault(FaultSpec.parse("kill-replica@15s"), t=T0 + 15.0, t_end=T0 + 15.0)
    impact = fault_impact(record, noisy + after, T0, T0 + 40, 2, {})
    pre = np.array([14 if k % 2 else 26 for k in range(2, 15)], dtype=float)  # after the ramp's 2 s
    n = len(pre)
    floor = pre.mean() - stats.t.ppf(0.95, n - 1) * pre.std(ddof=1) * np.sqrt(1 / 5 + 1 / n)
    assert impact.band_min_rps == round(floor, 2) and floor < 16 < 0.9 * pre.mean()
    assert impact.recovered and impact.recovery_s == 0.0
    # The same 16 req/s after calm seconds before is a drop, not noise.
    calm = [_flat(T0 + k, 20) for k in range(15)]
    dropped = fault_impact(record, calm + after, T0, T0 + 40, 2, {})
    assert dropped.band_min_rps == 18.0 and not dropped.recovered


def test_compare_refuses_faults_on_a_stack_lab_does_not_manage(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lab.cli import EXIT_USAGE, app

    args = [
        "compare", "--stack", "external", "--locust-url", "http://127.0.0.1:9", "--replicas", "1",
        "--users", "1", "--duration", "20s", "--fault", "kill-replica@5s", "--out", str(tmp_path),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--fault needs --stack compose" in result.output
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_help_and_readme_list_every_fault_kind() -> None:
    from typer.testing import CliRunner

    from lab.cli import app

    result = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    for kind in FAULT_KINDS.values():
        assert kind.example in help_text, kind.name
    readme = (Path(__file__).resolve().parents[2] / "lab" / "README.md").read_text()
    assert re.findall(r"^\| `([a-z-]+)(?:=[^@`]+)?@30s` \|", readme, re.M) == list(FAULT_KINDS)


def test_kind_records_drive_the_analysis() -> None:
    kill, scale, nginx = (FAULT_KINDS[k] for k in ("kill-replica", "scale-replicas", "restart-nginx"))
    assert kill.replicas_expected(FaultSpec.parse("kill-replica@3s"), 3) == 3
    assert scale.replicas_expected(FaultSpec.parse("scale-replicas=1@3s"), 3) == 1
    assert nginx.replicas_expected(FaultSpec.parse("restart-nginx@3s"), 3) is None
    assert [k.name for k in FAULT_KINDS.values() if k.lasts] == ["pause-replica", "partition-node"]
    assert [k.name for k in FAULT_KINDS.values() if k.on_load_generator] == ["kill-locust-worker"]
    with pytest.raises(ValueError, match="needs an end"):
        FaultKind("hang", "", "nginx", lambda ops, target, spec: "", arg=DURATION)


def test_node_kinds_parse_their_node_and_duration() -> None:
    kill = FaultSpec.parse("kill-node=node-b@10s")
    assert (kill.node, kill.duration_s, kill.text) == ("node-b", 0.0, "kill-node=node-b@10s")
    cut = FaultSpec.parse("partition-node=node-b:15s@10s")
    assert (cut.node, cut.duration_s, cut.text) == ("node-b", 15.0, "partition-node=node-b:15s@10s")
    assert FaultSpec.from_dict(cut.to_dict()) == cut
    assert FAULT_KINDS["partition-node"].lasts and not FAULT_KINDS["kill-node"].lasts
    for bad, why in [
        ("partition-node=node-b@10s", "NODE:DURATION"),
        ("partition-node=node-b:0s@10s", "> 0 s"),
        ("kill-node=no de@10s", "not a node name"),
        ("kill-node@10s", "needs =node"),
    ]:
        with pytest.raises(ValueError, match=why):
            FaultSpec.parse(bad)


def test_node_kinds_belong_to_stacks_that_inject_node_faults() -> None:
    from lab.stacks import STACKS

    assert "partition-node" not in STACKS["compose"].kind.fault_kinds
    assert "kill-replica" in STACKS["compose"].kind.fault_kinds
    assert STACKS["swarm"].kind.fault_kinds == ("kill-node", "partition-node")
    assert STACKS["external"].kind.fault_kinds == ()


def test_applied_events_round_trip() -> None:
    record = AppliedFault(FaultSpec.parse("kill-node=node-b@5s"), t=100.0, events={"node_down": 111.5})
    assert AppliedFault.from_dict(record.to_dict()) == record


def _storm(t_fault: float, refused_per_s: int) -> list[Second]:
    """45 s at 90 req/s (p95 100 ms); nginx restarted at t_fault: 0.9 s of refused connections (answered
    in 1 ms) in the fault's second and the next, at `refused_per_s` (how fast the generator retries)."""
    out = []
    for k in range(45):
        t = T0 + k
        if k in (20, 21):
            ok = 45  # half of each second served, the other half refused
            first = t_fault if k == 20 else float(t)
            last = float(t) + 0.999 if k == 20 else t_fault + 0.9
            out.append(Second(t, ok + refused_per_s, refused_per_s, {100.0: ok, 1.0: refused_per_s},
                              {1.0: refused_per_s}, first, last, ok + refused_per_s))  # fmt: skip
        else:
            out.append(Second(t, 90, 0, {90.0: 85, 100.0: 5}, started=90))
    return out


@pytest.mark.parametrize("refused_per_s", [5, 178])
def test_refused_requests_are_no_throughput_and_the_outage_is_its_own_time(refused_per_s: int) -> None:
    """The issue's "Recovered after 0.0 s": 356 refused requests in two seconds counted as throughput and
    listed after the recovery. Judged on successful requests, the windows holding the refusals are not back,
    the outage is the refusals' own span, and neither depends on how fast the generator retried."""
    t_fault = T0 + 20.3
    record = AppliedFault(FaultSpec.parse("restart-nginx@20s"), t=t_fault, t_end=t_fault)
    impact = fault_impact(record, _storm(t_fault, refused_per_s), T0, T0 + 45, 2, {})
    assert impact.before_rps == 90.0 and impact.before_p95_ms == 100.0
    # The window from second 21 is in the band (81 req/s: 10 % low, a half-refused second in it), but the
    # service was not back before the last refusal: recovered when the outage ended, 0.9 s after the fault.
    assert impact.recovered and impact.recovery_s == 0.9
    assert impact.failures_during == 2 * refused_per_s and impact.failures_after == 0
    assert impact.worst_rps == 72.0  # (3 x 90 + 2 x 45) / 5: successful requests only
    assert impact.worst_p95_ms == 100.0  # the refusals' 1 ms are not the service's latency
    assert impact.outage_s == 0.9 and impact.outage_from_s == 0.0
    assert (impact.failed_seconds, impact.worst_failures_per_s) == (2, refused_per_s)


def test_load_resumed_counts_from_the_restarted_target_running_again() -> None:
    """nginx's container started 1.2 s after the fault (the refusals ended at 0.9 s: clients backing off
    found it only later): the second it started in has failures, the next is whole and at the level, so the
    load was back 0.5 s after nginx, and the service is not recovered before nginx ran again."""
    t_fault = T0 + 20.3
    record = AppliedFault(FaultSpec.parse("restart-nginx@20s"), t=t_fault, t_end=t_fault,
                          events={"started": t_fault + 1.2})  # fmt: skip
    impact = fault_impact(record, _storm(t_fault, 5), T0, T0 + 45, 2, {})
    assert impact.back_s == 1.2 and impact.resumed_s == 0.5
    assert impact.recovered and impact.recovery_s == 1.2 and impact.outage_s == 0.9
    assert impact.band_min_second_rps == 81.0  # 10 % below 90 req/s: the seconds before did not vary
    # A fault that restarts nothing has neither.
    plain = AppliedFault(FaultSpec.parse("restart-nginx@20s"), t=t_fault, t_end=t_fault)
    assert fault_impact(plain, _storm(t_fault, 5), T0, T0 + 45, 2, {}).resumed_s is None


def test_open_model_counts_failed_arrivals() -> None:
    t_fault = T0 + 20.3
    record = AppliedFault(FaultSpec.parse("restart-nginx@20s"), t=t_fault, t_end=t_fault)
    impact = fault_impact(record, _storm(t_fault, 15), T0, T0 + 45, 2, {}, open_model=True)
    assert impact.failed_arrivals == 30 == impact.failures


def test_outage_joins_bad_seconds_and_counts_a_hung_second() -> None:
    """A second without a successful answer is without service too; bad seconds more than a window apart
    are another episode, not this outage."""
    seconds = [Second(T0 + k, 20, 0, {100.0: 20}, started=20) for k in range(40)]
    seconds[15] = Second(T0 + 15, 10, 3, {100.0: 7, 1.0: 3}, {1.0: 3}, T0 + 15.6, T0 + 15.9, 10)
    del seconds[16]  # nothing answered: hung
    seconds[16] = Second(T0 + 17, 12, 2, {100.0: 10, 1.0: 2}, {1.0: 2}, T0 + 17.0, T0 + 17.25, 12)
    seconds[33] = Second(T0 + 34, 20, 1, {100.0: 19, 1.0: 1}, {1.0: 1}, T0 + 34.5, T0 + 34.5, 20)
    record = AppliedFault(FaultSpec.parse("kill-replica@15s"), t=T0 + 15.5, t_end=T0 + 15.5)
    impact = fault_impact(record, seconds, T0, T0 + 40, 2, {})
    assert impact.outage_from_s == 0.1 and impact.outage_s == 1.65  # 15.6 to 17.25
    assert impact.failed_seconds == 3 and impact.failures == 6  # the later one counts, apart


def _stalled(spanned: int) -> list[Second]:
    """40 s at 20 req/s with starts recorded; refusals for 0.5 s after a fault at +15.2 s; then from +18 s
    nothing starts or ends for 19 s (`spanned` requests in flight across those seconds), then load again."""
    out = []
    for k in range(40):
        t = T0 + k
        if k == 15:
            out.append(Second(t, 20, 10, {100.0: 10, 1.0: 10}, {1.0: 10}, T0 + 15.2, T0 + 15.7, 20))
        elif 18 <= k < 37:
            if spanned:
                out.append(Second(t, 0, 0, {}, started=0, spanned=spanned))
        else:
            out.append(Second(t, 20, 0, {100.0: 20}, started=20))
    return out


def _live(states: str) -> list[dict[str, object]]:
    workers = [{"state": states, "user_count": 4, "cpu_usage": 2.0}, {"state": "running", "user_count": 4}]
    return [{"t": T0 + k, "user_count": 8, "workers": workers} for k in range(0, 40, 2)]


def test_a_stalled_generator_is_named_not_blamed_on_the_service() -> None:
    """The issue's 19 s: no request started or ended, none in flight, the workers running. That is the
    generator's stall: out of the outage, the worst window and the recovery, and named in the verdict."""
    record = AppliedFault(FaultSpec.parse("restart-nginx@15s"), t=T0 + 15.2, t_end=T0 + 15.2)
    impact = fault_impact(record, _stalled(spanned=0), T0, T0 + 40, 2, {}, _live("running"))
    (stall,) = impact.stalls
    assert (stall.start, stall.seconds, stall.in_flight, stall.generator, stall.at_s) == (
        T0 + 18,
        19,
        0,
        True,
        18,
    )
    assert stall.workers == "11 live samples: running in 22 worker samples, users 8, worker CPU up to 2 %"
    assert stall.describe().startswith("the generator stalled for 19 s from 18 s (")
    assert impact.outage_s == 0.5 and impact.failures == 10  # the refusals only, not the 19 s
    assert impact.worst_rps == 18.0  # windows holding the stall are left out
    assert impact.generator_stalled and impact.recovered and impact.recovery_s == 0.5


def test_requests_held_by_the_service_are_its_outage_unless_a_worker_went_missing() -> None:
    record = AppliedFault(FaultSpec.parse("pause-replica=19s@15s"), t=T0 + 15.2, t_end=T0 + 34.2)
    held = fault_impact(record, _stalled(spanned=8), T0, T0 + 40, 1, {}, _live("running"))
    (stall,) = held.stalls
    assert not stall.generator and stall.in_flight == 8
    assert stall.describe().startswith("every request waited on the service for 19 s")
    assert held.outage_s == pytest.approx(37 - 15.2)  # from the refusals to the end of the held seconds
    assert not held.recovered  # the windows after the held seconds are too few to judge (3 s left)
    # The same seconds while the master lost a worker's heartbeat: the generator's process was stuck.
    stuck = fault_impact(record, _stalled(spanned=8), T0, T0 + 40, 1, {}, _live("missing"))
    assert stuck.stalls[0].generator and stuck.outage_s == 0.5


def test_no_stall_is_claimed_from_a_timeline_without_starts() -> None:
    seconds = [Second(T0 + k, 20, 0, {100.0: 20}) for k in range(40) if not 18 <= k < 30]
    record = AppliedFault(FaultSpec.parse("restart-nginx@15s"), t=T0 + 15.2, t_end=T0 + 15.2)
    assert fault_impact(record, seconds, T0, T0 + 40, 2, {}).stalls == []


def test_docker_start_times_parse_to_the_microsecond() -> None:
    """`docker inspect`'s State.StartedAt, which restart-nginx's "started" event is read from."""
    assert parse_docker_time("2026-12-04T18:20:01.123456789Z") == pytest.approx(1796408401.123456, abs=1e-6)
    assert parse_docker_time("2026-12-04T18:20:01Z") == 1796408401.0
    assert parse_docker_time("2026-12-04T19:20:01.5+01:00") == 1796408401.5
    with pytest.raises(ValueError, match="not a Docker time stamp"):
        parse_docker_time("0001-01-01")
