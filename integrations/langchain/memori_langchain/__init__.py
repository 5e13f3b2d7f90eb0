"""memori-langchain: memori's persistent memory through LangChain's own extension points.

- ``MemoriChatMessageHistory``: a ``BaseChatMessageHistory`` in memori's conversation tables.
- ``with_memori(model, mem)`` / ``MemoriChatModel``: any chat model with recalled memories in
  its system message and every turn captured (invoke, stream, batch, async, tools).
- ``MemoriMiddleware``: the same for ``langchain.agents.create_agent`` (the ``agents`` extra).
- ``MemoriRetriever``: recall as ``Document``s for RAG chains.
- ``MemoriStore``: LangGraph's long-term memory store (``BaseStore``; the ``langgraph`` extra).

No callback handler: LangChain logs and drops their exceptions, so a failed capture would go
unnoticed there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memori_langchain._chat_model import MemoriChatModel, with_memori
from memori_langchain._history import MemoriChatMessageHistory
from memori_langchain._retriever import MemoriRetriever

if TYPE_CHECKING:
    from memori_langchain._middleware import MemoriMiddleware
    from memori_langchain._store import MemoriStore

__version__ = "0.1.0"

__all__ = ["MemoriChatMessageHistory", "MemoriChatModel", "MemoriMiddleware", "MemoriRetriever",
           "MemoriStore", "__version__", "with_memori"]


#: lazily imported names: (module, the extra that installs it, its top-level packages)
_EXTRAS = {"MemoriMiddleware": ("_middleware", "agents", ("langchain", "langgraph")),
           "MemoriStore": ("_store", "langgraph", ("langgraph",))}


def __getattr__(name: str) -> Any:
    if name not in _EXTRAS:
        raise AttributeError(f"module 'memori_langchain' has no attribute {name!r}")
    module, extra, tops = _EXTRAS[name]
    try:
        return getattr(importlib.import_module(f"memori_langchain.{module}"), name)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in tops:
            raise
        from memori_core import ConfigurationError

        raise ConfigurationError(f"{name} needs the {extra} extra: pip install "
                                 f"\"memori-langchain[{extra}]\"", argument=name) from exc
