"""Pieces shared by the threaded and the asyncio routers: request bodies,
terminal-event decoding, routing events to per-request queues, the I/O-free
parts of streams and routers, the registry of live routers closed at exit."""

from __future__ import annotations

import atexit
import json
import threading
import weakref
from typing import Any, Dict, Generic, Iterable, List, Mapping, Optional, Protocol as TypingProtocol, Set, Tuple, Type, TypeVar, Union

from ._engine import Config, RawEvent, _Engine
from ._errors import APIStatusError, RequestCancelled, RouterClosedError, error_from_event
from ._ffi import EventKind
from ._json import done_response, dumps, loads
from ._types import LLMuxObject, Routing

#: Internal event kind put on a request's queue when its router closed
#: before the request's terminal event could be delivered.
CLOSED = -1

#: Internal event kind: the dispatcher died (payload = the exception text).
FAILED = -2

T = TypeVar("T", bound=LLMuxObject)

#: How many events one ``llmux_poll`` call may return.
BATCH = 64

#: What a request's queue carries: (event kind, JSON bytes).
Item = Tuple[int, bytes]

CHUNK = int(EventKind.CHUNK)
DONE = int(EventKind.DONE)
ERROR = int(EventKind.ERROR)
#: The kinds that end a request.
TERMINAL = frozenset((DONE, ERROR, CLOSED, FAILED))


