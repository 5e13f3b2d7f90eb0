"""MemoriStore, LangGraph's long-term memory store over memori: the same answers as LangGraph's
own ``InMemoryStore`` for random operation sequences (get, put, delete, search with filters,
list_namespaces, mixed batches), recall-ranked semantic search, namespace -> entity isolation,
async, ``create_agent(..., store=...)`` with ``runtime.store`` in tools, and langmem's memory
tools, each driven by LangChain's fake chat model."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain.tools import ToolRuntime
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from lc_helpers import SeenByModels, ToolCallingFakeModel
from memori_langchain import MemoriStore

from memori_core import ConfigurationError, Memori

# ---- differential: MemoriStore against InMemoryStore ------------------------------------------
NAMESPACES = [("memories", "alice"), ("memories", "bob"), ("memories", "alice", "prefs"),
              ("notes", "alice"), ("docs",)]
PREFIXES = [(), ("memories",), ("memories", "alice"), ("memories", "alice", "prefs"),
            ("notes",), ("docs",), ("nothing",)]
FILTERS = [None, {"tag": "x"}, {"n": {"$gte": 2}}, {"n": {"$lt": 3, "$ne": 1}}, {"f": {"$lt": 0}},
           {"meta": {"lang": "en"}}, {"tag": {"$ne": "x"}}, {"n": 4, "tag": "y"},
           {"list": [1, "a"]}]
TEXTS = ["the user likes green tea", "the user rides a red bicycle", "meeting on friday",
         "Ünïcode ✓ text", "nul \x00 and lone \ud800 surrogate", ""]

ABSENT = object()


def field(*choices: Any) -> st.SearchStrategy[Any]:
    """A value's optional field: absent or one of ``choices``, about equally likely (so that
    the filters above match often)."""
    return st.sampled_from([ABSENT, *choices])


values = st.builds(
    lambda **fields: {k: v for k, v in fields.items() if v is not ABSENT},
    text=st.sampled_from(TEXTS), n=st.sampled_from(range(6)), tag=field("x", "y"),
    meta=field({"lang": "en"}, {"lang": "pt"}), list=field([1, "a"], [1], []),
    f=st.just(ABSENT) | st.floats(allow_nan=False), none=field(None), b=field(True, False))
namespaces = st.sampled_from(NAMESPACES)
keys = st.sampled_from(["a", "b"])
conditions = st.lists(st.builds(MatchCondition, st.sampled_from(["prefix", "suffix"]),
                                st.sampled_from([("*", "alice"), ("memories",), ("alice",),
                                                 ("memories", "*", "prefs")])),
                      min_size=1, max_size=2).map(tuple) | st.just(())
# every field given: st.builds would fill the others (query, index, ttl) with random values
reads = st.one_of(
    st.builds(GetOp, namespaces, keys, st.just(False)),
    # every match: the order of the results is compared at the end
    st.builds(SearchOp, st.sampled_from(PREFIXES), st.sampled_from(FILTERS), st.just(100),
              st.just(0), st.none(), st.just(False)),
    st.builds(ListNamespacesOp, conditions, st.sampled_from([None, 1, 2]),
              st.integers(1, 3), st.integers(0, 2)),
)
puts = st.builds(PutOp, namespaces, keys, values, st.none(), st.none())
deletes = st.builds(PutOp, namespaces, keys, st.none(), st.none(), st.none())
writes = st.one_of(puts, puts, deletes)
# InMemoryStore's get makes an empty namespace that a later list in the same batch shows
batches = st.lists(st.one_of(writes, reads), min_size=2, max_size=4).filter(
    lambda ops: not (any(isinstance(op, GetOp) for op in ops)
                     and any(isinstance(op, ListNamespacesOp) for op in ops)))
# writes first and twice as likely, so that reads find items; some steps are mixed batches
operations = st.lists(st.one_of(writes, reads, writes, batches), min_size=8, max_size=20)


def comparable(result: Any) -> Any:
    """What both stores must agree on: items as (namespace, key, value); search results as a
    sorted list (InMemoryStore returns them in dict insertion order, MemoriStore newest
    first); namespaces in their (sorted) order."""
    if result is None:
        return None
    if isinstance(result, list):
        if result and not isinstance(result[0], tuple):
            return sorted((comparable(r) for r in result), key=repr)
        return result
    return (result.namespace, result.key, result.value)


def outcome(store: Any, ops: list[Any]) -> Any:
    return [comparable(r) for r in store.batch(ops)]


def prune(reference: InMemoryStore) -> None:
    """InMemoryStore lists a namespace once any op touched it, even with no item in it (a get
    creates it); MemoriStore, like LangGraph's PostgresStore, lists namespaces holding items."""
    for namespace in [ns for ns, items in reference._data.items() if not items]:
        del reference._data[namespace]


