"""Run the schemathesis CLI against a served `/openapi.json`: a bounded, seeded run with every check.

Shared by the fast contract test (the app with a stand-in model) and the end-to-end one (the real stack
through nginx). The CLI rather than the pytest plugin: it runs all of schemathesis' phases (examples,
coverage including unexpected methods, fuzzing) and prints reproducible curl commands for any failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
"""The repository's schemathesis configuration, what a user's `st run` from the repository reads."""
SEED = 20261129


@dataclass(frozen=True)
class FuzzRun:
    returncode: int
    cases: int
    seconds: float
    output: str

    @property
    def summary(self) -> str:
        """The CLI's closing summary: phases, failures by kind, cases generated, seed."""
        return self.output[self.output.rfind("SUMMARY") :]


def run_schemathesis(
    schema_url: str, workdir: Path, *, max_examples: int, timeout_s: float, image_hook: bool = True
) -> FuzzRun:
    """Every check, positive and negative data, no example database (a fixed seed decides every case).

    `image_hook=False` runs schemathesis as a user would from the repository: no project hooks (a generated
    upload is then whatever the schema allows) and the repository's schemathesis.toml. With the hook every
    upload is a real picture and no configuration relaxes any check."""
    command = [
        sys.executable, "-m", "schemathesis.cli",
        *([] if image_hook else ["--config-file", str(CONFIG)]),
        "run", schema_url,
        "--checks", "all",
        "--mode", "all",
        "--seed", str(SEED),
        "--max-examples", str(max_examples),
        "--generation-database", "none",
        "--request-timeout", "30",
        "--no-color",
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "SCHEMATHESIS_HOOKS"}
    if image_hook:
        env["SCHEMATHESIS_HOOKS"] = str(HOOKS)
    started = time.monotonic()
    # In workdir: the CLI keeps a cache of failed cases (for `st replay`) in its working directory.
    done = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    generated = re.search(r"^\s*(\d+) generated", output, re.MULTILINE)
    assert generated, f"no case count in schemathesis' output:\n{output}"
    return FuzzRun(done.returncode, int(generated.group(1)), seconds, output)
