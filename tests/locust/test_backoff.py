from __future__ import annotations

import pytest

from tests.locust._modules import load

backoff = load("backoff")


def test_backoff_doubles_to_its_cap_and_zero_turns_it_off() -> None:
    policy = backoff.Backoff(0.1, 1.0)
    waits, wait = [], 0.0
    for _ in range(6):
        wait = policy.after_error(wait)
        waits.append(round(wait, 3))
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.to_dict() == {"first_ms": 100.0, "max_ms": 1000.0}
    assert backoff.Backoff(0.0, 1.0).after_error(0.5) == 0.0


@pytest.mark.parametrize(
    "first, most, message", [(-0.1, 1.0, ">= 0"), (0.5, 0.1, "must be >= --backoff-first")]
)
def test_bad_backoff_says_what_is_wrong(first: float, most: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff.Backoff(first, most)
