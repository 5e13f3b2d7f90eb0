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

README = Path(__file__).resolve().parents[3] / "integrations" / "agno" / "README.md"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _text(), re.S)


def _memori_lines(system: str) -> list[str]:
    body = system.split("<memori_memories>\n")[1].split("</memori_memories>")[0]
    return [line for line in body.splitlines() if line.startswith("- [")]


@pytest.mark.slow  # Memori() loads the real local embedding model, as the README promises
def test_readme_examples_run_offline_and_do_what_they_say(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_model: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.setattr(agno.models.openai, "OpenAIChat", offline_model)
    blocks = _python_blocks()
    assert len(blocks) == 3
    namespace: dict[str, Any] = {"__name__": "readme"}
    outputs = []
    try:
        for block in blocks:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, str(README), "exec"), namespace)
            outputs.append(out.getvalue())

        # memory manager: the second run's system prompt lists what the first one captured
        support = namespace["agent"].model
        assert isinstance(support, offline_model) and support.id == "gpt-4o-mini"
        assert "allergic to peanuts" in support.requests[-1].system
        assert "allergic to peanuts" not in support.requests[0].system

        # the manager's own API: the documented output
        documented = re.findall(r"prints\n\n```\n(.*?)```", _text(), re.S)
        assert outputs[1] == documented[0]

        # learning store: the goal is recalled against the new message; the support agent's
        # memories are another process's
        coach = namespace["coach"].model
        lines = _memori_lines(coach.requests[-1].system)
        assert any("sub-25-minute 5K" in line for line in lines)
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
