"""Parse the W3C `Server-Timing` response header into (metric, milliseconds) pairs.

Kept free of Locust imports so tests can load it without gevent monkey-patching their process.
Grammar (https://www.w3.org/TR/server-timing/): metrics separated by commas, each
`name *( ";" param [ "=" value ] )`, where a value is a token or a quoted string (which may itself hold
commas, semicolons and backslash escapes). Only metrics with a numeric `dur` are returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterator


def _split_unquoted(text: str, sep: str) -> Iterator[str]:
    """Split on `sep` outside double-quoted strings (a backslash escapes the next char inside quotes)."""
    start = 0
    in_quotes = False
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            yield text[start:i]
            start = i + 1
    yield text[start:]


def parse_server_timing(header: str | list[str] | None) -> list[tuple[str, float]]:
    """Return `[(name, dur_ms), ...]` in header order; metrics without a valid `dur` are skipped.

    A list stands for repeated header lines, which HTTP combines with commas.
    """
    if not header:
        return []
    text = ", ".join(header) if isinstance(header, list) else header
    metrics: list[tuple[str, float]] = []
    for entry in _split_unquoted(text, ","):
        parts = [p.strip() for p in _split_unquoted(entry, ";")]
        name = parts[0]
        if not name or '"' in name or "=" in name:
            continue
        dur: float | None = None
        for param in parts[1:]:
            key, _, value = param.partition("=")
            # The spec says the first occurrence of a parameter wins.
            if key.strip().lower() == "dur" and dur is None:
                try:
                    dur = float(value.strip().strip('"'))
                except ValueError:
                    dur = math.nan
        if dur is not None and math.isfinite(dur) and dur >= 0:
            metrics.append((name, dur))
    return metrics