def message_list(messages: Iterable[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """``messages`` as a list of message dicts. A string would otherwise go
    upstream as one message per character (``"hi"`` as ``["h", "i"]``), so
    anything but an iterable of mappings is refused before it is sent."""
    example = "[{'role': 'user', 'content': 'hi'}]"
    if isinstance(messages, (str, bytes, bytearray, Mapping)) or not isinstance(messages, Iterable):
        raise TypeError(f"messages must be a list of message dicts such as {example}, not {type(messages).__name__}")
    out = list(messages)
    for i, m in enumerate(out):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a message dict such as {example[1:-1]}, not {type(m).__name__}")
    return out


def openai_body(
    model: str,
    messages: Iterable[Mapping[str, Any]],
    stream: bool,
    kwargs: Dict[str, Any],
    extra_body: Optional[Mapping[str, Any]],
) -> bytes:
    body: Dict[str, Any] = {"model": model, "messages": message_list(messages)}
    body.update(kwargs)
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return dumps(body).encode("utf-8")


def anthropic_body(
    model: str,
    max_tokens: int,
    messages: Iterable[Mapping[str, Any]],
    stream: bool,
    kwargs: Dict[str, Any],
    extra_body: Optional[Mapping[str, Any]],
) -> bytes:
    body: Dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": message_list(messages)}
    body.update(kwargs)
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return dumps(body).encode("utf-8")


def responses_body(
    model: str,
    input: Union[str, Iterable[Mapping[str, Any]]],
    stream: bool,
    kwargs: Dict[str, Any],
    extra_body: Optional[Mapping[str, Any]],
) -> bytes:
    body: Dict[str, Any] = {"model": model, "input": input if isinstance(input, str) else list(input)}
    body.update(kwargs)
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return dumps(body).encode("utf-8")


def closed_error(request_id: int) -> RequestCancelled:
    return RequestCancelled(
        "the router was closed before the request ended",
        status=499,
        body=None,
        error_type="cancelled",
        routing=None,
        request_id=request_id,
        kind="cancelled",
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
    payload: Dict[str, Any] = loads(data)
    raw_routing = payload.get("routing")
    routing = Routing.from_dict(raw_routing) if isinstance(raw_routing, dict) else None
    if kind == ERROR:
        return payload, routing, error_from_event(payload, routing, request_id)
    return payload, routing, None


def is_terminal(kind: int) -> bool:
    return kind in TERMINAL


def make_response(cls: Type[T], payload: Dict[str, Any], routing: Optional[Routing]) -> T:
    response = payload.get("response")
    return cls(response if isinstance(response, dict) else {}, routing)  # type: ignore[call-arg]


def response_from_terminal(cls: Type[T], request_id: int, kind: int, data: bytes) -> T:
    """The response of a non-streaming request from its terminal event;
    raises the mapped exception if the request ended with an error."""
    if kind == DONE:
        # The common case, built lazily: only the response object is decoded
        # now; the routing record after it is decoded (from the event's
        # JSON) and becomes a Routing when someone reads `.routing`.
        response = done_response(data)
        if response is not None:
            return cls(response, data)  # type: ignore[call-arg]
        payload: Dict[str, Any] = loads(data)
        body, raw = payload.get("response"), payload.get("routing")
        return cls(body if isinstance(body, dict) else {}, raw if isinstance(raw, dict) else None)  # type: ignore[call-arg]
    payload, routing, error = decode_terminal(request_id, kind, data)
    if error is not None:
        raise error
    return make_response(cls, payload, routing)


def health_bytes(health: Union[Dict[str, Any], str, bytes]) -> bytes:
    """The JSON bytes ``llmux_health_import`` takes, from a dict or its JSON."""
    return health if isinstance(health, bytes) else (health if isinstance(health, str) else json.dumps(health)).encode("utf-8")


class Sink(TypingProtocol):
    def put_nowait(self, item: Item) -> None: ...


#: A request's queue (``queue.SimpleQueue`` or ``asyncio.Queue``).
Q = TypeVar("Q", bound=Sink)


class CoreBase(Generic[Q]):
    """What the threaded dispatcher and the asyncio core share: the engine,
    the queue of every request someone waits for, the set of requests whose
    terminal event has not been delivered yet. Subclasses do the polling and
    any locking."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.queues: Dict[int, Q] = {}
        self.live: Set[int] = set()  # submitted, terminal not yet delivered
        self.closing = False
        self.dropped = 0  # events that arrived for a request nobody waits for

    def _route(self, batch: Iterable[RawEvent]) -> None:
        """Puts each polled event on the queue of its request; a terminal
        event ends the request (its queue is unregistered)."""
        queues = self.queues
        for rid, kind, data in batch:
            if kind in TERMINAL:
                self.live.discard(rid)
                q = queues.pop(rid, None)
            else:
                q = queues.get(rid)
            if q is None:
                self.dropped += 1
                continue
            q.put_nowait((kind, data))

    def cancel(self, rid: int) -> bool:
        try:
            return self.engine.cancel(rid)
        except RouterClosedError:
            return False

    def forget(self, rid: int) -> None:
        self.queues.pop(rid, None)

    def abandon(self, rid: int) -> None:
        """Cancels a request nobody waits for any more and drops its queue."""
        self.cancel(rid)
        self.forget(rid)


class StreamBase(Generic[T]):
    """The I/O-free part of :class:`llmux.Stream` and
    :class:`llmux.AsyncStream`: decoding the events of one streaming
    request taken off its queue."""

    def __init__(self, owner: Any, core: "CoreBase[Any]", rid: int, chunk_cls: Type[T]) -> None:
        self._owner = owner  # keeps the router alive while the stream is
        self._core = core
        self._id = rid
        self._chunk_cls = chunk_cls
        self._finished = False
        # The routing record: a Routing, or the JSON of the `done` event
        # that carries it (decoded when `routing` is first read).
        self._routing: Union[Routing, bytes, None] = None
        #: The error the request ended with, if any.
        self.error: Optional[BaseException] = None

    @property
    def routing(self) -> Optional[Routing]:
        """The routing record, once the terminal event was consumed (None
        before, and after a close that did not see it)."""
        r = self._routing
        if isinstance(r, bytes):
            raw = loads(r).get("routing")
            r = self._routing = Routing.from_dict(raw) if isinstance(raw, dict) else None
        return r

    @property
    def id(self) -> int:
        """The llmux request id."""
        return self._id

    @property
    def finished(self) -> bool:
        """True once the terminal event was consumed (or the stream closed)."""
        return self._finished

    def _take(self, kind: int, data: bytes) -> Optional[T]:
        """Handles one event of the request: returns the chunk it carries, or
        None (after a terminal event, raises the error the request ended
        with, if any)."""
        if kind == CHUNK:
            return self._chunk_cls._from_json(data)
        if kind in TERMINAL:
            self._finish(kind, data)
            if self.error is not None:
                raise self.error
        return None

    def _finish(self, kind: int, data: bytes) -> None:
        self._finished = True
        if kind == DONE:
            self._routing = data  # decoded on first read of `routing`
        else:
            _, self._routing, self.error = decode_terminal(self._id, kind, data)
        self._core.forget(self._id)

    def _abandon(self, cancel: bool = True) -> None:
        """Marks the stream finished without its terminal event: cancels the
        request (unless ``cancel`` is false) and drops its queue."""
        if not self._finished:
            self._finished = True
            if cancel:
                self._core.abandon(self._id)
            else:
                self._core.forget(self._id)

    def __del__(self) -> None:
        try:
            self._abandon()
        except BaseException:  # noqa: BLE001 - never raise from __del__
            pass


class RouterCore(TypingProtocol):
    engine: _Engine
    closing: bool

    def cancel(self, rid: int) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=RouterCore)
R = TypeVar("R", bound="RouterBase[Any]")


class RouterBase(Generic[C]):
    """The methods :class:`llmux.Router` and :class:`llmux.AsyncRouter`
    share; ``_backend()`` gives the dispatcher / core, None if the
    constructor failed."""

    def _backend(self) -> Optional[C]:
        raise NotImplementedError

    def _open_backend(self) -> C:
        c = self._backend()
        if c is None or c.closing:
            raise RouterClosedError("the router is closed")
        return c

    def stats(self) -> Dict[str, Any]:
        """Health and price of every endpoint (``llmux_stats``)."""
        return self._open_backend().engine.stats()

    def health_export(self) -> Dict[str, Any]:
        """Every endpoint's learned health (``llmux_health_export``), to
        save and pass to :meth:`health_import` in a later run."""
        return self._open_backend().engine.health_export()

    def health_import(self, health: Union[Dict[str, Any], str, bytes]) -> int:
        """Restores health saved by :meth:`health_export` (a dict or its
        JSON); returns how many endpoints were restored."""
        data = health_bytes(health)
        return self._open_backend().engine.health_import(data)

    def reload(self, config: Config) -> Dict[str, Any]:
        """Swaps in a new catalog live (``llmux_engine_reload``): endpoints
        in both keep their health and sticky keys, requests in flight finish
        on the catalog they started with. Returns the report (``generation``,
        ``added``, ``removed``, ``kept``, ...). An invalid config raises
        :class:`llmux.ConfigError` naming every problem, and changes
        nothing."""
        return self._open_backend().engine.reload(config)

    def cancel(self, request_id: int) -> bool:
        """Cancels a request by id (``stream.id``). True if it was in flight;
        it then ends with a :class:`llmux.RequestCancelled` error."""
        return self._open_backend().cancel(request_id)

    @property
    def closed(self) -> bool:
        c = self._backend()
        return c is None or c.closing

    def close(self) -> None:
        """Cancels in-flight requests (waiting briefly for their terminal
        events) and frees the engine. Idempotent."""
        c = self._backend()
        if c is not None:
            c.close()

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except BaseException:  # noqa: BLE001 - never raise from __del__
            pass


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
    their requests, stops any polling and frees the engines while
    the interpreter (and ctypes) are still intact."""
    with _live_lock:
        objs = list(_live)
    for obj in objs:
        try:
            obj.close()
        except BaseException:  # noqa: BLE001 - nothing may escape at exit
            pass