_runs = itertools.count()


# bounded time: a fixed set of examples (derandomize), each at most 20 steps of at most 4 ops,
# and no shrink phase (shrinking a failure once took 318 s): a failing example is reported as
# generated, with the failing batch in the assertion message
@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(operations)
def test_random_operation_sequences_answer_like_langgraphs_in_memory_store(
        smem: Memori, ops: list[Any]) -> None:
    # a fresh store per example: items live under the store's process, so a new process id
    # is an empty store on the same database. SQLite only, for time: the semantic search test
    # below runs put, get and search on every backend
    store = MemoriStore(smem, process_id=f"differential-{next(_runs)}")
    reference = InMemoryStore()
    for step in ops:
        batch = step if isinstance(step, list) else [step]
        prune(reference)
        try:
            expected = outcome(reference, batch)
        except (TypeError, ValueError):  # "$lt" on a field an item lacks: MemoriStore's
            store.batch(batch)           # item does not match (tested below)
            reference.batch([op for op in batch if isinstance(op, PutOp)])
            continue
        assert outcome(store, batch) == expected, batch
    # the end state: every item, each filter over every item and each namespace listing; pages
    # of a search are slices of the full search
    prune(reference)
    for end in [*(SearchOp((), f, 100) for f in FILTERS), ListNamespacesOp(limit=100),
                *(ListNamespacesOp(max_depth=depth, limit=100) for depth in (1, 2))]:
        try:
            expected = outcome(reference, [end])
        except (TypeError, ValueError):  # "$lt" on a field an item lacks (as above)
            continue
        assert outcome(store, [end]) == expected, end
    everything = store.search((), limit=100)
    assert store.search((), limit=2, offset=1) == everything[1:3]
    assert [(i.updated_at, i.key) for i in everything] == \
        sorted(((i.updated_at, i.key) for i in everything), key=lambda p: p[0], reverse=True)


def test_get_returns_exactly_what_was_put_and_an_update_keeps_created_at(smem: Memori) -> None:
    store = MemoriStore(smem)
    value = {"text": "nul \x00, lone \ud800, emoji \U0001f600", "n": 1.5e-300, "neg": -0.0,
             "deep": {"a": [1, {"b": None}], "t": True}, "big": 2**70}
    store.put(("memories", "alice"), "k", value)
    first = store.get(("memories", "alice"), "k")
    assert first is not None and first.value == value
    assert json.dumps(first.value) == json.dumps(value)  # types too: -0.0, 2**70
    store.put(("memories", "alice"), "k", {"text": "changed"})
    second = store.get(("memories", "alice"), "k")
    assert second is not None and second.value == {"text": "changed"}
    assert second.created_at == first.created_at < second.updated_at
    # one row per item: the older value is gone, not kept as history
    with smem.attribution(entity_id="alice", process_id="langgraph"):
        texts = [m.content for m in smem.memories(include_superseded=True)]
    assert len(texts) == 1 and texts[0].startswith("{\"text\": \"changed\"}\n")


