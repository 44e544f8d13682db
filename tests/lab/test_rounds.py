"""The interleaved order of --repeat: every round holds every configuration once; the seed reproduces it."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.grid import ExperimentSettings, expand
from lab.rounds import ORDERS, ROTATE, SHUFFLE, RoundOrder

CONFIGS = ["r1", "r2", "r3", "r4"]


@pytest.mark.parametrize("kind", list(ORDERS))
def test_every_round_holds_every_configuration_once(kind: str) -> None:
    arranged = RoundOrder(kind, seed=42, rounds=5).arrange(CONFIGS)
    assert len(arranged) == 5 * len(CONFIGS)
    for k in range(1, 6):
        in_round = [c for r, c in arranged if r == k]
        assert Counter(in_round) == Counter(CONFIGS)
    # Rounds come one after the other: round k's items before round k+1's.
    assert [r for r, _ in arranged] == sorted(r for r, _ in arranged)


def test_rotation_moves_the_first_configuration_each_round() -> None:
    arranged = RoundOrder(ROTATE, seed=0, rounds=3).arrange(CONFIGS)
    firsts = [c for i, (_, c) in enumerate(arranged) if i % len(CONFIGS) == 0]
    assert firsts == ["r1", "r2", "r3"]


def test_the_seed_reproduces_the_shuffle() -> None:
    first = RoundOrder(SHUFFLE, seed=1234, rounds=6).arrange(CONFIGS)
    again = RoundOrder.from_dict(RoundOrder(SHUFFLE, seed=1234, rounds=6).to_dict()).arrange(CONFIGS)
    other = RoundOrder(SHUFFLE, seed=1235, rounds=6).arrange(CONFIGS)
    assert first == again
    assert first != other


def test_unknown_order_is_refused() -> None:
    with pytest.raises(ValueError, match="--order"):
        RoundOrder("alphabetical", 1, 2)


def test_repeat_expands_into_rounds_with_the_recorded_seed() -> None:
    settings = ExperimentSettings(replicas=[1, 2, 3], users=[8], repeat=3, order=SHUFFLE, order_seed=99)
    plan = expand(settings)
    assert [p.index for p in plan] == list(range(1, 10))
    for k in (1, 2, 3):
        assert sorted(p.stack.replicas for p in plan if p.repeat == k) == [1, 2, 3]
    assert [p.repeat for p in plan] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    again = expand(ExperimentSettings.from_dict(settings.to_dict()))
    assert [p.label for p in again] == [p.label for p in plan]
    rotated = expand(ExperimentSettings(replicas=[1, 2, 3], users=[8], repeat=2))
    assert [p.label for p in rotated] == [
        "r1-u8-rep1", "r2-u8-rep1", "r3-u8-rep1", "r2-u8-rep2", "r3-u8-rep2", "r1-u8-rep2",
    ]  # fmt: skip


def test_until_stable_needs_room_for_its_windows() -> None:
    with pytest.raises(ValueError, match="--duration must hold them"):
        expand(ExperimentSettings(replicas=[1], users=[8], until_stable=True, duration_s=10.0))
    with pytest.raises(ValueError, match="--stability"):
        expand(ExperimentSettings(replicas=[1], users=[8], until_stable=True, stability_pct=0.0))
    expand(ExperimentSettings(replicas=[1], users=[8], until_stable=True, duration_s=15.0))
