"""Fixtures for the LlamaIndex plugin: LlamaIndex's own fake LLMs, an embedder that can be made
to fail, and narrow filters for warnings LlamaIndex itself raises."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall

from memori_core import Memori
from memori_core.testing import HashEmbedder

HERE = Path(__file__).resolve().parent

# Warnings raised inside LlamaIndex / llama-index-workflows themselves, not by the plugin:
FRAMEWORK_WARNINGS = [
    # Workflow.__init__ runs inspect.getmembers() on the (pydantic) agent, touching deprecated
    # pydantic attributes
    "ignore::pydantic.warnings.PydanticDeprecatedSince20:inspect",
    "ignore::pydantic.warnings.PydanticDeprecatedSince211:inspect",
    # ReActAgent.take_step checks ctx.is_running inside a step (llama-index-core 0.14.x)
    "ignore:is_running called from within a step:DeprecationWarning",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            for spec in FRAMEWORK_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


class FlakyEmbedder(HashEmbedder):
    """``HashEmbedder`` that raises while ``broken`` is set (a model or endpoint failing)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.broken:
            raise RuntimeError("embedding endpoint unavailable")
        return super().embed(texts)


@pytest.fixture
def flaky(sqlite_url: str) -> Iterator[tuple[Memori, FlakyEmbedder]]:
    """A built Memori on a fresh SQLite file whose embedder can be broken."""
    embedder = FlakyEmbedder()
    m = Memori(conn=sqlite_url, embedder=embedder)
    m.config.storage.build()
    try:
        yield m, embedder
    finally:
        m.close()


@pytest.fixture
def llm() -> MockFunctionCallingLLMWithChatMemoryOfLastCall:
    """LlamaIndex's fake function-calling LLM that keeps the messages of its last call; with
    tools it calls each once, then answers "Tool calls complete."; without, it echoes the last
    message."""
    return MockFunctionCallingLLMWithChatMemoryOfLastCall()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The thread's event loop, on which ``Memory``'s sync methods run their coroutines
    (LlamaIndex's ``asyncio_run``): a fresh one, closed afterwards."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)
