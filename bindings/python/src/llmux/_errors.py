"""The exception hierarchy and the mapping from llmux result codes and
``ERROR`` event payloads to it.

::

    LLMuxError
    ├── ConfigError                      (llmux_engine_new: invalid config)
    ├── RouterClosedError                (the Router was closed / is shutting down)
    ├── InvalidRequestError              (llmux_submit: invalid JSON or request)
    │   ├── RequestTooLargeError         (larger than the config's max_request_bytes)
    │   ├── UnknownModelError
    │   │   ├── UnknownProviderError     (`model:provider` pin the model lacks)
    │   │   └── UnknownEndpointError     (order list names an unknown endpoint)
    │   └── BadRequestError              (also an APIStatusError: 400/413/422 from upstream)
    └── APIStatusError                   (a request ended with an ERROR event)
        ├── BadRequestError
        ├── AuthenticationError          (401)
        ├── PermissionDeniedError        (403)
        ├── NotFoundError                (404)
        ├── RateLimitError               (429)
        ├── APITimeoutError              (error_kind "timeout")
        ├── RequestCancelled             (error_kind "cancelled")
        ├── UpstreamError                (error_kind "upstream" or "overloaded")
        └── InternalError                (error_kind "internal": a bug in llmux)

``ERROR`` events are mapped by their protocol-neutral ``error_kind``, the
same for OpenAI and Anthropic callers; the error body's ``type`` (which
differs by protocol) is kept as ``APIStatusError.type``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Type

from ._ffi import Result

if TYPE_CHECKING:  # pragma: no cover
    from ._types import Routing


class LLMuxError(Exception):
    """Base of every error this package raises.

    ``code`` is the llmux result code when the error came from a C call
    (``None`` for errors carried by events)."""

    def __init__(self, message: str, *, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = Result(code) if code is not None and code in Result._value2member_map_ else code


class ConfigError(LLMuxError):
    """The engine config is invalid; the message names each JSON path."""


class RouterClosedError(LLMuxError):
    """The Router is closed (or the engine is shutting down)."""


class InvalidRequestError(LLMuxError):
    """The request was rejected before it started (not JSON, not a valid
    request), or an upstream rejected it (see :class:`BadRequestError`)."""


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than the config's ``max_request_bytes``."""


class UnknownModelError(InvalidRequestError):
    """The request names a model the catalog does not have; the message lists
    the configured models."""


class UnknownProviderError(UnknownModelError):
    """A ``model:provider`` pin names a provider that does not serve the model."""


class UnknownEndpointError(UnknownModelError):
    """An order list names an endpoint the model does not have."""


