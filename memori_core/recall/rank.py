"""Recall: embed the query once, search the entity's index, threshold, and hydrate hits."""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np

from memori_core.config import Config
from memori_core.embeddings.base import Embedder
from memori_core.errors import ConfigurationError, RecallError
from memori_core.recall.index import IndexCache
from memori_core.storage.store import Store
from memori_core.types import RecallHit

__all__ = ["Recaller", "Scope", "check_scope", "scope_processes"]

Scope = Literal["process", "entity"]


def check_scope(scope: object) -> None:
    """Raises: ConfigurationError unless ``scope`` is ``"process"`` or ``"entity"``."""
    if scope not in ("process", "entity"):
        raise ConfigurationError(f"scope must be 'process' or 'entity', got {scope!r}",
                                 argument="scope")


def scope_processes(store: Store, process_id: str | None, scope: Scope
                    ) -> list[int | None] | None:
    """Process row ids a read may see: with ``scope="process"`` and a process set, that
    persona's own memories plus those captured with no process at all; else None (all)."""
    if scope != "process" or process_id is None:
        return None
    process_pk = store.find_pk("process", process_id)
    return [None] if process_pk is None else [process_pk, None]


class Recaller:
    """Answers ``Memori.recall``; one per ``Memori`` instance."""

    def __init__(self, store: Store, embedder: Embedder, config: Config) -> None:
        self._store = store
        self._embedder = embedder
        self._config = config
        self.cache = IndexCache(store, config.recall_cache_bytes, config.recall_embeddings_limit)
        self._model_checked = False
        self._lock = threading.Lock()

    def recall(self, query: str, limit: int, *, entity_id: str, process_id: str | None,
               scope: Scope) -> list[RecallHit]:
        if not isinstance(query, str):
            raise ConfigurationError(f"query must be a str, got {type(query).__name__}",
                                     argument="query")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a positive int, got {limit!r}",
                                     argument="limit")
        check_scope(scope)
        if not query.strip():
            return []
        entity_pk = self._store.find_pk("entity", entity_id)
        if entity_pk is None:
            return []
        processes = scope_processes(self._store, process_id, scope)
        try:
            vector = self._embed_query(query)
            index = self.cache.get(entity_pk, vector.shape[0])
            found = index.search(vector, limit, processes)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise RecallError(f"recall failed: {type(exc).__name__}: {exc}") from exc
        threshold = self._config.recall_relevance_threshold
        found = [(i, sim) for i, sim in found if sim >= threshold]
        details = self._store.memory_details(entity_pk, [i for i, _ in found])
        hits = []
        for i, sim in found:
            d = details.get(i)
            if d is None:  # removed since the index was loaded
                continue
            hits.append(RecallHit(id=i, content=d["content"], kind=d["kind"], score=sim,
                                  similarity=sim, created_at=d["created_at"],
                                  source_message_ids=d["source_message_ids"],
                                  process_id=d["process"], mention_count=int(d["mention_count"])))
        return hits

    def _embed_query(self, query: str) -> np.ndarray:
        vector = self._embedder.embed([query])[0]
        if not self._model_checked:
            self._store.check_embedding_model(self._embedder.name, self._embedder.dim)
            self._model_checked = True
        return vector
