"""Bounded sizes (issue 18.6): a message over ``capture_max_message_chars`` is refused by
``capture`` before anything is written and cut (marked) by the paths that must not lose a turn;
the embedder never reads more than ``embeddings_max_chars``; one turn gives at most
``augmentation_max_memories`` memories."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sqlalchemy import func, select

from memori_core import ConfigurationError, Memori
from memori_core.integration import Turn
from memori_core.storage import schema
from memori_core.testing import HashEmbedder


class Recording(HashEmbedder):
    """HashEmbedder that remembers the longest text it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.longest = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.longest = max([self.longest, *(len(t) for t in texts)])
        return super().embed(texts)


def rows(mem: Memori, table: object) -> int:
    with mem.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_capture_refuses_an_oversized_message_before_writing_anything(db_url: str) -> None:
    with Memori(conn=db_url, embedder=HashEmbedder(), capture_max_message_chars=1000) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="big")
        with pytest.raises(ConfigurationError, match="capture_max_message_chars") as e:
            mem.capture([{"role": "user", "content": "fine"},
                         {"role": "assistant", "content": "x" * 1001}])
        assert e.value.argument == "messages"
        assert (rows(mem, schema.conversation_message), rows(mem, schema.augmentation_job)) \
            == (0, 0)
        mem.capture([{"role": "user", "content": "x" * 1000}])  # the bound itself is fine


def test_a_plugin_turn_over_the_bound_is_kept_cut_and_marked(smem: Memori) -> None:
    smem.config.capture_max_message_chars = 500
    smem.attribution(entity_id="paster")
    Turn(smem, [{"role": "user", "content": "I like tea. " * 100}], framework="test").finish()
    (stored,) = smem.session_messages()
    assert len(stored["content"]) <= 500
    assert stored["content"].startswith("I like tea. I like tea.")
    assert stored["content"].endswith("of 1,200 characters]")
    assert stored["metadata"]["cut"]["total"] == 1200


def test_the_embedder_reads_at_most_embeddings_max_chars(sqlite_url: str) -> None:
    embedder = Recording()
    with Memori(conn=sqlite_url, embedder=embedder, embeddings_max_chars=300) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="long")
        text = "I live in Lisbon and " + "the river is wide " * 3000
        mem.capture([{"role": "user", "content": text}])
        assert mem.augmentation.wait(timeout=60)
        mem.recall("where do I live? " * 1000)
        assert 0 < embedder.longest <= 300
        stored = {m.content for m in mem.memories()}
        assert any(len(c) > 50_000 for c in stored)  # stored whole, only embedded cut


def test_one_turn_gives_at_most_augmentation_max_memories(sqlite_url: str) -> None:
    with Memori(conn=sqlite_url, embedder=HashEmbedder(), augmentation_max_memories=20) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="lister")
        mem.capture([{"role": "user", "content": " ".join(
            f"I like dish number {i}." for i in range(500))}])
        assert mem.augmentation.wait(timeout=60)
        assert len(mem.memories()) == 20
        assert any(m.kind == "episodic" for m in mem.memories())  # the turn itself stays
