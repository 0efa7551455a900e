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
import json
from typing import Any, AsyncIterator, Dict, Generic, Iterable, List, Literal, Mapping, Optional, Set, Tuple, Type, Union, cast, overload

from . import _ffi
from ._common import (
    CLOSED,
    T,
    anthropic_body,
    decode_terminal,
    is_terminal,
    make_response,
    openai_body,
    register_live,
    unregister_live,
)
from ._engine import Config, _Engine
from ._errors import RouterClosedError
from ._ffi import EventKind, Protocol
from ._types import ChatCompletion, ChatCompletionChunk, Message, MessageStreamEvent, Routing

_BATCH = 64

#: What a request's queue carries: (event kind, JSON bytes).
Item = Tuple[int, bytes]


class _AsyncCore:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.fd = engine.fd()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.queues: Dict[int, "asyncio.Queue[Item]"] = {}
        self.live: Set[int] = set()
        self.closing = False
        self.dropped = 0
        self.events = (_ffi.llmux_event * _BATCH)()
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
            for rid, kind, data in batch:
                if is_terminal(kind):
                    self.live.discard(rid)
                q = self.queues.get(rid)
                if q is None:
                    self.dropped += 1
                    continue
                q.put_nowait((kind, data))
                if is_terminal(kind):
                    self.queues.pop(rid, None)
            if len(batch) < _BATCH:
                return

    def submit(self, protocol: int, body: bytes) -> "tuple[int, asyncio.Queue[Item]]":
        if self.closing:
            raise RouterClosedError("the router is closed")
        self._bind()
        rid = self.engine.submit(protocol, body)
        q: "asyncio.Queue[Item]" = asyncio.Queue()
        self.queues[rid] = q
        self.live.add(rid)
        return rid, q

    def cancel(self, rid: int) -> bool:
        try:
            return self.engine.cancel(rid)
        except RouterClosedError:
            return False

    def forget(self, rid: int) -> None:
        self.queues.pop(rid, None)

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


class AsyncStream(Generic[T]):
    """An async iterator over the chunks of one streaming request; see
    :class:`llmux.Stream`. ``await stream.aclose()`` or ``async with``
    cancels it if unfinished."""

    def __init__(self, owner: Any, core: _AsyncCore, rid: int, q: "asyncio.Queue[Item]", chunk_cls: Type[T]) -> None:
        self._owner = owner
        self._core = core
        self._id = rid
        self._queue = q
        self._chunk_cls = chunk_cls
        self._finished = False
        self.routing: Optional[Routing] = None
        self.error: Optional[BaseException] = None

    @property
    def id(self) -> int:
        return self._id

    @property
    def finished(self) -> bool:
        return self._finished

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
            if kind == EventKind.CHUNK:
                return self._chunk_cls(json.loads(data))
            if is_terminal(kind):
                self._finish(kind, data)
                if self.error is not None:
                    raise self.error
        raise StopAsyncIteration

    def _finish(self, kind: int, data: bytes) -> None:
        self._finished = True
        _, routing, error = decode_terminal(self._id, kind, data)
        self.routing = routing
        self.error = error
        self._core.forget(self._id)

    def _abandon(self) -> None:
        if not self._finished:
            self._finished = True
            self._core.cancel(self._id)
            self._core.forget(self._id)

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

    def __del__(self) -> None:
        try:
            self._abandon()
        except BaseException:  # noqa: BLE001
            pass


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
            core.cancel(rid)
            core.forget(rid)


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
        **kwargs: Any,
    ) -> AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        extra_body: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> Union[ChatCompletion, AsyncStream[ChatCompletionChunk]]:
        body = openai_body(model, messages, stream, kwargs, extra_body)
        result = await self._router._run(Protocol.OPENAI, body, stream, ChatCompletion, ChatCompletionChunk)
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
        **kwargs: Any,
    ) -> Union[Message, AsyncStream[MessageStreamEvent]]:
        body = anthropic_body(model, max_tokens, messages, stream, kwargs, extra_body)
        result = await self._router._run(Protocol.ANTHROPIC, body, stream, Message, MessageStreamEvent)
        return cast("Union[Message, AsyncStream[MessageStreamEvent]]", result)


class AsyncRouter:
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

    def _c(self) -> _AsyncCore:
        c = self._core
        if c is None or c.closing:
            raise RouterClosedError("the router is closed")
        return c

    async def _run(self, protocol: int, body: bytes, stream: bool, response_cls: Type[Any], chunk_cls: Type[Any]) -> Any:
        core = self._c()
        rid, q = core.submit(protocol, body)
        if stream:
            return AsyncStream(self, core, rid, q, chunk_cls)
        kind, data = await _wait(core, rid, q)
        payload, routing, error = decode_terminal(rid, kind, data)
        if error is not None:
            raise error
        return make_response(response_cls, payload, routing)

    def stats(self) -> Dict[str, Any]:
        return self._c().engine.stats()

    def health_export(self) -> Dict[str, Any]:
        """Every endpoint's learned health (``llmux_health_export``), to
        save and pass to :meth:`health_import` in a later run."""
        return self._c().engine.health_export()

    def health_import(self, health: Union[Dict[str, Any], str, bytes]) -> int:
        """Restores health saved by :meth:`health_export` (a dict or its
        JSON); returns how many endpoints were restored."""
        data = health if isinstance(health, bytes) else (health if isinstance(health, str) else json.dumps(health)).encode("utf-8")
        return self._c().engine.health_import(data)

    def cancel(self, request_id: int) -> bool:
        return self._c().cancel(request_id)

    @property
    def closed(self) -> bool:
        c = self._core
        return c is None or c.closing

    def close(self) -> None:
        """Cancels in-flight requests and frees the engine. Idempotent."""
        c = self._core
        if c is not None:
            c.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "AsyncRouter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> "AsyncRouter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except BaseException:  # noqa: BLE001
            pass


__all__: List[str] = ["AsyncRouter", "AsyncStream"]
