"""End to end: the API contract as clients see it, through nginx on the real stack.

- schemathesis, every check, a seeded and bounded run against `/openapi.json` (nginx in front: its own
  405/413 answers are part of what the fuzzer sees), with the project's real-image hook and once without
  any hook, as a user runs it;
- the tutorial's Locust client (locust/tutorial_client.py), headless on the host, with 0 failures;
- one oversize-upload code, whether the classifier or nginx answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from classifier.errors import PAYLOAD_TOO_LARGE
from classifier.settings import Settings
from tests.classifier.schemathesis_run import run_schemathesis
from tests.e2e.compose import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TUTORIAL_SECONDS = 20


def _base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.api_port}"


@pytest.mark.parametrize("image_hook", [True, False], ids=["real-images", "no-hooks"])
def test_schemathesis_through_nginx(stack: Stack, tmp_path: Path, image_hook: bool) -> None:
    """With real images from the project's hook, and as a user runs `st run` from the repository (no hooks,
    the repository's schemathesis.toml)."""
    run = run_schemathesis(
        f"{_base(stack)}/openapi.json", tmp_path, max_examples=100, timeout_s=180, image_hook=image_hook
    )
    kind = "real images" if image_hook else "no hooks"
    print(f"schemathesis through nginx ({kind}): {run.cases} cases in {run.seconds:.1f} s\n{run.summary}")
    assert run.returncode == 0, run.output
    assert run.cases >= 250, run.output
    # How long it took depends on the machine's load: printed above; the run is bounded by its
    # example count and timeout_s, which a hang would hit (a non-zero return code).


def test_index_and_nginx_405(stack: Stack) -> None:
    index = httpx.get(f"{_base(stack)}/", timeout=10)
    assert index.status_code == 200
    assert index.json()["ready"] is True and index.json()["links"]["predict_tf"] == "/predict/tf"
    # nginx refuses TRACE itself; RFC 9110 wants Allow on the 405.
    trace = httpx.request("TRACE", f"{_base(stack)}/predict", timeout=10)
    assert trace.status_code == 405 and trace.headers["allow"] == "POST"
    assert trace.json()["error"] == "method_not_allowed"


def test_tutorial_client_runs_clean(stack: Stack, tmp_path: Path) -> None:
    """The tutorial's request pattern from the host through nginx: GET / and POST /predict/tf/, no failure."""
    stats = tmp_path / "tutorial"
    run = subprocess.run(
        [
            sys.executable, "-m", "locust",
            "-f", str(ROOT / "locust" / "tutorial_client.py"),
            "--headless",
            "--host", _base(stack),
            "--users", "4",
            "--spawn-rate", "4",
            "--run-time", f"{TUTORIAL_SECONDS}s",
            "--json-file", str(stats),
            "--only-summary",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TUTORIAL_SECONDS + 60,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    rows = {(row["method"], row["name"]): row for row in json.loads(stats.with_suffix(".json").read_text())}
    assert set(rows) == {("GET", "/"), ("POST", "/predict/tf/")}, sorted(rows)
    index, predict = rows[("GET", "/")]["num_requests"], rows[("POST", "/predict/tf/")]["num_requests"]
    print(f"tutorial client: GET / {index}, POST /predict/tf/ {predict} requests in {TUTORIAL_SECONDS} s")
    assert index > 0 and predict > index  # weights 1 : 3
    assert sum(row["num_failures"] for row in rows.values()) == 0, log[-4000:]


def test_one_oversize_code_from_classifier_and_nginx(stack: Stack) -> None:
    # The same CLASSIFIER_* environment as compose; .env's values are the defaults (test_settings_in_step).
    limits = Settings()
    url = f"{_base(stack)}/predict"
    headers = {"content-type": "image/jpeg"}
    # Over the image limit, under the body limit: the classifier answers (it stamps X-Served-By).
    by_classifier = httpx.post(
        url, content=b"\xff" * (limits.max_upload_bytes + 1), headers=headers, timeout=60
    )
    body_limit = limits.max_upload_bytes + limits.multipart_overhead_bytes
    # Over the body limit: nginx answers without passing it on.
    by_nginx = httpx.post(url, content=b"\xff" * (body_limit + 1), headers=headers, timeout=60)
    assert by_classifier.status_code == by_nginx.status_code == 413
    assert "x-served-by" in by_classifier.headers and "x-served-by" not in by_nginx.headers
    assert by_classifier.json()["error"] == by_nginx.json()["error"] == PAYLOAD_TOO_LARGE
    assert str(body_limit) in by_nginx.json()["detail"]
