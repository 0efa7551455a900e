"""What the Python binding adds over a raw-socket client, in one run.

Starts the release ``llmux-fleet`` mock (pinned to CPU 1 when there are two
CPUs; this process on CPU 0), then interleaves, request by request:

* ``raw``: a keep-alive HTTP/1.1 client on a plain socket, written here,
  sending the body llmux sends upstream and reading the response (for
  streams: every SSE event) without parsing JSON. The floor: what any
  Python client must at least do.
* ``llmux``: ``Router.chat.completions.create`` (threaded Router), the
  response object built (streams: every chunk object).
* ``c_abi`` (non-streaming and plain stream cases): the C ABI called from
  Python through ctypes with no JSON work (submit a prebuilt body,
  ``llmux_poll`` until the terminal event, free the events), on an engine
  of its own with the same config: what llmux costs before any binding
  code, so ``binding_added`` = llmux - c_abi is the binding's own share.

The arms of a case run one after another in every round, in an order that
cycles through all permutations.

Chunk objects decode their JSON on first use, so the plain stream case
measures a consumer that does not look into the chunks. The ``_read`` stream
case reads ``choices[0].delta.content`` of every chunk, against a raw-socket
client that decodes every SSE event's JSON and reads the same field.

Added = quantile(llmux) - quantile(raw); the spread is min / median / max
over 10 blocks. Prints one JSON object per case (``--json PATH`` writes
them as a list). Outside load shifts both sides alike; absolute numbers on
a loaded machine are not comparable between runs, ratios are.

    python bench_host.py [--quick] [--json out.json] [--worker-threads N]
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import llmux

REPO = Path(__file__).resolve().parents[3]


def fleet_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return Path(os.environ.get("LLMUX_FLEET_BIN") or target / "release" / "llmux-fleet")


def start_fleet() -> Tuple[subprocess.Popen, int]:
    spec = {"servers": [{"name": "fast", "behavior": {}}]}
    cmd = [str(fleet_binary()), "--config", json.dumps(spec), "--exit-on-stdin-eof"]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "1"] + cmd
        os.sched_setaffinity(0, {0})
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None
    listing = json.loads(p.stdout.readline())
    return p, int(listing["servers"][0]["port"])


class RawClient:
    """HTTP/1.1 keep-alive over one socket; Content-Length or chunked."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = port
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def post(self, body: bytes, on_data: Any = None) -> bytes:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n"
            f"authorization: Bearer bench\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body)
        status = self._line()
        assert b" 200 " in status, status
        length, chunked = -1, False
        while True:
            h = self._line()
            if not h:
                break
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if not chunked:
            return self._exact(length)
        out = []
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                self._line()
                return b"".join(out)
            part = self._exact(size)
            self._line()
            if on_data is not None:
                on_data(part)
            out.append(part)


class CAbi:
    """llmux through its C ABI from Python, without the binding's code."""

    def __init__(self, cfg: Dict[str, Any]) -> None:
        from llmux import _ffi  # the declared library; the binding's code is not used

        self.lib = _ffi.lib()
        self.events = (_ffi.llmux_event * 64)()
        text = json.dumps(cfg).encode()
        eng, err = ctypes.c_void_p(), ctypes.c_void_p()
        rc = self.lib.llmux_engine_new(text, len(text), ctypes.byref(eng), ctypes.byref(err))
        assert rc == 0 and eng.value, rc
        self.eng = eng.value
        self.rid, self.err, self.count = ctypes.c_uint64(), ctypes.c_void_p(), ctypes.c_size_t()

    def run(self, body: bytes) -> int:
        """Submits ``body`` (OpenAI protocol) and polls until its terminal
        event; returns how many events it got."""
        lib, ev = self.lib, self.events
        rc = lib.llmux_submit(self.eng, 0, body, len(body), ctypes.byref(self.rid), ctypes.byref(self.err))
        assert rc == 0, rc
        got, done = 0, False
        while not done:
            lib.llmux_poll(self.eng, ev, 64, 1000, ctypes.byref(self.count))
            n = self.count.value
            for i in range(n):
                done = done or ev[i].kind != 1
            got += n
            if n:
                lib.llmux_events_free(ev, n)
        return got

    def close(self) -> None:
        self.lib.llmux_engine_free(self.eng)


