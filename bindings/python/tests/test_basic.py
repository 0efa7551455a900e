"""Non-streaming and streaming requests, response objects, config forms,
lifecycle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest
from conftest import USER, Fleet, order, settles_to_zero

import llmux


def test_library_version_matches_package_major() -> None:
    assert llmux.library_version().split(".")[0] == "0"


def test_non_streaming(router: llmux.Router) -> None:
    resp = router.chat.completions.create(model="test/a", messages=USER)
    assert isinstance(resp, llmux.ChatCompletion)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "Hello from a."
    assert resp.choices[0].message.role == "assistant"
    assert resp["choices"][0]["finish_reason"] == "stop"
    assert resp.missing_key is None  # absent keys read as None, like the openai SDK's optional fields
    d = resp.to_dict()
    assert d["choices"][0]["message"]["content"] == "Hello from a."
    json.dumps(d)

    r = resp.routing
    assert isinstance(r, llmux.Routing)
    assert (r.model, r.endpoint, r.provider, r.upstream_model) == ("test/a", "a/default", "a", "up-a")
    assert [(a.endpoint, a.outcome, a.status) for a in r.attempts] == [("a/default", "success", 200)]
    assert r.first_token_ms is not None and r.first_token_ms >= 0
    assert r.usage == llmux.Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cached_tokens=0)
    # price 1 + 2 USD per million tokens: 10 * 1e-6 + 5 * 2e-6
    assert r.cost_usd == pytest.approx(2e-5)
    assert r.to_dict()["endpoint"] == "a/default"


def test_streaming(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True)
    assert isinstance(stream, llmux.Stream)
    assert stream.id > 0
    assert stream.routing is None
    text = ""
    chunks = 0
    for chunk in stream:
        assert isinstance(chunk, llmux.ChatCompletionChunk)
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        chunks += 1
    assert text == "Hello from a."
    assert chunks >= 5
    assert stream.finished and stream.error is None
    assert stream.routing is not None
    assert stream.routing.endpoint == "a/default"
    assert stream.routing.usage is not None and stream.routing.usage.completion_tokens == 5
    assert stream.routing.first_token_ms is not None
    # Exhausted: iterating again yields nothing; close is a no-op.
    assert list(stream) == []
    stream.close()


def test_stream_context_manager(router: llmux.Router) -> None:
    with router.chat.completions.create(model="test/a", messages=USER, stream=True) as stream:
        parts = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(p or "" for p in parts) == "Hello from a."
    assert stream.routing is not None and stream.routing.provider == "a"


def test_kwargs_pass_through_into_body(router: llmux.Router, fleet: Fleet) -> None:
    marker = "pass-through-marker-1"
    router.chat.completions.create(
        model="test/a",
        messages=USER,
        temperature=0.25,
        user=marker,
        mock={"text": "custom reply"},
        extra_body={"seed": 7},
    )
    seen = [r for r in fleet.requests("a") if marker in json.dumps(r)]
    assert len(seen) == 1
    body = seen[0].get("body")
    if isinstance(body, str):
        body = json.loads(body)
    assert body["temperature"] == 0.25
    assert body["seed"] == 7
    assert body["model"] == "up-a"  # llmux replaced the model with the upstream model
    assert "provider" not in body


def test_mock_kwarg_changes_reply(router: llmux.Router) -> None:
    resp = router.chat.completions.create(model="test/a", messages=USER, mock={"text": "custom reply"})
    assert resp.choices[0].message.content == "custom reply"


def test_config_forms(config: Dict[str, Any], tmp_path: Path) -> None:
    text = json.dumps(config)
    path = tmp_path / "llmux.json"
    path.write_text(text)
    for form in (config, text, "  \n" + text, text.encode(), path, str(path)):
        with llmux.Router(form) as r:  # type: ignore[arg-type]
            assert r.chat.completions.create(model="test/a", messages=USER).choices[0].message.content == "Hello from a."


def test_stats(router: llmux.Router) -> None:
    router.chat.completions.create(model="test/model", messages=USER, provider=order("b"))
    assert settles_to_zero(router)
    stats = router.stats()
    by_id = {e["id"]: e for e in stats["endpoints"]}
    assert set(by_id) >= {"a/default", "b/default", "down/default", "an/default", "limited/default"}
    assert by_id["b/default"]["requests"] == 1
    assert by_id["b/default"]["successes"] == 1
    assert by_id["b/default"]["price"] == {"prompt": 0.5, "completion": 0.5}


def test_close_is_idempotent_and_final(config: Dict[str, Any]) -> None:
    r = llmux.Router(config)
    assert not r.closed
    r.close()
    r.close()
    assert r.closed
    with pytest.raises(llmux.RouterClosedError):
        r.chat.completions.create(model="test/a", messages=USER)
    with pytest.raises(llmux.RouterClosedError):
        r.stats()
    with pytest.raises(llmux.RouterClosedError):
        r.cancel(1)


def test_context_manager_closes(config: Dict[str, Any]) -> None:
    with llmux.Router(config) as r:
        pass
    assert r.closed


def test_cancel_unknown_id_is_false(router: llmux.Router) -> None:
    assert router.cancel(987654321) is False


def test_dropped_router_is_collected(config: Dict[str, Any]) -> None:
    import gc
    import threading
    import weakref

    before = {t.ident for t in threading.enumerate() if t.name == "llmux-dispatcher"}
    r = llmux.Router(config)
    ref = weakref.ref(r)
    r.chat.completions.create(model="test/a", messages=USER)
    del r
    gc.collect()
    assert ref() is None
    after = {t.ident for t in threading.enumerate() if t.name == "llmux-dispatcher"}
    assert after <= before  # its dispatcher thread was joined


def test_health_export_import_round_trip(config: Dict[str, Any]) -> None:
    with llmux.Router(config) as r1:
        for _ in range(3):
            r1.chat.completions.create(model="test/model", messages=USER, provider=order("b"))
        exported = r1.health_export()
        assert isinstance(exported, dict)
    with llmux.Router(config) as r2:
        before = {e["id"]: e for e in r2.stats()["endpoints"]}
        # Non-streaming calls measure response_ms (first_token_ms is a stream signal).
        assert before["b/default"]["response_ms"] is None
        restored = r2.health_import(exported)
        assert restored >= 1
        after = {e["id"]: e for e in r2.stats()["endpoints"]}
        assert after["b/default"]["response_ms"] is not None
        assert after["b/default"]["first_token_ms"] is None
        assert r2.health_import(json.dumps(exported)) == restored
        with pytest.raises(llmux.InvalidRequestError):
            r2.health_import("{not json")
