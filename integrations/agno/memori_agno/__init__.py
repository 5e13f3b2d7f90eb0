"""memori-agno: memori as an Agno agent's memory, through Agno's own extension points:
``MemoriMemoryManager`` (``Agent(memory_manager=..., pre_hooks=..., post_hooks=...)``) and
``MemoriLearningStore`` (``LearningMachine(custom_stores={"memori": ...})``)."""

from memori_agno._manager import MemoriMemoryManager
from memori_agno._store import MemoriLearningStore

__version__ = "0.1.0"

__all__ = ["MemoriLearningStore", "MemoriMemoryManager", "__version__"]
