"""Bad input is refused with a ConfigurationError naming the argument, before anything is written;
odd but valid input (unicode, SQL metacharacters, ids differing only by case or a trailing space)
round-trips exactly on every backend."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memori_ids import stable_id
from sqlalchemy import text

from memori_core import Config, ConfigurationError, Memori
from memori_core.testing import HashEmbedder


def message_count(mem: Memori) -> int:
    with mem.engine.connect() as c:
        return int(c.execute(text("SELECT COUNT(*) FROM memori_conversation_message")).scalar_one())


def stored(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in ("id", "created_at")} for m in messages]


# ---- ids ----------------------------------------------------------------------------------------

BAD_IDS = ["", "   ", "\t\n", "x" * 256, "🙂" * 256, "a\x00b", "\x00", 123, 1.5, b"bytes",
           ["user"], object()]


@pytest.mark.parametrize("bad", BAD_IDS, ids=stable_id)
@pytest.mark.parametrize("argument", ["entity_id", "process_id"])
def test_bad_attribution_ids(smem: Memori, argument: str, bad: object) -> None:
    smem.attribution(entity_id="before", process_id="before-process")
    with pytest.raises(ConfigurationError) as exc:
        smem.attribution(**{argument: bad})  # type: ignore[arg-type]
    assert exc.value.argument == argument
    # a refused call changes nothing
    assert (smem.entity_id, smem.process_id) == ("before", "before-process")


@pytest.mark.parametrize("bad", [*BAD_IDS, None], ids=stable_id)
def test_bad_session_ids(smem: Memori, bad: object) -> None:
    smem.attribution(entity_id="someone")
    session = smem.new_session()
    with pytest.raises(ConfigurationError) as exc:
        smem.set_session(bad)  # type: ignore[arg-type]
    assert exc.value.argument == "session_id"
    assert smem.session_id == session
    if bad is not None:
        with pytest.raises(ConfigurationError) as exc:
            smem.session_messages(bad)  # type: ignore[arg-type]
        assert exc.value.argument == "session_id"


def test_longest_ids_are_accepted(mem: Memori) -> None:
    entity, process, session = "e" * 255, "🙂" * 255, "用" * 255
    mem.attribution(entity_id=entity, process_id=process)
    mem.set_session(session)
    ids = mem.capture([{"role": "user", "content": "the longest ids work"}])
    assert [m["id"] for m in mem.session_messages(session)] == ids
    assert mem.augmentation.wait(timeout=30)
    assert [h.process_id for h in mem.recall("the longest ids work")] == [process]
    with mem.engine.connect() as c:
        assert c.execute(text("SELECT external_id FROM memori_entity")).scalars().all() == [entity]
        assert c.execute(text("SELECT external_id FROM memori_session")).scalars().all() == [
            session]


# ---- messages -------------------------------------------------------------------------------------

BAD_MESSAGES: list[Any] = [
    "hello",
    b"hello",
    {"role": "user", "content": "a dict, not a list"},
    None,
    42,
    [],
    (),
    ["not a dict"],
    [None],
    [{"role": "user", "content": "ok"}, "second is not a dict"],
    [{"role": "robot", "content": "hi"}],
    [{"role": "USER", "content": "hi"}],
    [{"role": None, "content": "hi"}],
    [{"content": "no role"}],
    [{"role": "user"}],
    [{"role": "user", "content": None}],
    [{"role": "user", "content": 42}],
    [{"role": "user", "content": b"bytes"}],
    [{"role": "user", "content": {"type": "text", "text": "a dict"}}],
    [{"role": "user", "content": [42]}],
    [{"role": "user", "content": [{"type": "image", "data": object()}]}],
    [{"role": "user", "content": "a\x00b"}],
    [{"role": "user", "content": [{"type": "text", "text": "nul \x00 in a part"}]}],
    [{"role": "user", "content": ["nul \x00 in a string part"]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x\x00y"}}]}],
    [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "nul\x00"}],
    [{"role": "user", "content": "ok", "name": ""}],
    [{"role": "user", "content": "ok", "name": "n" * 256}],
    [{"role": "user", "content": "ok", "name": 7}],
    [{"role": "user", "content": "ok", "name": "a\x00b"}],
]


@pytest.mark.parametrize("messages", BAD_MESSAGES, ids=stable_id)
def test_bad_messages(smem: Memori, messages: Any) -> None:
    smem.attribution(entity_id="sender", process_id="agent")
    with pytest.raises(ConfigurationError) as exc:
        smem.capture(messages)
    assert exc.value.argument is not None and exc.value.argument.startswith("messages")
    assert message_count(smem) == 0


@pytest.mark.parametrize("content", ["a\x00b", "\x00", "trailing\x00"], ids=stable_id)
def test_nul_bytes_in_content_are_refused(smem: Memori, content: str) -> None:
    smem.attribution(entity_id="nul")
    with pytest.raises(ConfigurationError, match="NUL") as exc:
        smem.capture([{"role": "user", "content": content}])
    assert exc.value.argument == "messages"


@pytest.mark.parametrize("content", [
    "lone \ud800 surrogate", "\udfff", [{"type": "text", "text": "part \udc00"}],
    [{"type": "image_url", "image_url": {"url": "x\ud83dy"}}]], ids=stable_id)
def test_unencodable_content_is_refused(mem: Memori, content: Any) -> None:
    mem.attribution(entity_id="surrogates")
    with pytest.raises(ConfigurationError) as exc:
        mem.capture([{"role": "user", "content": content}])
    assert exc.value.argument == "messages"
    assert message_count(mem) == 0


@pytest.mark.parametrize("argument", ["entity_id", "process_id", "session_id"])
def test_unencodable_ids_are_refused(smem: Memori, argument: str) -> None:
    def call() -> object:
        if argument == "session_id":
            return smem.set_session("s\ud800")
        return smem.attribution(**{argument: "id\ud800"})

    with pytest.raises(ConfigurationError) as exc:
        call()
    assert exc.value.argument == argument


def test_text_that_only_looks_like_nul_is_kept(mem: Memori) -> None:
    mem.attribution(entity_id="escapes")
    turn = [{"role": "user", "content": "C:\\u0000 and \\x00 are text"},
            {"role": "assistant", "content": [{"type": "text", "text": "literal \\u0000 here"},
                                              "and \\\\u0000 there"]}]
    mem.capture(turn)
    assert stored(mem.session_messages()) == turn


# ---- attribution required ---------------------------------------------------------------------------

def test_capture_and_recall_need_an_attribution(smem: Memori) -> None:
    for call in (lambda: smem.capture([{"role": "user", "content": "hi"}]),
                 lambda: smem.recall("hi"), lambda: smem.session_messages()):
        with pytest.raises(ConfigurationError, match="attribution") as exc:
            call()
        assert exc.value.argument == "entity_id"
    smem.attribution(process_id="only-a-process")
    with pytest.raises(ConfigurationError) as exc:
        smem.capture([{"role": "user", "content": "hi"}])
    assert exc.value.argument == "entity_id"
    assert message_count(smem) == 0


def test_a_new_thread_starts_without_attribution(smem: Memori) -> None:
    smem.attribution(entity_id="main-thread")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            smem.capture([{"role": "user", "content": "from another thread"}])
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], ConfigurationError)
    assert message_count(smem) == 0
    assert smem.entity_id == "main-thread"


# ---- recall arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"limit": 0}, "limit"), ({"limit": -1}, "limit"), ({"limit": "5"}, "limit"),
    ({"limit": 2.5}, "limit"), ({"limit": True}, "limit"), ({"limit": [5]}, "limit"),
    ({"scope": "global"}, "scope"), ({"scope": None}, "scope"), ({"scope": "PROCESS"}, "scope"),
    ({"scope": 1}, "scope"),
    ({"query": None}, "query"), ({"query": 42}, "query"), ({"query": b"bytes"}, "query"),
    ({"query": ["a", "list"]}, "query"),
], ids=stable_id)
def test_bad_recall_arguments(smem: Memori, kwargs: dict[str, Any], argument: str) -> None:
    smem.attribution(entity_id="asker")
    smem.capture([{"role": "user", "content": "something to find"}])
    assert smem.augmentation.wait(timeout=30)
    call = {"query": "something to find", **kwargs}
    with pytest.raises(ConfigurationError) as exc:
        smem.recall(**call)
    assert exc.value.argument == argument


# ---- settings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings_", "argument"), [
    ({"recall_limit": 3}, "recall_limit"),
    ({"setting": 1}, "setting"),
    ({"recall_facts_limit": "many"}, "recall_facts_limit"),
    ({"recall_facts_limit": 2.5}, "recall_facts_limit"),
    ({"recall_facts_limit": 0}, "recall_facts_limit"),
    ({"recall_relevance_threshold": 2}, "recall_relevance_threshold"),
    ({"recall_relevance_threshold": "high"}, "recall_relevance_threshold"),
    ({"session_timeout_minutes": 0}, "session_timeout_minutes"),
    ({"augmentation_workers": -1}, "augmentation_workers"),
    ({"debug_truncate": "maybe"}, "debug_truncate"),
    ({"embeddings_model": ""}, "embeddings_model"),
], ids=stable_id)
def test_bad_settings(sqlite_url: str, settings_: dict[str, Any], argument: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        Memori(conn=sqlite_url, embedder=HashEmbedder(), **settings_)
    assert exc.value.argument == argument
    with pytest.raises(ConfigurationError) as exc:
        Memori(conn=sqlite_url, embedder=HashEmbedder(), config=Config(), **settings_)
    assert exc.value.argument == argument


def test_float_settings_take_fractions(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # these fields are floats whose defaults are written as ints (30, 1, 5, 300)
    monkeypatch.setenv("MEMORI_REQUEST_SECS_TIMEOUT", "2.5")
    monkeypatch.setenv("MEMORI_SESSION_TIMEOUT_MINUTES", "0.5")
    with Memori(conn=sqlite_url, embedder=HashEmbedder(), request_backoff_factor=0.25,
                augmentation_lease_seconds=0.5, recall_facts_limit=3.0) as m:
        cfg = m.config
        assert (cfg.request_secs_timeout, cfg.session_timeout_minutes, cfg.request_backoff_factor,
                cfg.augmentation_lease_seconds, cfg.recall_facts_limit) == (2.5, 0.5, 0.25, 0.5, 3)
        assert isinstance(cfg.recall_facts_limit, int)
    with Memori(conn=sqlite_url, embedder=HashEmbedder(), session_timeout_minutes=0.0001) as m:
        assert m.config.session_timeout_minutes == 0.0001


def test_unknown_setting_lists_the_known_ones(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        Memori(conn=sqlite_url, embedder=HashEmbedder(), recall_limit=3)
    assert "recall_facts_limit" in str(exc.value)
    assert "recall_relevance_threshold" in str(exc.value)


def hiker(mem: Memori) -> list[str]:
    """Capture an exact and a weaker match, return what recall keeps."""
    mem.config.storage.build()
    mem.attribution(entity_id=f"hiker-{uuid.uuid4().hex[:6]}")
    mem.capture([{"role": "user", "content": "I love hiking in the alps"}])
    mem.capture([{"role": "user", "content": "hiking boots for the alps are expensive"}])
    assert mem.augmentation.wait(timeout=30)
    return [h.content for h in mem.recall("I love hiking in the alps", kinds=["episodic"])]


def test_threshold_from_the_environment(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORI_RECALL_RELEVANCE_THRESHOLD", "0.6")
    monkeypatch.setenv("MEMORI_RECALL_FACTS_LIMIT", "1")
    with Memori(conn=sqlite_url, embedder=HashEmbedder()) as mem:
        assert mem.config.recall_relevance_threshold == 0.6
        assert mem.config.recall_facts_limit == 1
        assert hiker(mem) == ["I love hiking in the alps"]
    # a keyword wins over the environment
    with Memori(conn=sqlite_url, embedder=HashEmbedder(), recall_relevance_threshold=0.1,
                recall_facts_limit=5) as mem:
        assert hiker(mem) == ["I love hiking in the alps",
                              "hiking boots for the alps are expensive"]


@pytest.mark.parametrize(("name", "value"), [
    ("MEMORI_RECALL_RELEVANCE_THRESHOLD", "high"),
    ("MEMORI_RECALL_RELEVANCE_THRESHOLD", "1.5"),
    ("MEMORI_RECALL_RELEVANCE_THRESHOLD", ""),
    ("MEMORI_RECALL_FACTS_LIMIT", "2.5"),
    ("MEMORI_AUGMENTATION_WORKERS", "-1"),
    ("MEMORI_DEBUG_TRUNCATE", "perhaps"),
])
def test_bad_environment_values(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, name: str,
                                value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as exc:
        Memori(conn=sqlite_url, embedder=HashEmbedder())
    assert exc.value.argument in (name, name.removeprefix("MEMORI_").lower())


# ---- odd but valid ids, on every backend -----------------------------------------------------------------

def test_unicode_and_sql_metacharacter_ids_round_trip(mem: Memori) -> None:
    people = {"O'Brien; DROP TABLE memori_entity;--": "I am Irish and like tea",
              "用户🙂": "我喜欢茶 and green tea",
              'Robert"); DELETE FROM memori_session; --': "little bobby tables drinks tea"}
    sessions = {}
    for entity, said in people.items():
        mem.attribution(entity_id=entity, process_id="p'; DROP TABLE memori_process;--")
        sessions[entity] = mem.set_session(f"session {entity} '🙂'")
        mem.capture([{"role": "user", "content": said}])
    assert mem.augmentation.wait(timeout=30)
    with mem.engine.connect() as c:
        assert sorted(c.execute(text("SELECT external_id FROM memori_entity")).scalars()) == \
            sorted(people)
        assert c.execute(text("SELECT external_id FROM memori_process")).scalars().all() == [
            "p'; DROP TABLE memori_process;--"]
    for entity, said in people.items():
        mem.attribution(entity_id=entity, process_id="p'; DROP TABLE memori_process;--")
        mem.set_session(sessions[entity])
        assert [m["content"] for m in mem.session_messages()] == [said]
        assert [h.content for h in mem.recall("tea", limit=10, scope="entity", kinds=["episodic"])] == [said]
        assert [h.content for h in mem.recall(said, kinds=["episodic"])] == [said]


def test_ids_differing_by_case_or_trailing_space_are_distinct(mem: Memori) -> None:
    names = ["Ann", "ann", "Ann ", "ANN", " Ann"]
    for name in names:
        mem.attribution(entity_id=name, process_id=name)
        mem.set_session(name)
        mem.capture([{"role": "user", "content": f"secret of {name!r} is {names.index(name)}"}])
    # one entity, several processes and sessions differing only by case / space
    for name in names:
        mem.attribution(entity_id="shared", process_id=name)
        mem.set_session(name)
        mem.capture([{"role": "user", "content": f"persona {name!r} says {names.index(name)}"}])
    assert mem.augmentation.wait(timeout=30)

    with mem.engine.connect() as c:
        assert sorted(c.execute(text("SELECT external_id FROM memori_entity")).scalars()) == \
            sorted([*names, "shared"])
        assert sorted(c.execute(text("SELECT external_id FROM memori_process")).scalars()) == \
            sorted(names)
        assert c.execute(text("SELECT COUNT(*) FROM memori_session")).scalar_one() == \
            2 * len(names)
    for i, name in enumerate(names):
        mem.attribution(entity_id=name, process_id=name)
        mem.set_session(name)
        assert [m["content"] for m in mem.session_messages()] == [f"secret of {name!r} is {i}"]
        assert [h.content for h in mem.recall(f"secret of {name!r} is {i}", limit=10)] == [
            f"secret of {name!r} is {i}"]
        mem.attribution(entity_id="shared", process_id=name)
        mem.set_session(name)
        assert [m["content"] for m in mem.session_messages()] == [f"persona {name!r} says {i}"]
        assert [h.content for h in mem.recall(f"persona {name!r} says {i}", limit=10)] == [
            f"persona {name!r} says {i}"]


# ---- property: any text round-trips ------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               max_size=300)
NAME = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               min_size=1, max_size=40).filter(lambda s: s.strip() != "")
PART = st.one_of(TEXT, st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
                 st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
                     {"url": TEXT})}))
MESSAGE = st.builds(
    lambda role, content, name: {"role": role, "content": content,
                                 **({} if name is None else {"name": name})},
    st.sampled_from(["system", "user", "assistant", "tool"]),
    st.one_of(TEXT, st.lists(PART, max_size=4)),
    st.one_of(st.none(), NAME))


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entity=NAME, turn=st.lists(MESSAGE, min_size=1, max_size=4))
def test_any_text_round_trips_exactly(mem: Memori, entity: str,
                                      turn: list[dict[str, Any]]) -> None:
    """One database per backend for all examples; each example is a new session."""
    mem.attribution(entity_id=entity)
    mem.new_session()
    ids = mem.capture(turn)
    got = mem.session_messages()
    assert [m["id"] for m in got] == ids
    assert stored(got) == turn
