"""Every python block of integrations/llamaindex/README.md runs, in order, and prints what the
README says it prints."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
from pathlib import Path
from typing import Any

import pytest
from integrations.readme_blocks import examples, readme

import memori_core
from memori_core import Memori
from memori_core.testing import HashEmbedder

README = readme("llamaindex")


class OfflineMemori(Memori):
    """``Memori`` with the offline test embedder instead of the local model (seconds to load)."""

    def __init__(self, conn: object = None, **kwargs: Any) -> None:
        kwargs.setdefault("embedder", HashEmbedder())
        super().__init__(conn, **kwargs)


def blocks() -> list[tuple[str, str]]:
    """(code, printed output) of each python block: every block shows its output."""
    found = examples(README)
    assert all(example.prints is not None for example in found)
    return [(example.code, str(example.prints)) for example in found]


def test_readme_shows_both_entry_points() -> None:
    found = blocks()
    assert len(found) == README.read_text(encoding="utf-8").count("```python\n") == 2
    assert "MemoriMemory.from_defaults(" in found[0][0] and "agent.run(" in found[0][0]
    assert "MemoriMemoryBlock(" in found[1][0] and "Memory.from_defaults(" in found[1][0]


# Memory.from_defaults() makes its own aiosqlite engine, which LlamaIndex never disposes: its
# connection is collected unclosed when the test ends (a LlamaIndex leak, not the plugin's)
@pytest.mark.filterwarnings(
    r"ignore:<aiosqlite\.core\.Connection object .* was deleted before being closed:"
    "ResourceWarning")
def test_readme_examples_run_and_print_what_they_say(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.setattr(memori_core, "Memori", OfflineMemori)
    loop = asyncio.new_event_loop()  # where Memory's sync methods run (LlamaIndex's asyncio_run)
    asyncio.set_event_loop(loop)
    try:
        for code, documented in blocks():
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, str(README), "exec"), {"__name__": "readme"})
            printed = out.getvalue()
            # memori may extract more memories than the README shows: each documented line is
            # printed, in order, and every other printed line is a memory line
            lines = printed.splitlines()
            positions = [lines.index(line) for line in documented.splitlines()]
            assert positions == sorted(positions)
            extra = set(lines) - set(documented.splitlines())
            assert all(line.startswith("- ") for line in extra), extra
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        gc.collect()
    assert (tmp_path / "memori.db").exists()
