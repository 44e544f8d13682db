"""report.html / summary.md / summary.json from golden folders, and `lab report`'s exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.charts import representative
from lab.cli import EXIT_SLO_UNMET, EXIT_USAGE, app
from lab.grid import ExperimentSettings
from lab.locust_csv import read_stats_csv
from lab.report import CAPACITY_HEADER, capacity_rows, write_report
from lab.summary import summarise
from tests.lab.golden import Config, Measurement, classifier_samples, records, row_with, write_run

CHART_TITLES = (
    "Throughput and latency vs replicas",
    "Throughput vs p95 (load levels / ramp steps)",
    "Server-time split",
    "CPU per container",
    "Scaling efficiency",
)


def _run(tmp_path: Path, slo: float | None = 100, ramp: bool = False) -> Path:
    settings = ExperimentSettings(replicas=[1, 2], users=[8], slo_p95_ms=slo, ramp=ramp)

    def measurement(users: int, rps: float, p95: float, replicas: int) -> Measurement:
        row = row_with("/predict", int(rps * 20), rps, p95 / 3, p95, p95 * 1.4)
        return Measurement(users, [row], docker=classifier_samples(replicas, 80.0 / replicas + 40),
                           served_by={f"host{i}": 10 for i in range(replicas)})  # fmt: skip

    if ramp:
        steps_1 = [measurement(8, 50, 40, 1), measurement(16, 70, 90, 1), measurement(24, 75, 180, 1)]
        steps_2 = [measurement(8, 60, 30, 2), measurement(16, 95, 70, 2), measurement(24, 110, 120, 2)]
        configs = [Config(1, steps_1, ramp=True), Config(2, steps_2, ramp=True)]
    else:
        configs = [Config(1, [measurement(8, 50, 80, 1)]), Config(2, [measurement(8, 85, 60, 2)])]
    return write_run(tmp_path / "run-1", settings, configs)


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)


def test_report_html_has_a_chart_per_section_and_opens_offline(tmp_path: Path) -> None:
    run = _run(tmp_path, ramp=True)
    summary = write_report(run)
    html = (run / "report.html").read_text()
    for title in CHART_TITLES:
        assert f"<h2>{title}</h2><figure><svg" in html, title
    assert len(_svgs(html)) == len(CHART_TITLES)
    # Offline: no script or stylesheet from anywhere, and the only URLs are XML namespace names.
    assert "<script" not in html and "<link" not in html and "@import" not in html
    urls = re.findall(r"(\S*)\"(https?://[^\"]*)\"", html)
    assert urls and all(attr.startswith("xmlns") for attr, _ in urls), urls
    # Charts carry the numbers: the replicas chart has a point per config, the ramp curve each step.
    assert summary.analysis.capacity == {"r1": 70.0, "r2": 95.0}
    assert "r1-u16" in html and "Verdict" in html and summary.verdict in html.replace("&#x27;", "'")
    # The recommended row is highlighted because it is the recommendation, whatever its cell says.
    assert html.count('<tr class="recommended">') == 1
    assert '<tr class="recommended"><td>★ r2</td>' in html


def test_summary_md_is_the_same_table(tmp_path: Path) -> None:
    run = _run(tmp_path)
    summary = write_report(run)
    md = (run / "summary.md").read_text()
    assert "| Config | Replicas |" in md and "| Measurement | Load |" in md
    assert "| ★ r2 | 2 |" not in md  # r1 meets the SLO with fewer replicas
    assert "| ★ r1 | 1 | — | — | — | 50.0 | 8 users | 50.0 | 100% |" in md
    assert "| r2 | 2 | — | — | — | 85.0 | 8 users | 85.0 | 85% |" in md
    assert f"**Verdict.** {summary.verdict}" in md
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["capacity"] == {"r1": 50.0, "r2": 85.0}
    assert [c["rps"] for c in on_disk["configs"]] == [50.0, 85.0]
    assert on_disk == summary.to_dict()
    # Every measurement's percentiles are its stats.csv's Aggregated row.
    for entry in on_disk["configs"]:
        total = read_stats_csv(run / entry["config_dir"] / "stats.csv").aggregated
        assert total is not None
        expected = [total.percentile(q) for q in (0.5, 0.95, 0.99)]  # Locust writes whole ms; these 1/100
        assert [entry[k] for k in ("p50_ms", "p95_ms", "p99_ms")] == pytest.approx(expected, abs=0.005)


def test_report_rebuilds_from_raw_files_only(tmp_path: Path) -> None:
    run = _run(tmp_path)
    write_report(run)
    first = {name: (run / name).read_text() for name in ("summary.json", "summary.md", "report.html")}
    for name in first:
        (run / name).unlink()
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert {name: (run / name).read_text() for name in first} == first  # deterministic, from raw files


def test_report_exit_code_when_no_config_meets_the_slo(tmp_path: Path) -> None:
    run = _run(tmp_path, slo=10)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == EXIT_SLO_UNMET
    assert "SLO not met" in result.output and "r1-u8: p95 80 ms > 10 ms" in result.output
    # The same run judged against a looser SLO passes.
    assert CliRunner().invoke(app, ["report", str(run), "--slo-p95-ms", "100"]).exit_code == 0


def test_report_without_thresholds_does_not_fail(tmp_path: Path) -> None:
    run = _run(tmp_path, slo=None)
    assert CliRunner().invoke(app, ["report", str(run)]).exit_code == 0
    assert CliRunner().invoke(app, ["report", str(run), "--slo-p95-ms", "1"]).exit_code == EXIT_SLO_UNMET


def test_report_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE and "not a `lab compare` result folder" in result.output


def test_compare_rejects_bad_options_before_touching_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["compare", "--replicas", "1,2", "--users", "8", "--rate", "5"])
    assert result.exit_code == EXIT_USAGE and "exactly one of --users" in result.output
    result = CliRunner().invoke(app, ["compare", "--replicas", "1,x", "--users", "8"])
    assert result.exit_code == EXIT_USAGE and "invalid replica count 'x'" in result.output


def test_compare_dry_run_prints_the_grid_and_estimate(tmp_path: Path) -> None:
    args = [
        "compare",
        "--replicas",
        "1,2",
        "--users",
        "8",
        "--duration",
        "20s",
        "--warmup",
        "5s",
        "--dry-run",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 configuration(s), closed model, estimated" in result.output
    assert "1. r1-u8" in result.output and "2. r2-u8" in result.output


def test_report_says_which_stack_and_how_many_nodes(tmp_path: Path) -> None:
    run = _run(tmp_path)
    write_report(run)
    assert "Stack: compose, 1 node." in (run / "summary.md").read_text()
    meta = json.loads((run / "run.json").read_text())
    meta["stack_kind"] = "swarm"
    meta["stack_before"] = {"nodes": [{"hostname": "a"}, {"hostname": "b"}, {"hostname": "c"}]}
    (run / "run.json").write_text(json.dumps(meta))
    summary = write_report(run)
    assert summary.nodes == 3 and json.loads((run / "summary.json").read_text())["nodes"] == 3
    assert "Stack: swarm, 3 nodes." in (run / "summary.md").read_text()
    assert "stack swarm, 3 nodes" in (run / "report.html").read_text()


def test_with_repeat_the_table_and_the_charts_name_the_same_knee() -> None:
    # Repeat 1 meets the SLO up to 24 users, repeat 2 only up to 16: the knee is 16 users (met in every
    # repeat), and the charts show that step for both repeats, not each repeat's own last passing step.
    settings = ExperimentSettings(replicas=[1], users=[8], ramp=True, repeat=2, slo_p95_ms=100)

    def steps(*p95s: float) -> list[Measurement]:
        return [Measurement(8 * k, [row_with("/predict", 400 * k, 20.0 * k, 10, p95, p95 * 1.2)])
                for k, p95 in enumerate(p95s, start=1)]  # fmt: skip

    configs = [
        Config(1, steps(40, 60, 90, 150), ramp=True, repeat=1),
        Config(1, steps(40, 70, 120), ramp=True, repeat=2),
    ]
    summary = summarise(*records(settings, configs))
    knee = summary.analysis.knee["r1"]
    assert knee is not None and (knee.users, knee.rps) == (16, 40.0)
    (row,) = capacity_rows(summary)
    assert row.cells[CAPACITY_HEADER.index("At load")] == "16 users"
    shown = representative(summary)
    assert [(c.repeat, c.step, c.metrics.users) for c in shown] == [(1, 2, 16), (2, 2, 16)]


def test_samples_that_name_their_node_give_a_cpu_per_node_table(tmp_path: Path) -> None:
    run = _run(tmp_path)
    write_report(run)
    assert "CPU per node" not in (run / "summary.md").read_text()  # compose: its samples name no node
    node_of = {
        "loadlab-classifier-1": "node-a",
        "loadlab-classifier-2": "node-b",
        "loadlab-nginx-1": "node-a",
        "loadlab-locust-worker-1": "node-c",
    }
    for path in run.rglob("docker_stats.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        lines = [json.dumps({**row, "node": node_of[row["raw"]["Name"]]}) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    summary = write_report(run)
    two = next(c for c in summary.configs if c.label.startswith("r2"))
    # r2: two replicas at 80/2 + 40 = 80 % each, nginx 5 %, the worker 40 %.
    assert two.metrics.cpu_by_node == {"node-a": 0.85, "node-b": 0.8, "node-c": 0.4}
    md = (run / "summary.md").read_text()
    assert "### CPU per node" in md
    assert f"| {two.label} | node-a | 0.85 | classifier, nginx |" in md
    assert f"| {two.label} | node-c | 0.40 | locust-worker |" in md
    assert "<h2>CPU per node</h2>" in (run / "report.html").read_text()
