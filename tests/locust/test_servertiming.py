from __future__ import annotations

import pytest

from tests.locust._modules import load

parse = load("servertiming").parse_server_timing


def test_contract_example() -> None:
    header = "queue;dur=1.2, decode;dur=3.4, infer;dur=5.6, total;dur=10.3"
    assert parse(header) == [("queue", 1.2), ("decode", 3.4), ("infer", 5.6), ("total", 10.3)]


def test_quoted_description_may_hold_separators() -> None:
    header = 'decode;desc="resize, crop; \\"fast\\"";dur=2.5, infer;dur=4'
    assert parse(header) == [("decode", 2.5), ("infer", 4.0)]


def test_repeated_header_lines_are_combined() -> None:
    lines = ["queue;dur=1", "infer;dur=2, total;dur=3"]
    assert parse(lines) == [("queue", 1.0), ("infer", 2.0), ("total", 3.0)]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("cache", []),  # no duration: nothing to record
        ("cache;desc=hit, infer;dur=7", [("infer", 7.0)]),
        ("infer;dur=abc, total;dur=9", [("total", 9.0)]),
        ("infer;dur=-1", []),
        ("infer;dur=nan", []),
        ("infer;DUR=4", [("infer", 4.0)]),
        ('infer;dur="4.5"', [("infer", 4.5)]),
        ("infer;dur=1;dur=2", [("infer", 1.0)]),  # the spec: the first occurrence wins
        ("  infer ; dur = 3 ,total;dur=0 ", [("infer", 3.0), ("total", 0.0)]),
        (",,infer;dur=1,", [("infer", 1.0)]),
    ],
)
def test_edge_cases(header: str | None, expected: list[tuple[str, float]]) -> None:
    assert parse(header) == expected
