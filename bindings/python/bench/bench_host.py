"""What the Python binding adds over a raw-socket client, in one run.

Starts the release ``llmux-fleet`` mock (pinned to CPU 1 when there are two
CPUs; this process on CPU 0), then interleaves, request by request:

* ``raw``: a keep-alive HTTP/1.1 client on a plain socket, written here,
  sending the body llmux sends upstream and reading the response (for
  streams: every SSE event) without parsing JSON. The floor: what any
  Python client must at least do.
* ``llmux``: ``Router.chat.completions.create`` (threaded Router), the
  response object built (streams: every chunk object).

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


def pct(v: List[float], p: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]


def spread(a: List[float], b: List[float], blocks: int, p: float) -> Tuple[float, float, float]:
    n = len(a) // blocks
    v = sorted(pct(a[i * n:(i + 1) * n], p) - pct(b[i * n:(i + 1) * n], p) for i in range(blocks))
    return v[0], pct(v, 0.5), v[-1]


def case(name: str, desc: str, ll: List[float], raw: List[float], target_us: float, **extra: Any) -> Dict[str, Any]:
    a50 = pct(ll, 0.5) - pct(raw, 0.5)
    lo, med, hi = spread(ll, raw, 10, 0.5)
    m = {
        "samples": len(ll),
        "llmux_p50_us": round(pct(ll, 0.5), 1),
        "raw_socket_p50_us": round(pct(raw, 0.5), 1),
        "added_p50_us": round(a50, 1),
        "added_p99_us": round(pct(ll, 0.99) - pct(raw, 0.99), 1),
        "added_p50_block_min_us": round(lo, 1),
        "added_p50_block_median_us": round(med, 1),
        "added_p50_block_max_us": round(hi, 1),
    }
    m.update(extra)
    return {
        "case": name,
        "description": desc,
        "metrics": m,
        "checks": [{"figure": "added p50", "value": f"{a50:.1f} us", "target": f"<= {target_us:g} us", "pass": a50 <= target_us}],
    }


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

        mock = {"chunks": 32}
        sb = up_body(True, mock)

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
        for _ in range(200):
            one_llmux()
            one_raw()
        ll, rr = [], []
        for i in range(n):
            if i % 2:
                ll.append(one_llmux())
                rr.append(one_raw())
            else:
                rr.append(one_raw())
                ll.append(one_llmux())
        cases = [
            case(
                "python_added_c1",
                "Python Router non-streaming create() vs a raw-socket HTTP/1.1 client to the same mock, interleaved",
                ll, rr, 30.0, worker_threads=args.worker_threads,
            )
        ]
        ns = 150 if args.quick else 600
        stream_cases = [
            (
                "python_added_stream32",
                "Python Router streaming create() of 32 content chunks, iterated to the end, vs the raw-socket client "
                "reading every SSE event; total time per stream",
                stream_llmux, stream_raw, ("chunk_objects_llmux", "sse_events_raw"),
            ),
            (
                "python_added_stream32_read",
                "as python_added_stream32, reading choices[0].delta.content of every chunk, vs the raw-socket client "
                "decoding every SSE event's JSON and reading the same field; total time per stream",
                stream_llmux_read, stream_raw_read, ("chunks_read_llmux", "chunks_read_raw"),
            ),
        ]
        for name, desc, one, floor, counted in stream_cases:
            for _ in range(30):
                one()
                floor()
            ll, rr = [], []
            chunks = (0, 0)
            for i in range(ns):
                a, ca = one()
                b, cb = floor()
                ll.append(a)
                rr.append(b)
                chunks = (ca, cb)
            cases.append(
                case(
                    name, desc, ll, rr, 60.0, **{counted[0]: chunks[0], counted[1]: chunks[1]},
                    worker_threads=args.worker_threads,
                )
            )
        router.close()
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
