"""Every ```python block of integrations/langchain/README.md runs on its own and prints what the
README says it prints: each alone in a fresh folder, and all of them in one folder in README
order and in reverse (``readme_blocks``). The first runs offline with LangChain's fake chat
model; the Bedrock calls replay ``cassettes/langchain/test_langchain_readme/<block>.yaml``
(fake credentials)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import vcr
from integrations.readme_blocks import (
    ORDERS,
    check_alone,
    check_one_folder,
    check_own_databases,
    examples,
    readme,
    use_folder,
)
from vcr.cassette import Cassette

README = readme("langchain")
TEXT = README.read_text(encoding="utf-8")
BLOCKS = examples(README)
#: a text of each Bedrock block -> the cassette its calls replay
CASSETTES = {"RunnableWithMessageHistory(": "history.yaml", "MemoriMiddleware(mem)": "agent.yaml",
             "ChatBedrock(model_id=": "bedrock.yaml"}

pytestmark = [
    pytest.mark.slow,  # the real local embedding model, as a user's copy runs
    pytest.mark.usefixtures("aws_env"),
    # LangChain's own deprecation of the chain the issue asks for (see the README)
    pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated"
                               ":langchain_core._api.LangChainDeprecationWarning"),
]


def cassette_of(index: int) -> str | None:
    names = [name for text, name in CASSETTES.items() if text in BLOCKS[index].code]
    assert len(names) <= 1
    return names[0] if names else None


Replay = Callable[[int], contextlib.AbstractContextManager[Any]]


@pytest.fixture
def replay(vcr_config: dict[str, Any], vcr_cassette_dir: str) -> tuple[Replay, dict[int, Cassette]]:
    """What a block runs inside: its Bedrock cassette, if it has one, every interaction of which
    it must play; and the cassettes played, by block."""
    recorder = vcr.VCR(**vcr_config)
    played: dict[int, Cassette] = {}

    @contextlib.contextmanager
    def around(index: int) -> Iterator[None]:
        name = cassette_of(index)
        if name is None:
            yield
            return
        with recorder.use_cassette(str(Path(vcr_cassette_dir) / name)) as cassette:
            yield
        assert cassette.all_played, f"block {index}: {name} not all played"
        played[index] = cassette

    return around, played


def test_every_block_has_its_output_its_database_and_the_first_runs_offline() -> None:
    assert len(BLOCKS) == TEXT.count("```python") == 6
    assert all(block.prints is not None for block in BLOCKS)
    check_own_databases(BLOCKS)
    first = BLOCKS[0].code
    assert "GenericFakeChatModel(" in first and "with_memori(" in first and "Bedrock" not in first
    assert [cassette_of(i) for i in range(6)] == [None, "history.yaml", "agent.yaml",
                                                  "bedrock.yaml", None, None]
    assert "MemoriStore(mem)" in BLOCKS[5].code  # also run by test_langgraph_store.py


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_alone(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          replay: tuple[Replay, dict[int, Cassette]]) -> None:
    around, played = replay
    folder = use_folder(tmp_path / "alone", monkeypatch)
    check_alone(README, BLOCKS, index, folder, around)
    if cassette_of(index) == "agent.yaml":
        documented = re.search(r"The system prompt Bedrock received ends with the framed memory "
                               r"block:\n\n```\n(.*?)\n```", TEXT, re.S)
        assert documented is not None
        assert played[index].play_count == 2
        for request in played[index].requests:  # both model calls of the agent got the memory
            assert json.loads(request.body)["system"] == [{"text": documented.group(1)}]
    if cassette_of(index) == "bedrock.yaml":
        system = json.loads(played[index].requests[0].body)["system"]
        assert '- 2026-01-01 fact: "The user is allergic to peanuts"' in system.splitlines()


@pytest.mark.parametrize("name", ORDERS)
def test_all_blocks_in_one_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  replay: tuple[Replay, dict[int, Cassette]]) -> None:
    around, played = replay
    folder = use_folder(tmp_path / "one", monkeypatch)
    check_one_folder(README, BLOCKS, name, folder, around)
    assert sorted(played) == [1, 2, 3]
