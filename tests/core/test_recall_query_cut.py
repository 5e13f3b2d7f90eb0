"""Recall reads a bounded head of its query: BM25 tokenizes no more of it than the embedder is
given (``embeddings_max_chars``), so a 10 MB prompt costs what its head costs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from memori_core import Memori, tokens
from memori_core.testing import HashEmbedder

CAP = 1_000


class _Recording(HashEmbedder):
    """The test embedder, noting the length of every text it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.lengths.extend(len(t) for t in texts)
        return super().embed(texts)


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memori]:
    with Memori(conn=f"sqlite:///{tmp_path / 'memori.db'}", embedder=_Recording(),
                augmentation_workers=0, embeddings_max_chars=CAP,
                recall_relevance_threshold=0.0) as m:
        m.config.storage.build()
        m.attribution(entity_id="ann")
        m.remember("The user keeps bees in Lisbon")
        yield m


def test_the_lexical_query_is_cut_where_the_embedding_input_is(
        mem: Memori, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenized: list[int] = []
    real = tokens.tokenize

    def spy(text: str, stem: bool = True) -> list[str]:
        tokenized.append(len(text))
        return real(text, stem)

    monkeypatch.setattr(tokens, "tokenize", spy)
    embedder = mem.embedder
    assert isinstance(embedder, _Recording)
    embedder.lengths.clear()
    huge = "where do my bees live? " + "and so on " * 1_000_000  # 10 MB
    hits = mem.recall(huge)
    # the head is read: its words match lexically
    assert hits and hits[0].content == "The user keeps bees in Lisbon" and hits[0].lexical > 0
    # the query BM25 tokenized is the text the embedder got: CAP characters, not 10 MB
    assert embedder.lengths == [CAP]
    assert tokenized and max(tokenized) == CAP


def test_words_past_the_cut_do_not_match(mem: Memori) -> None:
    head = "x " * CAP  # fills the cut
    assert all(h.lexical == 0 for h in mem.recall(head + "Lisbon bees"))
    found = mem.recall("Lisbon bees " + head)
    assert found and found[0].lexical > 0
