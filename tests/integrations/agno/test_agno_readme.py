"""integrations/agno/README.md: every ```python block runs on its own, offline (Agno's
``OpenAIChat`` swapped for the offline model), and prints what the README says: each alone in a
fresh folder, and all of them in one folder in README order and in reverse
(``readme_blocks``); and what the model was sent is what the README shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import agno.models.openai
import pytest
from agno.agent import Agent
from integrations.readme_blocks import (
    ORDERS,
    check_alone,
    check_one_folder,
    check_own_databases,
    examples,
    readme,
    use_folder,
)

from memori_core.integration import BLOCK_END, BLOCK_START

README = readme("agno")
BLOCKS = examples(README)

pytestmark = pytest.mark.slow  # the real local embedding model, as a user's copy runs


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _memori_lines(system: str) -> list[str]:
    assert system.count(BLOCK_START) == 1 and system.count(BLOCK_END) == 1
    body = system.split(BLOCK_START)[1].split(BLOCK_END)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]


def _undated(text: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2}", "<day>", text)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, offline_model: Any) -> Any:
    """``OpenAIChat`` is the offline model in the blocks."""
    monkeypatch.setattr(agno.models.openai, "OpenAIChat", offline_model)
    return offline_model


def test_every_block_has_its_output_and_its_databases() -> None:
    assert len(BLOCKS) == _text().count("```python") == 3
    assert all(block.prints is not None for block in BLOCKS)
    check_own_databases(BLOCKS)
    assert "MemoriMemoryManager(mem)" in BLOCKS[0].code and "agent.run(" in BLOCKS[0].code
    assert "memory.search_user_memories(" in BLOCKS[1].code
    assert "MemoriLearningStore(mem)" in BLOCKS[2].code
    sessions = [re.findall(r'SqliteDb\(db_file="([^"]+)"\)', block.code) for block in BLOCKS]
    assert sessions == [["agno-manager-sessions.db"], [], ["agno-learning-sessions.db"]]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_alone(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          offline: Any) -> None:
    folder = use_folder(tmp_path / "alone", monkeypatch)
    namespace = check_alone(README, BLOCKS, index, folder)
    if index == 0:
        # the second run's system prompt holds what the first one captured, exactly as the
        # README shows it (but for the day)
        support = namespace["agent"].model
        assert isinstance(support, offline) and support.id == "gpt-4o-mini"
        shown = re.findall(r"```\n(<memories_from_previous_interactions>.*?)```", _text(),
                           re.S)[0]
        assert _undated(shown) in _undated(support.requests[-1].system + "\n")
        assert "allergic to peanuts" not in support.requests[0].system
    if index == 2:
        # the learning store: the goal is recalled against the new message, as quoted data,
        # and the model is offered memori's tool
        coach = namespace["coach"].model
        lines = _memori_lines(coach.requests[-1].system)
        assert any("sub-25-minute 5K" in line for line in lines)
        assert all(line.count('"') >= 2 for line in lines)
        assert "recall_memories" in coach.requests[-1].tools


@pytest.mark.parametrize("name", ORDERS)
def test_all_blocks_in_one_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  offline: Any) -> None:
    folder = use_folder(tmp_path / "one", monkeypatch)
    check_one_folder(README, BLOCKS, name, folder)
    assert {p.name for p in folder.glob("agno-*-sessions.db")} == {
        "agno-manager-sessions.db", "agno-learning-sessions.db"}


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
