"""memori-llamaindex: memori as the memory of LlamaIndex agents, on memori's integration kit
(``memori_core.integration``).

- ``MemoriMemory``: LlamaIndex's ``Memory`` for ``agent.run(user_msg, memory=...)`` of
  ``FunctionAgent``, ``ReActAgent`` and ``AgentWorkflow``: the session's chat history in
  memori's tables (``MemoriChatStore``), every turn captured once, memories recalled once per
  user message into the framed ``<memori_context>`` block, next to LlamaIndex's other blocks.
- ``MemoriMemoryBlock``: memori's long-term memory as a block of LlamaIndex's own ``Memory``
  (``Memory.from_defaults(memory_blocks=[...])``): captures every turn of the history it is
  handed, whatever ``Memory`` flushes, and recalls into ``Memory``'s system message.
"""

from memori_llamaindex._block import MemoriMemoryBlock
from memori_llamaindex._memory import DEFAULT_TOKEN_LIMIT, MemoriChatStore, MemoriMemory

__version__ = "0.1.0"

__all__ = ["DEFAULT_TOKEN_LIMIT", "MemoriChatStore", "MemoriMemory", "MemoriMemoryBlock",
           "__version__"]
