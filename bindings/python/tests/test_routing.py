"""Routing through the binding: failover, pin, order, price."""

from __future__ import annotations

from conftest import USER, order

import llmux


def test_failover_503_then_second_serves(router: llmux.Router) -> None:
    resp = router.chat.completions.create(model="test/model", messages=USER, provider=order("down", "a"))
    assert resp.choices[0].message.content == "Hello from a."
    r = resp.routing
    assert r is not None
    assert r.endpoint == "a/default"
    assert [(a.endpoint, a.outcome, a.status) for a in r.attempts] == [
        ("down/default", "server_error", 503),
        ("a/default", "success", 200),
    ]
    assert r.attempts[0].error and "503" in r.attempts[0].error


def test_failover_streaming(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/model", messages=USER, provider=order("down", "b"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from b."
    assert stream.routing is not None
    assert [a.outcome for a in stream.routing.attempts] == ["server_error", "success"]


def test_pin_provider(router: llmux.Router) -> None:
    resp = router.chat.completions.create(model="test/model:b", messages=USER)
    assert resp.routing is not None and resp.routing.endpoint == "b/default"
    assert resp.choices[0].message.content == "Hello from b."


def test_order_routing(router: llmux.Router) -> None:
    for first in ("b", "a"):
        resp = router.chat.completions.create(model="test/model", messages=USER, provider=order(first))
        assert resp.routing is not None and resp.routing.provider == first
        assert [a.endpoint for a in resp.routing.attempts] == [f"{first}/default"]


def test_order_single_entry_does_not_fall_back(router: llmux.Router) -> None:
    try:
        router.chat.completions.create(model="test/model", messages=USER, provider=order("down"))
    except llmux.UpstreamError as e:
        assert e.status == 503
        assert e.routing is not None
        assert {a.endpoint for a in e.routing.attempts} == {"down/default"}
    else:
        raise AssertionError("expected UpstreamError")


def test_price_routing(router: llmux.Router) -> None:
    resp = router.chat.completions.create(
        model="test/model",
        messages=USER,
        provider={"routing": {"type": "priority", "primary_factor": "price"}},
    )
    assert resp.routing is not None and resp.routing.endpoint == "b/default"
