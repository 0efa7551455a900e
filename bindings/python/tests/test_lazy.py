"""What the binding builds lazily or decodes on a fast path equals what the
plain way builds: chunk objects decoded on first use, the routing record
decoded on first read, ``_decode.loads`` against ``json.loads``, the
``done`` event's response decoded alone, the copy of polled events."""

from __future__ import annotations

import ctypes
import json
import threading
from typing import Any, Dict, List, Tuple

import pytest
from conftest import USER, order

import llmux
from llmux import _engine, _ffi
from llmux import _json as _decode
from llmux._common import DONE, TERMINAL, response_from_terminal
from llmux._types import Routing

CHUNK_JSON = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"h\\u00e9 \xe2\x9c\x93","tool_calls":[{"index":0,'
    b'"function":{"name":"f","arguments":"{}"}}]},"finish_reason":null,"logprobs":null}],"usage":null}'
)


def raw_events(router: llmux.Router, protocol: int, body: Dict[str, Any]) -> List[Tuple[int, bytes]]:
    """Submits ``body`` on the router's engine and collects its events as the
    library sends them (kind, JSON), up to the terminal one."""
    d = router._dispatcher
    assert d is not None
    engine = d.engine
    rid = engine.submit(protocol, json.dumps(body).encode())
    out: List[Tuple[int, bytes]] = []
    events = (_ffi.llmux_event * 8)()
    with d.lock:  # no other poller meanwhile
        while not out or out[-1][0] not in TERMINAL:
            out += [(k, data) for r, k, data in _engine.poll(engine._lib, engine.address, events, 1000) if r == rid]
    d.live.discard(rid)
    d.queues.pop(rid, None)
    return out


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1}',
        b' {"a": [1, 2.5, "x", null, true]} \n',
        b'{"s":"\\ud83d\\ude00 \xc3\xa9"}',
        b"[1,2]",
        b'"x"',
        b"3",
    ],
)
def test_decode_loads_equals_json_loads(text: bytes) -> None:
    assert _decode.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", [b'{"a":1} x', b'{"a":', b"", b"\xff{}", b'{"a":1}{}'])
def test_decode_loads_raises_as_json_loads(text: bytes) -> None:
    with pytest.raises(Exception) as plain:
        json.loads(text)
    with pytest.raises(Exception) as fast:
        _decode.loads(text)
    assert type(fast.value) is type(plain.value)
    assert str(fast.value) == str(plain.value)


@pytest.mark.parametrize(
    "obj",
    [
        {"model": "m", "messages": [{"role": "user", "content": "h\u00e9 \u2713 \"q\" \n"}], "max_tokens": 16},
        {"t": 0.1, "n": -0.0, "big": 10**30, "inf": float("inf"), "nan": float("nan"), "tuple": (1, [2])},
        {1: "int key", 2.5: "float key", None: "null key", True: "bool key"},
        [],
        "text",
    ],
)
def test_dumps_equals_json_dumps(obj: Any) -> None:
    assert _decode.dumps(obj) == json.dumps(obj)


def test_dumps_errors_as_json_dumps() -> None:
    cyclic: Dict[str, Any] = {}
    cyclic["self"] = [cyclic]
    deep: List[Any] = []
    for _ in range(100_000):
        deep = [deep]
    for bad in ({"x": object()}, cyclic, {("t",): 1}, deep):
        with pytest.raises(Exception) as plain:
            json.dumps(bad)
        with pytest.raises(Exception) as fast:
            _decode.dumps(bad)
        assert type(fast.value) is type(plain.value)
        assert str(fast.value) == str(plain.value)


def test_lazy_chunk_equals_eager() -> None:
    eager = llmux.ChatCompletionChunk(json.loads(CHUNK_JSON))
    lazy = llmux.ChatCompletionChunk._from_json(CHUNK_JSON)
    assert type(lazy) is llmux.ChatCompletionChunk
    assert lazy.choices[0].delta.content == eager.choices[0].delta.content == "hé ✓"
    assert isinstance(lazy.choices[0].delta, llmux.ChoiceDelta)
    assert isinstance(lazy.choices[0].delta.tool_calls[0].function, llmux.ChoiceDeltaToolCallFunction)

    def fresh() -> llmux.ChatCompletionChunk:
        return llmux.ChatCompletionChunk._from_json(CHUNK_JSON)

    assert fresh() == eager and eager == fresh()
    assert repr(fresh()) == repr(eager)
    assert fresh().to_dict() == eager.to_dict()
    assert fresh()["choices"][0]["index"] == 0
    assert "usage" in fresh() and fresh().usage is None and fresh().missing is None
    assert list(fresh()) == list(eager) and fresh().keys() == eager.keys()
    assert dir(fresh()) == dir(eager)
    assert fresh().get("model") == "m"
    with pytest.raises(AttributeError):
        lazy.model = "x"  # type: ignore[misc]


def test_lazy_object_decoded_once_under_threads() -> None:
    lazy = llmux.ChatCompletionChunk._from_json(CHUNK_JSON)
    seen: List[Any] = []
    barrier = threading.Barrier(4)

    def read() -> None:
        barrier.wait()
        seen.append(lazy.choices[0].delta.content)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["hé ✓"] * 4
    assert lazy.to_dict() is lazy.to_dict()


