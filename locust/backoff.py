"""A closed-model user's back-off after connection errors, as a real client does it: the first wait, then
double with each further error up to a cap; an answer resets it (the locustfile's `LabUser.check`).

Why: in the closed model a user sends its next request as soon as the last one ended. A refused connection
ends in microseconds, so without a wait one user retries thousands of times a second and a 0.7 s outage of
nginx became 606 failed requests: the count measured how fast the generator can spin. With the wait, it
is the number of attempts a few real clients would make. No Locust import (unit-tested in-process).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_s: float  # the wait after the first connection error; 0: no back-off
    max_s: float  # the longest wait

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.max_s < 0:
            raise ValueError(
                f"the back-off must be >= 0 ms, got {self.first_s * 1000:g} / {self.max_s * 1000:g}"
            )
        if self.first_s > 0 and self.max_s < self.first_s:
            first, most = self.first_s * 1000, self.max_s * 1000
            raise ValueError(f"--backoff-max-ms ({most:g}) must be >= --backoff-first-ms ({first:g})")

    def after_error(self, current_s: float) -> float:
        """The wait after one more connection error, given the wait after the last one (0: none yet)."""
        if self.first_s <= 0:
            return 0.0
        return min(self.max_s, self.first_s if current_s <= 0 else 2 * current_s)

    def to_dict(self) -> dict[str, float]:
        return {"first_ms": round(self.first_s * 1000, 3), "max_ms": round(self.max_s * 1000, 3)}
