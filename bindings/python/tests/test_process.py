"""Whole-process behaviour: interpreter exit with requests in flight, the
library search, the example."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, Fleet, child_env, fleet_binary, make_config

import llmux
from llmux import _ffi

SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    import llmux

    config = json.loads(sys.argv[1])
    user = [{"role": "user", "content": "hi"}]
    slow = {"chunks": 100, "chunk_delay_ms": 20}

    router = llmux.Router(config)
    streams = [router.chat.completions.create(model="test/a", messages=user, stream=True, mock=slow)
               for _ in range(4)]
    for s in streams:
        next(iter(s))

    def blocked():
        try:
            router.chat.completions.create(model="test/a", messages=user, mock={"first_token_delay_ms": 10000})
        except llmux.RequestCancelled:
            pass

    threading.Thread(target=blocked, daemon=True).start()

    # A second router that is only dropped from a reference cycle.
    other = llmux.Router(config)
    other.cycle = other
    other_stream = other.chat.completions.create(model="test/a", messages=user, stream=True, mock=slow)

    # An async router whose loop is left with a request in flight.
    arouter = llmux.AsyncRouter(config)
    async def start():
        s = await arouter.chat.completions.create(model="test/a", messages=user, stream=True, mock=slow)
        await s.__anext__()
        return s
    loop = asyncio.new_event_loop()
    astream = loop.run_until_complete(start())

    print("started", flush=True)
    # exit without closing anything
    """
)


def test_interpreter_exit_with_requests_in_flight(fleet: Fleet, tmp_path: Path) -> None:
    import json

    script = tmp_path / "exit_in_flight.py"
    script.write_text(SHUTDOWN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(make_config(fleet))],
        capture_output=True,
        timeout=30,
        env=child_env(),
    )
    assert proc.stdout.decode().strip() == "started"
    assert proc.stderr.decode() == ""
    assert proc.returncode == 0


def test_library_not_found_lists_where_it_looked(tmp_path: Path) -> None:
    env = child_env()
    env["LLMUX_LIBRARY"] = str(tmp_path / "nope" / "libllmux.so")
    code = "import llmux\ntry:\n    llmux.Router('{}')\nexcept llmux.LibraryNotFoundError as e:\n    print(e)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, env=env, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "$LLMUX_LIBRARY" in proc.stdout
    assert str(tmp_path / "nope" / "libllmux.so") in proc.stdout
    assert "LLMUX_LIBRARY" in proc.stdout


def test_library_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLMUX_LIBRARY", raising=False)
    monkeypatch.setenv("LLMUX_ROOT", str(tmp_path))
    rules = [rule for rule, _ in _ffi.candidate_paths()]
    paths = [p for _, p in _ffi.candidate_paths()]
    assert rules[0] == "bundled"
    assert paths[0].parent == Path(_ffi.__file__).resolve().parent
    assert rules[1:3] == ["$LLMUX_ROOT (release)", "$LLMUX_ROOT (debug)"]
    assert paths[1] == tmp_path / "target" / "release" / "libllmux.so"
    assert paths[2] == tmp_path / "target" / "debug" / "libllmux.so"
    monkeypatch.setenv("LLMUX_LIBRARY", "/x/libllmux.so")
    assert _ffi.candidate_paths() == [("$LLMUX_LIBRARY", Path("/x/libllmux.so"))]


def test_library_from_env_path(fleet: Fleet) -> None:
    loaded = None
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "libllmux.so"
        if p.is_file():
            loaded = p
            break
    assert loaded is not None
    env = child_env()
    env["LLMUX_LIBRARY"] = str(loaded)
    env.pop("LLMUX_ROOT", None)
    code = "import llmux; print(llmux.library_version())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, env=env, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == llmux.library_version()


def test_version_check_rejects_other_major(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ffi, "EXPECTED_MAJOR", 99)
    with pytest.raises(llmux.LibraryVersionError):
        _ffi._check_version(_ffi.lib())


def test_example_runs(fleet: Fleet) -> None:
    example = REPO / "examples" / "python" / "stream.py"
    env = child_env()
    env["LLMUX_FLEET"] = str(fleet_binary())
    proc = subprocess.run([sys.executable, str(example)], capture_output=True, timeout=30, env=env, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Hello from" in out
    assert "endpoint" in out and "attempts" in out


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    import llmux

    config = json.loads(sys.argv[1])
    user = [{"role": "user", "content": "hi"}]
    with llmux.Router(config) as router:
        threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            router.chat.completions.create(model="test/a", messages=user, mock={"first_token_delay_ms": 5000})
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - t0, 1) < 2.0)
        deadline = time.monotonic() + 2
        while router.stats()["requests_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        print("in_flight", router.stats()["requests_in_flight"])
    """
)


def test_ctrl_c_cancels_blocking_request(fleet: Fleet, tmp_path: Path) -> None:
    import json

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(make_config(fleet))],
        capture_output=True,
        timeout=30,
        env=child_env(),
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["interrupted", "True", "in_flight", "0"]
