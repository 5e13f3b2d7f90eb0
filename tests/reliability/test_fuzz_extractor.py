"""Fuzzing what extractors return and what the worker does with it.

- ``LLMExtractor`` fed arbitrary, near-valid and valid JSON by an OpenAI-compatible client (a
  tiny in-test client whose ``chat.completions.create`` returns the SDK's own ``ChatCompletion``
  objects: the wire format is covered by the cassette tests in tests/llm) returns a valid
  ``Extraction`` or raises ``AugmentationError`` carrying the raw output; nothing else.
- Through the worker, on SQLite, PostgreSQL and MariaDB: a job whose extractor output is
  malformed or unstorable ends ``failed`` with its error (and the raw output), is listed by
  ``mem.augmentation.failed()``, keeps its turn, and never takes the other jobs of its batch
  down with it.
- ``RuleExtractor`` over arbitrary text (unicode, control characters, very long) never raises
  and yields only valid kinds, slots and triples, deterministically.

An atheris harness for the same two parsers is ``fuzz_atheris.py`` (run here in a subprocess).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from memori_figures import Recorder
from memori_reliability_support import sizes
from openai.types.chat import ChatCompletion

from memori_core import AugmentationError, Memori
from memori_core.augmentation.base import (
    MEMORY_KINDS,
    Conversation,
    ExtractedMemory,
    Extraction,
    Triple,
)
from memori_core.augmentation.llm import LLMExtractor
from memori_core.augmentation.rules import RuleExtractor
from memori_core.storage.store import normalize_text
from memori_core.testing import HashEmbedder

EXAMPLES = sizes(40, 2000)
WORKER_EXAMPLES = sizes(6, 150)
#: inputs per atheris target (make test-reliability only: the child's start-up alone is ~5 s)
ATHERIS_RUNS = {"rules": 100_000, "llm": 50_000}

KINDS = ("fact", "preference", "skill", "attribute", "event")  # what an LLM may return
TURN = Conversation("ann", "agent", [
    {"id": 11, "role": "user", "content": "I moved to Porto and I code in Rust."},
    {"id": 12, "role": "assistant", "content": "Nice, Porto has a Rust meetup."}])


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---- an OpenAI-compatible client answering with given text ----------------------------------------

def completion(content: str | None, refusal: str | None = None) -> ChatCompletion:
    """A Chat Completions response as the ``openai`` SDK returns it."""
    return ChatCompletion.model_validate({
        "id": "chatcmpl-fuzz", "object": "chat.completion", "created": 0, "model": "fuzz-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": content, "refusal": refusal}}]})


class Completions:
    """``client.chat.completions``: ``create`` answers with ``reply(request messages)``."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls = 0
        self._lock = threading.Lock()

    def create(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return self.reply(kwargs["messages"])


class Client:
    """The part of ``openai.OpenAI`` that ``LLMExtractor`` uses."""

    def __init__(self, reply: Any) -> None:
        self.chat = type("Chat", (), {})()
        self.chat.completions = Completions(reply)


# ---- extractor output: valid, near-valid, arbitrary ----------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1,
               max_size=40).filter(lambda s: s.strip() != "")
KEY = st.one_of(st.none(), st.from_regex(r"[a-z_]{1,30}", fullmatch=True))
VALID_MEMORY = st.fixed_dictionaries({
    "content": TEXT, "kind": st.sampled_from(KINDS), "slot": KEY,
    "source_message_ids": st.lists(st.sampled_from([11, 12, 99, -1]), max_size=3)})
VALID_TRIPLE = st.fixed_dictionaries({"subject": TEXT, "predicate": TEXT, "object": TEXT})
VALID_OUTPUT = st.fixed_dictionaries({
    "memories": st.lists(VALID_MEMORY, max_size=4), "triples": st.lists(VALID_TRIPLE, max_size=3),
    "process_attributes": st.lists(TEXT, max_size=2), "summary": st.one_of(st.none(), TEXT)})
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=8), inner,
                                                            max_size=3)), max_leaves=10)
