"""AsyncRouter: add_reader on the engine's fd, no threads, task cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List

import pytest
from conftest import USER, async_settles_to_zero, order

import llmux

SLOW = {"chunks": 100, "chunk_delay_ms": 20}


def test_async_non_streaming(config: Dict[str, Any]) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            resp = await r.chat.completions.create(model="test/model", messages=USER, provider=order("down", "b"))
            assert resp.choices[0].message.content == "Hello from b."
            assert resp.routing is not None and resp.routing.endpoint == "b/default"
            assert [a.outcome for a in resp.routing.attempts] == ["server_error", "success"]

    asyncio.run(main())


def test_async_gather_streams_without_threads(config: Dict[str, Any]) -> None:
    threads_before = threading.active_count()

    async def one(r: llmux.AsyncRouter, i: int) -> str:
        stream = await r.chat.completions.create(
            model="test/a", messages=USER, stream=True, mock={"text": f"stream {i}", "chunk_delay_ms": 10}
        )
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert stream.routing is not None and stream.routing.endpoint == "a/default"
        return text

    async def main() -> List[str]:
        async with llmux.AsyncRouter(config) as r:
            t0 = time.monotonic()
            texts = await asyncio.gather(*(one(r, i) for i in range(10)))
            # Concurrent, not serial: 10 streams x 5 chunks x 10 ms each.
            assert time.monotonic() - t0 < 2.0
            assert threading.active_count() == threads_before  # no Python thread was started
            assert await async_settles_to_zero(r)
            return texts

    texts = asyncio.run(main())
    assert texts == [f"stream {i}" for i in range(10)]


def test_async_errors(config: Dict[str, Any]) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            with pytest.raises(llmux.UnknownModelError):
                await r.chat.completions.create(model="nope/x", messages=USER)
            with pytest.raises(llmux.RateLimitError):
                await r.chat.completions.create(model="test/a", messages=USER, mock={"status": 429})
            stream = await r.chat.completions.create(
                model="test/a", messages=USER, stream=True, mock={"fault": {"drop_after": 2}}
            )
            with pytest.raises(llmux.UpstreamError):
                async for _ in stream:
                    pass

    asyncio.run(main())


def test_async_task_cancel_cancels_stream(config: Dict[str, Any]) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            seen = asyncio.Event()

            async def consume() -> None:
                stream = await r.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
                async for _ in stream:
                    seen.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(seen.wait(), 2)
            assert r.stats()["requests_in_flight"] == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await async_settles_to_zero(r)

    asyncio.run(main())


def test_async_task_cancel_cancels_non_streaming(config: Dict[str, Any]) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    r.chat.completions.create(model="test/a", messages=USER, mock={"first_token_delay_ms": 5000}), 0.2
                )
            assert await async_settles_to_zero(r)

    asyncio.run(main())


def test_async_stream_aclose(config: Dict[str, Any]) -> None:
    async def main() -> None:
        async with llmux.AsyncRouter(config) as r:
            async with await r.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW) as s:
                async for _ in s:
                    break
            assert isinstance(s.error, llmux.RequestCancelled)
            assert s.routing is not None and s.routing.attempts[-1].outcome == "cancelled"
            assert await async_settles_to_zero(r)

    asyncio.run(main())


def test_async_router_across_loops_and_close(config: Dict[str, Any]) -> None:
    r = llmux.AsyncRouter(config)

    async def once() -> str:
        resp = await r.chat.completions.create(model="test/a", messages=USER)
        content: str = resp.choices[0].message.content
        return content

    assert asyncio.run(once()) == "Hello from a."
    assert asyncio.run(once()) == "Hello from a."  # a second loop
    r.close()
    r.close()
    with pytest.raises(llmux.RouterClosedError):
        asyncio.run(once())


def test_async_close_with_request_in_flight(config: Dict[str, Any]) -> None:
    async def main() -> None:
        r = llmux.AsyncRouter(config)
        stream = await r.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
        await stream.__anext__()
        await r.aclose()
        with pytest.raises(llmux.RequestCancelled):
            async for _ in stream:
                pass

    asyncio.run(main())
