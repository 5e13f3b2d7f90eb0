"""Fixtures for the Agno plugin: an offline Agno ``Model`` (Agno ships none) that replies from a
script and records every request it was sent, and Agno's telemetry switched off."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agno.models.base import Model
from agno.models.message import Message
from agno.models.response import ModelResponse


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


@pytest.fixture(autouse=True)
def _no_agno_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agno sends run telemetry unless AGNO_TELEMETRY=false (read at every run)."""
    monkeypatch.setenv("AGNO_TELEMETRY", "false")


@pytest.fixture
def offline_model() -> type[OfflineModel]:
    """The offline model class: ``offline_model(script=[...])``."""
    return OfflineModel


MODES = ["run", "stream", "arun", "astream"]


def _collect(event: Any, parts: list[str]) -> None:
    kind = getattr(event, "event", None)
    if kind == "RunError":
        raise AssertionError(f"the run failed: {getattr(event, 'content', event)}")
    if kind == "RunContent" and isinstance(event.content, str):
        parts.append(event.content)


async def _arun(agent: Any, message: str, stream: bool, **kwargs: Any) -> str:
    if not stream:
        output = await agent.arun(message, **kwargs)
        assert output.status == "COMPLETED", output.content
        return str(output.content)
    parts: list[str] = []
    async for event in agent.arun(message, stream=True, **kwargs):
        _collect(event, parts)
    return "".join(parts)


def run_agent(agent: Any, message: str, mode: str, **kwargs: Any) -> str:
    """Run ``agent`` in one of ``MODES`` (sync / streamed / async / async streamed) and return
    the reply text; a failed run fails the test."""
    import asyncio

    if mode == "run":
        output = agent.run(message, **kwargs)
        assert output.status == "COMPLETED", output.content
        return str(output.content)
    if mode == "stream":
        parts: list[str] = []
        for event in agent.run(message, stream=True, **kwargs):
            _collect(event, parts)
        return "".join(parts)
    return asyncio.run(_arun(agent, message, mode == "astream", **kwargs))


@pytest.fixture
def run() -> Any:
    """``run(agent, message, mode, user_id=..., session_id=...)`` -> reply text."""
    return run_agent
