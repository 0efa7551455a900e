"""One Router shared by many threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

from conftest import USER, order, settles_to_zero

import llmux


def test_many_threads_one_router(router: llmux.Router) -> None:
    _many_threads(router)


def test_many_threads_one_host_driven_router(config: Dict[str, Any]) -> None:
    """``worker_threads: 0``: the engine runs no thread and no dispatcher
    thread exists either; the waiting callers take turns driving the I/O."""
    before = {t.ident for t in threading.enumerate()}
    with llmux.Router(dict(config, worker_threads=0)) as r:
        assert {t.ident for t in threading.enumerate()} <= before, "no thread started"
        _many_threads(r)
        # A response's routing record is built on first access and kept.
        resp = r.chat.completions.create(model="test/model", messages=USER, provider=order("a"))
        assert resp.routing is resp.routing and resp.routing.endpoint == "a/default"


def _many_threads(router: llmux.Router) -> None:
    threads, per_thread = 8, 10
    errors: List[BaseException] = []
    results: List[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                provider = "a" if (t + i) % 2 else "b"
                if i % 2:
                    resp = router.chat.completions.create(
                        model="test/model", messages=USER, provider=order(provider), mock={"text": f"t{t} r{i}"}
                    )
                    text = resp.choices[0].message.content
                    assert resp.routing is not None and resp.routing.provider == provider
                else:
                    stream = router.chat.completions.create(
                        model="test/model", messages=USER, provider=order(provider), stream=True,
                        mock={"text": f"t{t} r{i}"},
                    )
                    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                    assert stream.routing is not None and stream.routing.provider == provider
                assert text == f"t{t} r{i}", text
                with lock:
                    results.append(text)
        except BaseException as e:  # noqa: BLE001
            with lock:
                errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.monotonic()
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=30)
    assert not any(th.is_alive() for th in pool)
    assert not errors, errors[:3]
    assert len(results) == threads * per_thread
    assert settles_to_zero(router)
    assert time.monotonic() - t0 < 20
    assert router._dispatcher is not None and router._dispatcher.dropped == 0


def test_close_while_threads_submit(config: Dict[str, Any]) -> None:
    """Closing under load: every call ends with a result or an llmux error;
    nothing hangs or crashes."""
    r = llmux.Router(config)
    outcomes: List[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            try:
                s = r.chat.completions.create(model="test/a", messages=USER, stream=True, mock={"chunk_delay_ms": 5})
                for _ in s:
                    pass
                out = "ok"
            except llmux.RouterClosedError:
                out = "closed"
            except llmux.RequestCancelled:
                out = "cancelled"
            with lock:
                outcomes.append(out)
            if out == "closed":
                return

    with ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(work) for _ in range(6)]
        time.sleep(0.3)
        r.close()
        for f in futs:
            f.result(timeout=10)
    assert "ok" in outcomes
    assert outcomes.count("closed") == 6
