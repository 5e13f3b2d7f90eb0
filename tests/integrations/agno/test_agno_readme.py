"""integrations/agno/README.md: every ```python block runs (in order, one namespace, offline,
with Agno's OpenAIChat swapped for the offline model) and does what the README says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import agno.models.openai
import pytest
from agno.agent import Agent
from integrations.readme_blocks import examples, readme

from memori_core.integration import BLOCK_END, BLOCK_START

README = readme("agno")


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _memori_lines(system: str) -> list[str]:
    assert system.count(BLOCK_START) == 1 and system.count(BLOCK_END) == 1
    body = system.split(BLOCK_START)[1].split(BLOCK_END)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]


def _undated(text: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2}", "<day>", text)


@pytest.mark.slow  # Memori() loads the real local embedding model, as the README promises
def test_readme_examples_run_offline_and_do_what_they_say(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_model: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.setattr(agno.models.openai, "OpenAIChat", offline_model)
    blocks = examples(README)
    assert len(blocks) == 3
    namespace: dict[str, Any] = {"__name__": "readme"}
    outputs = []
    try:
        for block in blocks:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, str(README), "exec"), namespace)
            outputs.append(out.getvalue())

        # memory manager: the second run's system prompt holds what the first one captured,
        # exactly as the README shows it (but for the day)
        support = namespace["agent"].model
        assert isinstance(support, offline_model) and support.id == "gpt-4o-mini"
        shown = re.findall(r"```\n(<memories_from_previous_interactions>.*?)```", _text(),
                           re.S)[0]
        assert _undated(shown) in _undated(support.requests[-1].system + "\n")
        assert "allergic to peanuts" not in support.requests[0].system
        with namespace["mem"].attribution(entity_id="user_123", process_id="support-agent"):
            friday = namespace["mem"].session_messages("friday")
        assert [m["role"] for m in friday] == ["user", "assistant"]  # the whole turn

        # the manager's own API: the documented output
        assert outputs[1] == blocks[1].prints

        # learning store: the goal is recalled against the new message; the support agent's
        # memories are another process's
        coach = namespace["coach"].model
        lines = _memori_lines(coach.requests[-1].system)
        assert any("sub-25-minute 5K" in line for line in lines)
        assert all(line.count('"') >= 2 for line in lines)  # quoted data
        assert not any("peanuts" in line for line in lines)
        assert "recall_memories" in coach.requests[-1].tools
        assert (tmp_path / "memori.db").exists() and (tmp_path / "agno.db").exists()
    finally:
        if "mem" in namespace:
            namespace["mem"].close()


def test_readme_claims_about_agno_3_hold() -> None:
    # "Agent(memory=...) raises TypeError"; the 2.x flag is gone too
    with pytest.raises(TypeError, match="memory"):
        Agent(memory=object())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="enable_user_memories"):
        Agent(enable_user_memories=True)  # type: ignore[call-arg]
    text = _text()
    for name in ("MemoriMemoryManager", "MemoriLearningStore", "memory_manager=",
                 "custom_stores=", "update_memory_on_run=True"):
        assert name in text
