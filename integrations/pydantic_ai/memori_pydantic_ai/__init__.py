"""memori-pydantic-ai: persistent memory for Pydantic AI agents, in a SQL database you control.

- ``MemoriCapability``: memori's context block in the instructions, the ``recall_memories`` /
  ``remember`` tools, and capture of each run in every outcome;
- ``MemoriDeps``: the dependency carrying the ``Memori`` and whose memory a run uses;
- ``MemoriConversationStore``: Pydantic AI's ``ConversationStore`` on memori's tables.
"""

from memori_pydantic_ai._capability import MemoriCapability
from memori_pydantic_ai._convert import to_memori_messages
from memori_pydantic_ai._deps import MemoriDeps
from memori_pydantic_ai._store import MemoriConversationStore

__version__ = "0.1.0"

__all__ = ["MemoriCapability", "MemoriConversationStore", "MemoriDeps", "__version__",
           "to_memori_messages"]
