"""The threaded ``Router``.

No background thread: a caller waiting for its own request polls the
engine itself (``llmux_poll`` with the GIL released) and routes every
polled event to the ``queue.SimpleQueue`` of its request; callers waiting
at the same time take turns (one leader polls, the others wait on a
condition and take over when it returns). So a request costs no hand-off
between Python threads. Submitting and registering a queue happen under
the same lock the leader takes to route, so an event can never arrive for
a request whose queue is not registered yet; events for requests nobody
waits for any more (a stream closed early) are dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, List, Literal, Mapping, Optional, Type, Union, cast, overload

from . import _ffi
from ._common import (
    BATCH,
    CHUNK,
    CLOSED,
    FAILED,
    CoreBase,
    Item,
    RouterBase,
    StreamBase,
    T,
    TERMINAL,
    anthropic_body,
    responses_body,
    is_terminal,
    openai_body,
    register_live,
    response_from_terminal,
    unregister_live,
)
from ._engine import Config, RawEvent, _Engine, poll
from ._errors import RouterClosedError
from ._ffi import Protocol
from ._types import ChatCompletion, ChatCompletionChunk, Message, MessageStreamEvent, Response, ResponseStreamEvent

#: Longest single ``llmux_poll`` of a leader (ms): it then lets go, so a
#: KeyboardInterrupt or a close is seen within this time.
LEAD_POLL_MS = 100


class _Dispatcher(CoreBase["queue.SimpleQueue[Item]"]):
    """The per-request queues of one engine and the turn-taking poll. Holds
    no reference to the public Router, so dropping the Router runs its
    ``__del__``."""

    def __init__(self, engine: _Engine) -> None:
        super().__init__(engine)
        # Re-entrant: a Stream.__del__ run by the garbage collector while the
        # lock is held calls forget().
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # routed, or the lead is free
        self.waiting = 0  # callers in changed.wait(): notified only if any
        self.dead: Optional[str] = None  # why polling stopped on its own
        self.stop = False
        self.leading = False
        self.events = (_ffi.llmux_event * BATCH)()
        register_live(self)

    # -- submit / deliver ----------------------------------------------------

    def submit(self, protocol: int, body: bytes, traceparent: Optional[str] = None) -> "tuple[int, queue.SimpleQueue[Item]]":
        with self.lock:
            if self.closing:
                raise RouterClosedError("the router is closed")
            if self.dead is not None:
                raise RouterClosedError(f"the router's event dispatcher stopped: {self.dead}")
            rid = self.engine.submit(protocol, body, traceparent)
            q: "queue.SimpleQueue[Item]" = queue.SimpleQueue()
            self.queues[rid] = q
            self.live.add(rid)
        return rid, q

    def forget(self, rid: int) -> None:
        with self.lock:
            super().forget(rid)

    def _fail_waiters(self, kind: int, data: bytes) -> None:
        with self.lock:
            for rid in list(self.live):
                q = self.queues.pop(rid, None)
                if q is not None:
                    q.put((kind, data))
            self.live.clear()
            self.changed.notify_all()

    def take(self, q: "queue.SimpleQueue[Item]", timeout: Optional[float] = None) -> Optional[Item]:
        """The next item of a request's queue, polling the engine while it is
        empty; None when ``timeout`` (seconds) passed first."""
        if not q.empty():  # only this request's consumer takes from q
            return q.get_nowait()
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._drive_until(q.qsize, deadline):  # qsize(): non-zero once ready
            return q.get_nowait()
        return None

    def _drive_until(self, ready: Callable[[], object], deadline: Optional[float]) -> bool:
        """Polls (as the leader) or waits for the leader until ``ready()``
        is true (checked under the lock) or ``deadline`` passes."""
        while True:
            with self.lock:
                if ready():
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self.leading or self.stop or self.dead is not None:
                    self.waiting += 1
                    try:
                        self.changed.wait(left if left is not None else LEAD_POLL_MS / 1000)
                    finally:
                        self.waiting -= 1
                    continue
                self.leading = True
            ms = LEAD_POLL_MS if left is None else max(0, min(LEAD_POLL_MS, int(left * 1000) + 1))
            if self._lead(ms, ready):
                return True

    def _lead(self, timeout_ms: int, ready: Callable[[], object]) -> bool:
        """One poll as the leader; routes what came, lets the lead go and
        says whether ``ready()`` holds then (in the same locked step)."""
        batch: List[RawEvent] = []
        failed: Optional[BaseException] = None
        done: object = False
        try:
            ptr = self.engine._enter()
            try:
                batch = poll(self.engine._lib, ptr, self.events, timeout_ms)
            finally:
                self.engine._exit()
        except RouterClosedError:
            self.stop = True
        except BaseException as e:  # noqa: BLE001 - report to waiters, never crash
            failed = e
        finally:
            with self.lock:
                if batch:
                    self._route(batch)
                self.leading = False
                if self.waiting:
                    self.changed.notify_all()
                done = ready()
        if failed is not None:
            if isinstance(failed, (KeyboardInterrupt, SystemExit)):
                raise failed
            with self.lock:
                self.dead = str(failed) or type(failed).__name__
            self._fail_waiters(FAILED, str(failed).encode("utf-8", "replace"))
        return bool(done)

    # -- close ---------------------------------------------------------------

    def close(self, grace: float = 2.0) -> None:
        """Cancels every request, waits up to ``grace`` seconds for their
        terminal events (polling for them), frees the engine. Idempotent;
        safe from any thread."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            live = list(self.live)
        unregister_live(self)
        for rid in live:
            self.cancel(rid)
        if live:
            try:
                self._drive_until(lambda: not self.live, time.monotonic() + grace)
            except (KeyboardInterrupt, SystemExit):
                pass
        with self.lock:
            self.stop = True
        try:
            self.engine.wakeup()  # a leader blocked in llmux_poll returns
        except RouterClosedError:
            pass
        self.engine.free()  # waits for a running poll to return
        self._fail_waiters(CLOSED, b"")


