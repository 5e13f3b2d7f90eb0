"""MemoriConversationStore: Pydantic AI conversations persisted in memori's conversation tables."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from memori_pydantic_ai import MemoriCapability, MemoriConversationStore
from pydantic_ai import Agent
from pydantic_ai.conversation import Conversation
from pydantic_ai.conversation_store import ConversationConflict
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelResponse, TextPart, ThinkingPart, UserPromptPart
from pydantic_ai.models.test import TestModel

from memori_core import ConfigurationError, Memori

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def agent() -> Agent[None, str]:
    a = Agent(TestModel())

    @a.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return a


async def turn(store: MemoriConversationStore, agent: Agent[Any, str], cid: str, prompt: str,
               **save: Any) -> Conversation:
    conversation = await store.load(cid) or Conversation(conversation_id=cid)
    result = await agent.run(prompt, conversation=conversation)
    await store.save(result, **save)
    return result.conversation


def test_save_load_continue_round_trip(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    first = run(turn(store, agent, "c1", "Weather in Paris?"))
    loaded = run(store.load("c1"))
    assert loaded is not None
    assert loaded.messages == first.messages and len(loaded.messages) == 4
    assert loaded.usage == first.usage
    second = run(turn(store, agent, "c1", "And tomorrow?"))
    again = run(store.load("c1"))
    assert again is not None and again.messages == second.messages
    assert len(second.messages) > len(first.messages) and second.messages[:4] == first.messages
    assert run(store.load("c1", limit=2)).messages == second.messages[-2:]  # type: ignore[union-attr]


def test_messages_are_ordinary_memori_messages(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    run(turn(store, agent, "c1", "Weather in Paris?"))
    with smem.attribution(entity_id="u1"):
        rows = smem.session_messages("c1")
        # the conversation holds its chat messages only: the store's log is elsewhere
        assert [r["role"] for r in rows] == ["user", "assistant", "tool", "assistant"]
        assert rows[0]["content"] == "Weather in Paris?"
        assert rows[1]["tool_calls"][0]["function"]["name"] == "weather"
        assert rows[2]["content"] == "sunny in a"
        log = smem.session_messages("pydantic_ai.conversations")
        assert [r["role"] for r in log] == ["system"] and log[0]["content"] == ""
        assert log[0]["metadata"]["pydantic_ai_record"]["conversation_id"] == "c1"
        # augmentation turns the user's words into memories, like any captured turn
        assert smem.augmentation.wait(timeout=30)
        assert "Weather in Paris?" in [h.content for h in smem.recall("Weather in Paris")]


def test_entities_never_see_each_other(smem: Memori, agent: Agent[None, str]) -> None:
    alice = MemoriConversationStore(smem, entity_id="alice")
    bob = MemoriConversationStore(smem, entity_id="bob")
    first = run(turn(alice, agent, "c1", "hello"))
    assert run(bob.load("c1")) is None
    assert run(bob.list_conversations()) == []
    run(turn(bob, agent, "c1", "hi"))  # the same id, another entity: another conversation
    assert run(alice.load("c1")).messages == first.messages  # type: ignore[union-attr]


def test_store_follows_the_callers_attribution(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem)
    with pytest.raises(ConfigurationError, match="entity_id") as err:
        run(store.load("c1"))
    assert err.value.argument == "entity_id"

    async def as_user(user: str, prompt: str) -> Conversation | None:
        smem.attribution(entity_id=user)
        await turn(store, agent, "chat", prompt)
        return await store.load("chat")

    async def main() -> list[Conversation | None]:
        return list(await asyncio.gather(as_user("ann", "ann here"), as_user("ben", "ben here")))

    ann, ben = run(main())
    assert ann is not None and ben is not None
    assert ann.messages[0].parts[0].content == "ann here"  # type: ignore[union-attr]
    assert ben.messages[0].parts[0].content == "ben here"  # type: ignore[union-attr]


def test_stale_save_conflicts(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    run(turn(store, agent, "c1", "one"))
    a, b = run(store.load("c1")), run(store.load("c1"))
    assert a is not None and b is not None
    two = run(agent.run("two", conversation=a))
    run(store.save(two))
    with pytest.raises(ConversationConflict):
        run(store.save(run(agent.run("three", conversation=b))))
    with pytest.raises(ConversationConflict):  # a new conversation under a stored id
        run(store.save(Conversation(conversation_id="c1")))
    assert run(store.load("c1")).messages == two.all_messages()  # type: ignore[union-attr]


def test_concurrent_saves_one_wins(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    run(turn(store, agent, "c1", "one"))

    async def main() -> list[Any]:
        base = [await store.load("c1") for _ in range(4)]
        results = [await agent.run(f"turn {i}", conversation=c) for i, c in enumerate(base)]
        return list(await asyncio.gather(*(store.save(r) for r in results),
                                         return_exceptions=True))

    outcomes = run(main())
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, ConversationConflict) for o in outcomes if isinstance(o, BaseException))
    stored = run(store.load("c1"))
    assert stored is not None
    turns = [p.content for m in stored.messages for p in m.parts if isinstance(p, UserPromptPart)]
    assert turns[0] == "one" and len(turns) == 2 and str(turns[1]).startswith("turn ")


def test_fork_branch_list_scope_and_delete(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    run(turn(store, agent, "c1", "Weather in Lisbon?", scope="team-a"))
    run(turn(store, agent, "c1", "And Porto?"))
    fork = run(store.fork("c1", at=4, new_conversation_id="f1"))
    assert len(fork.messages) == 4
    run(store.save(run(agent.run("Fork turn", conversation=fork))))
    assert len(run(store.load("f1")).messages) == 6  # type: ignore[union-attr]

    current = run(store.load("c1"))
    assert current is not None
    branch = run(store.branch("c1", at=4, expected_revision=current.revision))
    run(store.save(run(agent.run("Branch turn", conversation=branch))))
    record = run(store.read_record("c1"))
    assert record is not None and len(record.branches) == 1
    assert run(store.load("c1")).messages[-2].parts[0].content == "Branch turn"  # type: ignore[union-attr]
    old = run(store.branch("c1", from_entry=record.branches[0], expected_revision=record.revision))
    assert old.messages[4].parts[0].content == "And Porto?"  # type: ignore[union-attr]

    assert {r.conversation_id for r in run(store.list_conversations(scope="team-a"))} == {
        "c1", "f1"}
    assert run(store.list_conversations(scope="team-b")) == []
    assert run(store.load("c1", scope="team-b")) is None
    assert [r.conversation_id for r in run(store.list_conversations(limit=1))] == ["c1"]

    fresh = MemoriConversationStore(smem, entity_id="u1")  # another process: nothing cached
    assert run(fresh.load("f1")) == run(store.load("f1"))

    run(store.delete("c1"))
    assert run(store.load("c1")) is None
    assert [r.conversation_id for r in run(store.list_conversations())] == ["f1"]
    assert len(run(store.load("f1")).messages) == 6  # type: ignore[union-attr]  # still reads c1's
    with smem.attribution(entity_id="u1"):
        assert smem.session_messages("c1") != []  # kept: the fork reads them
        run(store.delete("f1"))
        assert smem.session_messages("c1") == [] and smem.session_messages("f1") == []
    assert run(store.list_conversations()) == []
    run(turn(store, agent, "c1", "A new start"))  # the id can be used again
    assert len(run(store.load("c1")).messages) == 4  # type: ignore[union-attr]


def test_entry_with_nothing_to_show_is_kept(smem: Memori) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    conversation = Conversation(conversation_id="c1", messages=[
        ModelResponse(parts=[ThinkingPart("hmm")]), ModelResponse(parts=[TextPart("hi")])])
    entries = run(store.save(conversation))
    assert len(entries) == 2
    assert run(store.load("c1")).messages == conversation.messages  # type: ignore[union-attr]
    assert run(store.read_entry(entries[0].id)).message == conversation.messages[0]
    with pytest.raises(KeyError):
        run(store.read_entry("no-such-entry"))


def test_with_capability_capture_off_runs_are_stored_once(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    store = MemoriConversationStore(smem)
    agent = Agent(TestModel(call_tools=[]), capabilities=[MemoriCapability(smem, capture=False)])
    run(turn(store, agent, "c1", "hello"))
    run(turn(store, agent, "c1", "again"))
    assert [r["content"] for r in smem.session_messages("c1")] == [
        "hello", "success (no tool calls)", "again", "success (no tool calls)"]
    assert smem.session_messages() == []  # nothing captured twice elsewhere


def test_a_run_the_capability_captured_is_refused_naming_the_fix(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    store = MemoriConversationStore(smem)
    agent = Agent(TestModel(call_tools=[]), capabilities=[MemoriCapability(smem)])
    with pytest.raises(ConfigurationError, match=r"MemoriCapability\(mem, capture=False\)") as err:
        run(turn(store, agent, "c1", "hello"))
    assert err.value.argument == "capture"
    assert run(store.load("c1")) is None and smem.session_messages("c1") == []
    # the capability's capture is the only one
    assert [r["content"] for r in smem.session_messages()] == [
        "hello", "success (no tool calls)"]


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"memori": "sqlite://"}, "memori"),
    ({"entity_id": ""}, "entity_id"),
    ({"process_id": "p"}, "entity_id"),
    ({"entity_id": "u", "index_session": ""}, "index_session"),
])
def test_bad_arguments_name_the_argument(smem: Memori, kwargs: dict[str, Any],
                                         argument: str) -> None:
    memori = kwargs.pop("memori", smem)
    with pytest.raises(ConfigurationError) as err:
        MemoriConversationStore(memori, **kwargs)
    assert err.value.argument == argument


def test_bad_conversation_ids(smem: Memori) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    for bad in ("x" * 256, "pydantic_ai.conversations"):
        with pytest.raises(ConfigurationError) as err:
            run(store.load(bad))
        assert err.value.argument == "conversation_id"
    with pytest.raises(UserError):  # the framework's own checks still apply
        run(store.load("c1", limit=-1))


def test_every_backend_round_trips(mem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(mem, entity_id="u1")
    first = run(turn(store, agent, "c1", "Weather in Zürich? ünïcödé ✓"))
    second = run(turn(store, agent, "c1", "and tomorrow"))
    assert run(store.load("c1")).messages == second.messages  # type: ignore[union-attr]
    assert second.messages[:4] == first.messages
    run(store.delete("c1"))
    assert run(store.load("c1")) is None


def test_a_record_row_that_lost_a_race_is_ignored(smem: Memori, agent: Agent[None, str]) -> None:
    store = MemoriConversationStore(smem, entity_id="u1")
    saved = run(turn(store, agent, "c1", "hello"))
    record = run(store.read_record("c1"))
    assert record is not None
    # what another process's save written against an older revision leaves behind
    smem.attribution(entity_id="u1")
    smem.set_session("pydantic_ai.conversations")
    smem.capture([{"role": "system", "content": "", "metadata": {"pydantic_ai_record": {
        "conversation_id": "c1", "expected_revision": "an-older-revision",
        "record": {"conversation_id": "c1", "head_id": None, "revision": "the-loser"}}}}])
    assert run(store.read_record("c1")) == record
    assert run(store.load("c1")).messages == saved.messages  # type: ignore[union-attr]