#: values that break a field: wrong types, NUL, lone surrogates (as JSON escapes), overlong keys
BAD_VALUES = st.one_of(JSON, st.sampled_from([
    "a\u0000b", "\\ud800", "x" * 256, "", " ", "location", 1e400, -1, True, [None], {"a": 1}]))


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """Valid output with one thing broken, serialised (sometimes truncated)."""
    output = draw(VALID_OUTPUT)
    section = draw(st.sampled_from(["memories", "triples", "process_attributes", "summary",
                                    "top", "extra", "drop"]))
    bad = draw(BAD_VALUES)
    if section == "memories":
        memory = draw(VALID_MEMORY)
        memory[draw(st.sampled_from(sorted(memory)))] = bad
        output["memories"].append(memory)
    elif section == "triples":
        triple = draw(VALID_TRIPLE)
        triple[draw(st.sampled_from(sorted(triple)))] = bad
        output["triples"].append(triple)
    elif section == "process_attributes":
        output["process_attributes"].append(bad)
    elif section == "summary":
        output["summary"] = bad
    elif section == "top":
        output = draw(st.sampled_from([bad, [output], {"result": output}]))
    elif section == "extra":
        output[draw(st.text(max_size=5))] = bad
    else:
        output.pop(draw(st.sampled_from(sorted(output))))
    raw = json.dumps(output, ensure_ascii=draw(st.booleans()))
    raw = raw.replace('"\\\\ud800"', '"\\ud800"')  # a lone surrogate escape, as a model may write
    if draw(st.integers(0, 4)) == 0:
        raw = raw[:draw(st.integers(0, max(len(raw) - 1, 0)))]
    if draw(st.integers(0, 4)) == 0:
        raw = draw(st.sampled_from(["```json\n", "Sure! ", " ", "\ufeff"])) + raw
    return raw


RAW = st.one_of(st.text(), JSON.map(json.dumps), near_valid(), VALID_OUTPUT.map(json.dumps))


def check_extraction(extraction: Extraction, conversation: Conversation) -> None:
    """What the worker may rely on from any extractor."""
    ids = {m["id"] for m in conversation.messages}
    assert isinstance(extraction, Extraction)
    for m in extraction.memories:
        assert isinstance(m, ExtractedMemory)
        assert m.kind in MEMORY_KINDS and m.kind != "episodic"
        assert isinstance(m.content, str) and "\x00" not in m.content
        m.content.encode("utf-8")
        assert set(m.source_message_ids) <= ids
        assert m.slot is None or (isinstance(m.slot, str) and 0 < len(m.slot) <= 255
                                  and "\x00" not in m.slot)
    for t in extraction.triples:
        assert isinstance(t, Triple)
        assert all(isinstance(x, str) and "\x00" not in x for x in (t.subject, t.predicate,
                                                                     t.object))
        assert len(t.subject) <= 255 and len(t.predicate) <= 255
    assert all(isinstance(a, str) and "\x00" not in a for a in extraction.process_attributes)
    assert extraction.summary is None or "\x00" not in extraction.summary


@pytest.mark.parametrize("examples", EXAMPLES)
def test_llm_output_is_a_valid_extraction_or_an_error_with_the_raw_output(
        examples: int, figures: Recorder) -> None:

    @fuzz(examples)
    @given(first=RAW, second=RAW, attempts=st.integers(1, 3))
    @example(first='{"memories": [{"content": "a\\u0000b", "kind": "fact"}]}', second="",
             attempts=1)
    @example(first='{"triples": [{"subject": "' + "s" * 256 + '", "predicate": "p", '
                   '"object": "o"}]}', second="", attempts=1)
    @example(first='{"memories": [{"content": "x", "kind": "fact", "slot": "\\ud800"}]}',
             second="", attempts=1)
    @example(first='{"memories": [{"content": "x", "kind": "fact\\n"}]}', second="", attempts=1)
    @figures.fuzz_case
    def check(first: str, second: str, attempts: int) -> None:
        replies = iter([first, second, second])
        client = Client(lambda _messages: completion(next(replies)))
        extractor = LLMExtractor("fuzz-model", client=client, attempts=attempts)
        error = ""
        try:
            extraction = extractor.extract(TURN)
        except AugmentationError as exc:
            error = str(exc)
        if error:
            last = first if attempts == 1 else second
            assert f"raw output: {last!r}" in error  # the raw output is kept
            assert client.chat.completions.calls == attempts  # asked again, then gave up
            return
        check_extraction(extraction, TURN)
        used = json.loads(first if client.chat.completions.calls == 1 else second)
        assert [m.content for m in extraction.memories] == [
            m["content"].strip() for m in used.get("memories", [])]

    check()


