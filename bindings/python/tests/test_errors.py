"""Result codes and error events mapped to the exception hierarchy."""

from __future__ import annotations

from typing import Any, Dict

import pytest
from conftest import USER, order

import llmux


def test_unknown_model_lists_models(router: llmux.Router) -> None:
    with pytest.raises(llmux.UnknownModelError) as info:
        router.chat.completions.create(model="nope/missing", messages=USER)
    e = info.value
    assert e.code == llmux.Result.ERR_UNKNOWN_MODEL
    assert "nope/missing" in str(e)
    for slug in ("test/a", "test/model", "test/anthropic"):
        assert slug in str(e)
    assert isinstance(e, llmux.InvalidRequestError) and isinstance(e, llmux.LLMuxError)


def test_unknown_provider_pin(router: llmux.Router) -> None:
    with pytest.raises(llmux.UnknownProviderError) as info:
        router.chat.completions.create(model="test/a:zz", messages=USER)
    assert info.value.code == llmux.Result.ERR_UNKNOWN_PROVIDER
    assert isinstance(info.value, llmux.UnknownModelError)


def test_unknown_endpoint_in_order(router: llmux.Router) -> None:
    with pytest.raises(llmux.UnknownEndpointError) as info:
        router.chat.completions.create(model="test/model", messages=USER, provider=order("zz"))
    assert "a/default" in str(info.value)


def test_invalid_request(router: llmux.Router) -> None:
    with pytest.raises(llmux.InvalidRequestError) as info:
        router.chat.completions.create(model="test/a", messages=USER, provider={"bogus": 1})
    assert info.value.code == llmux.Result.ERR_INVALID_REQUEST
    assert "provider.bogus" in str(info.value)


def test_bad_config_names_json_path(config: Dict[str, Any]) -> None:
    config["models"][0]["endpoints"][0]["provider"] = "acme"
    with pytest.raises(llmux.ConfigError) as info:
        llmux.Router(config)
    msg = str(info.value)
    assert "models[0].endpoints[0].provider" in msg
    assert "acme" in msg
    assert info.value.code == llmux.Result.ERR_INVALID_CONFIG


def test_bad_config_text_and_missing_file() -> None:
    with pytest.raises(llmux.ConfigError):
        llmux.Router("{not json")
    with pytest.raises(llmux.ConfigError) as info:
        llmux.Router("/nonexistent/llmux-config.json")
    assert "/nonexistent/llmux-config.json" in str(info.value)
    with pytest.raises(TypeError):
        llmux.Router(42)  # type: ignore[arg-type]


def test_upstream_400_is_bad_request(router: llmux.Router) -> None:
    with pytest.raises(llmux.APIStatusError) as info:
        router.chat.completions.create(model="test/a", messages=USER, mock={"status": 400})
    e = info.value
    assert isinstance(e, llmux.BadRequestError)
    assert isinstance(e, llmux.InvalidRequestError)
    assert e.status == 400
    assert e.type == "invalid_request_error"
    assert e.body["error"]["type"] == "invalid_request_error"
    assert "400" in e.message
    assert e.routing is not None
    assert [(a.outcome, a.status) for a in e.routing.attempts] == [("bad_request", 400)]
    assert e.routing.endpoint is None
    assert e.request_id is not None


def test_400_is_not_failed_over(router: llmux.Router) -> None:
    with pytest.raises(llmux.BadRequestError) as info:
        router.chat.completions.create(
            model="test/model", messages=USER, provider=order("a", "b"), mock={"servers": {"a": {"status": 400}}}
        )
    assert info.value.routing is not None and len(info.value.routing.attempts) == 1


def test_429_is_rate_limit(router: llmux.Router) -> None:
    with pytest.raises(llmux.RateLimitError) as info:
        router.chat.completions.create(model="test/a", messages=USER, mock={"status": 429})
    assert info.value.status == 429
    assert info.value.type == "rate_limit_error"


def test_a_provider_401_is_an_upstream_error_naming_it(router: llmux.Router) -> None:
    # The provider refused llmux's own key: a 502 about that provider, not
    # an authentication error of the caller's (issue 19).
    with pytest.raises(llmux.UpstreamError) as info:
        router.chat.completions.create(model="test/a", messages=USER, mock={"status": 401})
    assert info.value.status == 502
    assert 'provider "a" (endpoint a/default) rejected llmux\'s API key for it (HTTP 401)' in info.value.message
    assert info.value.routing is not None and info.value.routing.attempts[-1].outcome == "auth_rejected"


