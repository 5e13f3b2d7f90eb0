"""``MemoriRetriever``: memori recall as a LangChain retriever, for RAG chains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field

from memori_core import Memori
from memori_core.integration import attributed, check_limit, check_memori, check_scope, check_text
from memori_langchain._common import configurable, resolve

__all__ = ["MemoriRetriever"]


class MemoriRetriever(BaseRetriever):
    """The current entity's memories most relevant to a query, as ``Document``s, best first:
    ``page_content`` is the memory, ``id`` its row id (str); ``metadata`` holds ``id``,
    ``kind``, ``score``, ``similarity``, ``created_at`` (ISO 8601, UTC),
    ``source_message_ids``, ``process_id`` and ``mention_count``.

    Args (fields):
        k: at most this many documents (default ``Config.recall_facts_limit``);
            ``invoke(query, k=2)`` overrides it per call.
        scope: ``"process"`` (default) or ``"entity"``.
        entity_id: fixed entity; default ``configurable[entity_key]`` (``"user_id"``) of the
            run, else memori's attribution. process_id: fixed process; default memori's.

    Raises:
        ConfigurationError: a bad field or ``k``; no entity anywhere (``entity_id``).
        RecallError, StorageError: recall failed (never returned as an empty list).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memori: Memori = Field(exclude=True)
    k: int | None = None
    scope: str = "process"
    entity_id: str | None = None
    process_id: str | None = None
    entity_key: str = "user_id"

    def __init__(self, **data: Any) -> None:
        # checked here, not by pydantic validators, so errors stay ConfigurationError
        check_memori(data.get("memori"))
        check_limit(data.get("k"), "k")
        check_scope(data.get("scope", "process"))
        check_text(data.get("entity_key", "user_id"), "entity_key")
        super().__init__(**data)

    # BaseRetriever.invoke does not hand the config to _get_relevant_documents, and inside
    # Runnable.batch no run config is in context: the public methods pass its configurable.
    def invoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any
               ) -> list[Document]:
        return super().invoke(input, config, run=dict(configurable(config)), **kwargs)

    async def ainvoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any
                      ) -> list[Document]:
        return await super().ainvoke(input, config, run=dict(configurable(config)), **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: Any, k: int | None = None,
                                run: Mapping[str, Any] | None = None) -> list[Document]:
        check_text(query, "query", min_chars=0)  # a str; recall takes it as given
        limit = check_limit(self.k if k is None else k, "k")
        target = resolve(self.memori, "MemoriRetriever", entity_id=self.entity_id,
                         process_id=self.process_id, entity_key=self.entity_key,
                         sources=[("config['configurable']", run or configurable())])
        with attributed(self.memori, *target) as mem:
            hits = mem.recall(query, limit, scope=check_scope(self.scope))
        return [Document(page_content=hit.content, id=str(hit.id), metadata={
            "id": hit.id, "kind": hit.kind, "score": float(hit.score),
            "similarity": float(hit.similarity), "created_at": hit.created_at.isoformat(),
            "source_message_ids": list(hit.source_message_ids), "process_id": hit.process_id,
            "mention_count": hit.mention_count}) for hit in hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: Any,
                                       k: int | None = None,
                                       run: Mapping[str, Any] | None = None
                                       ) -> list[Document]:
        return await run_in_executor(None, self._get_relevant_documents, query,
                                     run_manager=run_manager.get_sync(), k=k,
                                     run=run or configurable())