@pytest.mark.parametrize("examples", EXAMPLES)
def test_valid_llm_output_is_taken_exactly(examples: int, figures: Recorder) -> None:

    @fuzz(examples)
    @given(output=VALID_OUTPUT, ascii_only=st.booleans())
    @figures.fuzz_case
    def check(output: dict[str, Any], ascii_only: bool) -> None:
        raw = json.dumps(output, ensure_ascii=ascii_only)
        extraction = LLMExtractor("m", client=Client(lambda _m: completion(raw))).extract(TURN)
        check_extraction(extraction, TURN)
        assert [(m.content, m.kind, m.slot, m.source_message_ids)
                for m in extraction.memories] == [
            (m["content"].strip(), m["kind"], m["slot"],
             tuple(i for i in m["source_message_ids"] if i in (11, 12)))
            for m in output["memories"]]
        assert [(t.subject, t.predicate, t.object) for t in extraction.triples] == [
            (t["subject"], t["predicate"], t["object"]) for t in output["triples"]]
        assert extraction.process_attributes == output["process_attributes"]
        assert extraction.summary == output["summary"]

    check()


@pytest.mark.parametrize("response", [
    completion(None), completion(None, refusal="I can't help with that"),
    ChatCompletion.model_construct(id="x", object="chat.completion", created=0, model="m",
                                   choices=[]),
    {"choices": [{"message": {"content": '{"memories": 5}'}}]},
    type("Odd", (), {"choices": None})(),
    type("Odd", (), {"choices": [type("C", (), {"message": type(
        "M", (), {"content": ["not", "text"]})()})()]})(),
    object(),
], ids=["no content", "refusal", "no choices", "dict", "choices None", "list content",
        "object"])
def test_odd_responses_are_malformed_output_not_crashes(response: Any) -> None:
    extractor = LLMExtractor("m", client=Client(lambda _m: response), attempts=2)
    with pytest.raises(AugmentationError, match="malformed extraction output 2 times") as exc:
        extractor.extract(TURN)
    assert "raw output: " in str(exc.value)
    if "I can't help" in repr(response):  # a refusal is the raw output
        assert "I can't help with that" in str(exc.value)


def test_a_failing_call_is_an_augmentation_error_with_the_cause() -> None:
    def boom(_messages: Any) -> Any:
        raise ConnectionError("provider unreachable")

    with pytest.raises(AugmentationError, match="provider unreachable") as exc:
        LLMExtractor("m", client=Client(boom)).extract(TURN)
    assert isinstance(exc.value.__cause__, ConnectionError)


# ---- through the worker ---------------------------------------------------------------------------

GOOD_OUTPUT = json.dumps({"memories": [{"content": "The user lives in Porto", "kind": "attribute",
                                        "slot": "lives_in", "source_message_ids": [1]}],
                          "triples": [{"subject": "user", "predicate": "lives_in",
                                       "object": "Porto"}],
                          "process_attributes": [], "summary": None})


def is_malformed(raw: str) -> bool:
    """Whether ``LLMExtractor`` refuses ``raw`` (asked of the extractor itself)."""
    client = Client(lambda _m: completion(raw))
    try:
        LLMExtractor("m", client=client, attempts=1).extract(TURN)
    except AugmentationError:
        return True
    return False


