"""The order of `--repeat N`: N rounds, each measuring every configuration once, so a drift of the shared
machine (another job, thermal throttling, a cache warming up) falls on every configuration alike instead
of on whichever was measured last. The order within a round is rotated (one configuration further each
round: replicas still change one step at a time, so containers are rarely recreated) or shuffled with a
seed that run.json records, so the same order can be measured again."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")

ROTATE = "rotate"
SHUFFLE = "shuffle"


def _rotated(items: Sequence[T], round_k: int, rng: random.Random) -> list[T]:
    shift = round_k % len(items) if items else 0
    return list(items[shift:]) + list(items[:shift])


def _shuffled(items: Sequence[T], round_k: int, rng: random.Random) -> list[T]:
    order = list(items)
    rng.shuffle(order)
    return order


ORDERS: dict[str, Callable[[Sequence[Any], int, random.Random], list[Any]]] = {
    ROTATE: _rotated,
    SHUFFLE: _shuffled,
}


@dataclass(frozen=True)
class RoundOrder:
    """How the rounds were ordered (run.json's "order"): enough to reproduce them."""

    kind: str
    seed: int
    rounds: int

    def __post_init__(self) -> None:
        if self.kind not in ORDERS:
            raise ValueError(f"--order: choose from {', '.join(ORDERS)}")
        if self.rounds < 1:
            raise ValueError("--repeat must be >= 1")

    def arrange(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """(round, item) pairs, 1-based rounds; round k holds every item exactly once."""
        rng = random.Random(self.seed)
        out: list[tuple[int, T]] = []
        for k in range(self.rounds):
            out += [(k + 1, item) for item in ORDERS[self.kind](items, k, rng)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundOrder:
        return cls(str(data["kind"]), int(data["seed"]), int(data["rounds"]))


def new_seed() -> int:
    """A fresh seed to record (31 bits: readable in a JSON file and on a command line)."""
    return random.SystemRandom().randrange(2**31)
