"""Fuzzing the public API of ``Memori``: every call either succeeds or raises a
``ConfigurationError`` naming the offending argument (``exc.argument``, also in the message); no
other exception leaks out (no TypeError, OverflowError, KeyError or driver error). What capture
accepts is read back exactly by ``session_messages()``; what it refuses writes nothing. Each input
strategy also says whether a value is valid, so acceptance is checked both ways.

Text round-trips (capture, remember) run on SQLite, PostgreSQL and MariaDB with the same oracle:
NUL characters and lone surrogates are refused on every backend (PostgreSQL cannot store NUL in
text, no driver can encode a lone surrogate), everything else is stored exactly.

Two sizes (``memori_reliability_support.sizes``): a few dozen examples per property in
``make test``, many more in ``make test-reliability``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memori_figures import Recorder
from memori_reliability_support import sizes
from sqlalchemy import func, select

from memori_core import Config, ConfigurationError, Memori, Memory, RecallHit
from memori_core.augmentation.base import MEMORY_KINDS
from memori_core.storage import schema
from memori_core.storage.store import normalize_text, sha
from memori_core.testing import HashEmbedder
from memori_core.types import EXTRA_KEYS, ROLES

T = TypeVar("T")

#: examples per property: (make test, make test-reliability)
EXAMPLES = sizes(25, 600)
BACKEND_EXAMPLES = sizes(12, 300)
SETTINGS_EXAMPLES = sizes(60, 1500)  # most values are refused: cheap


def fuzz(examples: int) -> settings:
    """One property's settings: ``examples`` runs, no deadline (a database is involved), no
    example database (the tree stays clean)."""
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture
def amem(sqlite_url: str) -> Iterator[Memori]:
    """A built Memori on SQLite without background workers (augmentation by ``run_once``)."""
    mem = Memori(conn=sqlite_url, embedder=HashEmbedder(), augmentation_workers=0)
    mem.config.storage.build()
    try:
        yield mem
    finally:
        mem.close()


def rows(mem: Memori, table: Any) -> int:
    with mem.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def turn_rows(mem: Memori) -> tuple[int, ...]:
    """Row counts a capture writes to."""
    return tuple(rows(mem, t) for t in (schema.conversation_message, schema.augmentation_job,
                                        schema.conversation, schema.session, schema.entity))


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> bool:
    """What every backend stores exactly: no NUL, no lone surrogate."""
    return "\x00" not in text and encodable(text)


def attempt(call: Callable[[], T]) -> tuple[T | None, ConfigurationError | None]:
    """(result, None), or (None, the ConfigurationError raised): any other exception leaks
    out and fails the test."""
    try:
        return call(), None
    except ConfigurationError as exc:
        return None, exc


def names_argument(exc: ConfigurationError, allowed: set[str] | Callable[[str], bool]) -> str:
    """The argument a ConfigurationError names, checked: one of ``allowed`` and in the message."""
    argument = exc.argument
    assert argument is not None, f"{exc!r} names no argument"
    ok = allowed(argument) if callable(allowed) else argument in allowed
    assert ok, f"{exc!r} names {argument!r}, expected one of {allowed}"
    assert argument in str(exc) or repr(argument) in str(exc), \
        f"the message of {exc!r} does not name {argument!r}"
    return argument


# ---- strategies: (value, valid) ----------------------------------------------------------------

#: characters that break things: NUL, lone surrogates, controls, separators, RTL, joiners, emoji
ODD = ["\x00", "\ud800", "\udfff", "\ud83d", "\x1b", "\x7f", "\u2028", "\u2029", "\u0085",
       "\u200d", "\u202e", "\ufeff", "\u0301", "🙂", "👩‍👩‍👧", "用", "'", '"', "\\", "%", "_",
       "\\u0000", ";--", "\r\n", "\t", " "]
ANY_CHAR = st.one_of(st.characters(exclude_categories=[]), st.sampled_from(ODD))
ANY_TEXT = st.one_of(st.lists(ANY_CHAR, max_size=40).map("".join),
                     st.builds(lambda c, n: c * n, st.sampled_from(["x", "🙂", "é", " "]),
                               st.integers(200, 300)))
#: past MySQL's 64 KiB TEXT
HUGE = st.builds(lambda c, n: c * n, st.sampled_from(["a", "🙂", "用 "]), st.integers(70_000, 80_000))
#: text every backend stores exactly
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=60)
WHITESPACE = st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2028\u3000"), max_size=5)
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=8),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                      st.integers(), max_size=2),
                 st.builds(object))


def id_ok(value: object) -> bool:
    """The documented id contract (``check_id``): a str, not blank, at most 255 characters,
    no NUL, valid Unicode."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 255 and \
        storable(value)