class APIStatusError(LLMuxError):
    """A request ended with an ``ERROR`` event.

    ``status`` is the HTTP-like status, ``body`` the error body in the
    caller's protocol (e.g. ``{"error": {"type", "message", ...}}``),
    ``type`` the error type string of the body (protocol-specific),
    ``kind`` the protocol-neutral ``error_kind`` (``timeout``,
    ``rate_limit``, ``cancelled``, ...), ``routing`` the routing record
    (every attempt), ``request_id`` the llmux request id."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any = None,
        error_type: Optional[str] = None,
        routing: Optional["Routing"] = None,
        request_id: Optional[int] = None,
        kind: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.type = error_type
        self.kind = kind
        self.routing = routing
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.status} {self.type or 'error'}: {self.message}"


class BadRequestError(APIStatusError, InvalidRequestError):
    """An upstream rejected the request (400, 413, 422): not retried."""


class AuthenticationError(APIStatusError):
    """401 / ``authentication_error``."""


class PermissionDeniedError(APIStatusError):
    """403 / ``permission_error``."""


class NotFoundError(APIStatusError):
    """404 / ``not_found_error``."""


class RateLimitError(APIStatusError):
    """429 / ``rate_limit_error``."""


class APITimeoutError(APIStatusError):
    """A connect, first-token, idle or total timeout (error type ``timeout``)."""


class RequestCancelled(APIStatusError):
    """The request was cancelled (``Router.cancel``, closing a stream,
    cancelling an asyncio task, or closing the Router)."""


class UpstreamError(APIStatusError):
    """The upstream failed (5xx, a broken stream, an error event)."""


class InternalError(APIStatusError):
    """``internal_error``: a bug in llmux."""


_BY_CODE: Dict[int, Type[LLMuxError]] = {
    Result.ERR_INVALID_CONFIG: ConfigError,
    Result.ERR_INVALID_UTF8: InvalidRequestError,
    Result.ERR_INVALID_JSON: InvalidRequestError,
    Result.ERR_INVALID_REQUEST: InvalidRequestError,
    Result.ERR_REQUEST_TOO_LARGE: RequestTooLargeError,
    Result.ERR_UNKNOWN_MODEL: UnknownModelError,
    Result.ERR_UNKNOWN_PROVIDER: UnknownProviderError,
    Result.ERR_UNKNOWN_ENDPOINT: UnknownEndpointError,
    Result.ERR_SHUTTING_DOWN: RouterClosedError,
}


def error_from_code(code: int, message: Optional[str], *, default: Type[LLMuxError] = LLMuxError) -> LLMuxError:
    """The exception for a failed C call (``message`` from ``error_out``)."""
    from . import _ffi

    cls = _BY_CODE.get(code, default)
    text = message or _ffi.result_text(code)
    return cls(text, code=code)


_BY_KIND: Dict[str, Type[APIStatusError]] = {
    "invalid_request": BadRequestError,
    "authentication": AuthenticationError,
    "permission": PermissionDeniedError,
    "not_found": NotFoundError,
    "rate_limit": RateLimitError,
    "timeout": APITimeoutError,
    "upstream": UpstreamError,
    "overloaded": UpstreamError,
    "cancelled": RequestCancelled,
    "internal": InternalError,
    "no_endpoint_matches": NotFoundError,
}

# For events without ``error_kind`` (not written by this llmux version).
_BY_TYPE: Dict[str, Type[APIStatusError]] = {
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "timeout": APITimeoutError,
    "timeout_error": APITimeoutError,
    "cancelled": RequestCancelled,
    "upstream_error": UpstreamError,
    "api_error": UpstreamError,
    "overloaded_error": UpstreamError,
    "internal_error": InternalError,
}

_BY_STATUS: Dict[int, Type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: APITimeoutError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
    499: RequestCancelled,
    504: APITimeoutError,
}


def error_from_event(payload: Dict[str, Any], routing: Optional["Routing"], request_id: Optional[int]) -> APIStatusError:
    """The exception for an ``ERROR`` event payload
    ``{"type":"error","status":N,"error":{...},"error_kind":"...","routing":{...}}``,
    chosen by ``error_kind``.

    The error body is OpenAI-shaped ``{"error":{"type","message",...}}`` or
    Anthropic-shaped ``{"type":"error","error":{"type","message"}}``; both
    keep the details under ``body["error"]``."""
    status = payload.get("status")
    status = int(status) if isinstance(status, (int, float)) else 0
    body = payload.get("error")
    inner = body.get("error") if isinstance(body, dict) else None
    error_type: Optional[str] = None
    message: Optional[str] = None
    if isinstance(inner, dict):
        t = inner.get("type")
        error_type = t if isinstance(t, str) else None
        m = inner.get("message")
        message = m if isinstance(m, str) else None
    elif isinstance(inner, str):
        message = inner
    kind = payload.get("error_kind")
    kind = kind if isinstance(kind, str) else None
    cls = _BY_KIND.get(kind or "") or _BY_TYPE.get(error_type or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = UpstreamError if status >= 500 else APIStatusError
    return cls(
        message or f"request failed with status {status}",
        status=status,
        body=body,
        error_type=error_type,
        routing=routing,
        request_id=request_id,
        kind=kind,
    )