def test_a_range_filter_on_a_missing_or_non_numeric_field_does_not_match(smem: Memori) -> None:
    store, reference = MemoriStore(smem), InMemoryStore()
    for s in (store, reference):
        s.put(("memories", "alice"), "a", {"n": 1})
        s.put(("memories", "alice"), "b", {"text": "no n"})
        s.put(("memories", "alice"), "c", {"n": "many"})
    assert [i.key for i in store.search(("memories",), filter={"n": {"$lt": 5}})] == ["a"]
    with pytest.raises(TypeError):  # where LangGraph's InMemoryStore raises
        reference.search(("memories",), filter={"n": {"$lt": 5}})
    with pytest.raises(ValueError, match="Unsupported operator"):
        store.search(("memories",), filter={"n": {"$regex": "a"}})


def test_bad_values_and_namespaces_are_refused(smem: Memori) -> None:
    store = MemoriStore(smem)
    with pytest.raises(ConfigurationError) as err:
        store.put(("memories", "alice"), "k", {"when": object()})
    assert err.value.argument == "value"
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(("memories", "a.b"), "k")])
    with pytest.raises(ConfigurationError) as err:
        store.put(("memories", "x" * 300), "k", {"a": 1})
    assert err.value.argument == "namespace"
    with pytest.raises(ConfigurationError):
        MemoriStore(cast(Any, "not memori"))
    with pytest.raises(NotImplementedError):
        store.put(("memories", "alice"), "k", {"a": 1}, ttl=5)


# ---- the mapping: namespace -> entity ---------------------------------------------------------
def test_namespaces_map_to_entities_and_no_user_reads_another_users_items(smem: Memori
                                                                         ) -> None:
    store = MemoriStore(smem)
    store.put(("memories", "alice"), "tea", {"text": "alice drinks green tea"})
    store.put(("memories", "bob"), "tea", {"text": "bob drinks green tea every morning"})
    store.put(("docs",), "faq", {"text": "green tea is served at noon"})
    found = store.search(("memories", "alice"), query="green tea every morning")
    assert [(i.namespace, i.key) for i in found] == [(("memories", "alice"), "tea")]
    item = store.get(("memories", "alice"), "tea")
    assert item is not None and item.value == {"text": "alice drinks green tea"}
    assert store.get(("memories", "carol"), "tea") is None
    # in memori: alice's item is a memory of the entity alice only; ("docs",) is app-wide
    for entity, held in [("alice", "alice drinks"), ("bob", "bob drinks"),
                         ("langgraph", "served at noon")]:
        with smem.attribution(entity_id=entity):
            contents = " ".join(m.content for m in smem.memories(scope="entity"))
        assert held in contents
        assert all(t not in contents for t in ["alice drinks", "bob drinks", "served at noon"]
                   if t != held)
    # (user_id, "memories") namespaces: the entity is at position 0
    by_user_first = MemoriStore(smem, entity_at=0, process_id="agent")
    by_user_first.put(("carol", "memories"), "k", {"text": "carol's"})
    with smem.attribution(entity_id="carol", process_id="agent"):
        assert [m.process_id for m in smem.memories()] == ["agent"]