IDS = st.one_of(ANY_TEXT, WHITESPACE, st.just(""), JUNK,
                st.builds(lambda n: "e" * n, st.integers(250, 260)),
                st.builds(lambda n: "🙂" * n, st.integers(250, 260)))
#: None means "no entity / the default session" where it is allowed at all
SOME_IDS = IDS.filter(lambda v: v is not None)
VALID_IDS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=255).filter(
    lambda s: s.strip() != "")

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), TEXT,
                        st.floats(allow_nan=False, allow_infinity=False))
#: JSON values with str keys: stored as JSON and read back equal
JSON = st.recursive(JSON_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
#: JSON containers with a non-str key somewhere: JSON would change them
BAD_KEYS = st.recursive(
    st.dictionaries(st.one_of(st.integers(), st.booleans(), st.none(), st.floats()), JSON,
                    min_size=1, max_size=2),
    lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=2),
                            st.dictionaries(TEXT, inner, min_size=1, max_size=2)), max_leaves=4)

PART = st.one_of(TEXT, st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
                 st.fixed_dictionaries({"type": st.just("image_url"),
                                        "image_url": st.fixed_dictionaries({"url": TEXT})}),
                 st.dictionaries(TEXT, JSON, max_size=3))
TOOL_CALL = st.one_of(
    st.fixed_dictionaries({"id": TEXT, "type": st.just("function"),
                           "function": st.fixed_dictionaries({"name": TEXT, "arguments": TEXT})}),
    st.dictionaries(TEXT, JSON, max_size=3))
AWARE = st.sampled_from([timezone.utc, timezone(timedelta(hours=14)),
                         timezone(-timedelta(hours=12)), timezone(timedelta(hours=5, minutes=30))])
WHEN = st.one_of(
    st.datetimes(),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 30), timezones=AWARE),
).flatmap(lambda d: st.sampled_from([d, d.isoformat()]))


