"""The public API as a state machine: random sequences of capture, remember, recall, forget
(entity, and entity + process), export -> import under a new entity id, augmentation and
close + reopen of the ``Memori`` instance on the same database, checked after every step
against a plain Python model of what must be stored (hypothesis ``RuleBasedStateMachine``).

Invariants, for every entity the example used (3 entities, the copies imported from them, and
every one forgotten):

- every acknowledged message (``capture()`` returned its id) is stored exactly once, in
  order, in its session of its entity: ``session_messages`` and ``export`` give the model's
  (id, role, content, process) lists, and nothing else;
- memories: each remembered text exactly once (per process); once a turn's augmentation ran,
  exactly one episodic memory per user message, none before; every other memory comes from
  the entity's own messages; ``export`` lists what ``memories()`` lists;
- nothing of a forgotten entity or persona remains: ``export`` of it is empty;
- no entity sees another's data: ``recall(scope="entity")`` returns only memories of the
  entity (by row id) whose source messages are its own, or texts it remembered;
  ``scope="process"`` only the persona's and those without one;
- ``export`` -> ``import_`` under a new entity id gives the same messages and memory texts
  (the copy is then one more entity of the model), and a second import of it is refused;
- all of it also after ``close()`` and a new ``Memori`` on the same database.

Augmentation runs in the test's thread (``augmentation_workers=0``, ``run_once()``), so every
example is deterministic. The default run is short; the ``reliability`` run is long.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from memori_core import Memori
from memori_core.errors import ConfigurationError, StorageError
from memori_core.testing import HashEmbedder

ENTITIES = ("e0", "e1", "e2")
PROCESSES = ("p0", "p1")
SESSIONS = ("s0", "s1")
QUERY = "shared secret words"
MAX_COPIES = 2
EXPORT_LISTS = ("sessions", "memories", "triples", "process_attributes", "jobs")

#: an entity of the model: ENTITIES first, then the copies (an index past the end wraps);
#: forget and export pick among those holding something
who = st.integers(0, 7)
processes = st.sampled_from((None, *PROCESSES))
#: turn shapes: the roles of its messages
shapes = st.sampled_from((("user",), ("user", "assistant"), ("system", "user", "assistant"),
                          ("assistant",), ("user", "user")))


@dataclass
class Msg:
    id: int
    process: str | None
    role: str
    content: str
    augmented: bool = False  # its turn's augmentation job is done


@dataclass
class Entity:
    """What must be stored for one entity id."""

    sessions: dict[str, list[Msg]] = field(default_factory=dict)
    remembered: set[tuple[str | None, str]] = field(default_factory=set)  # (process, text)

    def messages(self) -> list[Msg]:
        return [msg for msgs in self.sessions.values() for msg in msgs]

    def of(self, process: str | None) -> Entity:
        """Only ``process``'s rows (all of them for None): what a process export holds."""
        if process is None:
            return self
        sessions = {sid: [m for m in msgs if m.process == process]
                    for sid, msgs in self.sessions.items()}
        return Entity({sid: msgs for sid, msgs in sessions.items() if msgs},
                      {(p, t) for p, t in self.remembered if p == process})

    def empty(self) -> bool:
        return not self.sessions and not self.remembered


