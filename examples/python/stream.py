"""Stream an answer through llmux, offline.

Starts the mock upstream fleet (``llmux-fleet``; path from ``$LLMUX_FLEET``,
default ``target/debug/llmux-fleet``) with two OpenAI-compatible servers:
``primary`` answers 503, ``backup`` is healthy. The Router tries primary
first, fails over to backup before the first token, streams the answer and
prints it, then prints the routing record.

    cargo build && cargo build -p llmux-fleet
    pip install ./bindings/python        # or: PYTHONPATH=bindings/python/src
    python examples/python/stream.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

try:
    import llmux
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(REPO / "bindings" / "python" / "src"))
    import llmux


def start_fleet() -> "tuple[subprocess.Popen[bytes], dict[str, str]]":
    binary = os.environ.get("LLMUX_FLEET") or str(REPO / "target" / "debug" / "llmux-fleet")
    spec = {"servers": [{"name": "primary", "behavior": {"status": 503}},
                        {"name": "backup", "behavior": {"text": "Hello from the backup provider!",
                                                         "chunk_delay_ms": 30}}]}
    proc = subprocess.Popen([binary, "--config", json.dumps(spec), "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    listing = json.loads(proc.stdout.readline())
    return proc, {s["name"]: s["base_url"] for s in listing["servers"]}


def main() -> int:
    fleet, urls = start_fleet()
    config = {
        "providers": [
            {"slug": "primary", "protocol": "openai", "base_url": urls["primary"] + "/v1"},
            {"slug": "backup", "protocol": "openai", "base_url": urls["backup"] + "/v1"},
        ],
        "models": [{"slug": "demo/chat", "endpoints": [
            {"provider": "primary", "upstream_model": "chat-large", "price": {"prompt": 3.0, "completion": 15.0}},
            {"provider": "backup", "upstream_model": "chat-small", "price": {"prompt": 0.5, "completion": 1.5}},
        ]}],
    }
    try:
        with llmux.Router(config) as router:
            stream = router.chat.completions.create(
                model="demo/chat",
                messages=[{"role": "user", "content": "Say hello."}],
                stream=True,
                provider={"routing": {"type": "order", "providers": ["primary", "backup"]}},
            )
            with stream:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        print(chunk.choices[0].delta.content, end="", flush=True)
            print()
            r = stream.routing
            assert r is not None
            print(f"served by endpoint {r.endpoint} (provider {r.provider}, upstream model {r.upstream_model})")
            print(f"first token after {r.first_token_ms:.1f} ms, cost ${r.cost_usd:.8f}, usage {r.usage}")
            print("attempts:")
            for a in r.attempts:
                print(f"  {a.endpoint:<18} {a.outcome:<12} status={a.status} {a.elapsed_ms:.1f} ms"
                      + (f"  ({a.error})" if a.error else ""))
            print("routing record:", json.dumps(r.to_dict(), indent=2))
    finally:
        assert fleet.stdin is not None
        fleet.stdin.close()
        fleet.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
