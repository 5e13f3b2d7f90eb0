"""The integration kit (``memori_core.integration``): what every plugin builds on."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from memori_core import ConfigurationError, Memori
from memori_core.integration import (
    Turn,
    attributed,
    check_limit,
    check_memori,
    check_scope,
    check_text,
    clean,
    named_part,
    named_parts,
    prompt_context,
    query_of,
    storable,
    tool_call,
)


def test_checks_name_the_frameworks_argument() -> None:
    with pytest.raises(ConfigurationError, match="memory must be a memori_core.Memori") as e:
        check_memori("db.sqlite", "memory")
    assert e.value.argument == "memory"
    with pytest.raises(ConfigurationError, match="top_k must be a positive int") as e:
        check_limit(0, "top_k")
    assert e.value.argument == "top_k"
    assert check_limit(None, "top_k") is None
    with pytest.raises(ConfigurationError):
        check_limit(None, "top_k", optional=False)
    with pytest.raises(ConfigurationError):
        check_limit(True, "top_k")
    assert check_scope("entity") == "entity"
    with pytest.raises(ConfigurationError, match="'process' or 'entity'"):
        check_scope("user")
    assert check_text("  likes tea ", "fact", min_chars=3) == "likes tea"
    with pytest.raises(ConfigurationError, match="at least 3"):
        check_text("a", "fact", min_chars=3)
    with pytest.raises(ConfigurationError, match="must be a str"):
        check_text(None, "fact")


def test_attributed_restores_the_callers_attribution_and_renames_errors(smem: Memori) -> None:
    smem.attribution(entity_id="caller", process_id="app")
    caller_session = smem.session_id
    with attributed(smem, "u1", "agent", "s-1") as m:
        assert (m.entity_id, m.process_id, m.session_id) == ("u1", "agent", "s-1")
    assert (smem.entity_id, smem.process_id, smem.session_id) == ("caller", "app", caller_session)
    with pytest.raises(ConfigurationError, match="user_id") as e:
        with attributed(smem, "", names={"entity_id": "user_id"}):
            pass
    assert e.value.argument == "user_id"
    with pytest.raises(ConfigurationError) as e:
        with attributed(smem, "u1", session_id="x" * 300, names={"session_id": "thread_id"}):
            pass
    assert e.value.argument == "thread_id"
    with pytest.raises(RuntimeError):
        with attributed(smem, "u2"):
            raise RuntimeError("framework failed")
    assert smem.entity_id == "caller"


def test_attributed_is_per_thread_and_task(smem: Memori) -> None:
    def in_thread(user: str) -> str | None:
        with attributed(smem, user):
            return smem.entity_id

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(in_thread, [f"u{i}" for i in range(8)])) == \
            [f"u{i}" for i in range(8)]
    assert smem.entity_id is None

    async def task(user: str) -> str | None:
        with attributed(smem, user):
            await asyncio.sleep(0)
            return smem.entity_id

    async def main() -> list[str | None]:
        return list(await asyncio.gather(*(task(f"t{i}") for i in range(5))))

    assert asyncio.run(main()) == [f"t{i}" for i in range(5)]


def test_clean_replaces_what_no_database_can_hold() -> None:
    value = {"text": "hi\x00", "parts": [{"k\ud800": "ok"}, "x"], "n": 1}
    cleaned, changed = clean(value)
    assert changed and cleaned == {"text": "hi\ufffd", "parts": [{"k\ufffd": "ok"}, "x"], "n": 1}
    same = {"text": "fine"}
    assert clean(same) == (same, False)
    assert clean(same)[0] is same


def test_message_helpers() -> None:
    assert tool_call("c1", "search", {"q": "tea"}) == {
        "id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q": "tea"}'}}
    assert named_part("image", "cat.png", "image/png") == {
        "type": "image", "name": "cat.png", "media_type": "image/png"}
    assert query_of([{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
                     {"role": "user", "content": [{"type": "text", "text": "second"},
                                                  named_part("image")]},
                     {"role": "tool", "content": "result"}]) == "second"
    assert query_of([{"role": "assistant", "content": "only"}]) == ""


def test_named_parts_names_binary_parts_and_keeps_the_rest() -> None:
    text = {"type": "text", "text": "what is this?"}
    assert named_parts("plain") == "plain"
    assert named_parts([text, {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                        {"type": "file", "filename": "a.pdf", "mime_type": "application/pdf",
                         "base64": "JVBERi0="}, {"type": "audio", "url": "https://x/a.wav"}]) == [
        text, named_part("image_url", "https://x/cat.png"), named_part("image_url"),
        named_part("file", "a.pdf", "application/pdf"), named_part("audio", "https://x/a.wav")]


def test_storable_cleans_and_counts(smem: Memori) -> None:
    rows = [{"role": "user", "content": "nul \x00"}, {"role": "assistant", "content": "ok"}]
    assert storable(smem, rows, "test") == [{"role": "user", "content": "nul \ufffd"},
                                            {"role": "assistant", "content": "ok"}]
    assert storable(smem, rows[1:], "test") == rows[1:]
    assert smem.llm.stats()["text_cleaned"] == 1


@pytest.mark.parametrize("outcome", ["complete", "stopped", "error"])
def test_turn_keeps_the_user_message_and_partial_reply_in_every_outcome(
        mem: Memori, outcome: str) -> None:
    mem.attribution(entity_id="alice", process_id="chat")
    turn = Turn(mem, [{"role": "user", "content": "I'm allergic to peanuts."}], framework="test")
    turn.add_text("Noted, ")
    turn.add_text("no peanuts.")
    turn.finish(outcome, ValueError("model failed") if outcome == "error" else None)  # type: ignore[arg-type]
    turn.finish("complete")  # once only
    stored = mem.session_messages()
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "I'm allergic to peanuts."), ("assistant", "Noted, no peanuts.")]
    if outcome == "complete":
        assert "outcome" not in stored[0]["metadata"]
        assert stored[1]["metadata"] == {"framework": "test"}
    else:
        for m in stored:
            assert m["metadata"]["outcome"] == outcome
        if outcome == "error":
            assert stored[1]["metadata"]["error"] == "ValueError"


def test_turn_as_context_manager_marks_errors_and_early_stops(smem: Memori) -> None:
    smem.attribution(entity_id="bob")

    def stream():  # type: ignore[no-untyped-def]
        with Turn(smem, [{"role": "user", "content": "Tell me a story"}],
                  framework="test") as turn:
            for word in ["Once ", "upon ", "a ", "time"]:
                turn.add_text(word)
                yield word

    gen = stream()
    assert next(gen) == "Once "
    gen.close()  # the caller stops reading: GeneratorExit
    with pytest.raises(KeyError):
        with Turn(smem, [{"role": "user", "content": "What now?"}], framework="test"):
            raise KeyError("boom")
    stored = smem.session_messages()
    assert [(m["content"], m["metadata"].get("outcome")) for m in stored] == [
        ("Tell me a story", "stopped"), ("Once ", "stopped"), ("What now?", "error")]


def test_an_abandoned_turn_is_stored_when_collected(smem: Memori) -> None:
    smem.attribution(entity_id="carol")
    turn = Turn(smem, [{"role": "user", "content": "Are you there?"}], framework="test")
    turn.add_text("Yes")
    del turn
    gc.collect()
    stored = smem.session_messages()
    assert [(m["content"], m["metadata"]["outcome"]) for m in stored] == [
        ("Are you there?", "stopped"), ("Yes", "stopped")]


def test_turn_stores_unstorable_text_replaced_and_counts_it(mem: Memori) -> None:
    mem.attribution(entity_id="dave")
    Turn(mem, [{"role": "user", "content": "hi\x00 there \ud83d"}],
         framework="test").finish()
    assert [m["content"] for m in mem.session_messages()] == ["hi\ufffd there \ufffd"]
    assert mem.stats()["llm"]["text_cleaned"] == 1


def test_turn_is_for_the_user_it_was_made_for(smem: Memori) -> None:
    smem.attribution(entity_id="erin", process_id="a")
    turn = Turn(smem, [{"role": "user", "content": "I live in Oslo"}], framework="test")
    smem.attribution(entity_id="frank")
    with ThreadPoolExecutor(1) as pool:  # finished elsewhere, with no attribution there
        pool.submit(turn.finish).result()
    assert smem.session_messages() == []
    smem.attribution(entity_id="erin", process_id="a")
    assert [m["content"] for m in smem.session_messages(session_id=turn.session_id)] == \
        ["I live in Oslo"]


def test_turn_needs_an_attribution(smem: Memori) -> None:
    with pytest.raises(ConfigurationError) as e:
        Turn(smem, [{"role": "user", "content": "hi"}], framework="test")
    assert e.value.argument == "entity_id"


def test_turn_survives_a_database_failure_by_spilling(smem: Memori) -> None:
    smem.attribution(entity_id="gina")
    smem.engine.dispose()
    real = smem._store.capture

    def down(**kwargs):  # type: ignore[no-untyped-def]
        from memori_core import StorageError
        raise StorageError("database is down")

    smem._store.capture = down  # type: ignore[method-assign]
    Turn(smem, [{"role": "user", "content": "Remember me"}], framework="test").finish()
    assert smem.stats()["llm"]["turns_spilled"] == 1
    smem._store.capture = real  # type: ignore[method-assign]
    assert smem.llm.flush() == 0
    assert [m["content"] for m in smem.session_messages()] == ["Remember me"]


def test_prompt_context_is_the_one_framing_and_drops_what_history_shows(smem: Memori) -> None:
    smem.attribution(entity_id="hana", process_id="chef")
    smem.remember("The user is allergic to peanuts")
    smem.remember("The user prefers spicy food")
    ctx = prompt_context(smem, "Which food should I avoid, given peanuts?")
    assert ctx is not None and ctx.block is not None
    assert ctx.block.startswith("<memori_context>\n") and ctx.block.endswith("</memori_context>")
    assert '"The user is allergic to peanuts"' in ctx.block
    ctx = prompt_context(smem, "Which food should I avoid, given peanuts?",
                         history=[{"role": "user", "content": "The user is allergic to peanuts"}])
    assert ctx is None or ctx.block is None or "allergic" not in ctx.block


def test_prompt_context_logs_and_counts_a_failed_recall(smem: Memori,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    smem.attribution(entity_id="ivan")

    def broken(*a, **k):  # type: ignore[no-untyped-def]
        from memori_core import RecallError
        raise RecallError("index unreadable")

    smem.recall = broken  # type: ignore[method-assign]
    assert prompt_context(smem, "anything") is None
    assert smem.stats()["llm"]["recall_errors"] == 1
    assert "index unreadable" in caplog.text


def test_a_missing_local_embedder_is_an_error_at_construction_naming_the_extra(
        tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    code = (
        "import sys\n"
        "sys.modules['sentence_transformers'] = None\n"
        "sys.modules['onnxruntime'] = None\n"  # neither runtime of the local model
        "from memori_core import Memori, ConfigurationError\n"
        "try:\n"
        f"    Memori(conn='sqlite:///{db}')\n"
        "except ConfigurationError as e:\n"
        "    print(e.argument, str(e))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.startswith("embedder ")
    assert 'pip install "memori-core[local]"' in out


def test_a_turn_the_database_refuses_is_set_aside_and_the_rest_are_written(
        smem: Memori) -> None:
    """Issue 18.5: one turn the (reachable) database refuses for a reason of its own must not
    block the turns after it, nor be reported as an outage."""
    from sqlalchemy import text

    with smem.engine.begin() as c:  # the real database refuses this one turn
        c.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON memori_conversation_message "
                       "WHEN NEW.content LIKE '%poison%' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by the server'); END"))
    smem.attribution(entity_id="gus")
    Turn(smem, [{"role": "user", "content": "a poison turn"}], framework="test").finish()
    assert smem.stats()["llm"]["turns_spilled"] == 1
    for n in range(3):
        Turn(smem, [{"role": "user", "content": f"fine turn {n}"}], framework="test").finish()
    assert smem.llm.flush() == 0
    assert [m["content"] for m in smem.session_messages()] == [f"fine turn {n}" for n in range(3)]
    (aside,) = smem.llm.set_aside()
    assert aside["messages"][0]["content"] == "a poison turn"
    assert "refused by the server" in aside["error"]
    assert smem.stats()["llm"]["spill_set_aside"] == 1


def test_attribution_of_a_framework_call_ends_with_it_on_a_reused_thread(smem: Memori) -> None:
    """Issue 18.10: a one-thread executor runs user A's framework call, then a task that sets
    no attribution: that task must not act as A (the kit's attribution is scoped to the call,
    as every plugin uses it)."""
    smem.attribution(entity_id="setup")
    with attributed(smem, "user-a", "bank"):
        smem.remember("The user's PIN is 1234")

    def framework_call() -> None:
        with attributed(smem, "user-a", "bank"):
            assert smem.recall("What is my PIN?")

    def next_task() -> str | None:
        return smem.entity_id

    with ThreadPoolExecutor(1) as pool:
        pool.submit(framework_call).result()
        assert pool.submit(next_task).result() is None
        with pytest.raises(ConfigurationError):
            pool.submit(smem.recall, "What is my PIN?").result()