@pytest.mark.parametrize("examples", WORKER_EXAMPLES)
def test_a_malformed_job_fails_alone_with_its_raw_output(db_url: str, examples: int,
                                                         figures: Recorder) -> None:
    """The client answers GOOD_OUTPUT for turns that do not say "poison"; a poisoned turn gets
    the fuzzed output. Both go in one batch."""
    poison: dict[str, str] = {}

    def reply(messages: list[dict[str, Any]]) -> ChatCompletion:
        turn = messages[-1]["content"]
        marker = re.search(r"poison-\d+", turn)
        return completion(poison[marker.group(0)] if marker else GOOD_OUTPUT)

    client = Client(reply)
    mem = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                 extractor=LLMExtractor("m", client=client, attempts=1), request_num_backoff=1)
    mem.config.storage.build()
    counter = iter(range(10**9))
    try:

        @fuzz(examples)
        @given(raw=st.one_of(near_valid(), st.text()).filter(is_malformed))
        @figures.fuzz_case
        def check(raw: str) -> None:
            n = next(counter)
            poison[f"poison-{n}"] = raw
            mem.attribution(entity_id=f"victim-{n}")
            said = [{"role": "user", "content": f"poison-{n}: I moved to Porto"},
                    {"role": "assistant", "content": "ok"}]
            bad_ids = mem.capture(said)
            mem.attribution(entity_id=f"bystander-{n}")
            good_ids = mem.capture([{"role": "user", "content": "I moved to Porto"}])
            assert mem.augmentation.run_once() == 2  # one batch
            failed = {f["entity_id"]: f for f in mem.augmentation.failed()}
            assert f"bystander-{n}" not in failed
            assert f"raw output: {raw!r}" in failed[f"victim-{n}"]["error"]
            assert failed[f"victim-{n}"]["message_ids"] == bad_ids
            # the bystander's job is done: its extraction and its episodic memory are stored
            assert {(m.kind, m.content, m.source_message_ids) for m in mem.memories()} == {
                ("attribute", "The user lives in Porto", tuple(good_ids)),
                ("episodic", "I moved to Porto", tuple(good_ids))}
            # the victim's turn itself is kept as it was said, and recallable as said
            mem.attribution(entity_id=f"victim-{n}")
            assert [(m["role"], m["content"]) for m in mem.session_messages()] == [
                (m["role"], m["content"]) for m in said]
            assert [(m.kind, m.content, m.source_message_ids) for m in mem.memories()] == [
                ("episodic", f"poison-{n}: I moved to Porto", (bad_ids[0],))]

        check()
        assert mem.augmentation.pending() == 0
    finally:
        mem.close()


class Scripted:
    """An extractor returning (or raising) whatever the test put under the turn's marker."""

    def __init__(self) -> None:
        self.outputs: dict[str, Extraction | Exception] = {}

    def extract(self, conversation: Conversation) -> Extraction:
        text = str(conversation.messages[0]["content"])
        marker = re.search(r"turn-\d+", text)
        out = self.outputs[marker.group(0)] if marker else Extraction()
        if isinstance(out, Exception):
            raise out
        return out


ODD_TEXT = st.one_of(
    TEXT, st.sampled_from(["a\x00b", "\ud800", "x" * 256, "🙂" * 255, "🙂" * 256, "  ", ""]),
    st.text(st.characters(exclude_categories=[]), max_size=20))
EXTRACTION = st.builds(
    Extraction,
    memories=st.lists(st.builds(ExtractedMemory, content=ODD_TEXT,
                                kind=st.sampled_from(KINDS),
                                source_message_ids=st.just(()),
                                slot=st.one_of(st.none(), ODD_TEXT)), max_size=3),
    triples=st.lists(st.builds(Triple, ODD_TEXT, ODD_TEXT, ODD_TEXT), max_size=2),
    process_attributes=st.lists(ODD_TEXT, max_size=2),
    summary=st.one_of(st.none(), ODD_TEXT))


