"""Reading Locust 2.47 CSVs: the totals and percentiles are Locust's own Aggregated row."""

from __future__ import annotations

import pytest

from lab.locust_csv import parse_failures_csv, parse_stats_csv
from tests.lab.golden import FAILURES_HEADER, STATS_HEADER, Row, row_with, stats_csv

# A real master's /stats/requests/csv (Locust 2.47.0, the lab's locustfile, the stand-in server, 3 users),
# saved by `lab compare` in tests/lab/test_driver_locust.py: only real requests, so Aggregated is exact.
REAL = """\
POST,/predict,1080,0,2,4.73532333888787,0.6520339999838143,180.4100960000028,99.0,338.95693845637885,0.0,2,3,6,8,10,15,25,28,180,180,180
POST,/predict/tf,868,0,1,2.799493364055905,0.5820920000019214,180.90975299998036,99.0,272.42094683346,0.0,1,2,2,3,7,10,16,25,180,180,180
,Aggregated,1948,0,2,3.872746122176296,0.5820920000019214,180.90975299998036,99.0,611.3778852898388,0.0,2,2,4,6,10,12,22,27,180,180,180
"""


def test_real_csv_totals_are_locusts_aggregated_row() -> None:
    stats = parse_stats_csv(STATS_HEADER + "\n" + REAL)
    assert [(r.type, r.name) for r in stats.rows] == [("POST", "/predict"), ("POST", "/predict/tf")]
    assert stats.aggregated is not None and stats.aggregated.type == ""
    assert stats.requests == 1948 == 1080 + 868
    assert stats.failures == 0 and stats.failure_ratio == 0.0
    assert stats.rps == pytest.approx(611.3778852898388)
    assert stats.rps == pytest.approx(sum(r.rps for r in stats.rows))  # one window for every row
    assert stats.avg_ms == pytest.approx(3.872746122176296)
    # Locust's merged histogram, not a mix of the rows' percentiles.
    assert (stats.percentile(0.5), stats.percentile(0.95), stats.percentile(0.99)) == (2, 12, 27)


def test_no_data_rows_and_na_percentiles() -> None:
    stats = parse_stats_csv(
        STATS_HEADER + "\n,Aggregated,0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    )
    assert stats.rows == [] and stats.requests == 0 and stats.rps == 0
    assert stats.percentile(0.95) is None and stats.avg_ms is None and stats.failure_ratio == 0.0


def test_golden_csv_aggregated_row() -> None:
    row = row_with("/predict", 1000, 50.0, 21, 87, 140, failures=10)
    stats = parse_stats_csv(stats_csv([row]))
    assert (stats.percentile(0.5), stats.percentile(0.95), stats.percentile(0.99)) == (21, 87, 140)
    assert stats.failure_ratio == pytest.approx(0.01)
    two = parse_stats_csv(stats_csv([row, row_with("/predict/tf", 500, 25.0, 30, 90, 150)], [22] * 11))
    assert two.requests == 1500 and two.rps == 75.0 and two.percentile(0.95) == 22


def test_rejects_other_csvs() -> None:
    with pytest.raises(ValueError, match="not a Locust stats CSV"):
        parse_stats_csv("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a Locust failures CSV"):
        parse_failures_csv(STATS_HEADER + "\n")


def test_failures_csv() -> None:
    text = (
        FAILURES_HEADER
        + "\nPOST,/predict,LocustBadStatusCode(code=501),694,2026-11-25T14:36:45Z,2026-11-25T14:36:47Z\n"
        + 'POST,/predict/tf,"HTTP 503: {""error"": ""busy""}",3,2026-11-25T14:36:45Z,2026-11-25T14:36:46Z\n'
    )
    rows = parse_failures_csv(text)
    assert [(r.name, r.occurrences) for r in rows] == [("/predict", 694), ("/predict/tf", 3)]
    assert rows[1].error == 'HTTP 503: {"error": "busy"}'


def test_row_helper_matches_the_header() -> None:
    # Guard for the golden files: a written row has one cell per header column.
    assert len(Row("/x", 1, 0, 1.0, 1.0, 1.0, 1.0, [1.0] * 11).csv().split(",")) == len(
        STATS_HEADER.split(",")
    )
