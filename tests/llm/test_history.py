"""Which earlier turns are replayed: bounded by messages and tokens, tool sequences whole."""

from __future__ import annotations

from typing import Any

from memori_core.llm._messages import estimate_tokens, select_history


def call(i: str) -> dict[str, Any]:
    return {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}


SESSION: list[dict[str, Any]] = [
    {"role": "system", "content": "be nice"},
    {"role": "user", "content": "u1"},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "u2"},
    {"role": "assistant", "content": "", "tool_calls": [call("c1"), call("c2")]},
    {"role": "tool", "tool_call_id": "c1", "content": "r1"},
    {"role": "tool", "tool_call_id": "c2", "content": "r2"},
    {"role": "assistant", "content": "a2"},
]


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


def test_everything_fits() -> None:
    out = select_history(SESSION, 100, 10_000)
    assert roles(out) == ["user", "assistant", "user", "assistant", "tool", "tool", "assistant"]
    assert all("id" not in m and "created_at" not in m for m in out)


def test_off_when_zero_messages() -> None:
    assert select_history(SESSION, 0, 10_000) == []


def test_a_tool_call_is_replayed_with_all_its_results_or_not_at_all() -> None:
    # 4 messages: a2 (1) + the tool unit (3) fit, but then the replay would start with an
    # assistant message: it is trimmed to start at a user message
    assert select_history(SESSION, 4, 10_000) == []
    out = select_history(SESSION, 5, 10_000)
    assert roles(out) == ["user", "assistant", "tool", "tool", "assistant"]
    assert out[0]["content"] == "u2"


def test_the_token_budget_bounds_the_replay() -> None:
    cost = sum(estimate_tokens(m) for m in SESSION[3:])
    assert roles(select_history(SESSION, 100, cost)) == roles(SESSION[3:])
    assert select_history(SESSION, 100, cost - 1) == []


def test_broken_tool_sequences_are_never_replayed() -> None:
    orphan = [{"role": "user", "content": "u"},
              {"role": "tool", "tool_call_id": "zz", "content": "r"},  # no call
              {"role": "assistant", "content": "", "tool_calls": [call("c9")]},  # no result
              {"role": "user", "content": "u3"},
              {"role": "assistant", "content": "a3"}]
    out = select_history(orphan, 100, 10_000)
    assert [m.get("content") for m in out] == ["u", "u3", "a3"]


def test_the_replay_ends_with_a_plain_assistant_message() -> None:
    pending = [*SESSION, {"role": "user", "content": "u3"}]
    assert select_history(pending, 100, 10_000)[-1] == {"role": "assistant", "content": "a2"}
