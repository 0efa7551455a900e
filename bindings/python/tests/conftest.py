"""Fixtures: one llmux-fleet process (mock upstreams) for the session, and a
fresh Router per test over a catalog pointing at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import llmux

REPO = Path(os.environ.get("LLMUX_ROOT") or Path(__file__).resolve().parents[3])

# Server name -> Behavior JSON (see fleet/src/lib.rs). "down" always answers
# 503, "limited" 429 (for requests whose `mock` field does not reach the
# upstream, e.g. Anthropic requests translated to OpenAI).
FLEET_SERVERS: Dict[str, Dict[str, Any]] = {"a": {}, "b": {}, "down": {"status": 503}, "limited": {"status": 429}}

USER = [{"role": "user", "content": "hi"}]


def fleet_binary() -> Path:
    return Path(os.environ.get("LLMUX_FLEET") or REPO / "target" / "debug" / "llmux-fleet")


class Fleet:
    def __init__(self, servers: Dict[str, Dict[str, Any]]) -> None:
        binary = fleet_binary()
        if not binary.is_file():
            pytest.exit(f"llmux-fleet not found at {binary}: run `cargo build -p llmux-fleet`", returncode=2)
        spec = {"servers": [{"name": n, "behavior": b} for n, b in servers.items()]}
        self.proc = subprocess.Popen(
            [str(binary), "--config", json.dumps(spec), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        listing = json.loads(line)
        self.urls: Dict[str, str] = {s["name"]: s["base_url"] for s in listing["servers"]}

    def requests(self, name: str) -> List[Dict[str, Any]]:
        """What server `name` has received (GET /_mock/requests)."""
        with urllib.request.urlopen(self.urls[name] + "/_mock/requests", timeout=5) as r:
            data: List[Dict[str, Any]] = json.loads(r.read())
        return data

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    f = Fleet(FLEET_SERVERS)
    yield f
    f.stop()


def make_config(fleet: Fleet) -> Dict[str, Any]:
    """Models:
    - ``test/a``: only server a (OpenAI protocol).
    - ``test/model``: a (price 1+2), b (price 0.5+0.5), down (always 503).
    - ``test/anthropic``: provider ``an`` speaking the Anthropic protocol to server a.
    - ``test/responses``: provider ``rs`` speaking the Responses protocol to server a.
    - ``test/limited``: server limited (always 429).
    """
    u = fleet.urls

    def ep(provider: str, prompt: float = 1.0, completion: float = 2.0) -> Dict[str, Any]:
        return {
            "provider": provider,
            "upstream_model": f"up-{provider}",
            "price": {"prompt": prompt, "completion": completion},
        }

    return {
        "providers": [
            {"slug": "a", "protocol": "openai", "base_url": u["a"] + "/v1"},
            {"slug": "b", "protocol": "openai", "base_url": u["b"] + "/v1"},
            {"slug": "down", "protocol": "openai", "base_url": u["down"] + "/v1"},
            {"slug": "an", "protocol": "anthropic", "base_url": u["a"]},
            {"slug": "rs", "protocol": "responses", "base_url": u["a"] + "/v1"},
            {"slug": "limited", "protocol": "openai", "base_url": u["limited"] + "/v1"},
        ],
        "models": [
            {"slug": "test/a", "endpoints": [ep("a")]},
            {"slug": "test/model", "endpoints": [ep("a"), ep("b", 0.5, 0.5), ep("down")]},
            {"slug": "test/anthropic", "endpoints": [ep("an")]},
            {"slug": "test/responses", "endpoints": [ep("rs")]},
            {"slug": "test/limited", "endpoints": [ep("limited")]},
        ],
        "health": {"explore_ratio": 0.0},
    }


@pytest.fixture
def config(fleet: Fleet) -> Dict[str, Any]:
    return make_config(fleet)


@pytest.fixture
def router(config: Dict[str, Any]) -> Iterator[llmux.Router]:
    r = llmux.Router(config)
    yield r
    r.close()


def order(*providers: str) -> Dict[str, Any]:
    return {"routing": {"type": "order", "providers": list(providers)}}


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def settles_to_zero(router: Any, timeout: float = 2.0) -> bool:
    """True once ``requests_in_flight`` reads 0. The engine may decrement its
    counter a moment after it queued the terminal event, so poll briefly."""
    return wait_until(lambda: router.stats()["requests_in_flight"] == 0, timeout)


async def async_settles_to_zero(router: Any, timeout: float = 2.0) -> bool:
    import asyncio

    deadline = time.monotonic() + timeout
    while router.stats()["requests_in_flight"] != 0:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def child_env() -> Dict[str, str]:
    """Environment for Python subprocesses: the same llmux as this process."""
    env = dict(os.environ)
    pkg_parent = str(Path(llmux.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


PYTHON = sys.executable
