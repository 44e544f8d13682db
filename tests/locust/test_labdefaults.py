"""The locustfile's weight defaults are `.env`'s values, read from the checkout, never written twice."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.locust._modules import LOCUST_DIR, LOCUSTFILE, load
from tests.locust.test_locustfile import _env
from tests.test_settings_in_step import ROOT, dotenv

labdefaults = load("labdefaults")
NAMES = ("LOCUST_UPLOAD_WEIGHT", "LOCUST_URL_WEIGHT", "LOCUST_BACKOFF_FIRST_MS", "LOCUST_BACKOFF_MAX_MS")


def test_defaults_are_the_checkout_s_dotenv() -> None:
    assert labdefaults.DOTENV == ROOT / ".env"
    for name in NAMES:
        assert labdefaults.dotenv_default(name) == dotenv()[name]


def test_read_dotenv_skips_comments_and_a_missing_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# a comment\n\nA=1\n  B = two words \nEMPTY=\n")
    assert labdefaults.read_dotenv(env) == {"A": "1", "B": "two words", "EMPTY": ""}
    assert labdefaults.dotenv_default("A", tmp_path / "nothing") is None


def test_no_weight_number_in_the_locustfile_or_its_readme() -> None:
    code = LOCUSTFILE.read_text()
    assert not re.search(r"^\s*weight\s*=", code, re.M), "a user class sets its own weight"
    for name in NAMES:
        assert f'dotenv_default("{name}")' in code
    readme = (LOCUST_DIR / "README.md").read_text().splitlines()
    rows = [line for line in readme if any(f"`{name}` |" in line for name in NAMES)]
    assert len(rows) == len(NAMES) and all("`.env`" in row for row in rows), rows


def test_a_master_without_dotenv_or_variable_asks_for_it(tmp_path: Path) -> None:
    image = tmp_path / "locust"  # as in the image: the locust/ files without a checkout around them
    shutil.copytree(LOCUST_DIR, image, ignore=shutil.ignore_patterns("*.md", "*.yml", "Dockerfile"))
    cmd = [sys.executable, "-m", "locust", "-f", str(image / "locustfile.py"), "--headless", "-u", "1",
           "-t", "1s", "--host", "http://127.0.0.1:9"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert run.returncode != 0 and "LOCUST_UPLOAD_WEIGHT" in run.stderr and "Ramping" not in run.stderr
    weights = ["--upload-weight", "1", "--url-weight", "0", "--images-dir", str(ROOT / "images")]
    run = subprocess.run(
        [*cmd, *weights], capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path
    )
    assert run.returncode != 0 and "LOCUST_BACKOFF_FIRST_MS" in run.stderr and "Ramping" not in run.stderr
    ok = subprocess.run(
        [*cmd, *weights, "--backoff-first-ms", "100", "--backoff-max-ms", "1000"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    assert "are not set" not in ok.stderr, ok.stderr[-2000:]
