"""Fixtures for the Agno plugin: the offline Agno ``Model`` of ``agno_offline_model`` and
Agno's telemetry switched off."""

from __future__ import annotations

from typing import Any

import pytest
from agno_offline_model import OfflineModel


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
