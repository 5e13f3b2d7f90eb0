"""memori: persistent, queryable memory for LLM applications in a SQL database you control.

    from memori_core import Memori
    mem = Memori()                                   # embedded SQLite ./memori.db
    mem.attribution(entity_id="user_123", process_id="support_agent")
    mem.capture([{"role": "user", "content": "I prefer window seats"}])
    mem.augmentation.wait(timeout=30)
    mem.recall("seat preference?")                   # -> list[RecallHit]
"""

from memori_core._memori import Memori
from memori_core.augmentation.base import (
    Conversation,
    ExtractedMemory,
    Extraction,
    Extractor,
    Triple,
)
from memori_core.config import Config, EmbeddingsConfig
from memori_core.embeddings.base import Embedder
from memori_core.embeddings.local import LocalEmbedder
from memori_core.errors import (
    AugmentationError,
    AuthenticationError,
    ConfigurationError,
    MemoriError,
    ProviderError,
    RecallError,
    StorageError,
)
from memori_core.types import Memory, RecallHit

__version__ = "0.1.0"

__all__ = [
    "AugmentationError",
    "AuthenticationError",
    "Config",
    "ConfigurationError",
    "Conversation",
    "EmbeddingsConfig",
    "Embedder",
    "ExtractedMemory",
    "Extraction",
    "Extractor",
    "LocalEmbedder",
    "Memori",
    "Memory",
    "MemoriError",
    "ProviderError",
    "RecallError",
    "RecallHit",
    "StorageError",
    "Triple",
    "__version__",
]
