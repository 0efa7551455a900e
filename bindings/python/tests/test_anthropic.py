"""Anthropic Messages requests (protocol 1): to an OpenAI upstream
(translated by llmux) and to an Anthropic upstream (passed through)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict

import pytest
from conftest import USER, order

import llmux

# (model, provider order) pairs: translation OpenAI upstream -> Anthropic caller,
# and an Anthropic upstream.
TARGETS = [
    pytest.param("test/a", None, id="openai-upstream"),
    pytest.param("test/anthropic", None, id="anthropic-upstream"),
]


@pytest.mark.parametrize("model,provider", TARGETS)
def test_messages_non_streaming(router: llmux.Router, model: str, provider: Any) -> None:
    resp = router.messages.create(model=model, max_tokens=64, messages=USER)
    assert isinstance(resp, llmux.Message)
    assert resp.type == "message"
    assert resp.role == "assistant"
    assert resp.content[0].type == "text"
    assert resp.content[0].text == "Hello from a."
    assert resp.stop_reason == "end_turn"
    assert resp.routing is not None and resp.routing.usage is not None
    assert resp.routing.usage.completion_tokens == 5


@pytest.mark.parametrize("model,provider", TARGETS)
def test_messages_streaming(router: llmux.Router, model: str, provider: Any) -> None:
    stream = router.messages.create(model=model, max_tokens=64, messages=USER, stream=True)
    types = []
    text = ""
    for event in stream:
        assert isinstance(event, llmux.MessageStreamEvent)
        types.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    assert text == "Hello from a."
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert "content_block_start" in types and "message_delta" in types
    assert stream.routing is not None and stream.routing.attempts[-1].outcome == "success"


def test_messages_system_and_routing_kwargs(router: llmux.Router) -> None:
    resp = router.messages.create(
        model="test/model",
        max_tokens=64,
        system="be brief",
        messages=USER,
        provider=order("down", "b"),
    )
    assert resp.content[0].text == "Hello from b."
    assert resp.routing is not None
    assert [a.outcome for a in resp.routing.attempts] == ["server_error", "success"]


@pytest.mark.parametrize(
    "model,mock",
    [
        # The translated OpenAI request does not carry `mock`: use a server that always answers 429.
        pytest.param("test/limited", None, id="openai-upstream"),
        pytest.param("test/anthropic", {"status": 429}, id="anthropic-upstream"),
    ],
)
def test_messages_error_shape(router: llmux.Router, model: str, mock: Any) -> None:
    extra = {"mock": mock} if mock else {}
    with pytest.raises(llmux.RateLimitError) as info:
        router.messages.create(model=model, max_tokens=64, messages=USER, **extra)
    e = info.value
    assert e.status == 429
    assert e.type == "rate_limit_error"
    # Anthropic error body: {"type": "error", "error": {"type", "message"}}
    assert e.body["type"] == "error"
    assert e.body["error"]["type"] == "rate_limit_error"
    assert e.routing is not None and e.routing.attempts[-1].status == 429


def test_messages_upstream_503_is_api_error(router: llmux.Router) -> None:
    with pytest.raises(llmux.UpstreamError) as info:
        router.messages.create(model="test/model", max_tokens=64, messages=USER, provider=order("down"))
    assert info.value.status == 503
    assert info.value.body["error"]["type"] == "api_error"


def test_async_messages(config: Dict[str, Any]) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            resp = await r.messages.create(model="test/a", max_tokens=64, messages=USER)
            assert resp.content[0].text == "Hello from a."
            stream = await r.messages.create(model="test/anthropic", max_tokens=64, messages=USER, stream=True)
            text = ""
            async for ev in stream:
                if ev.type == "content_block_delta":
                    text += ev.delta.text or ""
            assert text == "Hello from a."
            assert stream.routing is not None and stream.routing.endpoint == "an/default"

    asyncio.run(main())