def flat(export: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """An export's messages per session id: (id, role, content, process), in order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for session in export["sessions"]:
        msgs = out.setdefault(session["session_id"], [])
        for conv in session["conversations"]:
            msgs += [(m["id"], m["role"], m["content"], m["process_id"])
                     for m in conv["messages"]]
    return out


def memory_texts(export: dict[str, Any]) -> Counter[tuple[Any, ...]]:
    return Counter((m["kind"], m["content"], m["process_id"]) for m in export["memories"])


class StatefulAPI(RuleBasedStateMachine):
    """One example: a fresh instance on the shared database, entity ids unique to it."""

    url = ""  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.run = uuid.uuid4().hex[:8]
        self.mem = self.open()
        self.model: dict[str, Entity] = {name: Entity() for name in ENTITIES}
        self.copies = 0
        self.serial = 0
        self.forgotten: set[tuple[str, str]] = set()  # (entity, process) forgotten since

    def open(self) -> Memori:
        return Memori(conn=self.url, embedder=HashEmbedder(), augmentation_workers=0)

    def teardown(self) -> None:
        self.mem.close()

    # ---- helpers ---------------------------------------------------------------------------
    def name(self, i: int) -> str:
        names = list(self.model)
        return names[i % len(names)]

    def stored(self) -> list[str]:
        """The entities the model holds something of."""
        return [name for name, entity in self.model.items() if not entity.empty()]

    def eid(self, name: str) -> str:
        return f"{self.run}-{name}"

    def tag(self) -> str:
        self.serial += 1
        return f"t{self.serial}"

    def augment(self) -> None:
        """Run every queued job here; then every modelled turn is augmented."""
        for _ in range(10_000):
            if not self.mem.augmentation.run_once():
                break
        else:
            raise AssertionError("the augmentation queue never drained")
        for entity in self.model.values():
            for msg in entity.messages():
                msg.augmented = True

    # ---- rules -----------------------------------------------------------------------------
    @initialize(seed=st.lists(st.tuples(processes, st.sampled_from(SESSIONS), shapes,
                                         st.booleans()), min_size=len(ENTITIES),
                               max_size=len(ENTITIES)))
    def start(self, seed: list[tuple[str | None, str, tuple[str, ...], bool]]) -> None:
        """Every entity starts with a turn and a remembered text, so the first steps of an
        example already have something to export, import and forget."""
        for name, (process, session, shape, extracted) in zip(ENTITIES, seed, strict=True):
            self.capture_turn(name, process, session, shape, extracted)
            self.remember_text(name, process, again=False)

    @rule(i=who, turns=st.lists(st.tuples(processes, st.sampled_from(SESSIONS), shapes,
                                          st.booleans()), min_size=1, max_size=3))
    def capture(self, i: int, turns: list[tuple[str | None, str, tuple[str, ...], bool]]
                ) -> None:
        """A few turns of one entity, under one or several personas and sessions."""
        name = self.name(i)
        for process, session, shape, extracted in turns:
            self.capture_turn(name, process, session, shape, extracted)

    def capture_turn(self, name: str, process: str | None, session: str,
                     shape: tuple[str, ...], extracted: bool) -> None:
        tag = self.tag()
        texts = {"system": f"You are the {tag} helper",
                 # "I like ..." is also extracted into a preference and a triple
                 "user": f"I like {tag} {QUERY}" if extracted else f"note {tag} {QUERY}",
                 "assistant": f"noted {tag} {QUERY}"}
        messages = [{"role": role, "content": f"{texts[role]} {k}"}
                    for k, role in enumerate(shape)]
        self.mem.attribution(entity_id=self.eid(name), process_id=process)
        self.mem.set_session(session)
        ids = self.mem.capture(messages)
        assert len(ids) == len(messages)
        self.model[name].sessions.setdefault(session, []).extend(
            Msg(id_, process, m["role"], m["content"]) for id_, m in zip(ids, messages,
                                                                           strict=True))
        self.forgotten.discard((name, str(process)))

    @rule(i=who, process=processes, again=st.booleans())
    def remember(self, i: int, process: str | None, again: bool) -> None:
        """A new text, or one the entity's persona remembered already (then only counted)."""
        self.remember_text(self.name(i), process, again)

    def remember_text(self, name: str, process: str | None, again: bool) -> None:
        known = sorted(t for p, t in self.model[name].remembered if p == process)
        text = known[0] if again and known else f"fact {self.tag()} {QUERY}"
        self.mem.attribution(entity_id=self.eid(name), process_id=process)
        self.mem.remember(text)
        self.model[name].remembered.add((process, text))
        self.forgotten.discard((name, str(process)))

    @rule()
    def run_augmentation(self) -> None:
        self.augment()

    @precondition(lambda self: self.stored())
    @rule(i=who, process=processes)
    def forget(self, i: int, process: str | None) -> None:
        name = self.stored()[i % len(self.stored())]
        entity = self.model[name]
        gone = [m for m in entity.messages() if process is None or m.process == process]
        counts = self.mem.forget(self.eid(name), process_id=process)
        assert counts["memori_conversation_message"] == len(gone), counts
        if process is None:
            self.model[name] = Entity()
            self.forgotten |= {(name, p) for p in PROCESSES}
        else:
            self.model[name] = Entity(
                {sid: kept for sid, msgs in entity.sessions.items()
                 if (kept := [m for m in msgs if m.process != process])},
                {(p, t) for p, t in entity.remembered if p != process})
            self.forgotten.add((name, process))

    @precondition(lambda self: self.copies < MAX_COPIES and self.stored())
    @rule(i=who, process=processes, augmented=st.booleans())
    def export_import(self, i: int, process: str | None, augmented: bool) -> None:
        """An entity's (or one persona's) export imported under a new entity id gives the
        same messages and memories; the copy is one more entity from then on."""
        if augmented:
            self.augment()
        name = self.stored()[i % len(self.stored())]
        data = self.mem.export(entity_id=self.eid(name), process_id=process)
        self.copies += 1
        copy = f"c{self.copies}"
        self.mem.import_(data, entity_id=self.eid(copy))
        got = self.mem.export(entity_id=self.eid(copy), process_id=process)
        assert {sid: [m[1:] for m in msgs] for sid, msgs in flat(got).items()} == \
            {sid: [m[1:] for m in msgs] for sid, msgs in flat(data).items()}
        assert memory_texts(got) == memory_texts(data)
        # the copy in the model: the source's rows, under the ids the import gave them
        source = self.model[name].of(process)
        self.mem.attribution(entity_id=self.eid(copy))
        sessions: dict[str, list[Msg]] = {}
        for sid, msgs in source.sessions.items():
            stored = self.mem.session_messages(sid)
            assert [(m["role"], m["content"]) for m in stored] == \
                [(m.role, m.content) for m in msgs], f"session {sid} of the copy"
            sessions[sid] = [Msg(s["id"], m.process, m.role, m.content, m.augmented)
                             for s, m in zip(stored, msgs, strict=True)]
        self.model[copy] = Entity(sessions, set(source.remembered))
        if not source.empty():
            with pytest.raises(ConfigurationError):
                self.mem.import_(data, entity_id=self.eid(copy))

    @rule(augment_first=st.booleans())
    def reopen(self, augment_first: bool) -> None:
        """close() and a new instance on the same database (queued jobs stay queued)."""
        if augment_first:
            self.augment()
        old = self.mem
        old.close()
        with pytest.raises(StorageError):
            old.export(entity_id=self.eid(ENTITIES[0]))
        self.mem = self.open()

    # ---- invariants ------------------------------------------------------------------------
    @invariant()
    def stored_as_modelled(self) -> None:
        mem = self.mem
        for name, entity in self.model.items():
            mem.attribution(entity_id=self.eid(name))
            # messages: once each, in order, in their session, and nothing else
            want = {sid: [(m.id, m.role, m.content, m.process) for m in msgs]
                    for sid, msgs in entity.sessions.items()}
            for sid in SESSIONS:
                got = [(m["id"], m["role"], m["content"]) for m in mem.session_messages(sid)]
                assert got == [w[:3] for w in want.get(sid, [])], f"{name} session {sid}"
            export = mem.export(entity_id=self.eid(name))
            assert flat(export) == want, f"{name}: export's messages"
            if entity.empty():
                assert all(export[k] == [] for k in EXPORT_LISTS), f"{name} is not empty"
            # memories: remembered once, one episodic per augmented user message, the rest
            # from the entity's own messages
            listed = mem.memories(scope="entity", include_superseded=True)
            assert Counter((m.kind, m.content, m.process_id) for m in listed) == \
                memory_texts(export), f"{name}: export's memories"
            own = {m.id: m for m in entity.messages()}
            remembered = Counter((m.process_id, m.content) for m in listed
                                 if not m.source_message_ids and m.kind == "fact")
            assert remembered == Counter(entity.remembered), f"{name}: remembered"
            episodic = Counter(m.source_message_ids for m in listed if m.kind == "episodic")
            assert episodic == Counter((m.id,) for m in own.values()
                                       if m.role == "user" and m.augmented), f"{name}: episodic"
            for memory in listed:
                if memory.source_message_ids:
                    assert set(memory.source_message_ids) <= own.keys(), \
                        f"{name} holds a memory of others' messages: {memory}"
                    assert {own[i].process for i in memory.source_message_ids} == \
                        {memory.process_id}, f"{name}: memory of another persona: {memory}"
                else:
                    assert (memory.process_id, memory.content) in entity.remembered, memory
            # recall: only the entity's memories (its own rows), of its persona under
            # scope="process"
            ids = {m.id for m in listed}
            for hit in mem.recall(QUERY, limit=50, scope="entity", include_superseded=True):
                assert set(hit.memory_ids) | {hit.id} <= ids, f"{name} recalled {hit}"
                assert set(hit.source_message_ids) <= own.keys(), f"{name} recalled {hit}"
            process = PROCESSES[sum(map(ord, name)) % 2]  # one persona per entity, varied
            mem.attribution(entity_id=self.eid(name), process_id=process)
            for hit in mem.recall(QUERY, limit=50):
                assert hit.process_id in (process, None), f"{name}/{process} recalled {hit}"
                assert set(hit.memory_ids) | {hit.id} <= ids, f"{name} recalled {hit}"

    @invariant()
    def forgotten_personas_are_gone(self) -> None:
        for name, process in self.forgotten:
            export = self.mem.export(entity_id=self.eid(name), process_id=process)
            assert all(export[k] == [] for k in EXPORT_LISTS), \
                f"forgotten {name}/{process} remains: " \
                f"{ {k: export[k] for k in EXPORT_LISTS if export[k]} }"

    @invariant()
    def no_failed_jobs(self) -> None:
        assert self.mem.augmentation.failed() == []


def run(url: str, examples: int, steps: int, derandomize: bool = False) -> None:
    StatefulAPI.url = url
    run_state_machine_as_test(StatefulAPI, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        derandomize=derandomize,
        suppress_health_check=[HealthCheck.too_slow], database=None))


def _build(url: str) -> None:
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        mem.config.storage.build()


@pytest.fixture(params=["sqlite", "postgresql"])
def sqlite_or_pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.mark.timeout(120)
def test_public_api_against_a_model(sqlite_or_pg_url: str) -> None:
    _build(sqlite_or_pg_url)
    run(sqlite_or_pg_url, examples=12, steps=25, derandomize=True)


@pytest.mark.reliability
@pytest.mark.timeout(3600)
def test_public_api_against_a_model_long(sqlite_or_pg_url: str) -> None:
    _build(sqlite_or_pg_url)
    run(sqlite_or_pg_url, examples=200, steps=40)