def storable(extraction: Extraction) -> bool:
    """Whether every backend can hold the extraction (what the worker must check)."""
    def ok(text: str | None, limit: int | None = None) -> bool:
        if text is None:
            return True
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in text and (limit is None or len(text) <= limit)

    # what the worker keeps: memories with text, triples with all three parts
    memories = [m for m in extraction.memories if m.content.strip()]
    triples = [t for t in extraction.triples
               if t.subject.strip() and t.predicate.strip() and t.object.strip()]
    return all(ok(m.content) and ok(m.slot, 255) for m in memories) and all(
        ok(t.object) and ok(t.subject.strip(), 255) and ok(t.predicate.strip(), 255)
        for t in triples) and all(ok(a) for a in extraction.process_attributes) \
        and ok(extraction.summary)


@pytest.mark.parametrize("examples", WORKER_EXAMPLES)
def test_any_extraction_is_stored_exactly_or_fails_its_job_alone(
        db_url: str, examples: int, figures: Recorder) -> None:
    """Whatever a custom extractor returns, on every backend: a storable extraction is stored
    (memories read back exactly), an unstorable one fails its own job with a clear error; the
    other job of the batch is done either way."""
    extractor = Scripted()
    mem = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                 extractor=extractor, request_num_backoff=1)
    mem.config.storage.build()
    counter = iter(range(10**9))
    try:

        @fuzz(examples)
        @given(extraction=st.one_of(EXTRACTION, EXTRACTION, ODD_TEXT.map(RuntimeError)))
        @figures.fuzz_case
        def check(extraction: Extraction | Exception) -> None:
            n = next(counter)
            extractor.outputs[f"turn-{n}"] = extraction
            mem.attribution(entity_id=f"subject-{n}", process_id="agent")
            ids = mem.capture([{"role": "user", "content": f"turn-{n}"}])
            mem.attribution(entity_id=f"other-{n}")
            other = mem.capture([{"role": "user", "content": "an ordinary turn"}])
            assert mem.augmentation.run_once() == 2
            failed = {f["entity_id"]: f for f in mem.augmentation.failed()}
            assert f"other-{n}" not in failed
            assert [m.source_message_ids for m in mem.memories()] == [tuple(other)]
            mem.attribution(entity_id=f"subject-{n}", process_id="agent")
            if isinstance(extraction, Exception):  # its message is kept, whatever it holds
                error = failed[f"subject-{n}"]["error"]
                said = str(extraction)
                if storable(Extraction(summary=said)):
                    assert error == f"RuntimeError: {said}"
                else:  # NUL and lone surrogates are kept as escapes
                    assert error.startswith("RuntimeError: "), error
                    assert re.search(r"\\(x00|ud[89a-f])", error), error
                assert [m["content"] for m in mem.session_messages()] == [f"turn-{n}"]
                # ... and recallable as said: the failed job still wrote its episodic memory
                assert [(m.kind, m.source_message_ids) for m in mem.memories()] == [
                    ("episodic", tuple(ids))]
                return
            if not storable(extraction):
                error = failed[f"subject-{n}"]["error"]
                assert error.startswith("AugmentationError: extractor returned a "), error
                assert failed[f"subject-{n}"]["message_ids"] == ids
                assert [m["content"] for m in mem.session_messages()] == [f"turn-{n}"]
                # ... and recallable as said: the failed job still wrote its episodic memory
                assert [(m.kind, m.source_message_ids) for m in mem.memories()] == [
                    ("episodic", tuple(ids))]
                return
            assert f"subject-{n}" not in failed
            stored = [m for m in mem.memories(include_superseded=True) if m.kind != "episodic"]
            said = [m for m in extraction.memories if m.content.strip()]
            # one row per kind and normalized text (the same memory again counts a mention)
            assert {(m.kind, normalize_text(m.content)) for m in stored} == {
                (m.kind, normalize_text(m.content)) for m in said}
            assert {(m.kind, m.content) for m in stored} <= {
                (m.kind, m.content.strip()) for m in said}

        check()
    finally:
        mem.close()


# ---- the rule extractor ------------------------------------------------------------------------------

WORDS = ["I", "i", "I'm", "I've", "I'd", "I'll", "my", "My", "favorite", "colour", "is", "are",
         "was", "live", "in", "Lisbon", "prefer", "avoid", "never", "always", "no", "Goal:",
         "You are", "yesterday", "ran", "really", "don't", "used", "to", "call me",
         "my name is", "years old", "42", "'", '"', "-", ".", "?", "!", ";", ",", ":", "\n",
         "\r\n", "\t", "\x00", "\x1b", "\u2028", "\u0085", "\u200d", "\u202e", "🙂", "用",
         "İ", "ı", "ſ", "\u212a", "ß", "\ud800", "a" * 500]
