"""End to end: `lab compare` on the real compose stack, its summary against Locust's own CSVs, and
its report rendered by a headless Chromium (the screenshot is kept under artifacts/ for a person to see)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.compose import ROOT, Stack
from tests.e2e.conftest import REPLICAS, LabCompare

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = ROOT / "artifacts" / "e2e"


def _locust_rows(stats_csv: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The request rows and Locust's own Aggregated row, straight from its CSV (no lab code)."""
    with stats_csv.open() as f:
        rows = list(csv.DictReader(f))
    (aggregated,) = [row for row in rows if row["Type"] == "" and row["Name"] == "Aggregated"]
    return [row for row in rows if row is not aggregated], aggregated


def _chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)


@pytest.fixture(scope="module")
def run_dir(lab_compare: LabCompare) -> Path:
    return lab_compare(
        "lab", "--replicas", "1,2", "--users", "8", "--duration", "20s", "--warmup", "5s"
    ).run_dir


def test_compare_leaves_the_stack_as_it_found_it(stack: Stack, run_dir: Path) -> None:
    assert stack.health("classifier") == ["healthy"] * REPLICAS


def test_summary_agrees_with_locusts_csvs(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("run_id", "git_sha", "started_at", "settings", "configs", "capacity"):
        assert key in summary, key
    configs = summary["configs"]
    assert [c["replicas"] for c in configs] == [1, 2]
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir())
    assert len(folders) == len(configs)
    for config, folder in zip(configs, folders, strict=True):
        rows, aggregated = _locust_rows(folder / "stats.csv")
        # Only real HTTP requests in Locust's stats, so its Aggregated row is their exact total.
        assert {row["Type"] for row in rows} <= {"GET", "POST"}, rows
        requests = int(aggregated["Request Count"])
        assert requests == sum(int(row["Request Count"]) for row in rows) > 0
        assert config["requests"] == requests, (folder.name, config["requests"], requests)
        assert config["failures"] == int(aggregated["Failure Count"]) == 0
        for key, column in (("p50_ms", "50%"), ("p95_ms", "95%"), ("p99_ms", "99%")):
            assert config[key] == pytest.approx(float(aggregated[column]), abs=0.005), key
        timing = json.loads((folder / "server_timing.json").read_text())
        # Every answer carries Server-Timing: the master's merged count is the requests Locust counted.
        assert timing["stages"]["total"]["count"] == requests
        assert config["server_total_ms"] == pytest.approx(timing["stages"]["total"]["mean_ms"], abs=0.001)
        for key in (
            "rps",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "server_infer_ms",
            "cpu_cores_used",
            "generator_cpu_max_pct",
        ):
            assert config[key] is not None and config[key] >= 0, key
        assert config["p50_ms"] <= config["p95_ms"] <= config["p99_ms"]
        served = json.loads((folder / "served_by.json").read_text())
        assert len(served) == config["replicas"], served
        # What a configuration change cost on this machine (lab.stacks.compose.COMPOSE.change_s).
        setup_s = json.loads((folder / "config.json").read_text())["stack_setup_s"]
        print(f"compose stack_setup_s r{config['replicas']}: {setup_s}")
    assert (run_dir / "summary.md").read_text().count("|") > 10


def test_report_renders_with_its_charts(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    assert html.count("<svg") >= 4
    assert "http://" not in html.split("<body", 1)[0] and "https://" not in html.split("<body", 1)[0]
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the report: install Debian's chromium")
        pytest.skip("no chromium to render report.html")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2600"]
    page = (run_dir / "report.html").as_uri()
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True
    )
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    # A blank or text-only page has a handful of colours; charts bring many (lines, fills, anti-aliasing).
    assert len(colours) > 200, f"the screenshot looks empty ({len(colours)} colours)"
    shutil.copytree(run_dir, ARTIFACTS / "lab-run", dirs_exist_ok=True)
    print(f"report screenshot: {shot}")


def test_compare_of_float_and_int8_shows_the_agreement_beside_the_speed(lab_compare: LabCompare) -> None:
    """`--backend litert,litert-int8`: both configurations measured, each with what GET /model said, and
    the int8 one with its build's agreement check, in the record, the table and the verdict. Structure
    only: the speed on this shared machine is printed, not judged (short windows keep the CI cost low)."""
    args = ["--replicas", "1", "--backend", "litert,litert-int8", "--users", "2", "--duration", "3s"]
    run = lab_compare("lab-int8", *args, "--warmup", "0s").run_dir
    summary = json.loads((run / "summary.json").read_text())
    served = {c["backend"]: c["served_model"] for c in summary["configs"]}
    assert set(served) == {"litert", "litert-int8"}, served
    assert served["litert"]["backend"] == "litert" and served["litert"]["agreement"] is None
    int8 = served["litert-int8"]
    assert int8["backend"] == "litert-int8" and int8["model_path"].endswith("model-int8.tflite")
    agreement = int8["agreement"]
    assert agreement is not None and agreement["passed"] is True, int8
    assert 0 < agreement["top1_agree"] <= agreement["photos"] and 0 <= agreement["mean_abs_diff"] <= 0.05
    config = json.loads(next(run.glob("*-r1-litert-int8-*/config.json")).read_text())
    assert config["served_model"]["agreement"] == agreement  # the raw record, not only the summary
    md = (run / "summary.md").read_text()
    assert "| Agreement with float (build check) |" in md
    cell = f"top-1 {agreement['top1_agree']}/{agreement['photos']} photos"
    (row,) = [
        line for line in md.splitlines() if line.startswith(("| r1-litert-int8 |", "| ★ r1-litert-int8 |"))
    ]
    assert cell in row and "vs r1-litert" in row, row
    assert f"for {agreement['top1_agree']} of {agreement['photos']} probe photos" in summary["verdict"]
    ((label, against),) = [(t["label"], t["against"]) for t in summary["tradeoffs"]]
    assert (label, against) == ("r1-litert-int8", "r1-litert")
    print({c["backend"]: c["rps"] for c in summary["configs"]}, summary["verdict"])
