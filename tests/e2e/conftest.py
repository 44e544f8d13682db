from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.compose import Stack, compose_v2_missing_reason, running_stack

REPLICAS, WORKERS = 2, 2


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """One compose stack for all end-to-end tests: 2 replicas, 2 Locust workers, own ports, then down."""
    reason = compose_v2_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the end-to-end tests: {reason}")
        pytest.skip(reason)
    with running_stack(
        "loadlab-e2e",
        api_port=18000,
        web_port=18089,
        up_args=["--scale", f"classifier={REPLICAS}", "--scale", f"locust-worker={WORKERS}"],
    ) as running:
        yield running
