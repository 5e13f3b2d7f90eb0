"""The integration kit: everything a framework plugin needs from memori, so that a plugin only
adapts its framework's interface (DESIGN.md, "Packages").

- **argument checks** that name the framework's own argument: ``check_memori``,
  ``check_limit``, ``check_scope``, ``check_text``;
- **attribution for a framework call**: ``attributed(memori, entity_id, process_id,
  session_id, names=...)``, restored on exit, in the current thread or asyncio task only;
- **message conversion**: ``clean`` (NUL bytes and lone surrogates replaced, so a turn can
  always be stored), ``tool_call`` (OpenAI-style tool calls, the form memori stores),
  ``named_part`` (an image, audio clip or file named in a message, never copied into the
  database), ``named_parts`` (the binary parts of OpenAI-style or LangChain content named),
  ``text_of`` (the text of content parts);
- **capture of a turn in every outcome**: ``Turn`` (complete, abandoned stream, model error:
  the user message and any partial reply are kept and marked in the messages' metadata);
  a capture failure never reaches the framework call once the model has answered;
  ``storable`` (messages cleaned for a plugin's own ``capture``, replacements counted);
- **the context pipeline's block**: ``prompt_context`` (what a plugin puts into a prompt:
  the one framing of ``memori_core.context``), ``strip_block``.

Nothing here imports a framework.
"""

from __future__ import annotations

from memori_core.context import BLOCK_END, BLOCK_START, MemoryContext, strip_block
from memori_core.integration._checks import (
    attributed,
    check_limit,
    check_memori,
    check_scope,
    check_text,
)
from memori_core.integration._messages import (
    BINARY_PARTS,
    clean,
    named_part,
    named_parts,
    query_of,
    text_of,
    tool_call,
)
from memori_core.integration._turn import Turn, prompt_context, storable

__all__ = ["BINARY_PARTS", "BLOCK_END", "BLOCK_START", "MemoryContext", "Turn", "attributed",
           "check_limit", "check_memori", "check_scope", "check_text", "clean", "named_part",
           "named_parts", "prompt_context", "query_of", "storable", "strip_block", "text_of",
           "tool_call"]
