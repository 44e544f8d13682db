"""Count responses per replica (the `X-Served-By` header) across Locust workers.

Workers count locally and hand their counts over as deltas with each stats report; the master (or the
single process of a local run) keeps the totals. One object serves every role: a worker only ever
`drain()`s what it added since its last report, the master only `merge()`s. Kept free of Locust imports
so tests can use it without gevent monkey-patching their process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import ClassVar

REPORT_KEY = "served_by"  # key of the counts in the worker -> master stats report


class ServedByCounter:
    """A `Tally` (tally.py)."""

    key: ClassVar[str] = REPORT_KEY
    route: ClassVar[str] = "/served-by"
    file_option: ClassVar[str | None] = "served_by_file"

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, host: str, n: int = 1) -> None:
        self._counts[host] += n

    def merge(self, counts: Mapping[str, int] | None) -> None:
        """Add a worker's delta; tolerates a missing or malformed report (an older worker image)."""
        if not isinstance(counts, Mapping):
            return
        for host, n in counts.items():
            if isinstance(host, str) and isinstance(n, int) and n > 0:
                self._counts[host] += n

    def drain(self) -> dict[str, int]:
        """Return the counts since the last drain and start again from zero."""
        delta = dict(self._counts)
        self._counts.clear()
        return delta

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        self._counts.clear()

    def total(self) -> int:
        return sum(self._counts.values())
