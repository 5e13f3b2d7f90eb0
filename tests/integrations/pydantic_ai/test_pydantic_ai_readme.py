"""Every python block of integrations/pydantic_ai/README.md runs, in order, in one namespace, and
prints what the README says it prints."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from integrations.readme_blocks import examples, readme

README = readme("pydantic_ai")


def test_blocks_are_found() -> None:
    blocks = examples(README)
    assert len(blocks) == 6
    assert sum(1 for _, printed in blocks if printed is not None) == 5
    for name in ("MemoriCapability(mem)", "MemoriDeps(memori=mem", "recall_memories",
                 "MemoriConversationStore(mem"):
        assert any(name in code for code, _ in blocks), name


@pytest.mark.slow  # the README uses the real local embedding model, as users will
@pytest.mark.usefixtures("frozen_day")
def test_readme_examples_run_and_print_what_they_say(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        run_sync_loop_closer: Callable[[], None]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        for i, (code, printed) in enumerate(examples(README)):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{README}:block{i}", "exec"), namespace)
            assert out.getvalue() == (printed or ""), f"block {i}"
            run_sync_loop_closer()  # a block's run_sync loop, before the next block's asyncio.run
    finally:
        mem = namespace.get("mem")
        if mem is not None:
            mem.close()  # type: ignore[attr-defined]
    assert (tmp_path / "memori.db").exists()