SENTENCES = st.lists(st.sampled_from(WORDS), max_size=40).flatmap(
    lambda words: st.sampled_from([" ".join(words), "".join(words)]))
RULE_TEXT = st.one_of(st.text(st.characters(exclude_categories=[])), SENTENCES,
                      st.builds(lambda s, n: s * n, SENTENCES, st.integers(50, 400)))


@pytest.mark.parametrize("examples", EXAMPLES)
def test_rule_extractor_never_raises_and_yields_valid_memories(examples: int,
                                                               figures: Recorder) -> None:
    extractor = RuleExtractor()

    @fuzz(examples)
    @given(texts=st.lists(RULE_TEXT, min_size=1, max_size=3),
           roles=st.lists(st.sampled_from(["user", "assistant", "system", "tool"]), min_size=3,
                          max_size=3),
           name=st.one_of(st.none(), TEXT), as_parts=st.booleans())
    @example(texts=["My ' is cheap. My - is big", "My favourite colour is teal"],
             roles=["user", "user", "user"], name=None, as_parts=False)
    @example(texts=["I 0 İ", "I like uſ and myſelf"], roles=["user", "user", "user"],
             name=None, as_parts=False)  # re.I matches "İ" for "i", "ſ" for "s"
    @figures.fuzz_case
    def check(texts: list[str], roles: list[str], name: str | None, as_parts: bool) -> None:
        messages = [{"id": i + 1, "role": role, "content": [{"type": "text", "text": text}]
                     if as_parts else text, **({"name": name} if name else {})}
                    for i, (text, role) in enumerate(zip(texts, roles, strict=False))]
        conversation = Conversation("fuzz", None, messages)
        out = extractor.extract(conversation)
        assert extractor.extract(conversation) == out  # deterministic
        ids = {m["id"] for m in messages}
        users = {m["id"] for m in messages if m["role"] == "user"}
        for m in out.memories:
            assert m.kind in MEMORY_KINDS and m.kind != "episodic"
            assert isinstance(m.content, str) and m.content.strip()
            assert len(m.source_message_ids) == 1 and set(m.source_message_ids) <= users
            assert m.slot is None or re.fullmatch(r"\w{1,255}", m.slot), m.slot
        for t in out.triples:
            assert t.subject and t.predicate.strip() and isinstance(t.object, str), t
            assert len(t.predicate) <= 255
        assert all(a.startswith("Role: ") for a in out.process_attributes)
        assert out.summary is None
        assert set().union(*(m.source_message_ids for m in out.memories)) <= ids

    check()


# ---- atheris -------------------------------------------------------------------------------------------

HARNESS = Path(__file__).with_name("fuzz_atheris.py")


@pytest.mark.reliability
@pytest.mark.parametrize("target", sorted(ATHERIS_RUNS))
def test_atheris_harness_finds_no_crash(target: str, tmp_path: Path,
                                        figures: Recorder) -> None:
    """Coverage-guided fuzzing of a parser for a bounded number of inputs, in a child process
    (atheris owns the process while it runs); a crashing input would land in ``artifacts``."""
    runs = ATHERIS_RUNS[target]
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    proc = subprocess.run(
        [sys.executable, str(HARNESS), target, "--workdir", str(tmp_path), f"-runs={runs}",
         "-max_len=4096", f"-artifact_prefix={artifacts}/", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    # libFuzzer's count of inputs run (its final stats, printed after a crash too)
    ran = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    found = list(artifacts.iterdir())
    figures.fuzz("atheris", cases=int(ran.group(1)) if ran else 0,
                 crashes=len(found) or int(proc.returncode != 0))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert f"Done {runs} runs" in proc.stderr, proc.stderr[-3000:]
    assert found == []  # no crash, leak or timeout input
