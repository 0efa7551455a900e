"""OpenAI Responses requests (protocol 2): to an OpenAI Chat upstream and an
Anthropic upstream (translated by llmux) and to a Responses upstream
(passed through), sync and async, streaming and not."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

import llmux

TARGETS = [
    pytest.param("test/a", id="chat-upstream"),
    pytest.param("test/anthropic", id="anthropic-upstream"),
    pytest.param("test/responses", id="responses-upstream"),
]


def check_response(resp: Any) -> None:
    assert isinstance(resp, llmux.Response)
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.output_text == "Hello from a."
    assert resp.output[-1].type == "message"
    assert resp.usage.output_tokens == 5
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    assert resp.routing is not None and resp.routing.usage is not None
    assert resp.routing.usage.completion_tokens == 5


def check_events(events: List[Any]) -> None:
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    seq = [e.sequence_number for e in events]
    assert seq == list(range(seq[0], seq[0] + len(seq)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from a."
    assert events[-1].response.output[-1].content[0].text == "Hello from a."


@pytest.mark.parametrize("model", TARGETS)
def test_responses_non_streaming(router: llmux.Router, model: str) -> None:
    resp = router.responses.create(model=model, input="hi", instructions="be brief")
    check_response(resp)


@pytest.mark.parametrize("model", TARGETS)
def test_responses_streaming(router: llmux.Router, model: str) -> None:
    stream = router.responses.create(model=model, input=[{"role": "user", "content": "hi"}], stream=True)
    events = list(stream)
    assert all(isinstance(e, llmux.ResponseStreamEvent) for e in events)
    check_events(events)
    assert stream.routing is not None and stream.routing.attempts[-1].outcome == "success"


@pytest.mark.parametrize("model", TARGETS)
def test_async_responses(config: Any, model: str) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            check_response(await r.responses.create(model=model, input="hi"))
            stream = await r.responses.create(model=model, input="hi", stream=True)
            check_events([e async for e in stream])

    asyncio.run(main())


def test_responses_store_needs_a_responses_endpoint(router: llmux.Router) -> None:
    with pytest.raises(llmux.InvalidRequestError, match="store"):
        router.responses.create(model="test/a", input="hi", store=True)
    resp = router.responses.create(model="test/responses", input="hi", store=True)
    assert resp.routing.endpoint == "rs/default"
