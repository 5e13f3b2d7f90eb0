"""Every python block of integrations/llamaindex/README.md runs on its own, offline, and prints
what the README says it prints: each alone in a fresh folder, and all of them in one folder in
README order and in reverse (``readme_blocks``)."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import Iterator
from pathlib import Path

import llama_index.core.llms
import pytest
from integrations.readme_blocks import (
    ORDERS,
    check_alone,
    check_one_folder,
    check_own_databases,
    examples,
    readme,
    use_folder,
)
from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall

README = readme("llamaindex")
TEXT = README.read_text(encoding="utf-8")
BLOCKS = examples(README)

pytestmark = [
    pytest.mark.slow,  # the real local embedding model, as a user's copy runs
    # Memory.from_defaults() makes its own aiosqlite engine, which LlamaIndex never disposes:
    # its connection is collected unclosed (a LlamaIndex leak, not the plugin's)
    pytest.mark.filterwarnings(
        r"ignore:<aiosqlite\.core\.Connection object .* was deleted before being closed:"
        "ResourceWarning"),
]


@pytest.fixture(autouse=True)
def _thread_loop() -> Iterator[None]:
    """The thread's event loop, where Memory's sync methods run (LlamaIndex's asyncio_run)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        gc.collect()


def test_readme_shows_both_entry_points_each_with_its_output_and_database() -> None:
    assert len(BLOCKS) == TEXT.count("```python\n") == 2
    assert all(block.prints is not None for block in BLOCKS)
    check_own_databases(BLOCKS)
    assert "MemoriMemory.from_defaults(" in BLOCKS[0].code and "agent.run(" in BLOCKS[0].code
    assert "MockFunctionCallingLLM()" in BLOCKS[0].code  # the first runs offline
    assert "MemoriMemoryBlock(" in BLOCKS[1].code and "Memory.from_defaults(" in BLOCKS[1].code


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_alone(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the blocks' MockFunctionCallingLLM, keeping the messages of its last call
    monkeypatch.setattr(llama_index.core.llms, "MockFunctionCallingLLM",
                        MockFunctionCallingLLMWithChatMemoryOfLastCall)
    folder = use_folder(tmp_path / "alone", monkeypatch)
    namespace = check_alone(README, BLOCKS, index, folder)
    sent = namespace["agent"].llm.last_chat_messages
    assert sent[-1].role.value == "user"
    memory = [m.content for m in sent if m.role.value == "system" and "<memory>" in m.content]
    assert len(memory) == 1
    if index == 0:  # the model got the system message the README shows (but for the day)
        assert sent[0].content == "You are a helpful cook."
        shown = re.search(r"\n```\n(<memory>\n<memori>\n.*?)```", TEXT, re.S)
        assert shown is not None
        day = re.compile(r"\d{4}-\d{2}-\d{2}")
        assert day.sub("<day>", memory[0]) == day.sub("<day>", shown[1].rstrip("\n"))
    else:
        assert "The user cooks for four." in memory[0]
        assert '"The user is allergic to peanuts"' in memory[0]


@pytest.mark.parametrize("name", ORDERS)
def test_all_blocks_in_one_folder(name: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    check_one_folder(README, BLOCKS, name, use_folder(tmp_path / "one", monkeypatch))