def interleave(arms: List[Any], rounds: int) -> List[List[Any]]:
    """Runs every arm once per round, cycling through all orders; the
    results of each arm, in round order."""
    out: List[List[Any]] = [[] for _ in arms]
    orders = list(itertools.permutations(range(len(arms))))
    for r in range(rounds):
        for i in orders[r % len(orders)]:
            out[i].append(arms[i]())
    return out


def pct(v: List[float], p: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]


def spread(a: List[float], b: List[float], blocks: int, p: float) -> Tuple[float, float, float]:
    n = len(a) // blocks
    v = sorted(pct(a[i * n:(i + 1) * n], p) - pct(b[i * n:(i + 1) * n], p) for i in range(blocks))
    return v[0], pct(v, 0.5), v[-1]


def case(
    name: str, desc: str, ll: List[float], raw: List[float], target_us: float, capi: Any = None, **extra: Any
) -> Dict[str, Any]:
    a50 = pct(ll, 0.5) - pct(raw, 0.5)
    lo, med, hi = spread(ll, raw, 10, 0.5)
    m: Dict[str, Any] = {
        "samples": len(ll),
        "llmux_p50_us": round(pct(ll, 0.5), 1),
        "raw_socket_p50_us": round(pct(raw, 0.5), 1),
        "added_p50_us": round(a50, 1),
        "added_p99_us": round(pct(ll, 0.99) - pct(raw, 0.99), 1),
        "added_p50_block_min_us": round(lo, 1),
        "added_p50_block_median_us": round(med, 1),
        "added_p50_block_max_us": round(hi, 1),
    }
    if capi is not None:
        lo_b, med_b, hi_b = spread(ll, capi, 10, 0.5)
        m.update(
            {
                "c_abi_p50_us": round(pct(capi, 0.5), 1),
                "c_abi_added_p50_us": round(pct(capi, 0.5) - pct(raw, 0.5), 1),
                "binding_added_p50_us": round(pct(ll, 0.5) - pct(capi, 0.5), 1),
                "binding_added_p50_block_min_us": round(lo_b, 1),
                "binding_added_p50_block_median_us": round(med_b, 1),
                "binding_added_p50_block_max_us": round(hi_b, 1),
            }
        )
    m.update(extra)
    checks: List[Dict[str, Any]] = [
        {"figure": "added p50", "value": f"{a50:.1f} us", "target": f"<= {target_us:g} us", "pass": a50 <= target_us}
    ]
    if capi is not None:
        checks.append(
            {
                "figure": "of which the binding's (llmux - C ABI from Python, p50; block spread)",
                "value": f"{m['binding_added_p50_us']:.1f} us ({m['binding_added_p50_block_min_us']:.1f}..{m['binding_added_p50_block_max_us']:.1f})",
                "target": "",
                "pass": None,
            }
        )
    return {"case": name, "description": desc, "metrics": m, "checks": checks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--worker-threads", type=int, default=1)
    args = ap.parse_args()
    fleet, port = start_fleet()
    try:
        cfg = {
            "providers": [{"slug": "fast", "protocol": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "bench"}],
            "models": [{"slug": "bench/fast", "endpoints": [{"provider": "fast", "upstream_model": "m"}]}],
            "health": {"explore_ratio": 0.0},
            "worker_threads": args.worker_threads,
        }
        router = llmux.Router(cfg)
        capi = CAbi(cfg)
        raw = RawClient(port)
        msgs = [{"role": "user", "content": "Say hello."}]

        def up_body(stream: bool, mock: Any = None) -> bytes:
            b: Dict[str, Any] = {"model": "m", "messages": msgs, "max_tokens": 16, "stream": stream}
            if stream:
                b["stream_options"] = {"include_usage": True}
            if mock:
                b["mock"] = mock
            return json.dumps(b).encode()

        def one_llmux() -> float:
            t = time.perf_counter()
            r = router.chat.completions.create(model="bench/fast", messages=msgs, max_tokens=16)
            assert r.choices[0].message.content
            return (time.perf_counter() - t) * 1e6

        nb = up_body(False)

        def one_raw() -> float:
            t = time.perf_counter()
            raw.post(nb)
            return (time.perf_counter() - t) * 1e6

        llmux_nb = json.dumps({"model": "bench/fast", "messages": msgs, "max_tokens": 16}).encode()

        def one_capi() -> float:
            t = time.perf_counter()
            capi.run(llmux_nb)
            return (time.perf_counter() - t) * 1e6

        mock = {"chunks": 32}
        sb = up_body(True, mock)
        llmux_sb = json.dumps({"model": "bench/fast", "messages": msgs, "max_tokens": 16, "stream": True, "mock": mock}).encode()

        def stream_capi() -> Tuple[float, int]:
            t = time.perf_counter()
            n = capi.run(llmux_sb)
            return (time.perf_counter() - t) * 1e6, n - 1

        def stream_llmux() -> Tuple[float, int]:
            t = time.perf_counter()
            n = 0
            for c in router.chat.completions.create(model="bench/fast", messages=msgs, max_tokens=16, stream=True, mock=mock):
                n += 1
            return (time.perf_counter() - t) * 1e6, n

        def stream_raw() -> Tuple[float, int]:
            t = time.perf_counter()
            n = [0]

            def on(part: bytes) -> None:
                n[0] += part.count(b"data: ")

            raw.post(sb, on)
            return (time.perf_counter() - t) * 1e6, n[0]

        def stream_llmux_read() -> Tuple[float, int]:
            t = time.perf_counter()
            text = []
            for c in router.chat.completions.create(model="bench/fast", messages=msgs, max_tokens=16, stream=True, mock=mock):
                if c.choices:
                    text.append(c.choices[0].delta.content or "")
            assert text
            return (time.perf_counter() - t) * 1e6, len(text)

        def stream_raw_read() -> Tuple[float, int]:
            t = time.perf_counter()
            text: List[str] = []
            pending = [b""]

            def on(part: bytes) -> None:
                # SSE events end with a blank line; a part may end mid-event.
                *events, pending[0] = (pending[0] + part).split(b"\n\n")
                for ev in events:
                    data = ev[len(b"data: "):] if ev.startswith(b"data: ") else b""
                    if data and data != b"[DONE]":
                        c = json.loads(data)
                        if c.get("choices"):
                            text.append(c["choices"][0]["delta"].get("content") or "")

            raw.post(sb, on)
            assert text
            return (time.perf_counter() - t) * 1e6, len(text)

        n = 500 if args.quick else 2000
        interleave([one_llmux, one_raw, one_capi], 200)
        ll, rr, cc = interleave([one_llmux, one_raw, one_capi], n)
        cases = [
            case(
                "python_added_c1",
                "Python Router non-streaming create() vs a raw-socket HTTP/1.1 client to the same mock, interleaved",
                ll, rr, 30.0, capi=cc, worker_threads=args.worker_threads,
            )
        ]
        ns = 150 if args.quick else 600
        stream_cases = [
            (
                "python_added_stream32",
                "Python Router streaming create() of 32 content chunks, iterated to the end, vs the raw-socket client "
                "reading every SSE event; total time per stream",
                [stream_llmux, stream_raw, stream_capi], ("chunk_objects_llmux", "sse_events_raw"),
            ),
            (
                "python_added_stream32_read",
                "as python_added_stream32, reading choices[0].delta.content of every chunk, vs the raw-socket client "
                "decoding every SSE event's JSON and reading the same field; total time per stream",
                [stream_llmux_read, stream_raw_read], ("chunks_read_llmux", "chunks_read_raw"),
            ),
        ]
        for name, desc, arms, counted in stream_cases:
            interleave(arms, 30)
            runs = interleave(arms, ns)
            times = [[t for t, _ in arm] for arm in runs]
            cases.append(
                case(
                    name, desc, times[0], times[1], 60.0, capi=times[2] if len(times) > 2 else None,
                    **{counted[0]: runs[0][-1][1], counted[1]: runs[1][-1][1]},
                    worker_threads=args.worker_threads,
                )
            )
        router.close()
        capi.close()
        for c in cases:
            print(json.dumps(c))
        if args.json:
            Path(args.json).write_text(json.dumps(cases, indent=1))
    finally:
        if fleet.stdin:
            fleet.stdin.close()
        fleet.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
