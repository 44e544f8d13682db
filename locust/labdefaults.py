"""The lab's defaults for the locustfile's options: `.env` of the checkout is their one definition.

Compose (docker-compose.yml) and Kubernetes (deploy/k8s/base/locust.env, checked against compose) pass each
as its environment variable, which Locust reads (`env_var=`). A run from a checkout without them
(`locust -f locust/locustfile.py`, the tests) takes the value from `.env` next to the `locust/` folder. The
image has no `.env`: there the default is None, and the locustfile asks for the variable by name. No Locust
import (unit-tested in-process).
"""

from __future__ import annotations

from pathlib import Path

DOTENV = Path(__file__).resolve().parent.parent / ".env"


def read_dotenv(path: Path = DOTENV) -> dict[str, str]:
    """`NAME=value` lines of a `.env` file (comments and blank lines skipped); {} without the file."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def dotenv_default(name: str, path: Path = DOTENV) -> str | None:
    """The checkout's `.env` value of `name`, or None (no checkout, or not defined there)."""
    return read_dotenv(path).get(name)
