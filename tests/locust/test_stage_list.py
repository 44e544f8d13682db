"""One Server-Timing stage list in one order. The classifier writes the header, so its `timing.STAGES` is
the canonical list; the Locust image and the lab cannot import the service and keep copies, checked here."""

from __future__ import annotations

from classifier import timing
from lab import server_timing
from tests.locust._modules import load


def test_locust_and_lab_copies_are_the_classifier_s_list() -> None:
    assert timing.STAGES[-1] == timing.TOTAL == "total"
    assert load("stagestats").STAGE_ORDER == timing.STAGES
    assert server_timing.STAGES == timing.STAGES
    assert (*server_timing.PARTS, server_timing.TOTAL) == timing.STAGES


def test_the_header_follows_the_list() -> None:
    header = timing.server_timing(
        {"total": 0.01, "infer": 0.006, "extra": 0.001, "queue": 0.002, "fetch": 0.05}
    )
    names = [entry.split(";")[0] for entry in header.split(", ")]
    assert names == ["fetch", "queue", "infer", "extra", "total"]
