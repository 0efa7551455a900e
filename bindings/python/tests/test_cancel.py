"""Cancellation: closing a stream early, Router.cancel, closing the Router,
abandoned streams. Every request ends with exactly one terminal event."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Dict

import pytest
from conftest import USER, settles_to_zero, wait_until

import llmux

SLOW = {"chunks": 100, "chunk_delay_ms": 20}  # ~2 s if read to the end


def in_flight(router: llmux.Router) -> int:
    n: int = router.stats()["requests_in_flight"]
    return n


def test_close_stream_early_cancels(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
    it = iter(stream)
    for _ in range(3):
        next(it)
    assert in_flight(router) == 1
    t0 = time.monotonic()
    stream.close()
    assert time.monotonic() - t0 < 1.0
    # Exactly one terminal, and it is the cancellation.
    assert stream.finished
    assert isinstance(stream.error, llmux.RequestCancelled)
    assert stream.error.status == 499
    assert stream.routing is not None
    assert stream.routing.attempts[-1].outcome == "cancelled"
    assert settles_to_zero(router)
    dispatcher = router._dispatcher
    assert dispatcher is not None
    dropped = dispatcher.dropped
    time.sleep(0.3)
    assert dispatcher.dropped == dropped, "no event may follow the terminal one"
    assert stream.id not in dispatcher.live and stream.id not in dispatcher.queues
    assert list(stream) == []
    stream.close()  # idempotent


def test_with_block_exit_cancels(router: llmux.Router) -> None:
    t0 = time.monotonic()
    with router.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW) as stream:
        for i, _ in enumerate(stream):
            if i == 2:
                break
    assert time.monotonic() - t0 < 1.5
    assert isinstance(stream.error, llmux.RequestCancelled)
    assert settles_to_zero(router)


def test_router_cancel_by_id(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
    got = 0
    with pytest.raises(llmux.RequestCancelled) as info:
        for _ in stream:
            got += 1
            if got == 2:
                assert router.cancel(stream.id) is True
    assert info.value.type == "cancelled"
    assert info.value.request_id == stream.id
    assert stream.routing is not None and stream.routing.attempts[-1].outcome == "cancelled"
    assert router.cancel(stream.id) is False  # already ended


def test_cancel_from_another_thread(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
    timer = threading.Timer(0.2, lambda: router.cancel(stream.id))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(llmux.RequestCancelled):
        for _ in stream:
            pass
    assert time.monotonic() - t0 < 1.5
    timer.join()


def test_abandoned_stream_is_cancelled(router: llmux.Router) -> None:
    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
    next(iter(stream))
    del stream
    gc.collect()
    assert wait_until(lambda: in_flight(router) == 0, timeout=1.5)


def test_closing_router_ends_in_flight_requests(config: Dict[str, Any]) -> None:
    r = llmux.Router(config)
    stream = r.chat.completions.create(model="test/a", messages=USER, stream=True, mock=SLOW)
    next(iter(stream))
    errors: list = []

    def blocked() -> None:
        try:
            r.chat.completions.create(model="test/a", messages=USER, mock={"first_token_delay_ms": 5000})
        except llmux.LLMuxError as e:
            errors.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    r.close()
    assert time.monotonic() - t0 < 3.0
    t.join(timeout=5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], llmux.RequestCancelled)
    with pytest.raises(llmux.RequestCancelled):
        for _ in stream:
            pass