class Stream(StreamBase[T]):
    """An iterator over the chunks of one streaming request.

    After exhaustion ``routing`` holds the routing record. If the request
    ends with an error event, iteration raises the mapped exception (a
    subclass of :class:`llmux.APIStatusError`). ``close()`` (or leaving a
    ``with`` block) cancels the request if it has not finished and waits
    briefly for its terminal event. Consume a stream from one thread at a
    time."""

    def __init__(self, owner: Any, dispatcher: _Dispatcher, rid: int, q: "queue.SimpleQueue[Item]", chunk_cls: Type[T]) -> None:
        super().__init__(owner, dispatcher, rid, chunk_cls)
        self._core: _Dispatcher = dispatcher
        self._queue = q

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        q = self._queue
        while not self._finished:
            if q.empty():
                try:
                    item = self._core.take(q)
                except BaseException:
                    self.close()
                    raise
                assert item is not None  # no timeout
            else:  # only this stream's consumer takes from q
                item = q.get_nowait()
            kind, data = item
            if kind == CHUNK:
                return self._chunk_cls._from_json(data)
            chunk = self._take(kind, data)
            if chunk is not None:
                return chunk
        raise StopIteration

    def close(self, timeout: float = 5.0) -> None:
        """Cancels the request if it has not finished, then waits up to
        ``timeout`` seconds for its terminal event (so ``routing`` shows the
        cancelled attempt). Idempotent."""
        if self._finished:
            return
        self._core.cancel(self._id)
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                item = self._core.take(self._queue, timeout=left)
                if item is None:
                    break
                kind, data = item
                if is_terminal(kind):
                    self._finish(kind, data)
                    return
        finally:
            self._abandon(cancel=False)

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait(dispatcher: _Dispatcher, rid: int, q: "queue.SimpleQueue[Item]") -> "tuple[int, bytes]":
    """Blocks for the terminal event of a non-streaming request; cancels the
    request if interrupted (e.g. KeyboardInterrupt)."""
    done = False
    try:
        while True:
            item = dispatcher.take(q)
            assert item is not None  # no timeout
            kind, data = item
            if kind in TERMINAL:
                done = True
                return kind, data
    finally:
        if not done:
            dispatcher.abandon(rid)


