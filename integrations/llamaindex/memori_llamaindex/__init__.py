"""memori-llamaindex: memori as LlamaIndex's memory, on memori's integration kit: ``MemoriMemory``
(LlamaIndex's ``Memory`` kept by memori) and ``MemoriMemoryBlock`` (a block of any ``Memory``)."""

from memori_llamaindex._block import MemoriMemoryBlock
from memori_llamaindex._memory import DEFAULT_TOKEN_LIMIT, MemoriChatStore, MemoriMemory

__version__ = "0.1.0"

__all__ = ["DEFAULT_TOKEN_LIMIT", "MemoriChatStore", "MemoriMemory", "MemoriMemoryBlock",
           "__version__"]
