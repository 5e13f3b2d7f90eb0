"""Every python block of integrations/pydantic_ai/README.md runs on its own and prints what the
README says it prints: each alone in a fresh folder, and all of them in one folder in README
order and in reverse (``readme_blocks``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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

README = readme("pydantic_ai")
BLOCKS = examples(README)

pytestmark = pytest.mark.slow  # the real local embedding model, as a user's copy runs


def test_every_block_has_its_output_and_its_database() -> None:
    assert len(BLOCKS) == README.read_text(encoding="utf-8").count("```python") == 5
    assert all(block.prints is not None for block in BLOCKS)
    check_own_databases(BLOCKS)
    assert "FunctionModel(stand_in)" in BLOCKS[0].code  # the first: offline, the capability
    for name in ("MemoriCapability(mem)", "MemoriDeps(memori=mem", "recall_memories",
                 "MemoriConversationStore(mem"):
        assert any(name in block.code for block in BLOCKS), name


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_alone(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          run_sync_loop_closer: Callable[[], None]) -> None:
    folder = use_folder(tmp_path / "alone", monkeypatch)
    check_alone(README, BLOCKS, index, folder)


@pytest.mark.parametrize("name", ORDERS)
def test_all_blocks_in_one_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  run_sync_loop_closer: Callable[[], None]) -> None:
    folder = use_folder(tmp_path / "one", monkeypatch)
    # each block's run_sync loop closed before the next block's asyncio.run
    check_one_folder(README, BLOCKS, name, folder, after=run_sync_loop_closer)
