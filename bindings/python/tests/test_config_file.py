"""One config file for the library and `llmux serve` (issue 19), and
request arguments refused before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Dict

import pytest

import llmux

from conftest import REPO, USER, Fleet


def test_the_gateways_config_file_also_configures_the_library(config: Dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "llmux.json"
    path.write_text(json.dumps({**config, "gateway": {"listen": "127.0.0.1:0", "drain_ms": 100}}, indent=2))
    with llmux.Router(str(path)) as r:
        assert r.chat.completions.create(model="test/a", messages=USER).choices[0].message.content == "Hello from a."
    binary = Path(os.environ.get("LLMUX_GATEWAY") or REPO / "target" / "debug" / "llmux")
    if not binary.is_file():
        pytest.skip(f"no gateway binary at {binary}: run `cargo build -p llmux-gateway`")
    proc = subprocess.Popen([str(binary), "serve", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("llmux: listening on http://"), line
        url = line.split(" on ", 1)[1].strip()
        req = urllib.request.Request(
            url + "/v1/chat/completions",
            data=json.dumps({"model": "test/a", "messages": USER}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["choices"][0]["message"]["content"] == "Hello from a."
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_unknown_field_is_still_refused_and_named(config: Dict[str, Any]) -> None:
    with pytest.raises(llmux.ConfigError, match=r"gatway: unknown field `gatway`"):
        llmux.Router({**config, "gatway": {}})


@pytest.mark.parametrize("bad", ["hi", b"hi", {"role": "user", "content": "hi"}, 5])
def test_messages_that_are_not_a_list_are_refused_before_sending(router: llmux.Router, fleet: Fleet, bad: Any) -> None:
    before = len(fleet.requests("a"))
    with pytest.raises(TypeError, match=rf"^messages must be a list of message dicts such as \[{{'role': 'user', 'content': 'hi'}}\], not {type(bad).__name__}$"):
        router.chat.completions.create(model="test/a", messages=bad)
    with pytest.raises(TypeError, match=r"^messages must be a list of message dicts"):
        router.messages.create(model="test/a", max_tokens=16, messages=bad)
    with pytest.raises(TypeError, match=r"^messages\[1\] must be a message dict such as \{'role': 'user', 'content': 'hi'\}, not str$"):
        router.chat.completions.create(model="test/a", messages=[USER[0], "hi"])
    assert len(fleet.requests("a")) == before
