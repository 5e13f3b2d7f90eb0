"""memori-pydantic-ai: persistent memory for Pydantic AI agents, in a SQL database you control.

    from memori_pydantic_ai import MemoriCapability, MemoriDeps
    agent = Agent(model, deps_type=MemoriDeps, capabilities=[MemoriCapability()])
    agent.run_sync("Hi", deps=MemoriDeps(memori=mem, entity_id="user_123"))

- ``MemoriCapability``: the context block in the instructions, ``recall_memories`` /
  ``remember`` tools, and capture of each run in every outcome;
- ``MemoriDeps``: the dependency carrying the ``Memori`` and whose memory a run uses;
- ``MemoriConversationStore``: Pydantic AI's ``ConversationStore`` on memori's conversation
  tables.

Imports only ``memori_core``'s public API and its integration kit.
"""

from memori_pydantic_ai._capability import MemoriCapability
from memori_pydantic_ai._convert import to_memori_messages
from memori_pydantic_ai._deps import MemoriDeps
from memori_pydantic_ai._store import MemoriConversationStore

__version__ = "0.1.0"

__all__ = [
    "MemoriCapability",
    "MemoriConversationStore",
    "MemoriDeps",
    "__version__",
    "to_memori_messages",
]
