"""Budgets per request `user` (the engine config's `user_budgets`, docs/keys.md),
through the C ABI: a user over budget gets a 402 before any upstream call, a
rate-limited user a 429, a model outside a user's list a 403; the spend
shows in stats() and survives a new Router on the same journal file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest
from conftest import USER, Fleet

import llmux


def budgets(tmp_path: Path) -> Dict[str, Any]:
    # One mock reply on test/a costs $0.00002 (10 prompt + 5 completion tokens).
    return {
        "default": {"budget": {"usd": 0.00005, "period": "day"}},
        "users": {"fast": {"limits": {"rpm": 1}}, "kid": {"models": ["test/a"]}},
        "file": str(tmp_path / "spend.jsonl"),
    }


def test_each_user_has_a_budget_limits_and_models(config: Dict[str, Any], fleet: Fleet, tmp_path: Path) -> None:
    config["user_budgets"] = budgets(tmp_path)
    before = len(fleet.requests("a"))
    with llmux.Router(config) as r:
        for _ in range(2):
            r.chat.completions.create(model="test/a", messages=USER, user="player-1", max_tokens=5)
        with pytest.raises(llmux.PermissionDeniedError) as info:
            r.chat.completions.create(model="test/a", messages=USER, user="player-1", max_tokens=5)
        assert info.value.status == 402
        assert "budget exhausted" in str(info.value)
        # Another player has a budget of their own.
        r.chat.completions.create(model="test/a", messages=USER, user="player-2", max_tokens=5)
        r.chat.completions.create(model="test/a", messages=USER, user="fast")
        with pytest.raises(llmux.RateLimitError) as rl:
            r.chat.completions.create(model="test/a", messages=USER, user="fast")
        assert rl.value.status == 429
        with pytest.raises(llmux.PermissionDeniedError) as pd:
            r.chat.completions.create(model="test/model", messages=USER, user="kid")
        assert pd.value.status == 403 and "may not call" in str(pd.value)
        # Requests without a user are not checked.
        r.chat.completions.create(model="test/a", messages=USER)
        users = {u["user"]: u for u in r.stats()["users"]}
        p1 = users["player-1"]
        assert p1["spent_usd"] == pytest.approx(0.00004)
        assert (p1["requests"], p1["rejections"], p1["limit_usd"], p1["period"]) == (2, 1, 0.00005, "day")
        assert users["player-2"]["spent_usd"] == pytest.approx(0.00002)
        assert users["fast"]["rejections"] == 1
    # Refused requests never reached the upstream: 2 + 1 + 1 + 1 served.
    assert len(fleet.requests("a")) - before == 5
    # A new Router on the same journal keeps the spend.
    with llmux.Router(config) as r:
        with pytest.raises(llmux.PermissionDeniedError):
            r.chat.completions.create(model="test/a", messages=USER, user="player-1", max_tokens=5)
        users = {u["user"]: u for u in r.stats()["users"]}
        assert users["player-1"]["spent_usd"] == pytest.approx(0.00004)


def test_user_budget_mistakes_name_their_path(config: Dict[str, Any]) -> None:
    config["user_budgets"] = {"users": {"p": {"budget": {"usd": -1, "period": "year"}}}}
    with pytest.raises(llmux.ConfigError) as info:
        llmux.Router(config)
    msg = str(info.value)
    assert "user_budgets.users.p.budget.usd" in msg and "user_budgets.users.p.budget.period" in msg