# ---- semantic search --------------------------------------------------------------------------
def test_search_with_a_query_puts_the_semantically_best_first(mem: Memori) -> None:
    store = MemoriStore(mem)
    ns = ("memories", "alice")
    with mem.attribution(entity_id="alice"):  # alice's own memories, outside the store
        for n in range(8):
            mem.remember(f"green tea in the morning, cup {n}")
    store.put(ns, "1", {"text": "The user rides a red bicycle to work"})
    store.put(ns, "2", {"text": "The user drinks green tea every morning"})
    store.put(ns, "3", {"text": "Meeting with the dentist on friday"})
    store.put(ns, "4", {"text": "tea ceremony notes"}, index=False)
    store.put(ns, "5", {"title": "green tea", "body": "unrelated words here"}, index=["body"])
    found = store.search(ns, query="what tea does the user drink in the morning?")
    assert [i.key for i in found][:1] == ["2"]
    scores = [i.score for i in found if i.score is not None]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # an unindexed item is never ranked; an item is ranked by its indexed fields only
    assert {i.key: i.score for i in found}["4"] is None
    assert [i.key for i in store.search(ns, query="green tea")][0] == "2"
    # filter and pagination apply to the ranked list
    assert [i.key for i in store.search(ns, query="bicycle", limit=1)] == ["1"]
    assert [i.key for i in store.search(ns, query="red bicycle", filter={"text": {
        "$ne": "The user rides a red bicycle to work"}})][0] != "1"
    # a store under another process does not see these items
    assert MemoriStore(mem, process_id="other").search(ns, query="tea") == []


# ---- async --------------------------------------------------------------------------------
def test_abatch_serves_concurrent_users(smem: Memori) -> None:
    store = MemoriStore(smem)

    async def user(name: str) -> list[Any]:
        ns = ("memories", name)
        await store.aput(ns, "pet", {"text": f"{name} has a cat"})
        await store.aput(ns, "city", {"text": f"{name} lives in Porto"})
        await store.adelete(ns, "city")
        return [await store.aget(ns, "pet"), await store.aget(ns, "city"),
                await store.asearch(ns, query="cat"),
                await store.abatch([GetOp(ns, "pet"), PutOp(ns, "pet", None),
                                    GetOp(ns, "pet")])]

    async def both() -> list[list[Any]]:
        return list(await asyncio.gather(user("alice"), user("bob")))

    for name, (pet, city, found, batch) in zip(["alice", "bob"], asyncio.run(both()),
                                               strict=True):
        assert pet.value == {"text": f"{name} has a cat"} and city is None
        assert [(i.namespace, i.key) for i in found] == [(("memories", name), "pet")]
        assert batch[0].value == pet.value and batch[1] is None
        assert batch[2].value == pet.value  # reads in a batch see the store before its puts
    assert store.get(("memories", "alice"), "pet") is None
    assert asyncio.run(store.alist_namespaces()) == []


# ---- create_agent: runtime.store in tools -----------------------------------------------------
@dataclass
class UserContext:
    user_id: str


@tool
def save_memory(text: str, runtime: ToolRuntime[UserContext]) -> str:
    """Save a memory about the user."""
    assert runtime.store is not None
    runtime.store.put(("memories", runtime.context.user_id), "m1", {"content": text})
    return "saved"


@tool
def recall_memories(query: str, runtime: ToolRuntime[UserContext]) -> str:
    """Search the user's memories."""
    assert runtime.store is not None
    found = runtime.store.search(("memories", runtime.context.user_id), query=query)
    return json.dumps([i.value["content"] for i in found])


def calls(*steps: tuple[str, dict[str, Any]] | str) -> ToolCallingFakeModel:
    """A fake chat model answering with these tool calls or texts, in turn."""
    return ToolCallingFakeModel(messages=iter([
        AIMessage(s) if isinstance(s, str) else
        AIMessage("", tool_calls=[{"name": s[0], "args": s[1], "id": f"call_{n}"}])
        for n, s in enumerate(steps)]))