class Completions:
    """``router.chat.completions``."""

    def __init__(self, router: "Router") -> None:
        self._router = router

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[False] = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Stream[ChatCompletionChunk]: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Union[ChatCompletion, Stream[ChatCompletionChunk]]:
        """Creates an OpenAI Chat Completions request. Every extra keyword
        (``temperature``, ``tools``, ``provider={"routing": ...}``, ...) and
        ``extra_body`` go into the JSON body as given."""
        body = openai_body(model, messages, stream, kwargs, extra_body)
        result = self._router._run(Protocol.OPENAI, body, stream, ChatCompletion, ChatCompletionChunk, traceparent)
        return cast("Union[ChatCompletion, Stream[ChatCompletionChunk]]", result)


class Chat:
    """``router.chat``."""

    def __init__(self, router: "Router") -> None:
        self.completions = Completions(router)


class Messages:
    """``router.messages``: Anthropic Messages requests."""

    def __init__(self, router: "Router") -> None:
        self._router = router

    @overload
    def create(
        self,
        *,
        model: str,
        max_tokens: int,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[False] = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Message: ...

    @overload
    def create(
        self,
        *,
        model: str,
        max_tokens: int,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Stream[MessageStreamEvent]: ...

    def create(
        self,
        *,
        model: str,
        max_tokens: int,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Union[Message, Stream[MessageStreamEvent]]:
        """Creates an Anthropic Messages request (``system``, ``tools``,
        ``provider``, ... pass through as keywords)."""
        body = anthropic_body(model, max_tokens, messages, stream, kwargs, extra_body)
        result = self._router._run(Protocol.ANTHROPIC, body, stream, Message, MessageStreamEvent, traceparent)
        return cast("Union[Message, Stream[MessageStreamEvent]]", result)


class Responses:
    """``router.responses``: OpenAI Responses requests."""

    def __init__(self, router: "Router") -> None:
        self._router = router

    @overload
    def create(
        self,
        *,
        model: str,
        input: Union[str, Iterable[Mapping[str, Any]]],
        stream: Literal[False] = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Response: ...

    @overload
    def create(
        self,
        *,
        model: str,
        input: Union[str, Iterable[Mapping[str, Any]]],
        stream: Literal[True],
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Stream[ResponseStreamEvent]: ...

    def create(
        self,
        *,
        model: str,
        input: Union[str, Iterable[Mapping[str, Any]]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Union[Response, Stream[ResponseStreamEvent]]:
        """Creates an OpenAI Responses request (``instructions``, ``tools``,
        ``reasoning``, ``provider``, ... pass through as keywords)."""
        body = responses_body(model, input, stream, kwargs, extra_body)
        result = self._router._run(Protocol.RESPONSES, body, stream, Response, ResponseStreamEvent, traceparent)
        return cast("Union[Response, Stream[ResponseStreamEvent]]", result)


class Router(RouterBase[_Dispatcher]):
    """An llmux engine with an OpenAI-SDK-like surface. Thread-safe: one
    Router may serve many threads.

    ``config`` is a dict, JSON text (a str starting with ``{``, or bytes),
    or a path to a JSON file. Raises :class:`llmux.ConfigError` naming the
    JSON path of each problem.

    Use as a context manager or call :meth:`close`; an unclosed Router is
    closed when garbage-collected and at interpreter exit."""

    def __init__(self, config: Config) -> None:
        self._dispatcher: Optional[_Dispatcher] = None
        engine = _Engine(config)
        try:
            self._dispatcher = _Dispatcher(engine)
        except BaseException:
            engine.free()
            raise
        self.chat = Chat(self)
        self.messages = Messages(self)
        self.responses = Responses(self)

    def _backend(self) -> Optional[_Dispatcher]:
        return self._dispatcher

    def _run(
        self,
        protocol: int,
        body: bytes,
        stream: bool,
        response_cls: Type[Any],
        chunk_cls: Type[Any],
        traceparent: Optional[str] = None,
    ) -> Any:
        d = self._dispatcher
        if d is None or d.closing:
            raise RouterClosedError("the router is closed")
        rid, q = d.submit(protocol, body, traceparent)
        if stream:
            return Stream(self, d, rid, q, chunk_cls)
        kind, data = _wait(d, rid, q)
        return response_from_terminal(response_cls, rid, kind, data)