def test_stream_chunks_and_routing_equal_eager(router: llmux.Router) -> None:
    body = {"model": "test/a", "messages": USER, "stream": True, "mock": {"chunks": 5}}
    events = raw_events(router, _ffi.Protocol.OPENAI, body)
    chunks = [data for kind, data in events if kind == _ffi.EventKind.CHUNK]
    (kind, done), = [e for e in events if e[0] in TERMINAL]
    assert kind == DONE and len(chunks) >= 5

    stream = router.chat.completions.create(model="test/a", messages=USER, stream=True, mock={"chunks": 5})
    got = list(stream)
    assert len(got) == len(chunks)
    # The same chunks as the library sends them, apart from the id and
    # timestamp of each request.
    for a, b in zip(got, (llmux.ChatCompletionChunk(json.loads(c)) for c in chunks)):
        assert type(a) is type(b)
        assert a.to_dict().keys() == b.to_dict().keys()
        assert (a.choices, a.model, a.object, a.usage) == (b.choices, b.model, b.object, b.usage)
    eager = Routing.from_dict(json.loads(done)["routing"])
    assert stream.routing is not None and stream.routing is stream.routing
    assert stream.routing.endpoint == eager.endpoint and stream.routing.usage == eager.usage
    assert [a.outcome for a in stream.routing.attempts] == [a.outcome for a in eager.attempts]


def test_done_response_decoded_alone_equals_whole(router: llmux.Router) -> None:
    """The library's own `done` event takes the fast path (a change in its
    field order would show here), and the result equals the full decode."""
    body = {"model": "test/model", "messages": USER, "provider": order("down", "a")}
    (kind, done), = raw_events(router, _ffi.Protocol.OPENAI, body)
    assert kind == DONE
    payload = json.loads(done)
    assert _decode.done_response(done) == payload["response"]

    lazy = response_from_terminal(llmux.ChatCompletion, 1, kind, done)
    eager = llmux.ChatCompletion(payload["response"], Routing.from_dict(payload["routing"]))
    assert lazy == eager and lazy.to_dict() == eager.to_dict()
    assert lazy.routing == eager.routing and lazy.routing is lazy.routing
    assert lazy.routing.to_dict() == payload["routing"]
    assert [a.outcome for a in lazy.routing.attempts] == ["server_error", "success"]


@pytest.mark.parametrize(
    "text",
    [
        b'{"type":"error","status":400,"error":{},"routing":{}}',
        b'{"type":"done","routing":{}}',
        b'{"type":"done","response": {"a":1},"routing":{}}',
        b'{"type":"done","response":{"a":1}}',
        b'{"type":"done","response":[1],"routing":{}}',
        b'{"type":"done","response":{"a":',
    ],
)
def test_done_response_other_shapes_fall_back(text: bytes) -> None:
    assert _decode.done_response(text) is None


def test_done_event_of_other_shape_decoded_whole() -> None:
    data = b'{ "type": "done", "response": {"id": "x"}, "routing": {"endpoint": "a/default"} }'
    resp = response_from_terminal(llmux.ChatCompletion, 1, DONE, data)
    assert resp.id == "x" and resp.routing.endpoint == "a/default"


def test_interleaved_streams_get_their_own_events(router: llmux.Router) -> None:
    """Several streams open at once, read in turns from one thread: each poll
    returns events of several requests in one batch, and each goes to its
    own stream."""
    streams = [
        router.chat.completions.create(model="test/a", messages=USER, stream=True, mock={"text": f"stream {i} text", "chunks": 6})
        for i in range(6)
    ]
    texts = [""] * len(streams)
    its = [iter(s) for s in streams]
    live = set(range(len(streams)))
    while live:
        for i in sorted(live):
            try:
                c = next(its[i])
            except StopIteration:
                live.discard(i)
                continue
            if c.choices:
                texts[i] += c.choices[0].delta.content or ""
    assert texts == [f"stream {i} text" for i in range(len(streams))]
    assert all(s.routing is not None and s.routing.endpoint == "a/default" for s in streams)
    assert router._dispatcher is not None and router._dispatcher.dropped == 0


def test_copy_events() -> None:
    """Events are copied as (id, kind, JSON bytes): through the NUL after the
    JSON, or data_len bytes when the data holds a NUL, b"" for no data."""
    texts = [b'{"a":"x"}', b'{"b":1}\x00tail', None]
    bufs = [ctypes.create_string_buffer(t) if t is not None else None for t in texts]
    events = (_ffi.llmux_event * 4)()
    for i, (t, b) in enumerate(zip(texts, bufs)):
        events[i].request_id = 2**63 + i
        events[i].kind = 1 + i
        events[i].data = ctypes.addressof(b) if b is not None else None
        events[i].data_len = len(t) if t is not None else 0
    assert _engine.copy_events(events, 3) == [
        (2**63, 1, b'{"a":"x"}'),
        (2**63 + 1, 2, b'{"b":1}\x00tail'),
        (2**63 + 2, 3, b""),
    ]
