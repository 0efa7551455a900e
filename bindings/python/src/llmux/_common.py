"""Pieces shared by the threaded and the asyncio routers: request bodies,
terminal-event decoding, the registry of live routers closed at exit."""

from __future__ import annotations

import atexit
import json
import threading
import weakref
from typing import Any, Dict, Iterable, Mapping, Optional, Protocol as TypingProtocol, Tuple, Type, TypeVar

from ._errors import APIStatusError, RequestCancelled, error_from_event
from ._ffi import EventKind
from ._types import LLMuxObject, Routing

#: Internal event kind put on a request's queue when its router closed
#: before the request's terminal event could be delivered.
CLOSED = -1

#: Internal event kind: the dispatcher died (payload = the exception text).
FAILED = -2

T = TypeVar("T", bound=LLMuxObject)


def openai_body(
    model: str,
    messages: Iterable[Mapping[str, Any]],
    stream: bool,
    kwargs: Dict[str, Any],
    extra_body: Optional[Mapping[str, Any]],
) -> bytes:
    body: Dict[str, Any] = {"model": model, "messages": list(messages)}
    body.update(kwargs)
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return json.dumps(body).encode("utf-8")


def anthropic_body(
    model: str,
    max_tokens: int,
    messages: Iterable[Mapping[str, Any]],
    stream: bool,
    kwargs: Dict[str, Any],
    extra_body: Optional[Mapping[str, Any]],
) -> bytes:
    body: Dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": list(messages)}
    body.update(kwargs)
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return json.dumps(body).encode("utf-8")


def closed_error(request_id: int) -> RequestCancelled:
    return RequestCancelled(
        "the router was closed before the request ended",
        status=499,
        body=None,
        error_type="cancelled",
        routing=None,
        request_id=request_id,
    )


def decode_terminal(request_id: int, kind: int, data: bytes) -> Tuple[Dict[str, Any], Optional[Routing], Optional[APIStatusError]]:
    """Decodes a DONE / ERROR / internal terminal event into
    (payload, routing, error-or-None)."""
    if kind == CLOSED:
        return {}, None, closed_error(request_id)
    if kind == FAILED:
        err = closed_error(request_id)
        err.message = f"the llmux event dispatcher stopped: {data.decode('utf-8', 'replace')}"
        return {}, None, err
    payload: Dict[str, Any] = json.loads(data)
    raw_routing = payload.get("routing")
    routing = Routing.from_dict(raw_routing) if isinstance(raw_routing, dict) else None
    if kind == EventKind.ERROR:
        return payload, routing, error_from_event(payload, routing, request_id)
    return payload, routing, None


def is_terminal(kind: int) -> bool:
    return kind in (EventKind.DONE, EventKind.ERROR, CLOSED, FAILED)


def make_response(cls: Type[T], payload: Dict[str, Any], routing: Optional[Routing]) -> T:
    response = payload.get("response")
    return cls(response if isinstance(response, dict) else {}, routing)  # type: ignore[call-arg]


class Closable(TypingProtocol):
    def close(self) -> None: ...


_live: "weakref.WeakSet[Any]" = weakref.WeakSet()
_live_lock = threading.Lock()


def register_live(obj: Closable) -> None:
    with _live_lock:
        _live.add(obj)


def unregister_live(obj: Closable) -> None:
    with _live_lock:
        _live.discard(obj)


@atexit.register
def _close_all_at_exit() -> None:
    """Closes every router still open when the interpreter exits: cancels
    their requests, stops the dispatcher threads and frees the engines while
    the interpreter (and ctypes) are still intact."""
    with _live_lock:
        objs = list(_live)
    for obj in objs:
        try:
            obj.close()
        except BaseException:  # noqa: BLE001 - nothing may escape at exit
            pass