@st.composite
def good_message(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": draw(st.sampled_from(ROLES))}
    kind = draw(st.sampled_from(["text", "parts", "huge", "tuple"]))
    if kind == "text":
        msg["content"] = draw(TEXT)
    elif kind == "huge":  # well past MySQL's 64 KiB TEXT
        msg["content"] = draw(st.sampled_from(["a", "🙂", "用 "])) * draw(
            st.integers(70_000, 90_000))
    else:
        parts = draw(st.lists(PART, max_size=4))
        msg["content"] = tuple(parts) if kind == "tuple" else parts
    if draw(st.booleans()):
        msg["name"] = draw(VALID_IDS)
    if draw(st.booleans()):
        msg["tool_calls"] = draw(st.lists(TOOL_CALL, max_size=3))
    if draw(st.booleans()):
        msg["tool_call_id"] = draw(TEXT)
    if draw(st.booleans()):
        msg["metadata"] = draw(st.dictionaries(TEXT, JSON, max_size=3))
    if draw(st.booleans()):
        msg["created_at"] = draw(WHEN)
    for key in draw(st.lists(st.sampled_from(["name", *EXTRA_KEYS, "created_at"]), max_size=2)):
        msg[key] = None  # an explicit None is the same as leaving the key out
    return msg


def with_char(text: str, char: str, at: int) -> str:
    at %= len(text) + 1
    return text[:at] + char + text[at:]


@st.composite
def bad_message(draw: st.DrawFn) -> tuple[object, str]:
    """A message that capture must refuse, and the key it is wrong in (for the message)."""
    base = draw(good_message())
    how = draw(st.sampled_from(
        ["not a dict", "role", "no role", "no content", "content type", "nul", "surrogate",
         "part type", "part nul", "part key", "part json", "name", "tool_calls", "tool_call",
         "tool_call_id", "metadata", "metadata key", "metadata nul", "created_at",
         "created_at overflow"]))
    at = draw(st.integers(0, 50))
    if how == "not a dict":
        return draw(st.one_of(st.none(), st.integers(), TEXT, st.lists(st.integers(), max_size=2),
                              st.tuples(st.just("user"), TEXT))), ""
    if how == "role":
        base["role"] = draw(st.one_of(TEXT, JUNK).filter(lambda r: r not in ROLES))
    elif how == "no role":
        base.pop("role")
    elif how == "no content":
        base.pop("content")
    elif how == "content type":
        base["content"] = draw(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                         st.binary(max_size=4),
                                         st.dictionaries(TEXT, TEXT, max_size=2)))
    elif how == "nul":
        base["content"] = with_char(draw(TEXT), "\x00", at)
    elif how == "surrogate":
        base["content"] = with_char(draw(TEXT), draw(st.sampled_from(["\ud800", "\udfff"])), at)
    elif how == "part type":
        base["content"] = [draw(TEXT), draw(st.one_of(st.none(), st.integers(), st.floats(),
                                                      st.lists(TEXT, max_size=1)))]
    elif how == "part nul":
        base["content"] = [{"type": "text", "text": with_char(draw(TEXT), "\x00", at)}]
    elif how == "part key":
        base["content"] = [draw(BAD_KEYS)]
    elif how == "part json":
        base["content"] = [{"type": "image", "data": draw(st.one_of(
            st.builds(object), st.sets(st.integers(), max_size=2), st.binary(max_size=3)))}]
    elif how == "name":
        base["name"] = draw(IDS.filter(lambda v: v is not None and not id_ok(v)))
        return base, "name"
    elif how == "tool_calls":
        base["tool_calls"] = draw(st.one_of(TEXT, st.integers(), st.dictionaries(
            TEXT, TEXT, max_size=2), st.booleans()))
    elif how == "tool_call":
        base["tool_calls"] = [*draw(st.lists(TOOL_CALL, max_size=2)),
                              draw(st.one_of(TEXT, st.integers(), st.lists(TEXT, max_size=1)))]
    elif how == "tool_call_id":
        base["tool_call_id"] = draw(st.one_of(st.integers(), st.booleans(),
                                              st.lists(TEXT, max_size=1)))
    elif how == "metadata":
        base["metadata"] = draw(st.one_of(st.integers(), TEXT, st.lists(TEXT, max_size=2),
                                          st.booleans()))
    elif how == "metadata key":
        base["metadata"] = {"ok": draw(BAD_KEYS)}
    elif how == "metadata nul":
        base["metadata"] = {with_char(draw(TEXT), "\x00", at): 1}
    elif how == "created_at":
        base["created_at"] = draw(st.one_of(
            st.integers(), st.floats(), st.booleans(),
            TEXT.filter(lambda s: not _iso(s)), st.dates()))
    else:  # before year 1 or after 9999 once converted to UTC
        base["created_at"] = draw(st.sampled_from([
            datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
            datetime.max.replace(tzinfo=timezone(-timedelta(hours=1))),
            "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-00:01"]))
        return base, "created_at"
    return base, ""


def _iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def utc_naive(value: datetime | str) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


def json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def read_back(message: Mapping[str, Any]) -> dict[str, Any]:
    """What ``session_messages()`` must return for an accepted message (without ``id``)."""
    content = message["content"]
    out: dict[str, Any] = {"role": message["role"],
                           "content": content if isinstance(content, str)
                           else json_copy(list(content))}
    if message.get("name") is not None:
        out["name"] = message["name"]
    for key in EXTRA_KEYS:
        if message.get(key) is not None:
            out[key] = json_copy(message[key])
    if message.get("created_at") is not None:
        out["created_at"] = utc_naive(message["created_at"])
    return out