def test_first_token_timeout(router: llmux.Router) -> None:
    with pytest.raises(llmux.APITimeoutError) as info:
        router.chat.completions.create(
            model="test/a",
            messages=USER,
            provider={"timeouts": {"first_token_ms": 150}},
            mock={"first_token_delay_ms": 3000},
        )
    assert info.value.type == "timeout"
    assert info.value.routing is not None
    assert info.value.routing.attempts[-1].outcome == "first_token_timeout"


def test_anthropic_timeout_maps_by_error_kind(router: llmux.Router) -> None:
    # The body says "timeout_error" (Anthropic's spelling); error_kind is neutral.
    with pytest.raises(llmux.APITimeoutError) as info:
        router.messages.create(
            model="test/anthropic",
            max_tokens=64,
            messages=USER,
            provider={"timeouts": {"first_token_ms": 150}},
            mock={"first_token_delay_ms": 3000},
        )
    assert info.value.kind == "timeout"
    assert info.value.type == "timeout_error"


def test_request_too_large(config: Dict[str, Any]) -> None:
    config["max_request_bytes"] = 1000
    with llmux.Router(config) as r:
        with pytest.raises(llmux.RequestTooLargeError) as info:
            r.chat.completions.create(model="test/a", messages=[{"role": "user", "content": "x" * 2000}])
        assert info.value.code == llmux.Result.ERR_REQUEST_TOO_LARGE
        assert "max_request_bytes" in str(info.value)


def test_stream_broken_after_first_token_raises(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True, mock={"fault": {"drop_after": 2}})
    got = []
    with pytest.raises(llmux.APIStatusError) as info:
        for chunk in stream:
            got.append(chunk)
    assert got, "chunks before the break are delivered"
    assert isinstance(info.value, llmux.UpstreamError)
    assert stream.finished and stream.error is info.value
    assert stream.routing is not None and stream.routing.attempts[-1].outcome in (
        "truncated_stream",
        "connection_closed",
    )


def test_error_mapping_from_payloads() -> None:
    from llmux._errors import error_from_event

    cases = [
        ({"status": 400, "error": {"error": {"type": "invalid_request_error", "message": "m"}}}, llmux.BadRequestError),
        ({"status": 403, "error": {"error": {"type": "permission_error", "message": "m"}}}, llmux.PermissionDeniedError),
        ({"status": 404, "error": {"error": {"type": "not_found_error", "message": "m"}}}, llmux.NotFoundError),
        ({"status": 499, "error": {"error": {"type": "cancelled", "message": "m"}}}, llmux.RequestCancelled),
        ({"status": 500, "error": {"error": {"type": "internal_error", "message": "m"}}}, llmux.InternalError),
        ({"status": 502, "error": {"error": {"type": "upstream_error", "message": "m"}}}, llmux.UpstreamError),
        # Anthropic shape
        ({"status": 529, "error": {"type": "error", "error": {"type": "overloaded_error", "message": "m"}}}, llmux.UpstreamError),
        ({"status": 429, "error": {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}}}, llmux.RateLimitError),
        # unknown type: by status
        ({"status": 413, "error": {"error": {"type": "weird", "message": "m"}}}, llmux.BadRequestError),
        ({"status": 503, "error": None}, llmux.UpstreamError),
        ({"status": 418, "error": "teapot"}, llmux.APIStatusError),
    ]
    # error_kind decides over the body's protocol-specific type.
    cases += [
        ({"status": 504, "error_kind": "timeout", "error": {"type": "error", "error": {"type": "timeout_error", "message": "m"}}}, llmux.APITimeoutError),
        ({"status": 499, "error_kind": "cancelled", "error": {"type": "error", "error": {"type": "api_error", "message": "m"}}}, llmux.RequestCancelled),
        ({"status": 503, "error_kind": "overloaded", "error": {"error": {"type": "overloaded", "message": "m"}}}, llmux.UpstreamError),
        ({"status": 400, "error_kind": "invalid_request", "error": {"error": {"type": "weird", "message": "m"}}}, llmux.BadRequestError),
    ]
    for payload, cls in cases:
        e = error_from_event({"type": "error", **payload}, None, 1)
        assert type(e) is cls, (payload, type(e))
        assert e.status == payload["status"]
