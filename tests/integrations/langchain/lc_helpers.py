"""Test helpers of the LangChain plugin's tests (imported by the test modules; a unique module
name, as test folders have no ``__init__.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from memori_core import Memori


class ToolCallingFakeModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` that accepts tools the way real chat models do: ``bind_tools``
    binds their OpenAI-format schemas as the ``tools`` call argument."""

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[Any, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)


class SeenByModels(BaseCallbackHandler):
    """Records every chat model run it is attached to: its tags, the messages it received and
    its invocation parameters (which hold bound tools and the model's ``_type``). Attached to
    a wrapped model (``callbacks=[seen]``) it sees exactly what that model was sent."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized: dict[str, Any],
                            messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.runs.append({"tags": kwargs.get("tags") or [], "messages": messages[0],
                          "params": kwargs.get("invocation_params") or {}})

    def inner(self) -> list[dict[str, Any]]:
        """Runs of wrapped models (not of memori's wrapper)."""
        return [r for r in self.runs if r["params"].get("_type") != "memori-chat-model"]


def roles(mem: Memori, entity_id: str, session_id: str) -> list[tuple[str, Any]]:
    """(role, content) of a session's stored messages."""
    with mem.attribution(entity_id=entity_id):
        return [(m["role"], m["content"]) for m in mem.session_messages(session_id)]
