"""The serving stack as `lab compare` sees it (lab.stacks.base: the protocols and StackKind), one module
per kind, and the factory that picks one by its --stack name. Adding a kind is a module with a class
that has a `kind` record and a `from_options` constructor, and one entry in STACKS."""

from __future__ import annotations

from typing import Protocol

from lab.stacks.base import (
    DEFAULT_READY_TIMEOUT_S,
    UNKNOWN_KIND,
    Stack,
    StackError,
    StackKind,
    StackOptions,
    StackState,
    classifier_env_for,
    git_sha,
)
from lab.stacks.compose import ComposeStack, find_project_dir
from lab.stacks.external import ExternalStack
from lab.stacks.swarm import SwarmStack


class StackClass(Protocol):
    kind: StackKind

    def from_options(self, options: StackOptions) -> Stack: ...


STACKS: dict[str, StackClass] = {cls.kind.name: cls for cls in (ComposeStack, SwarmStack, ExternalStack)}
DEFAULT_STACK = ComposeStack.kind.name


def stack_kind(name: str | None) -> StackKind:
    """The record of a kind by name (run.json's stack_kind); UNKNOWN_KIND for none or one gone."""
    cls = STACKS.get(name or "")
    return cls.kind if cls is not None else UNKNOWN_KIND


def make_stack(name: str, options: StackOptions) -> Stack:
    if name not in STACKS:
        raise StackError(f"--stack must be one of {', '.join(STACKS)}, not {name!r}")
    return STACKS[name].from_options(options)


__all__ = [
    "DEFAULT_READY_TIMEOUT_S",
    "DEFAULT_STACK",
    "STACKS",
    "ComposeStack",
    "ExternalStack",
    "Stack",
    "StackError",
    "StackKind",
    "StackOptions",
    "StackState",
    "SwarmStack",
    "classifier_env_for",
    "find_project_dir",
    "git_sha",
    "make_stack",
    "stack_kind",
]
