"""Reading Locust 2.47 CSVs: SERVER rows and the Aggregated row kept out of the traffic totals."""

from __future__ import annotations

import pytest

from lab.locust_csv import mixture_percentile, parse_failures_csv, parse_stats_csv
from tests.lab.golden import FAILURES_HEADER, STATS_HEADER, Row, row_with, stats_csv

# Rows as a real master answered /stats/requests/csv (Locust 2.47.0, the lab's locustfile, a stand-in server).
REAL = """\
POST,/predict,1948,0,2,5.023512251026079,0.44189899995217274,86.65928700020231,99.0,477.91682023013465,0.0,2,3,5,7,14,20,28,35,70,87,87
POST,/predict/tf,995,0,1,3.135601482411325,0.3900429999248445,125.30720900008419,99.0,244.11049082596713,0.0,1,2,2,3,8,16,24,30,130,130,130
SERVER,decode,2943,0,1.25,1.25,1.25,1.25,0.0,722.0273110561018,0.0,1,1,1,1,1,1,1,1,1,1,1
SERVER,infer,2943,0,3,3.0,3.0,3.0,0.0,722.0273110561018,0.0,3,3,3,3,3,3,3,3,3,3,3
SERVER,queue,2943,0,0.5,0.5,0.5,0.5,0.0,722.0273110561018,0.0,0,0,0,0,0,0,0,0,0,0,0
SERVER,total,2943,0,4.75,4.75,4.75,4.75,0.0,722.0273110561018,0.0,5,5,5,5,5,5,5,5,5,5,5
,Aggregated,14715,0,2,2.7770455548758446,0.3900429999248445,125.30720900008419,19.8,3610.1365552805087,0.0,2,3,4,5,5,5,13,19,48,87,130
"""


def test_real_csv_totals_leave_out_server_rows_and_aggregated() -> None:
    stats = parse_stats_csv(STATS_HEADER + "\n" + REAL)
    assert [r.name for r in stats.traffic] == ["/predict", "/predict/tf"]
    assert stats.aggregated is not None and stats.aggregated.requests == 14715
    assert stats.requests == 1948 + 995 == 2943
    assert stats.failures == 0
    assert stats.rps == pytest.approx(477.91682023013465 + 244.11049082596713)
    assert stats.rps == pytest.approx(stats.server("total").rps)  # same window, same count
    assert stats.avg_ms == pytest.approx((5.023512251026079 * 1948 + 3.135601482411325 * 995) / 2943)
    assert stats.server("infer").avg_ms == 3.0 and stats.server("queue").avg_ms == 0.5
    assert stats.server("missing") is None
    # Mixed p95 lies between the rows' own p95 values.
    assert 16 < stats.percentile(0.95) < 20


def test_no_data_rows_and_na_percentiles() -> None:
    stats = parse_stats_csv(
        STATS_HEADER + "\n,Aggregated,0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    )
    assert stats.traffic == [] and stats.requests == 0 and stats.rps == 0
    assert stats.percentile(0.95) is None and stats.avg_ms is None and stats.failure_ratio == 0.0


def test_single_row_percentiles_are_the_csvs_own() -> None:
    row = row_with("/predict", 1000, 50.0, 21, 87, 140, failures=10)
    stats = parse_stats_csv(stats_csv([row], {"total": 19.0}))
    assert (stats.percentile(0.5), stats.percentile(0.95), stats.percentile(0.99)) == (21, 87, 140)
    assert stats.failure_ratio == pytest.approx(0.01)


def test_mixture_of_equal_rows_is_the_rows_percentile() -> None:
    a = row_with("/predict", 300, 10.0, 20, 80, 120)
    b = row_with("/predict/tf", 900, 30.0, 20, 80, 120)
    stats = parse_stats_csv(stats_csv([a, b], None))
    for q, expected in ((0.5, 20), (0.95, 80), (0.99, 120)):
        assert stats.percentile(q) == pytest.approx(expected)


def test_mixture_leans_to_the_heavier_row() -> None:
    fast = row_with("/fast", 900, 90.0, 10, 20, 30)
    slow = row_with("/slow", 100, 10.0, 100, 200, 300)
    parsed = parse_stats_csv(stats_csv([fast, slow], None))
    p50, p95 = parsed.percentile(0.5), parsed.percentile(0.95)
    # 90 % of requests are fast: the median is a fast request's, p95 falls among the slow ones.
    assert 10 <= p50 <= 20
    assert 100 <= p95 <= 200
    assert parsed.percentile(0.5) == mixture_percentile(parsed.traffic, 0.5)
    # Monotone in q.
    values = [parsed.percentile(q) for q in (0.5, 0.66, 0.8, 0.9, 0.95, 0.99)]
    assert values == sorted(values)


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
