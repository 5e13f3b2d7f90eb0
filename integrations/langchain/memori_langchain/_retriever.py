"""``MemoriRetriever``: memori recall as a LangChain retriever, for RAG chains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import ConfigDict, Field

from memori_core import ConfigurationError, Memori, RecallHit
from memori_langchain import _target

__all__ = ["MemoriRetriever"]


class MemoriRetriever(BaseRetriever):
    """The current entity's memories most relevant to a query, as ``Document``s.

    ``retriever.invoke("what does the user eat?")`` runs ``Memori.recall`` and returns one
    ``Document`` per hit, best first: ``page_content`` is the memory text, ``id`` its row id
    (as str), and ``metadata`` holds ``id`` (int), ``kind``, ``score``, ``similarity``
    (cosine, in [-1, 1]), ``created_at`` (ISO 8601, UTC), ``source_message_ids`` (list of
    int), ``process_id`` and ``mention_count``.

    Args (fields):
        memori: the ``Memori`` instance.
        k: at most this many documents; default ``Config.recall_facts_limit`` of the
            ``Memori`` instance (5). ``invoke(query, k=2)`` overrides it per call.
        scope: ``"process"`` (default) or ``"entity"`` (see ``Memori.recall``).
        entity_id: fixed entity; default ``configurable[entity_key]`` of the run (inside a
            chain), else memori's current attribution.
        process_id: fixed process; default memori's current process.
        entity_key: ``configurable`` key of the entity id (default ``"user_id"``).

    Raises:
        ConfigurationError: a bad field (at construction) or ``k``; no entity anywhere
            (argument ``entity_id``).
        RecallError, StorageError: recall failed (never returned as an empty list).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memori: Memori = Field(exclude=True)
    k: int | None = None
    scope: _target.Scope = "process"
    entity_id: str | None = None
    process_id: str | None = None
    entity_key: str = "user_id"

    def __init__(self, **data: Any) -> None:
        # checked here, not by pydantic validators, so errors stay ConfigurationError
        _target.check_memori(data.get("memori"), "MemoriRetriever")
        _target.check_limit(data.get("k"), "k")
        _target.check_scope(data.get("scope", "process"))
        if not isinstance(data.get("entity_key", "user_id"), str):
            raise ConfigurationError("entity_key must be a str", argument="entity_key")
        super().__init__(**data)

    def _search(self, query: str, k: int | None, target: _target.Target) -> list[Document]:
        if not isinstance(query, str):
            raise ConfigurationError(f"query must be a str, got {type(query).__name__}",
                                     argument="query")
        limit = _target.check_limit(self.k if k is None else k, "k")
        return [_document(hit) for hit in
                _target.recall(self.memori, target, query, limit, self.scope)]

    def _target_now(self, configurable: Mapping[str, Any] | None) -> _target.Target:
        return _target.resolve_target(
            self.memori, what="MemoriRetriever", entity_id=self.entity_id,
            process_id=self.process_id, entity_key=self.entity_key,
            sources=[("config['configurable']",
                      _target.configurable() if configurable is None else configurable)])

    # BaseRetriever.invoke does not hand the config to _get_relevant_documents, and inside
    # Runnable.batch no run config is in context: the public methods pass its configurable.
    def invoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any
               ) -> list[Document]:
        return super().invoke(input, config, **_with_run(config, kwargs))

    async def ainvoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any
                      ) -> list[Document]:
        return await super().ainvoke(input, config, **_with_run(config, kwargs))

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None,
                                memori_run_configurable: Mapping[str, Any] | None = None
                                ) -> list[Document]:
        return self._search(query, k, self._target_now(memori_run_configurable))

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None,
                                       memori_run_configurable: Mapping[str, Any] | None = None
                                       ) -> list[Document]:
        target = self._target_now(memori_run_configurable)
        return await _target.arun(self._search, query, k, target)


def _with_run(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**kwargs,
            "memori_run_configurable": dict(ensure_config(config).get("configurable") or {})}


def _document(hit: RecallHit) -> Document:
    return Document(
        page_content=hit.content, id=str(hit.id),
        metadata={"id": hit.id, "kind": hit.kind, "score": float(hit.score),
                  "similarity": float(hit.similarity), "created_at": hit.created_at.isoformat(),
                  "source_message_ids": list(hit.source_message_ids),
                  "process_id": hit.process_id, "mention_count": hit.mention_count})
