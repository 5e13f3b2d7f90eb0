"""MemoriMemoryManager: memori behind ``Agent(memory_manager=...)``, driven by real Agno agents
with the offline model, on real SQLite."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.in_memory import InMemoryDb
from agno.memory import MemoryManager, UserMemory
from memori_agno import MemoriMemoryManager

from memori_core import ConfigurationError, Memori, StorageError

MODES = ["run", "stream", "arun", "astream"]  # sync, streamed, async, async streamed


def _agent(mem: Memori, model: Any, agent_id: str = "coach", **manager: Any) -> Agent:
    return Agent(id=agent_id, model=model, db=InMemoryDb(),
                 memory_manager=MemoriMemoryManager(mem, **manager), update_memory_on_run=True)


def _remember(mem: Memori, user: str, process: str | None, text: str) -> int:
    with mem.attribution(entity_id=user, process_id=process):
        return mem.remember(text)


def _contents(mem: Memori, user: str, process: str | None = None, **kw: Any) -> list[str]:
    with mem.attribution(entity_id=user, process_id=process):
        return [m.content for m in mem.memories(**kw)]


def test_is_an_agno_memory_manager(smem: Memori) -> None:
    manager = MemoriMemoryManager(smem)
    assert isinstance(manager, MemoryManager)
    agent = Agent(model=None, memory_manager=manager)
    assert agent.memory_manager is manager


def test_memories_are_listed_in_the_system_prompt(smem: Memori, offline_model: Any,
                                                  run: Any) -> None:
    _remember(smem, "alice", "coach", "The user is allergic to peanuts")
    model = offline_model(script=["Noted."])
    agent = _agent(smem, model)
    assert run(agent, "Suggest a snack", "run", user_id="alice", session_id="s1") == "Noted."
    system = model.requests[0].system
    block = system.split("<memories_from_previous_interactions>")[1]
    assert "- The user is allergic to peanuts" in block.split("</memories_from")[0]
    assert agent.telemetry is False  # AGNO_TELEMETRY=false was honoured


@pytest.mark.parametrize("mode", MODES)
def test_each_run_is_captured_and_recalled_later(smem: Memori, offline_model: Any, run: Any,
                                                 mode: str) -> None:
    model = offline_model(script=["Lisbon is lovely.", "Try the coast trail."])
    agent = _agent(smem, model)
    assert run(agent, "I live in Lisbon and love hiking", mode, user_id="alice",
               session_id="s1") == "Lisbon is lovely."
    assert smem.augmentation.wait(timeout=30)
    with smem.attribution(entity_id="alice", process_id="coach"):
        # captured in memori's own session (Agno passes a MemoryManager no session id)
        messages = smem.session_messages()
        assert [(m["role"], m["content"]) for m in messages] == [
            ("user", "I live in Lisbon and love hiking")]
        assert messages[0]["metadata"]["agno_message_id"]
        episodic = smem.memories(kinds=["episodic"])
    assert [m.process_id for m in episodic] == ["coach"]
    # the next run's prompt lists what augmentation made of the first one
    run(agent, "Where should I walk this weekend?", mode, user_id="alice", session_id="s2")
    assert "Lisbon" in model.requests[-1].system


def test_two_users_and_two_agents_are_isolated(smem: Memori, offline_model: Any,
                                               run: Any) -> None:
    facts = {("alice", "coach"): "Alice runs 5K on Mondays",
             ("alice", "chef"): "Alice cooks vegan curries",
             ("bob", "coach"): "Bob swims on Fridays",
             ("bob", "chef"): "Bob bakes sourdough bread"}
    for (user, agent_id), text in facts.items():
        _remember(smem, user, agent_id, text)
    models = {a: offline_model() for a in ("coach", "chef")}
    agents = {a: _agent(smem, models[a], a, process_id=a) for a in ("coach", "chef")}
    for (user, agent_id), text in facts.items():
        run(agents[agent_id], f"hello from {user}", "run", user_id=user)
        system = models[agent_id].requests[-1].system
        assert text in system
        assert [t for t in facts.values() if t in system] == [text]
    assert smem.augmentation.wait(timeout=30)
    for (user, agent_id) in facts:  # each capture landed on its own user and agent
        with smem.attribution(entity_id=user, process_id=agent_id):
            captured = [m.content for m in smem.memories(kinds=["episodic"])]
        assert captured == [f"hello from {user}"]


def test_without_process_id_reads_span_the_users_agents(smem: Memori, offline_model: Any,
                                                        run: Any) -> None:
    _remember(smem, "alice", "chef", "Alice cooks vegan curries")
    _remember(smem, "bob", "chef", "Bob bakes sourdough bread")
    model = offline_model()
    run(_agent(smem, model, "coach"), "hi", "run", user_id="alice")
    assert "Alice cooks vegan curries" in model.requests[0].system  # Agno's user-level memory
    assert "Bob" not in model.requests[0].system


def test_concurrent_async_runs_of_two_users_do_not_mix(smem: Memori, offline_model: Any) -> None:
    _remember(smem, "alice", "coach", "Alice runs 5K on Mondays")
    _remember(smem, "bob", "coach", "Bob swims on Fridays")
    model = offline_model()
    agent = _agent(smem, model)

    async def both() -> None:
        await asyncio.gather(*(agent.arun(f"hi, {u} here", user_id=u)
                               for u in ("alice", "bob") for _ in range(3)))

    asyncio.run(both())
    for request in model.requests:
        user = "alice" if "alice here" in request.messages[-1][1] else "bob"
        other = "Bob swims" if user == "alice" else "Alice runs"
        assert other not in request.system
    assert smem.augmentation.wait(timeout=30)
    assert set(_contents(smem, "bob", "coach", kinds=["episodic"])) == {"hi, bob here"}


def test_agentic_memory_task_writes_memori(smem: Memori, offline_model: Any, run: Any) -> None:
    old = _remember(smem, "alice", "coach", "The user lives in Lisbon")
    task_model = offline_model(script=[
        {"tool": "add_memory", "args": {"memory": "The user has a dog named Rex"}},
        {"tool": "update_memory", "args": {"memory_id": str(old),
                                           "memory": "The user lives in Porto"}},
        "Memories updated."])
    main = offline_model(script=[
        {"tool": "update_user_memory", "args": {"task": "The user moved to Porto with Rex"}},
        "Got it."])
    agent = Agent(id="coach", model=main, db=InMemoryDb(), enable_agentic_memory=True,
                  memory_manager=MemoriMemoryManager(smem, model=task_model))
    assert run(agent, "I moved to Porto with my dog Rex", "run", user_id="alice") == "Got it."
    assert "update_user_memory" in main.requests[0].tools
    assert main.requests[1].messages[-1] == ("tool", "Memories updated.")
    assert sorted(_contents(smem, "alice", "coach", kinds=["fact"])) == [
        "The user has a dog named Rex", "The user lives in Porto"]


def test_memory_task_tools_follow_the_flags(smem: Memori, offline_model: Any) -> None:
    doomed = _remember(smem, "alice", None, "The user hates jazz")
    kept = _remember(smem, "alice", None, "The user likes tea")
    model = offline_model(script=[{"tool": "delete_memory", "args": {"memory_id": str(doomed)}},
                                  "Done."])
    # deletion is off by default, as in Agno: the model is offered no delete tool
    MemoriMemoryManager(smem, model=model).update_memory_task("forget the jazz thing",
                                                              user_id="alice")
    assert sorted(model.requests[0].tools) == ["add_memory", "update_memory"]
    assert "ID: " + str(doomed) in model.requests[0].system  # existing memories, with ids
    assert len(_contents(smem, "alice")) == 2
    model = offline_model(script=[{"tool": "delete_memory", "args": {"memory_id": str(doomed)}},
                                  "Deleted."])
    manager = MemoriMemoryManager(smem, model=model, delete_memories=True, add_memories=False)
    assert manager.update_memory_task("forget the jazz thing", user_id="alice") == "Deleted."
    assert sorted(model.requests[0].tools) == ["delete_memory", "update_memory"]
    assert [m.memory_id for m in manager.get_user_memories("alice")] == [str(kept)]
    assert manager.memories_updated


def test_memory_task_failure_is_raised_not_reported_as_success(smem: Memori,
                                                               offline_model: Any) -> None:
    model = offline_model(script=[{"tool": "add_memory", "args": {"memory": "bad\x00text"}},
                                  "Memory added successfully"])
    manager = MemoriMemoryManager(smem, model=model)
    with pytest.raises(ConfigurationError, match="NUL"):
        asyncio.run(manager.aupdate_memory_task("remember bad text", user_id="alice"))
    assert _contents(smem, "alice") == []


def test_direct_api_round_trip(smem: Memori) -> None:
    manager = MemoriMemoryManager(smem, process_id="coach")
    memory = UserMemory(memory="The user prefers window seats")
    memory_id = manager.add_user_memory(memory, user_id="alice")
    assert memory.memory_id == memory_id and memory.user_id == "alice"
    manager.add_user_memory(UserMemory(memory="The user runs marathons"), user_id="alice")
    listed = manager.get_user_memories(user_id="alice")
    assert [m.memory for m in listed] == ["The user runs marathons",
                                          "The user prefers window seats"]
    first = listed[1]
    assert (first.topics, first.agent_id, first.user_id) == (["fact"], "coach", "alice")
    assert isinstance(first.created_at, int) and first.updated_at >= first.created_at
    assert manager.get_user_memory(memory_id, user_id="alice") == first
    assert manager.get_user_memory(memory_id, user_id="bob") is None

    hits = manager.search_user_memories(query="window seats", user_id="alice")
    assert hits[0].memory == "The user prefers window seats"
    assert [m.memory for m in manager.search_user_memories(retrieval_method="last_n", limit=1,
                                                           user_id="alice")] == [
        "The user runs marathons"]
    assert [m.memory for m in manager.search_user_memories(retrieval_method="first_n",
                                                           user_id="alice")] == [
        "The user prefers window seats", "The user runs marathons"]

    new_id = manager.replace_user_memory(memory_id, UserMemory(memory="The user prefers aisle "
                                                                      "seats"), user_id="alice")
    assert new_id != memory_id
    assert manager.get_user_memory(memory_id, user_id="alice") is None
    assert manager.read_from_db(user_id="alice")["alice"][0].memory == "The user prefers aisle seats"
    manager.delete_user_memory(new_id, user_id="bob")  # another user's id: ignored
    assert len(manager.get_user_memories(user_id="alice")) == 2
    manager.delete_user_memory(new_id, user_id="alice")
    assert len(manager.get_user_memories(user_id="alice")) == 1
    manager.clear_user_memories(user_id="alice")
    assert manager.get_user_memories(user_id="alice") == []


def test_async_methods_and_the_default_user(smem: Memori) -> None:
    manager = MemoriMemoryManager(smem, kinds=["episodic"], limit=1)

    async def scenario() -> tuple[list[UserMemory], list[UserMemory]]:
        for text in ("I collect vinyl records", "I play the cello"):
            await manager.acreate_user_memories(message=text)
            assert await asyncio.to_thread(smem.augmentation.wait, 30)
        newest = await manager.aget_user_memories()
        everything = await manager.aread_from_db(user_id="default")
        await manager.aclear_user_memories()
        return newest, everything["default"]

    newest, everything = asyncio.run(scenario())
    assert [m.memory for m in newest] == ["I play the cello"]  # kinds + limit, newest first
    assert {"I collect vinyl records", "I play the cello"} <= {m.memory for m in everything}
    assert manager.get_user_memories() == []


def test_create_user_memories_takes_agno_messages(smem: Memori) -> None:
    from agno.models.message import Message

    manager = MemoriMemoryManager(smem)
    manager.create_user_memories(messages=[
        Message(role="user", content=[{"type": "text", "text": "My cat is called Miso"}]),
        Message(role="assistant", content="", tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
        Message(role="tool", content="done", tool_call_id="c1"),
        Message(role="developer", content="be brief"),
        Message(role="assistant", content="   ")], agent_id="coach", user_id="alice")
    with smem.attribution(entity_id="alice", process_id="coach"):
        stored = smem.session_messages()
    assert [(m["role"], m.get("tool_call_id")) for m in stored] == [
        ("user", None), ("assistant", None), ("tool", "c1"), ("system", None)]
    assert stored[0]["content"] == [{"type": "text", "text": "My cat is called Miso"}]
    assert stored[1]["tool_calls"][0]["id"] == "c1"


def test_optimize_replaces_memories_with_the_models_summary(smem: Memori,
                                                             offline_model: Any) -> None:
    from agno.memory import SummarizeStrategy

    class OfflineSummarize(SummarizeStrategy):
        # Agno's summary as is; only its token count (logged), which downloads a tiktoken
        # encoding on first use, is replaced
        def count_tokens(self, memories: list[UserMemory]) -> int:
            return sum(len((m.memory or "").split()) for m in memories)

    _remember(smem, "alice", None, "The user likes tea")
    _remember(smem, "alice", None, "The user likes green tea in the morning")
    model = offline_model(script=["The user drinks green tea every morning"])
    manager = MemoriMemoryManager(smem, model=model)
    result = manager.optimize_memories(user_id="alice", strategy=OfflineSummarize())
    assert "Memory 2: The user likes tea" in model.requests[0].messages[-1][1]
    assert [m.memory for m in result] == ["The user drinks green tea every morning"]
    assert [m.memory for m in manager.get_user_memories("alice")] == [
        "The user drinks green tea every morning"]
    assert asyncio.run(manager.aoptimize_memories(user_id="nobody")) == []


def test_a_memory_failure_fails_the_run(sqlite_url: str, offline_model: Any) -> None:
    from memori_core.testing import HashEmbedder

    mem = Memori(conn=sqlite_url, embedder=HashEmbedder())
    mem.config.storage.build()
    mem.close()
    manager = MemoriMemoryManager(mem)
    with pytest.raises(StorageError, match="closed"):
        manager.get_user_memories("alice")
    agent = _agent(mem, offline_model())
    output = agent.run("hello", user_id="alice")
    # Agno turns an exception in a run into an error status carrying the message
    assert output.status == "ERROR" and "closed" in str(output.content)


def test_a_failed_capture_is_logged_with_its_cause(smem: Memori, offline_model: Any, run: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        # a NUL byte cannot be stored in SQL text: memori refuses the capture
        assert run(_agent(smem, offline_model(script=["Fine."])), "hi\x00there", "run",
                   user_id="alice") == "Fine."
    agno_warning = [r.getMessage() for r in caplog.records if r.name == "agno"]
    assert any("Error in memory creation" in m and "NUL" in m for m in agno_warning)
    ours = [r for r in caplog.records if r.name == "memori_agno"]
    assert [r.getMessage() for r in ours] == ["memori capture failed"]
    assert isinstance(ours[0].exc_info[1], ConfigurationError)  # type: ignore[index]
    assert _contents(smem, "alice") == []


@pytest.mark.parametrize(("call", "argument"), [
    (lambda m: MemoriMemoryManager(object()), "memori"),  # type: ignore[arg-type]
    (lambda m: MemoriMemoryManager(m, limit=0), "limit"),
    (lambda m: MemoriMemoryManager(m, kinds="fact"), "kinds"),
    (lambda m: MemoriMemoryManager(m, process_id=""), "process_id"),
    (lambda m: MemoriMemoryManager(m, process_id="p" * 256), "process_id"),
    (lambda m: MemoriMemoryManager(m, kinds=["nope"]).get_user_memories("alice"), "kinds"),
    (lambda m: MemoriMemoryManager(m).get_user_memories(""), "user_id"),
    (lambda m: MemoriMemoryManager(m).delete_user_memory("abc", "alice"), "memory_id"),
    (lambda m: MemoriMemoryManager(m).search_user_memories(retrieval_method="agentic"), "query"),
    (lambda m: MemoriMemoryManager(m).search_user_memories(retrieval_method="best"),
     "retrieval_method"),
    (lambda m: MemoriMemoryManager(m).search_user_memories(limit=-1), "limit"),
    (lambda m: MemoriMemoryManager(m).create_user_memories(), "messages"),
    (lambda m: MemoriMemoryManager(m).create_user_memories(messages=["hi"]), "messages"),
    (lambda m: MemoriMemoryManager(m).add_user_memory("hi"), "memory"),
    (lambda m: MemoriMemoryManager(m).add_user_memory(UserMemory(memory=" ")), "memory"),
    (lambda m: MemoriMemoryManager(m).update_memory_task(""), "task"),
    (lambda m: MemoriMemoryManager(m).read_from_db(None), "user_id"),
])
def test_bad_input_names_the_argument(smem: Memori, call: Any, argument: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        call(smem)
    assert info.value.argument == argument


def test_clearing_every_user_is_refused(smem: Memori) -> None:
    with pytest.raises(NotImplementedError, match="clear_user_memories"):
        MemoriMemoryManager(smem).clear()
