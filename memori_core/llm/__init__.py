"""Provider wrappers: ``mem.llm.register(client)`` makes every call through an OpenAI,
Anthropic or Google genai client memory-aware (recall injected before, the turn captured after).

- ``registry``: ``LLMRegistry``, the type of ``mem.llm`` (register, unregister, flush, stats).
- ``context``: the framed, escaped block of recalled memories (``render_block``), also for
  plugins that inject memories themselves.
- ``openai``, ``anthropic``, ``google``: one adapter per provider API.
"""

from memori_core.llm.context import BLOCK_END, BLOCK_START, render_block, strip_block
from memori_core.llm.registry import SUPPORTED_CLIENTS, LLMRegistry

__all__ = ["BLOCK_END", "BLOCK_START", "SUPPORTED_CLIENTS", "LLMRegistry", "render_block",
           "strip_block"]
