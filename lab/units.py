"""Parsing of the command line's small value languages: durations and comma-separated lists."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '1m30s', '2h', '500ms' (Locust's run-time style, plus ms)."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    try:
        return float(value)
    except ValueError:
        pass
    pos = 0
    total = 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * scale[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise ValueError(f"invalid duration {text!r}: use e.g. 20s, 1m30s, 2m, 500ms")
    return total


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def parse_list(text: str, convert: Callable[[str], T], what: str) -> list[T]:
    """'1,2,4' -> [1, 2, 4]; duplicates removed keeping the first occurrence's order."""
    items: list[T] = []
    for raw in text.split(","):
        token = raw.strip()
        if not token:
            continue
        try:
            item = convert(token)
        except ValueError as err:
            raise ValueError(f"invalid {what} {token!r}: {err}") from None
        if item not in items:
            items.append(item)
    if not items:
        raise ValueError(f"no {what} given")
    return items


def name_list(labels: list[str], most: int = 6) -> str:
    """'a, b, c' for labels in the order given (repeats dropped), at most `most` of them and a count."""
    unique = list(dict.fromkeys(labels))
    return ", ".join(unique[:most]) + (f" and {len(unique) - most} more" if len(unique) > most else "")
