"""The asyncio ``AsyncRouter``.

No thread: the engine's descriptor (``llmux_engine_fd``, readable while
events wait) is registered with ``loop.add_reader``; when it is readable
``llmux_poll`` runs with timeout 0 until the queue is drained, and each event
goes to its request's ``asyncio.Queue``. Submitting and registering a queue
happen in one synchronous step on the loop, so no event can slip between
them. Cancelling the task awaiting a request cancels the request.

An AsyncRouter serves one event loop at a time (the loop of its first
request; it moves to another loop only when it has no request in flight).
Needs a loop with ``add_reader`` (the default selector loop on Unix).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterable, List, Literal, Mapping, Optional, Type, Union, cast, overload

from . import _ffi
from ._common import (
    BATCH,
    CLOSED,
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
from ._engine import Config, _Engine
from ._errors import RouterClosedError
from ._ffi import Protocol
from ._types import ChatCompletion, ChatCompletionChunk, Message, MessageStreamEvent, Response, ResponseStreamEvent


class _AsyncCore(CoreBase["asyncio.Queue[Item]"]):
    def __init__(self, engine: _Engine) -> None:
        super().__init__(engine)
        self.fd = engine.fd()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.events = (_ffi.llmux_event * BATCH)()
        register_live(self)

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return loop
        old = self.loop
        if old is not None and not old.is_closed():
            if self.live:
                raise RuntimeError("this AsyncRouter has requests in flight on another event loop")
            try:
                old.remove_reader(self.fd)
            except Exception:  # noqa: BLE001 - the old loop may be unusable
                pass
        self.queues.clear()
        self.live.clear()
        loop.add_reader(self.fd, self._on_readable)
        self.loop = loop
        return loop

    def _on_readable(self) -> None:
        if self.closing:
            return
        while True:
            try:
                batch = self.engine.poll_nowait(self.events)
            except RouterClosedError:
                return
            self._route(batch)
            if len(batch) < BATCH:
                return

    def submit(self, protocol: int, body: bytes, traceparent: Optional[str] = None) -> "tuple[int, asyncio.Queue[Item]]":
        if self.closing:
            raise RouterClosedError("the router is closed")
        self._bind()
        rid = self.engine.submit(protocol, body, traceparent)
        q: "asyncio.Queue[Item]" = asyncio.Queue()
        self.queues[rid] = q
        self.live.add(rid)
        return rid, q

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        unregister_live(self)
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self.fd)
            except Exception:  # noqa: BLE001
                pass
        for rid in list(self.live):
            self.cancel(rid)
        # No other poller exists: freeing now is safe. llmux_engine_free
        # waits briefly for the cancelled requests to end.
        self.engine.free()
        for rid in list(self.live):
            q = self.queues.pop(rid, None)
            if q is not None:
                try:
                    q.put_nowait((CLOSED, b""))
                except Exception:  # noqa: BLE001 - a closed loop
                    pass
        self.live.clear()


class AsyncStream(StreamBase[T]):
    """An async iterator over the chunks of one streaming request; see
    :class:`llmux.Stream`. ``await stream.aclose()`` or ``async with``
    cancels it if unfinished."""

    def __init__(self, owner: Any, core: _AsyncCore, rid: int, q: "asyncio.Queue[Item]", chunk_cls: Type[T]) -> None:
        super().__init__(owner, core, rid, chunk_cls)
        self._queue = q

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while not self._finished:
            try:
                kind, data = await self._queue.get()
            except BaseException:
                # Task cancelled (or anything else): cancel the request.
                self._abandon()
                raise
            chunk = self._take(kind, data)
            if chunk is not None:
                return chunk
        raise StopAsyncIteration

    async def aclose(self, timeout: float = 5.0) -> None:
        """Cancels the request if unfinished and waits up to ``timeout``
        seconds for its terminal event. Idempotent."""
        if self._finished:
            return
        self._core.cancel(self._id)

        async def terminal() -> None:
            while True:
                kind, data = await self._queue.get()
                if is_terminal(kind):
                    self._finish(kind, data)
                    return

        try:
            await asyncio.wait_for(terminal(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._abandon()

    async def __aenter__(self) -> "AsyncStream[T]":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _wait(core: _AsyncCore, rid: int, q: "asyncio.Queue[Item]") -> "tuple[int, bytes]":
    done = False
    try:
        while True:
            kind, data = await q.get()
            if is_terminal(kind):
                done = True
                return kind, data
    finally:
        if not done:
            core.abandon(rid)


class AsyncCompletions:
    """``router.chat.completions`` of an :class:`AsyncRouter`."""

    def __init__(self, router: "AsyncRouter") -> None:
        self._router = router

    @overload
    async def create(
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
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Union[ChatCompletion, AsyncStream[ChatCompletionChunk]]:
        body = openai_body(model, messages, stream, kwargs, extra_body)
        result = await self._router._run(Protocol.OPENAI, body, stream, ChatCompletion, ChatCompletionChunk, traceparent)
        return cast("Union[ChatCompletion, AsyncStream[ChatCompletionChunk]]", result)


class AsyncChat:
    def __init__(self, router: "AsyncRouter") -> None:
        self.completions = AsyncCompletions(router)


class AsyncMessages:
    """``router.messages`` of an :class:`AsyncRouter` (Anthropic Messages)."""

    def __init__(self, router: "AsyncRouter") -> None:
        self._router = router

    @overload
    async def create(
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
    async def create(
        self,
        *,
        model: str,
        max_tokens: int,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncStream[MessageStreamEvent]: ...

    async def create(
        self,
        *,
        model: str,
        max_tokens: int,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Union[Message, AsyncStream[MessageStreamEvent]]:
        body = anthropic_body(model, max_tokens, messages, stream, kwargs, extra_body)
        result = await self._router._run(Protocol.ANTHROPIC, body, stream, Message, MessageStreamEvent, traceparent)
        return cast("Union[Message, AsyncStream[MessageStreamEvent]]", result)


class AsyncResponses:
    """``router.responses`` of an :class:`AsyncRouter` (OpenAI Responses)."""

    def __init__(self, router: "AsyncRouter") -> None:
        self._router = router

    @overload
    async def create(
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
    async def create(
        self,
        *,
        model: str,
        input: Union[str, Iterable[Mapping[str, Any]]],
        stream: Literal[True],
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> AsyncStream[ResponseStreamEvent]: ...

    async def create(
        self,
        *,
        model: str,
        input: Union[str, Iterable[Mapping[str, Any]]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        traceparent: Optional[str] = None,
        **kwargs: Any,
    ) -> Union[Response, AsyncStream[ResponseStreamEvent]]:
        body = responses_body(model, input, stream, kwargs, extra_body)
        result = await self._router._run(Protocol.RESPONSES, body, stream, Response, ResponseStreamEvent, traceparent)
        return cast("Union[Response, AsyncStream[ResponseStreamEvent]]", result)


class AsyncRouter(RouterBase[_AsyncCore]):
    """The asyncio counterpart of :class:`llmux.Router` (same config, same
    exceptions). Use ``async with`` or ``await router.aclose()``."""

    def __init__(self, config: Config) -> None:
        self._core: Optional[_AsyncCore] = None
        engine = _Engine(config)
        try:
            self._core = _AsyncCore(engine)
        except BaseException:
            engine.free()
            raise
        self.chat = AsyncChat(self)
        self.messages = AsyncMessages(self)
        self.responses = AsyncResponses(self)

    def _backend(self) -> Optional[_AsyncCore]:
        return self._core

    async def _run(
        self,
        protocol: int,
        body: bytes,
        stream: bool,
        response_cls: Type[Any],
        chunk_cls: Type[Any],
        traceparent: Optional[str] = None,
    ) -> Any:
        core = self._open_backend()
        rid, q = core.submit(protocol, body, traceparent)
        if stream:
            return AsyncStream(self, core, rid, q, chunk_cls)
        kind, data = await _wait(core, rid, q)
        return response_from_terminal(response_cls, rid, kind, data)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "AsyncRouter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


__all__: List[str] = ["AsyncRouter", "AsyncStream"]