def test_create_agent_tools_write_and_read_through_runtime_store(
        smem: Memori, seen: SeenByModels) -> None:
    writer = create_agent(calls(("save_memory", {"text": "Alice is vegetarian"}), "Noted."),
                          tools=[save_memory], store=MemoriStore(smem),
                          context_schema=UserContext)
    writer.invoke({"messages": [{"role": "user", "content": "I am vegetarian"}]},
                  context=UserContext("alice"))
    # a later run, with a new store on the same database: the tool reads what was written
    reader = create_agent(calls(("recall_memories", {"query": "diet vegetarian"}),
                                "You are vegetarian."),
                          tools=[recall_memories], store=MemoriStore(smem),
                          context_schema=UserContext)
    out = reader.invoke({"messages": [{"role": "user", "content": "What do I eat?"}]},
                        context=UserContext("alice"), config={"callbacks": [seen]})
    assert out["messages"][-1].content == "You are vegetarian."
    received = seen.runs[-1]["messages"]  # what the model got after the tool ran
    assert [type(m).__name__ for m in received] == ["HumanMessage", "AIMessage",
                                                    "ToolMessage"]
    assert received[-1].content == '["Alice is vegetarian"]'
    # bob's run sees nothing of alice's
    other = create_agent(calls(("recall_memories", {"query": "vegetarian"}), "Nothing."),
                         tools=[recall_memories], store=MemoriStore(smem),
                         context_schema=UserContext)
    out = other.invoke({"messages": [{"role": "user", "content": "What do I eat?"}]},
                       context=UserContext("bob"))
    assert [m.content for m in out["messages"] if isinstance(m, ToolMessage)] == ["[]"]


# ---- langmem ------------------------------------------------------------------------------
@pytest.mark.filterwarnings(  # trustcall (langmem's dependency) imports a moved name
    "ignore:Importing Send from langgraph.constants is deprecated:DeprecationWarning")
def test_langmem_memory_tools_manage_and_search_memori_store(smem: Memori,
                                                             seen: SeenByModels) -> None:
    from langmem import create_manage_memory_tool, create_search_memory_tool

    namespace = ("memories", "{langgraph_user_id}")
    tools = [create_manage_memory_tool(namespace=namespace),
             create_search_memory_tool(namespace=namespace)]
    store = MemoriStore(smem)
    agent = create_agent(calls(("manage_memory", {"content": "User prefers dark mode"}),
                               ("search_memory", {"query": "dark mode preference"}),
                               "You prefer dark mode."),
                         tools=tools, store=store)
    out = agent.invoke({"messages": [{"role": "user", "content": "I like dark mode"}]},
                       config={"configurable": {"langgraph_user_id": "alice"},
                               "callbacks": [seen]})
    created, found = [m.text for m in out["messages"] if isinstance(m, ToolMessage)]
    key = created.removeprefix("created memory ")
    [hit] = json.loads(found)
    assert (hit["namespace"], hit["key"], hit["value"]) == (
        ["memories", "alice"], key, {"content": "User prefers dark mode"})
    assert hit["score"] > 0
    assert seen.runs[-1]["messages"][-1].content == found  # what the model received
    item = store.get(("memories", "alice"), key)
    assert item is not None and item.value == {"content": "User prefers dark mode"}
    # update and delete through the same tool
    manage = create_manage_memory_tool(namespace=namespace, store=store)  # outside a graph
    manage.invoke({"content": "User prefers light mode", "action": "update", "id": key},
                  config={"configurable": {"langgraph_user_id": "alice"}})
    item = store.get(("memories", "alice"), key)
    assert item is not None and item.value == {"content": "User prefers light mode"}
    manage.invoke({"action": "delete", "id": key},
                  config={"configurable": {"langgraph_user_id": "alice"}})
    assert store.search(("memories", "alice")) == []


# ---- the README's example ------------------------------------------------------------------
README = Path(__file__).resolve().parents[3] / "integrations" / "langchain" / "README.md"


@pytest.mark.slow
@pytest.mark.usefixtures("no_default_db")
def test_readme_example_runs_verbatim_and_prints_what_it_says() -> None:
    """The README's MemoriStore block, with the embedded default database and the real local
    embedding model, as a user's copy would run."""
    section = README.read_text(encoding="utf-8").split("## LangGraph long-term memory")[1]
    found = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", section, re.S)
    assert found is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(found.group(1), f"{README}:MemoriStore", "exec"), {"__name__": "readme"})
    assert out.getvalue() == found.group(2)