@st.composite
def turns(draw: st.DrawFn) -> tuple[object, int | None, str]:
    """(the ``messages`` argument, index of the first bad message or None, its bad key).
    Index -1: the argument itself is wrong."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.just([]), st.just(()), TEXT, st.none(), st.integers(),
                              st.dictionaries(TEXT, TEXT, max_size=2), st.binary(max_size=3),
                              st.sets(st.integers(), max_size=2))), -1, ""
    messages: list[object] = draw(st.lists(good_message(), min_size=1, max_size=4))
    if draw(st.booleans()):
        return messages, None, ""
    bad, key = draw(bad_message())
    at = draw(st.integers(0, len(messages)))
    messages.insert(at, bad)
    return messages, at, key


# ---- attribution and session ids ------------------------------------------------------------------

@pytest.mark.parametrize("examples", EXAMPLES)
def test_ids_are_accepted_exactly_when_valid_and_stored_exactly(
        amem: Memori, examples: int, figures: Recorder) -> None:
    mem = amem

    @fuzz(examples)
    @given(entity=SOME_IDS, process=IDS, session=SOME_IDS)
    @figures.fuzz_case
    def check(entity: Any, process: Any, session: Any) -> None:
        mem.attribution(entity_id="before", process_id="before-process")
        before_session = mem.set_session("before-session")
        _, exc = attempt(lambda: mem.attribution(entity_id=entity, process_id=process))
        if exc is not None:
            argument = names_argument(exc, {"entity_id", "process_id"})
            wrong = entity if argument == "entity_id" else process
            assert wrong is not None and not id_ok(wrong)
            assert (mem.entity_id, mem.process_id, mem.session_id) == (
                "before", "before-process", before_session)  # a refused call changes nothing
            return
        assert id_ok(entity) and (process is None or id_ok(process))
        assert (mem.entity_id, mem.process_id) == (entity, process)
        for call in (lambda: mem.set_session(session), lambda: mem.session_messages(session),
                     lambda: mem.clear_session(session)):
            _, exc = attempt(call)
            if exc is not None:
                names_argument(exc, {"session_id"})
            assert (exc is None) == id_ok(session)
        if not id_ok(session):
            return
        mem.set_session(session)
        ids = mem.capture([{"role": "user", "content": "hello"}])
        assert [m["id"] for m in mem.session_messages()] == ids
        assert [m["id"] for m in mem.session_messages(session)][-1:] == ids
        with mem.engine.connect() as c:  # the ids themselves are stored exactly
            e = schema.entity.c
            assert c.execute(select(e.external_id).where(
                e.external_key == sha("entity", entity))).scalar_one() == entity
            if process is not None:
                p = schema.process.c
                assert c.execute(select(p.external_id).where(
                    p.external_key == sha("process", process))).scalar_one() == process
        assert mem.clear_session(session) >= 1
        assert mem.session_messages(session) == []

    check()


# ---- capture --------------------------------------------------------------------------------------

@pytest.mark.parametrize("examples", EXAMPLES)
def test_capture_keeps_exactly_what_it_accepts_and_nothing_it_refuses(
        amem: Memori, examples: int, figures: Recorder) -> None:
    mem = amem
    mem.attribution(entity_id="capturer", process_id="agent")

    @fuzz(examples)
    @given(turn=turns())
    @figures.fuzz_case
    def check(turn: tuple[object, int | None, str]) -> None:
        messages, bad_at, bad_key = turn
        mem.new_session()
        before = turn_rows(mem)
        ids, exc = attempt(lambda: mem.capture(messages))  # type: ignore[arg-type]
        if exc is not None:
            argument = names_argument(exc, lambda a: a.startswith("messages"))
            assert bad_at is not None, f"a valid turn was refused: {exc}"
            if bad_at >= 0:  # the first bad message is the one named
                assert f"messages[{bad_at}]" in str(exc), exc
                if bad_key:
                    assert bad_key in argument, exc
            assert turn_rows(mem) == before  # no half-written turn
            assert mem.session_messages() == []
            return
        assert bad_at is None, f"capture accepted a bad message at {bad_at}: {messages!r}"
        assert isinstance(messages, list) and ids is not None
        got = mem.session_messages()
        assert [m["id"] for m in got] == ids
        for message, stored in zip(messages, got, strict=True):
            expected = read_back(message)
            if "created_at" not in expected:
                expected["created_at"] = stored["created_at"]
            assert {k: v for k, v in stored.items() if k != "id"} == expected

    check()


@pytest.mark.parametrize("examples", BACKEND_EXAMPLES)
def test_text_round_trip_is_the_same_on_every_backend(mem: Memori, examples: int,
                                                      figures: Recorder) -> None:
    """NUL and lone surrogates are refused on SQLite, PostgreSQL and MariaDB alike (content,
    parts, names, metadata); everything else comes back byte for byte."""
    mem.attribution(entity_id="round-trip")

    @fuzz(examples)
    @given(text=st.one_of(ANY_TEXT, HUGE), name=IDS, where=st.sampled_from(
        ["content", "part", "metadata", "tool_call_id"]))
    @figures.fuzz_case
    def check(text: str, name: Any, where: str) -> None:
        mem.new_session()
        message: dict[str, Any] = {"role": "user", "content": "plain"}
        if where == "content":
            message["content"] = text
        elif where == "part":
            message["content"] = [{"type": "text", "text": text}, text]
        elif where == "metadata":
            message["metadata"] = {text: text}
        else:
            message["tool_call_id"] = text
        if name is not None:
            message["name"] = name
        ok = storable(text) and (name is None or id_ok(name))
        _, exc = attempt(lambda: mem.capture([message]))
        if exc is not None:
            names_argument(exc, lambda a: a.startswith("messages"))
            assert not ok, f"refused storable text: {exc}"
            assert mem.session_messages() == []
            return
        assert ok, f"accepted text no backend stores exactly: {message!r}"
        [got] = mem.session_messages()
        assert {k: v for k, v in got.items() if k not in ("id", "created_at")} == message

    check()
    # and augmentation of whatever was accepted succeeds on this backend too
    assert mem.augmentation.wait(timeout=60)
    assert mem.augmentation.failed() == []


# ---- memories managed directly --------------------------------------------------------------------

@pytest.mark.parametrize("examples", BACKEND_EXAMPLES)
def test_remember_stores_exactly_or_names_the_argument(mem: Memori, examples: int,
                                                       figures: Recorder) -> None:
    mem.attribution(entity_id="rememberer", process_id="agent")

    @fuzz(examples)
    @given(content=st.one_of(ANY_TEXT, WHITESPACE, JUNK), kind=st.one_of(
        st.sampled_from(MEMORY_KINDS), TEXT, JUNK), slot=st.one_of(st.none(), IDS))
    @figures.fuzz_case
    def check(content: Any, kind: Any, slot: Any) -> None:
        valid = {"content": isinstance(content, str) and bool(content.strip()) and
                 storable(content),
                 "kind": isinstance(kind, str) and kind in MEMORY_KINDS,
                 "slot": slot is None or id_ok(slot)}
        before = rows(mem, schema.entity_fact)
        known = {m.id for m in mem.memories(include_superseded=True)}
        memory_id, exc = attempt(lambda: mem.remember(content, kind=kind, slot=slot))
        if exc is not None:
            argument = names_argument(exc, set(valid))
            assert not valid[argument], f"{argument} was valid: {exc}"
            assert rows(mem, schema.entity_fact) == before
            return
        assert all(valid.values()), f"remember accepted {valid}: {content!r} {kind!r} {slot!r}"
        [stored] = [m for m in mem.memories(include_superseded=True) if m.id == memory_id]
        assert stored.kind == kind
        if memory_id not in known:
            assert (stored.content, stored.slot) == (content.strip(), slot)
        else:  # the same normalized text again (case, spacing) only counts a mention
            assert normalize_text(stored.content) == normalize_text(content)

    check()


@pytest.mark.parametrize("examples", EXAMPLES)
def test_recall_and_memories_answer_or_name_the_argument(amem: Memori, examples: int,
                                                         figures: Recorder) -> None:
    mem = amem
    mem.attribution(entity_id="asker", process_id="agent")
    for i, kind in enumerate(MEMORY_KINDS):
        mem.remember(f"memory {i} about tea and {kind}", kind=kind, slot="topic" if i < 2 else None)
    mem.capture([{"role": "user", "content": "I like green tea"}])
    assert mem.augmentation.run_once() == 1
    limits = st.one_of(st.none(), st.integers(-3, 12), st.integers(2**62, 2**80), JUNK)
    kinds = st.one_of(st.none(), st.sampled_from(MEMORY_KINDS),
                      st.lists(st.sampled_from(MEMORY_KINDS), max_size=3),
                      st.lists(st.sampled_from(MEMORY_KINDS), min_size=1, max_size=3).map(tuple),
                      st.frozensets(st.sampled_from(MEMORY_KINDS), min_size=1),
                      st.lists(st.one_of(TEXT, JUNK), min_size=1, max_size=2), JUNK)
    scopes = st.one_of(st.sampled_from(["process", "entity"]), TEXT, JUNK)

    def limit_ok(limit: object) -> bool:
        return isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1

    def kinds_ok(value: object) -> bool:
        if value is None or (isinstance(value, str) and value in MEMORY_KINDS):
            return True
        return isinstance(value, (list, tuple, set, frozenset)) and bool(value) and all(
            isinstance(k, str) and k in MEMORY_KINDS for k in value)

    def wanted(value: object) -> set[str]:
        if value is None:
            return set(MEMORY_KINDS)
        return {value} if isinstance(value, str) else set(value)  # type: ignore[call-overload]

    @fuzz(examples)
    @given(query=st.one_of(ANY_TEXT, st.just("green tea"), JUNK), limit=limits, kinds=kinds,
           scope=scopes, superseded=st.booleans(), listing=st.booleans())
    @figures.fuzz_case
    def check(query: Any, limit: Any, kinds: Any, scope: Any, superseded: bool,
              listing: bool) -> None:
        valid = {"limit": limit is None or limit_ok(limit), "kinds": kinds_ok(kinds),
                 "scope": isinstance(scope, str) and scope in ("process", "entity")}
        if not listing:
            valid["query"] = isinstance(query, str)
        found: list[Any] | None
        if listing:
            found, exc = attempt(lambda: mem.memories(kinds=kinds, include_superseded=superseded,
                                                      scope=scope, limit=limit))
        else:
            found, exc = attempt(lambda: mem.recall(query, limit, kinds=kinds, scope=scope,
                                                    include_superseded=superseded))
        if exc is not None:
            argument = names_argument(exc, set(valid))
            assert not valid[argument], f"{argument} was valid: {exc}"
            return
        assert all(valid.values()) and found is not None, f"accepted {valid}"
        assert all(isinstance(h, Memory if listing else RecallHit) for h in found)
        cap = mem.config.recall_facts_limit if limit is None and not listing else limit
        if cap is not None:
            assert len(found) <= cap
        assert {h.kind for h in found} <= wanted(kinds)
        if listing:  # memories() lists every matching memory
            everything = {m.id: m for m in mem.memories(include_superseded=True,
                                                        scope="entity")}
            expected = [m for m in everything.values() if m.kind in wanted(kinds)
                        and (superseded or m.superseded_by is None)]
            assert len(found) == min(len(expected), cap if cap is not None else len(expected))
        elif query == "green tea" and "episodic" in wanted(kinds) and cap is not None and \
                cap >= 7:  # room for every memory: the one said in those words is among them
            assert "I like green tea" in [h.content for h in found]

    check()


@pytest.mark.parametrize("examples", EXAMPLES)
def test_forget_memories_deletes_only_the_entitys_own(amem: Memori, examples: int,
                                                      figures: Recorder) -> None:
    mem = amem
    mem.attribution(entity_id="bystander")
    theirs = {mem.remember(f"the bystander's memory {i}") for i in range(3)}
    counter = iter(range(10**9))

    @fuzz(examples)
    @given(choice=st.data())
    @figures.fuzz_case
    def check(choice: st.DataObject) -> None:
        mem.attribution(entity_id="forgetter")
        mine = {mem.remember(f"my memory number {next(counter)}") for _ in range(3)}
        candidates = st.sampled_from(sorted(mine | theirs))
        ints = st.one_of(candidates, st.integers(), st.integers(2**62, 2**80),
                         st.integers(-(2**80), -(2**62)))
        ids = choice.draw(st.one_of(
            st.lists(ints, max_size=6), st.lists(ints, max_size=4).map(tuple),
            st.sets(ints, max_size=4), st.lists(ints, max_size=4).map(iter),
            st.lists(st.one_of(ints, JUNK, TEXT), min_size=1, max_size=4), JUNK, TEXT))
        materialised = list(ids) if isinstance(ids, Iterator) else ids
        given_ids = iter(materialised) if isinstance(ids, Iterator) else materialised
        valid = isinstance(materialised, (list, tuple, set)) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in materialised)
        before = {m.id for m in mem.memories()}
        deleted, exc = attempt(lambda: mem.forget_memories(given_ids))  # type: ignore[arg-type]
        if exc is not None:
            names_argument(exc, {"memory_ids"})
            assert not valid, f"refused {materialised!r}: {exc}"
            assert {m.id for m in mem.memories()} == before
            return
        assert valid, f"accepted {materialised!r}"
        gone = before & set(materialised)  # type: ignore[arg-type]
        assert deleted == len(gone)
        assert {m.id for m in mem.memories()} == before - gone
        mem.attribution(entity_id="bystander")
        assert {m.id for m in mem.memories()} == theirs  # never another entity's

    check()


# ---- settings --------------------------------------------------------------------------------------

FIELDS = {f.name: str(f.type) for f in dataclasses.fields(Config)
          if f.name not in ("storage", "embeddings")}


@st.composite
def setting(draw: st.DrawFn) -> tuple[str, Any]:
    """(a setting name, mostly a real one; a value of its type, in range or not, or junk)."""
    name = draw(st.one_of(st.sampled_from(sorted(FIELDS)), st.sampled_from(sorted(FIELDS)),
                          st.sampled_from(sorted(FIELDS)), st.sampled_from(
                              ["recall_limit", "embeddings", "storage", "Recall_Facts_Limit"]),
                          TEXT))
    kind = FIELDS.get(name, "")
    numbers = st.one_of(st.integers(-3, 12), st.integers(2**62, 2**70),
                        st.integers(-(2**70), -(2**62)),
                        st.floats(min_value=-2.0, max_value=1e4), st.floats(),
                        st.floats(min_value=1e8, max_value=1e300))
    value = draw(st.one_of(
        numbers, numbers.map(str), st.booleans(), st.sampled_from(
            ["nan", "inf", "-inf", "1e400", "true", "off", "", " 3 ", "0x10", "1_000"]),
        TEXT, JUNK))
    if kind == "bool" and draw(st.booleans()):
        value = draw(st.booleans())
    if name == "augmentation_workers" and isinstance(value, (int, float)) and \
            not isinstance(value, bool) and math.isfinite(value) and value > 4 and value <= 256:
        value = 4  # a valid value starts that many threads: a few are enough
    return name, value


@pytest.mark.parametrize("examples", SETTINGS_EXAMPLES)
def test_settings_are_refused_by_name_or_give_a_working_instance(
        sqlite_url: str, examples: int, figures: Recorder) -> None:
    """A refused setting names itself; an accepted one is finite, in range and of its declared
    type, and an instance built with it captures, augments and recalls."""

    @fuzz(examples)
    @given(named=setting(), from_env=st.booleans())
    @figures.fuzz_case
    def check(named: tuple[str, Any], from_env: bool) -> None:
        name, value = named
        if from_env:  # environment variables are strings
            if not name.isidentifier():
                return
            value = value if isinstance(value, str) else str(value)
            key = f"MEMORI_{name.upper()}"
            cfg, exc = attempt(lambda: Config.from_env(environ={key: value}))
            if exc is not None:
                names_argument(exc, {key, key.removeprefix("MEMORI_").lower()})
                return
        else:
            cfg, exc = attempt(lambda: Config.from_env({name: value}, environ={}))
            if exc is not None:
                names_argument(exc, {name})
                return
        assert cfg is not None
        if name not in FIELDS:  # a variable of another case, or an unknown one (logged)
            assert from_env
            return
        got = getattr(cfg, name)
        kind = FIELDS[name]
        assert type(got).__name__ == kind, f"{name}={got!r} is not a {kind}"
        assert not isinstance(got, float) or math.isfinite(got)
        overrides = {} if name == "augmentation_workers" else {"augmentation_workers": 0}
        with Memori(conn=sqlite_url, embedder=HashEmbedder(), config=cfg, **overrides) as mem:
            mem.config.storage.build()
            mem.attribution(entity_id=f"settings-{name}")
            mem.new_session()
            mem.capture([{"role": "user", "content": "I live in Lisbon"}])
            if mem.config.augmentation_workers:
                assert mem.augmentation.wait(timeout=30)
            else:
                mem.augmentation.run_once()
            assert "I live in Lisbon" in [m.content for m in mem.memories()]
            assert all(isinstance(h, RecallHit) for h in mem.recall("Lisbon"))
            mem.stats()

    check()
