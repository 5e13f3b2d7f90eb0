"""Isolation as a property: random interleavings of capture, remember, recall, export, import
and forget across 3 entities x 2 processes (and no process), through two ``Memori`` instances
on one database (each with its own caches and augmentation worker), never return another
entity's or persona's data, and nothing forgotten ever comes back.

Every text stored carries a tag ``<entity>x<process>n<serial>`` (one word for the embedder and
BM25), so any returned text names whose it is. All texts also share the words of the query,
so a broken filter would surface another entity's memories, not hide them.

The default run is short (a few seconds); the ``reliability`` run is long and covers every
database backend.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from memori_figures import Recorder

from memori_core import Memori
from memori_core.testing import HashEmbedder

ENTITIES = ("e0", "e1", "e2")
PROCESSES = ("p0", "p1", None)
QUERY = "shared secret words"
TAG = re.compile(r"\b(e\d)x(p\d|none)n(\d+)\b")

entities = st.sampled_from(ENTITIES)
processes = st.sampled_from(PROCESSES)
personas = st.sampled_from(PROCESSES[:2])
instances = st.integers(0, 1)


class Isolation(RuleBasedStateMachine):
    """One example: two fresh instances on the shared database, entity ids unique to it."""

    url = ""  # set by the test
    backend = ""
    figures: Recorder | None = None  # set by the test: counts the reads checked, and leaks

    def __init__(self) -> None:
        super().__init__()
        self.run = uuid.uuid4().hex[:8]
        self.mems = [Memori(conn=self.url, embedder=HashEmbedder(), augmentation_workers=1)
                     for _ in range(2)]
        self.serial = 0
        self.live: dict[str, tuple[str, str]] = {}  # tag -> (entity, process or "none")
        self.forgotten: set[str] = set()

    def teardown(self) -> None:
        for mem in self.mems:
            mem.close()

    # ---- helpers ---------------------------------------------------------------------------
    def eid(self, entity: str) -> str:
        return f"{self.run}-{entity}"

    def attribute(self, i: int, entity: str, process: str | None) -> Memori:
        mem = self.mems[i]
        mem.attribution(entity_id=self.eid(entity), process_id=process)
        return mem

    def new_tag(self, entity: str, process: str | None) -> str:
        self.serial += 1
        tag = f"{entity}x{process or 'none'}n{self.serial}"
        self.live[tag] = (entity, process or "none")
        return tag

    def owners(self, text: str) -> list[tuple[str, str, str]]:
        """(entity, process, tag) of every tag in ``text``; each must be one this example
        issued (a tag of another example would be a leak across entity ids too)."""
        found = []
        for entity, process, serial in TAG.findall(text):
            tag = f"{entity}x{process}n{serial}"
            assert tag in self.live or tag in self.forgotten, f"unknown tag {tag}"
            found.append((entity, process, tag))
        return found

    def count(self, leaked: bool) -> None:
        """One read checked for others' data (a leak if it returned some), for the table."""
        if self.figures is not None:
            self.figures.isolation(self.backend, checks=1, leaks=int(leaked))

    def check_owned(self, text: str, entity: str, process: str | None, strict: bool) -> None:
        """Every tag in ``text`` is ``entity``'s, not forgotten, and (with ``process``) that
        process's, or with ``strict=False`` also one captured without a process."""
        allowed = {process} if strict else {process, "none"}
        self.count(any(owner != entity or f"{owner}x{proc}n{serial}" not in self.live or (
            process is not None and proc not in allowed)  # another's, forgotten or unknown
            for owner, proc, serial in TAG.findall(text)))
        for owner, proc, tag in self.owners(text):
            assert owner == entity, f"{entity} got {owner}'s data: {text!r}"
            assert tag not in self.forgotten, f"forgotten {tag} came back: {text!r}"
            if process is not None:
                assert proc in allowed, f"persona {process} got {proc}'s data: {text!r}"

    # ---- rules -----------------------------------------------------------------------------
    @rule(i=instances, entity=entities,
          turns=st.lists(st.tuples(processes, st.booleans()), min_size=1, max_size=3))
    def capture(self, i: int, entity: str, turns: list[tuple[str | None, bool]]) -> None:
        """A few turns of one user, maybe with several personas in a row (one session, one
        conversation: each turn's context is the message before it)."""
        for process, extracted in turns:
            tag = self.new_tag(entity, process)
            # "I like ..." is also extracted into a preference and a triple; "You are ..."
            # into a process attribute
            text = f"I like {tag} {QUERY}" if extracted else f"note {tag} {QUERY}"
            messages = [{"role": "user", "content": text},
                        {"role": "assistant", "content": f"noted {tag}"}]
            if extracted and process is not None:
                messages.insert(0, {"role": "system", "content": f"You are the {tag} helper"})
            self.attribute(i, entity, process).capture(messages)

    @rule(i=instances, entity=entities, process=processes)
    def remember(self, i: int, entity: str, process: str | None) -> None:
        tag = self.new_tag(entity, process)
        self.attribute(i, entity, process).remember(f"fact {tag} {QUERY}")

    @rule(i=instances, entity=entities, process=processes,
          scope=st.sampled_from(("process", "entity")), history=st.booleans())
    def recall(self, i: int, entity: str, process: str | None, scope: str,
               history: bool) -> None:
        mem = self.attribute(i, entity, process)
        hits = mem.recall(QUERY, limit=50, scope=scope,  # type: ignore[arg-type]
                          include_superseded=history)
        for hit in hits:
            self.check_owned(hit.content, entity, process if scope == "process" else None,
                             strict=False)
        listed = mem.memories(scope=scope, include_superseded=history)  # type: ignore[arg-type]
        for memory in listed:
            self.check_owned(memory.content, entity,
                             process if scope == "process" else None, strict=False)

    @rule(i=instances, entity=entities, process=processes)
    def export(self, i: int, entity: str, process: str | None) -> None:
        data = self.mems[i].export(entity_id=self.eid(entity), process_id=process)
        text = json.dumps(data)
        self.check_owned(text, entity, process, strict=True)
        # complete: every live tag of it is there (messages and remembered memories are
        # stored when the call returns)
        want = {t for t, (e, p) in self.live.items()
                if e == entity and (process is None or p == process)}
        assert want <= {tag for _, _, tag in self.owners(text)}

    @rule(i=instances, source=entities, process=personas)
    def export_import_copy(self, i: int, source: str, process: str) -> None:
        """A persona's export imported under a fresh entity id: the copy holds exactly the
        persona's data, and recall on it is the persona's (a separate entity: never mixed)."""
        mem = self.mems[i]
        data = mem.export(entity_id=self.eid(source), process_id=process)
        copy = f"{self.run}-copy-{uuid.uuid4().hex[:6]}"
        mem.import_(data, entity_id=copy)
        text = json.dumps(mem.export(entity_id=copy))
        self.check_owned(text, source, process, strict=True)
        mem.attribution(entity_id=copy, process_id=process)
        for hit in mem.recall(QUERY, limit=50, scope="entity"):
            self.check_owned(hit.content, source, process, strict=True)
        mem.forget(copy)

    @rule(i=instances, entity=entities, process=st.one_of(st.none(), personas))
    def forget(self, i: int, entity: str, process: str | None) -> None:
        counts = self.mems[i].forget(self.eid(entity), process_id=process)
        assert all(n >= 0 for n in counts.values())
        gone = {t for t, (e, p) in self.live.items()
                if e == entity and (process is None or p == process)}
        if gone:
            assert counts["memori_conversation_message"] + counts["memori_entity_fact"] > 0
        for tag in gone:
            del self.live[tag]
        self.forgotten |= gone
        # at once, in both instances
        for mem in self.mems:
            text = json.dumps(mem.export(entity_id=self.eid(entity)))
            back = {tag for _, _, tag in self.owners(text)} & gone
            self.count(bool(back))
            assert not back

    @rule(i=instances)
    def settle(self, i: int) -> None:
        """Once augmentation is done: every export is exactly its owner's, and every live
        text is recallable (by its tag) through this instance's cache."""
        mem = self.mems[i]
        assert mem.augmentation.wait(60)
        for entity in ENTITIES:
            for process in PROCESSES:
                self.export(i, entity, process)
        for tag, (entity, process) in self.live.items():
            self.attribute(i, entity, None if process == "none" else process)
            hits = mem.recall(tag, limit=5, scope="entity", include_superseded=True)
            assert any(tag in h.content for h in hits), f"{tag} is not recalled"

    @invariant()
    def no_failed_jobs(self) -> None:
        assert self.mems[0].augmentation.failed() == []


def run(url: str, examples: int, steps: int, derandomize: bool = False,
        backend: str = "", figures: Recorder | None = None) -> None:
    Isolation.url, Isolation.backend, Isolation.figures = url, backend, figures
    run_state_machine_as_test(Isolation, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        derandomize=derandomize,
        suppress_health_check=[HealthCheck.too_slow], database=None))


def _build(url: str) -> None:
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        mem.config.storage.build()


@pytest.mark.timeout(900)  # augmentation waits dominate; ~35 s idle, several x on a busy CI
def test_isolation_under_random_interleavings(sqlite_url: str) -> None:
    _build(sqlite_url)
    # the same examples every run: one fresh-clone CI run hit an interleaving whose
    # augmentation waits took over 300 s (under investigation); the long form stays random
    run(sqlite_url, examples=12, steps=12, derandomize=True)


@pytest.mark.reliability
@pytest.mark.timeout(1800)
def test_isolation_under_random_interleavings_long(db_url: str, backend: str,
                                                   figures: Recorder) -> None:
    _build(db_url)
    run(db_url, examples=150, steps=30, backend=backend, figures=figures)
