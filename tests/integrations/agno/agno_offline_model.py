"""An offline Agno ``Model`` (Agno ships none) that replies from a script and records every
request it was sent. A module of its own, without pytest, so the clean-install test
(tests/integrations/test_clean_install.py) can stand it in for ``OpenAIChat`` in a fresh venv."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from agno.models.base import Model
from agno.models.message import Message
from agno.models.response import ModelResponse

__all__ = ["OfflineModel", "Request"]


@dataclass
class Request:
    """One call the model received."""

    messages: list[tuple[str, str]]
    tools: list[str]
    stream: bool

    @property
    def system(self) -> str:
        """The system prompt ("" when there was none)."""
        return next((text for role, text in self.messages if role == "system"), "")


@dataclass
class OfflineModel(Model):
    """An Agno model that never leaves the process.

    Each call takes the next step of ``script``: a str is the reply (streamed word by word
    when the run streams), ``{"tool": name, "args": {...}}`` a tool call; once the script is
    used up it replies ``default_reply``. Every call is recorded in ``requests``.
    """

    id: str = "offline"
    name: str = "OfflineModel"
    provider: str = "offline"
    script: list[Any] = field(default_factory=list)
    default_reply: str = "OK."
    requests: list[Request] = field(default_factory=list)

    def __deepcopy__(self, memo: dict[int, Any]) -> OfflineModel:
        # Agno deep-copies a memory manager's model per task: keep recording into this one
        return self

    def _respond(self, messages: list[Message], tools: list[dict[str, Any]] | None,
                 stream: bool) -> ModelResponse:
        self.requests.append(Request(
            messages=[(m.role, m.get_content_string()) for m in messages],
            tools=[t["function"]["name"] for t in tools or []], stream=stream))
        step = self.script.pop(0) if self.script else self.default_reply
        if isinstance(step, dict):
            call = {"id": f"call_{len(self.requests)}", "type": "function",
                    "function": {"name": step["tool"], "arguments": json.dumps(step["args"])}}
            return ModelResponse(role="assistant", tool_calls=[call])
        return ModelResponse(role="assistant", content=step)

    def _chunks(self, response: ModelResponse) -> Iterator[ModelResponse]:
        if response.tool_calls:
            raise AssertionError("OfflineModel streams text replies only")
        words = str(response.content).split(" ")
        for i, word in enumerate(words):
            yield ModelResponse(role="assistant", content=word if i == 0 else f" {word}")

    def invoke(self, *args: Any, messages: list[Message], tools: Any = None,
               **kwargs: Any) -> ModelResponse:
        return self._respond(messages, tools, stream=False)

    async def ainvoke(self, *args: Any, messages: list[Message], tools: Any = None,
                      **kwargs: Any) -> ModelResponse:
        return self._respond(messages, tools, stream=False)

    def invoke_stream(self, *args: Any, messages: list[Message], tools: Any = None,
                      **kwargs: Any) -> Iterator[ModelResponse]:
        yield from self._chunks(self._respond(messages, tools, stream=True))

    async def ainvoke_stream(self, *args: Any, messages: list[Message], tools: Any = None,
                             **kwargs: Any) -> AsyncIterator[ModelResponse]:
        for chunk in self._chunks(self._respond(messages, tools, stream=True)):
            yield chunk

    def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        return response  # type: ignore[no-any-return]

    def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
        return response  # type: ignore[no-any-return]
