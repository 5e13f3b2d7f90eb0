"""What memori-langchain relies on in LangChain beyond documented API, pinned to the tested
range: these fail when the framework changes under the plugin."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import tomllib
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from memori_langchain import MemoriChatMessageHistory, with_memori
from memori_langchain._chat_model import HISTORY_KEY

from memori_core import Memori

PYPROJECT = Path(__file__).resolve().parents[3] / "integrations" / "langchain" / "pyproject.toml"


def test_the_installed_langchain_core_is_in_the_tested_range() -> None:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert "langchain-core>=1.7,<2" in deps
    major, minor = (int(p) for p in version("langchain-core").split(".")[:2])
    assert (1, 7) <= (major, minor) < (2, 0)


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated"
                            ":langchain_core._api.LangChainDeprecationWarning")
def test_runnable_with_message_history_hands_its_history_to_the_run(smem: Memori) -> None:
    """Undocumented: with_memori finds a MemoriChatMessageHistory of the chain under this
    ``configurable`` key, to capture the turn once."""
    seen: list[Any] = []

    def step(_: Any, config: Any) -> str:
        seen.append(config["configurable"].get(HISTORY_KEY))
        return "ok"

    runnable = RunnableWithMessageHistory(
        RunnableLambda(step),
        lambda session_id: MemoriChatMessageHistory(session_id, memori=smem, entity_id="ana"))
    runnable.invoke("hi", {"configurable": {"session_id": "s"}})
    assert isinstance(seen[0], MemoriChatMessageHistory) and seen[0].session_id == "s"


class Tracer(BaseTracer):
    def __init__(self) -> None:
        super().__init__()
        self.parents: dict[UUID, UUID | None] = {}

    def _persist_run(self, run: Run) -> None:
        pass

    def _start_trace(self, run: Run) -> None:
        super()._start_trace(run)
        self.parents[run.id] = run.parent_run_id


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(str(token))


def test_tracers_see_the_model_under_the_wrapper_and_tokens_come_once(smem: Memori) -> None:
    """The wrapped model's run gets only the tracers of the wrapper's run (nested under it;
    ``stream`` hands ``_stream`` no run manager, so there it runs untraced), so a streaming
    handler (LangGraph's "messages" mode) sees each token once, from the wrapper, without
    LangGraph's "nostream" tag."""
    tracer, tokens = Tracer(), Tokens()
    llm = with_memori(GenericFakeChatModel(messages=iter(["Sunny in Lisbon", "Rain"])), smem,
                      entity_id="ana")
    chunks = [c.content for c in llm.stream("weather?", {"callbacks": [tokens]})]
    assert "".join(tokens.tokens) == "".join(str(c) for c in chunks) == "Sunny in Lisbon"
    llm.invoke("weather?", {"callbacks": [tracer, tokens]})
    (root,) = [run for run, parent in tracer.parents.items() if parent is None]
    assert list(tracer.parents.values()) == [None, root]


def test_base_chat_models_input_conversion_is_what_with_memori_uses() -> None:
    """Private: with_memori reads a call's messages with ``BaseChatModel._convert_input``, so
    that it accepts exactly what a bare chat model accepts."""
    model = GenericFakeChatModel(messages=iter(["x"]))
    assert [m.text for m in model._convert_input("hi").to_messages()] == ["hi"]
    with pytest.raises(ValueError, match="Invalid input type"):
        model._convert_input(42)  # type: ignore[arg-type]
