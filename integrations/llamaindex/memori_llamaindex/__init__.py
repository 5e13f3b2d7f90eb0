"""memori-llamaindex: memori as the memory of LlamaIndex agents. Imports only memori_core's
public API.

- ``MemoriMemory``: a ``BaseMemory`` for ``agent.run(user_msg, memory=...)`` of
  ``FunctionAgent``, ``ReActAgent`` and ``AgentWorkflow``: the session's chat history in
  memori's tables, every message captured as it is put, memories recalled into a system message.
- ``MemoriMemoryBlock``: a ``BaseMemoryBlock`` for LlamaIndex's own ``Memory``
  (``Memory.from_defaults(memory_blocks=[...])``): recalls memori's memories into its system
  message and stores the messages ``Memory`` flushes.
"""

from memori_llamaindex._block import MemoriMemoryBlock
from memori_llamaindex._memory import DEFAULT_MEMORY_TEMPLATE, DEFAULT_TOKEN_LIMIT, MemoriMemory

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MEMORY_TEMPLATE",
    "DEFAULT_TOKEN_LIMIT",
    "MemoriMemory",
    "MemoriMemoryBlock",
    "__version__",
]
