"""memori-agno: memori as an Agno agent's memory. Imports only memori_core's public API.

Two entry points, both Agno's own extension points (Agno 3.x has no ``Agent(memory=...)``):

- ``MemoriMemoryManager(mem)``: ``Agent(memory_manager=..., update_memory_on_run=True)``;
  the user's memories go into the system prompt, each run's user message is captured.
- ``MemoriLearningStore(mem)``: ``LearningMachine(custom_stores={"memori": ...})``;
  query-aware recall into the prompt, a ``recall_memories`` tool, capture per session.
"""

from memori_agno._manager import MemoriMemoryManager
from memori_agno._store import MemoriLearningStore

__version__ = "0.1.0"

__all__ = ["MemoriLearningStore", "MemoriMemoryManager", "__version__"]
