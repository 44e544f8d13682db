"""The error table (errors.STATUS) is the one place an error's status is chosen, and the inference strategy
is chosen once, when the predictor is built."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from classifier.batching import Batcher
from classifier.errors import MEANING, STATUS, ApiError
from classifier.predictor import BatchedInference, DirectInference
from tests.classifier.helpers import AppFactory, serve

PACKAGE = Path(__file__).resolve().parents[2] / "services" / "classifier" / "classifier"


def _raised_codes(error_class: str) -> dict[str, list[str]]:
    """{code: [where]} for every `<error_class>(...)` call in the classifier package, with what its first
    argument is when it is not a string literal (a status number, a variable)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_call = isinstance(node, ast.Call) and getattr(node.func, "id", None) == error_class
            if not (is_call and node.args):
                continue
            first = node.args[0]
            code = first.value if isinstance(first, ast.Constant) else ast.unparse(first)
            found.setdefault(str(code), []).append(f"{path.name}:{node.lineno}")
    return found


@pytest.mark.parametrize("error_class", ["ApiError", "ImageError"])
def test_every_raised_code_has_its_status_in_the_table(error_class: str) -> None:
    raised = _raised_codes(error_class)
    assert raised, f"no {error_class}(...) found under {PACKAGE}"
    # Names standing for a code: the 413 constant, an ImageError's code (checked by the ImageError case).
    names = {"PAYLOAD_TOO_LARGE", "exc.code"}
    missing = {code: where for code, where in raised.items() if code not in STATUS and code not in names}
    assert not missing, f"codes raised without a status in errors.STATUS: {missing}"


def test_the_table_answers_a_status_and_the_standard_body() -> None:
    error = ApiError("not_ready", "the model is still loading")
    response = error.response()
    assert (error.status, response.status_code) == (503, 503)
    assert response.body == b'{"error":"not_ready","detail":"the model is still loading"}'
    with pytest.raises(KeyError):
        ApiError("no_such_code", "a code must be in the table")
    # The schema describes every 4xx/5xx a client input can get.
    assert {status for status in STATUS.values() if status not in (404, 405, 500)} <= set(MEANING)


@pytest.mark.asyncio
async def test_batching_off_builds_and_starts_no_batcher(app_factory: AppFactory) -> None:
    async with serve(app_factory(max_batch_size=1)) as client:
        predictor = client._transport.app.state.runtime.predictor  # type: ignore[attr-defined]
        assert isinstance(predictor.inference, DirectInference)
        assert not any(isinstance(value, Batcher) for value in vars(predictor.inference).values())
        assert "batcher" not in {task.get_name() for task in asyncio.all_tasks()}
        assert (await client.get("/model")).json()["batching"]["enabled"] is False


@pytest.mark.asyncio
async def test_batching_on_runs_one_batcher(app_factory: AppFactory) -> None:
    async with serve(app_factory(max_batch_size=4, max_batch_delay_ms=1.0)) as client:
        predictor = client._transport.app.state.runtime.predictor  # type: ignore[attr-defined]
        assert isinstance(predictor.inference, BatchedInference)
        assert [task.get_name() for task in asyncio.all_tasks()].count("batcher") == 1
        assert (await client.get("/model")).json()["batching"]["enabled"] is True
