"""The golden terminal events (tests/fixtures/terminal_done.json and
terminal_error.json, captured from the engine; a Rust test keeps them
current) read through this binding's own decoding."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import llmux
from llmux._common import DONE, ERROR, decode_terminal, response_from_terminal
from llmux._json import done_response

FIXTURES = Path(os.environ.get("LLMUX_ROOT") or Path(__file__).resolve().parents[3]) / "tests" / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_done_fixture_decodes() -> None:
    data = fixture("terminal_done.json")
    raw: Dict[str, Any] = json.loads(data)
    payload, routing, error = decode_terminal(1, DONE, data)
    assert error is None
    assert payload == raw
    assert routing is not None
    assert routing.model == "test/model"
    assert routing.endpoint == "steady/default"
    assert routing.provider == "steady"
    assert routing.upstream_model == "up-steady"
    assert [(a.endpoint, a.outcome, a.status) for a in routing.attempts] == [
        ("flaky/default", "server_error", 503),
        ("steady/default", "success", 200),
    ]
    assert routing.attempts[0].error and "HTTP 503" in routing.attempts[0].error
    assert routing.usage is not None
    assert routing.usage.total_tokens == routing.usage.prompt_tokens + routing.usage.completion_tokens
    assert routing.cost_usd == raw["routing"]["cost_usd"]
    assert routing.first_token_ms == raw["routing"]["first_token_ms"]
    assert routing.latency_ms == raw["routing"]["latency_ms"]
    assert routing.raw == raw["routing"]


def test_done_fixture_makes_a_response() -> None:
    data = fixture("terminal_done.json")
    # The fast path finds the response object without a full decode.
    assert done_response(data) == json.loads(data)["response"]
    resp = response_from_terminal(llmux.ChatCompletion, 1, DONE, data)
    assert resp.choices[0].message.content == "Hello from steady."
    assert resp.routing is not None and resp.routing.endpoint == "steady/default"


def test_error_fixture_maps_to_its_exception() -> None:
    data = fixture("terminal_error.json")
    raw: Dict[str, Any] = json.loads(data)
    _, routing, error = decode_terminal(7, ERROR, data)
    assert isinstance(error, llmux.UpstreamError)
    assert error.status == 503
    assert error.kind == raw["error_kind"] == "upstream"
    assert error.type == "upstream_error"
    assert error.body == raw["error"]
    assert error.request_id == 7
    assert "HTTP 503" in error.message
    assert routing is not None and routing.endpoint is None and routing.usage is None
    assert [(a.endpoint, a.outcome) for a in routing.attempts] == [
        ("limited/default", "rate_limited"),
        ("broken/default", "server_error"),
    ]
    assert error.routing is routing
