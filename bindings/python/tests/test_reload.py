"""Router.reload (``llmux_engine_reload``): a new catalog swapped in live,
streams in flight finishing on the old one, an invalid config refused."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import llmux

from conftest import USER, wait_until


def test_reload_adds_reprices_and_keeps_learned_health(config: Dict[str, Any], tmp_path: Path) -> None:
    with llmux.Router(config) as r:
        for _ in range(3):
            r.chat.completions.create(model="test/a", messages=USER)
        before = {e["id"]: e for e in r.stats()["endpoints"] if e["model"] == "test/a"}
        assert before["a/default"]["response_ms"] is not None
        new = copy.deepcopy(config)
        new["models"][0]["endpoints"][0]["price"] = {"prompt": 4.0, "completion": 8.0}
        new["models"].append({"slug": "test/new", "endpoints": [{"provider": "b", "upstream_model": "up-b"}]})
        new["models"] = [m for m in new["models"] if m["slug"] != "test/limited"]
        report = r.reload(new)
        assert report["generation"] == 1
        assert report["added"] == [{"model": "test/new", "endpoint": "b/default"}]
        assert report["removed"] == [{"model": "test/limited", "endpoint": "limited/default"}]
        assert {"model": "test/a", "endpoint": "a/default"} in report["kept"]
        after = {e["id"]: e for e in r.stats()["endpoints"] if e["model"] == "test/a"}
        assert after["a/default"]["response_ms"] == before["a/default"]["response_ms"]
        assert after["a/default"]["requests"] == before["a/default"]["requests"]
        assert after["a/default"]["price"]["prompt"] == 4.0
        done = r.chat.completions.create(model="test/a", messages=USER)
        assert done.routing is not None and done.routing.cost_usd is not None
        u = done.routing.usage
        assert u is not None
        assert done.routing.cost_usd == pytest.approx((u.prompt_tokens * 4.0 + u.completion_tokens * 8.0) / 1e6)
        assert r.chat.completions.create(model="test/new", messages=USER).routing is not None
        with pytest.raises(llmux.LLMuxError):
            r.chat.completions.create(model="test/limited", messages=USER)
        # From a file too; the stats count both reloads.
        path = tmp_path / "llmux.json"
        path.write_text(json.dumps(new))
        assert r.reload(str(path))["generation"] == 2
        assert r.stats()["reloads"] == 2


def test_invalid_reload_changes_nothing(config: Dict[str, Any]) -> None:
    with llmux.Router(config) as r:
        bad = copy.deepcopy(config)
        bad["providers"][0]["base_url"] = "not a url"
        bad["models"][0]["endpoints"][0]["provider"] = "nobody"
        with pytest.raises(llmux.ConfigError) as err:
            r.reload(bad)
        assert "base_url" in str(err.value) and "models[0].endpoints[0]" in str(err.value)
        with pytest.raises(llmux.ConfigError):
            r.reload("{not json")
        assert r.stats()["reloads"] == 0
        assert r.chat.completions.create(model="test/a", messages=USER).routing is not None


def test_streams_in_flight_finish_across_a_reload(config: Dict[str, Any]) -> None:
    with llmux.Router(config) as r:
        texts: List[str] = []
        errors: List[BaseException] = []

        def one() -> None:
            try:
                stream = r.chat.completions.create(
                    model="test/a", messages=USER, stream=True,
                    mock={"chunks": 8, "chunk_delay_ms": 30},
                )
                texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        assert wait_until(lambda: r.stats()["requests_in_flight"] == 20)
        new = copy.deepcopy(config)
        new["models"] = [m for m in new["models"] if m["slug"] != "test/a"]
        report = r.reload(new)
        assert {"model": "test/a", "endpoint": "a/default"} in report["removed"]
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(texts) == 20 and all(t == texts[0] and t for t in texts)
