"""The threaded ``Router``.

One background dispatcher thread per Router calls ``llmux_poll`` (blocking,
woken by ``llmux_wakeup`` on close) and routes each event to the
``queue.SimpleQueue`` of its request. Submitting and registering that queue
happen under the same lock the dispatcher takes to deliver, so an event can
never arrive for a request whose queue is not registered yet; events for
requests nobody waits for any more (a stream closed early) are dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterable, Iterator, List, Literal, Mapping, Optional, Type, Union, cast, overload

from . import _ffi
from ._common import (
    BATCH,
    CLOSED,
    FAILED,
    CoreBase,
    Item,
    RouterBase,
    StreamBase,
    T,
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


class _Dispatcher(CoreBase["queue.SimpleQueue[Item]"]):
    """Owns the poll thread and the per-request queues of one engine. Holds
    no reference to the public Router, so dropping the Router runs its
    ``__del__``."""

    def __init__(self, engine: _Engine) -> None:
        super().__init__(engine)
        # Re-entrant: a Stream.__del__ run by the garbage collector inside the
        # dispatcher (while it holds the lock) calls forget().
        self.lock = threading.RLock()
        self.terminated = threading.Condition(self.lock)
        self.dead: Optional[str] = None  # why the dispatcher stopped on its own
        self.stop = False
        self.free_on_exit = False
        self.thread = threading.Thread(target=self._run, name="llmux-dispatcher", daemon=True)
        self.thread.start()
        register_live(self)

    # -- submit / deliver ----------------------------------------------------

    def submit(self, protocol: int, body: bytes) -> "tuple[int, queue.SimpleQueue[Item]]":
        with self.lock:
            if self.closing:
                raise RouterClosedError("the router is closed")
            if self.dead is not None:
                raise RouterClosedError(f"the router's event dispatcher stopped: {self.dead}")
            rid = self.engine.submit(protocol, body)
            q: "queue.SimpleQueue[Item]" = queue.SimpleQueue()
            self.queues[rid] = q
            self.live.add(rid)
        return rid, q

    def forget(self, rid: int) -> None:
        with self.lock:
            super().forget(rid)

    def _deliver(self, batch: List[RawEvent]) -> None:
        with self.lock:
            self._route(batch)
            if not self.live:
                self.terminated.notify_all()

    def _fail_waiters(self, kind: int, data: bytes) -> None:
        with self.lock:
            for rid in list(self.live):
                q = self.queues.pop(rid, None)
                if q is not None:
                    q.put((kind, data))
            self.live.clear()
            self.terminated.notify_all()

    def _run(self) -> None:
        # Everything used here is bound locally: at interpreter shutdown
        # module globals may already be gone.
        lib = self.engine._lib
        ptr = self.engine.address
        events = (_ffi.llmux_event * BATCH)()
        poll_ = poll
        reason = b"stopped"
        try:
            while not self.stop:
                batch = poll_(lib, ptr, events, -1)
                if batch:
                    self._deliver(batch)
        except BaseException as e:  # noqa: BLE001 - report to waiters, never crash
            reason = str(e).encode("utf-8", "replace")
            with self.lock:
                self.dead = str(e) or type(e).__name__
        finally:
            self._fail_waiters(FAILED if not self.stop else CLOSED, reason)
            if self.free_on_exit:
                self.engine.free()

    # -- close ---------------------------------------------------------------

    def close(self, grace: float = 2.0) -> None:
        """Cancels every request, waits up to ``grace`` seconds for their
        terminal events, stops and joins the dispatcher, frees the engine.
        Idempotent; safe from any thread, including the dispatcher's."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            live = list(self.live)
        unregister_live(self)
        for rid in live:
            self.cancel(rid)
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            with self.lock:
                self.terminated.wait_for(lambda: not self.live, timeout=grace)
        self.stop = True
        if threading.current_thread() is self.thread:
            # Closed from inside the dispatcher (e.g. a __del__ run by the GC
            # there): it frees the engine when its loop ends.
            self.free_on_exit = True
            return
        try:
            self.engine.wakeup()
        except RouterClosedError:
            pass
        self.thread.join(timeout=10.0)
        if self.thread.is_alive():
            # Cannot free an engine a thread may still poll: leak it.
            self.engine.mark_closed()
        else:
            self.engine.free()
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
        self._queue = q

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while not self._finished:
            try:
                kind, data = self._queue.get()
            except BaseException:
                self.close()
                raise
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
                try:
                    kind, data = self._queue.get(timeout=left)
                except queue.Empty:
                    break
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
            kind, data = q.get()
            if is_terminal(kind):
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
        **kwargs: Any,
    ) -> Stream[ChatCompletionChunk]: ...

    def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> Union[ChatCompletion, Stream[ChatCompletionChunk]]:
        """Creates an OpenAI Chat Completions request. Every extra keyword
        (``temperature``, ``tools``, ``provider={"routing": ...}``, ...) and
        ``extra_body`` go into the JSON body as given."""
        body = openai_body(model, messages, stream, kwargs, extra_body)
        result = self._router._run(Protocol.OPENAI, body, stream, ChatCompletion, ChatCompletionChunk)
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
        **kwargs: Any,
    ) -> Union[Message, Stream[MessageStreamEvent]]:
        """Creates an Anthropic Messages request (``system``, ``tools``,
        ``provider``, ... pass through as keywords)."""
        body = anthropic_body(model, max_tokens, messages, stream, kwargs, extra_body)
        result = self._router._run(Protocol.ANTHROPIC, body, stream, Message, MessageStreamEvent)
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
        **kwargs: Any,
    ) -> Stream[ResponseStreamEvent]: ...

    def create(
        self,
        *,
        model: str,
        input: Union[str, Iterable[Mapping[str, Any]]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> Union[Response, Stream[ResponseStreamEvent]]:
        """Creates an OpenAI Responses request (``instructions``, ``tools``,
        ``reasoning``, ``provider``, ... pass through as keywords)."""
        body = responses_body(model, input, stream, kwargs, extra_body)
        result = self._router._run(Protocol.RESPONSES, body, stream, Response, ResponseStreamEvent)
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

    def _run(self, protocol: int, body: bytes, stream: bool, response_cls: Type[Any], chunk_cls: Type[Any]) -> Any:
        d = self._open_backend()
        rid, q = d.submit(protocol, body)
        if stream:
            return Stream(self, d, rid, q, chunk_cls)
        kind, data = _wait(d, rid, q)
        return response_from_terminal(response_cls, rid, kind, data)
