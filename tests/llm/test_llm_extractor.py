"""``LLMExtractor`` against the Chat Completions API, replayed from cassettes authored in the
documented wire format (``cassettes/openai/test_llm_extractor/``; regenerate with
``python tests/llm/test_llm_extractor.py``): a valid extraction lands in the tables, malformed
output is asked for again and then fails the job with the raw output kept."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from memori_cassettes import CASSETTES, interaction, write
from sqlalchemy import text

from memori_core import ConfigurationError, Memori
from memori_core.augmentation.base import Conversation
from memori_core.augmentation.llm import LLMExtractor, _schema
from memori_core.testing import HashEmbedder

CASSETTE_PROVIDER = "openai"
URI = "https://api.openai.com/v1/chat/completions"
MODEL = "gpt-4o-mini"
TURN = [{"id": 1, "role": "user", "text": "I moved to Porto and I mostly code in Rust now."},
        {"id": 2, "role": "assistant", "text": "Nice! Porto has a lively Rust meetup."}]
GOOD = {"memories": [
    {"content": "The user lives in Porto", "kind": "attribute", "slot": "lives_in",
     "source_message_ids": [1]},
    {"content": "The user codes mostly in Rust", "kind": "skill", "slot": None,
     "source_message_ids": [1]}],
    "triples": [{"subject": "user", "predicate": "lives_in", "object": "Porto"}],
    "process_attributes": [], "summary": "The user moved to Porto and codes in Rust."}
MALFORMED = '{"memories": [{"content": "The user lives in Porto", "kind": "location"}'


def request_body() -> dict[str, Any]:
    extractor = LLMExtractor(MODEL, client=object())
    conv = Conversation("ann", None, [{**m, "content": m["text"]} for m in TURN])
    return {"model": MODEL, "messages": extractor.request(conv), "temperature": 0.0,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "memori_extraction", "strict": True, "schema": _schema()}}}


def completion(content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-memori-1", "object": "chat.completion", "created": 1763700000,
            "model": "gpt-4o-mini-2024-07-18", "choices": [{
                "index": 0, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 412, "completion_tokens": 96, "total_tokens": 508}}


def author() -> None:
    here = CASSETTES / "openai" / Path(__file__).stem
    write(here / "test_valid_extraction_is_stored.yaml",
          [interaction("POST", URI, request_body(), completion(json.dumps(GOOD)))])
    write(here / "test_malformed_output_is_retried_then_fails_the_job.yaml",
          [interaction("POST", URI, request_body(), completion(MALFORMED))] * 2)


@pytest.fixture
def llm_mem(sqlite_url: str) -> Iterator[Memori]:
    import openai

    client = openai.OpenAI(api_key="sk-test-not-a-key", max_retries=0)
    mem = Memori(conn=sqlite_url, embedder=HashEmbedder(),
                 extractor=LLMExtractor(MODEL, client=client), request_num_backoff=1)
    mem.config.storage.build()
    mem.attribution(entity_id="ann")
    try:
        yield mem
    finally:
        mem.close()


def capture_turn(mem: Memori) -> None:
    mem.capture([{"role": m["role"], "content": m["text"]} for m in TURN])


@pytest.mark.vcr
def test_valid_extraction_is_stored(llm_mem: Memori) -> None:
    capture_turn(llm_mem)
    assert llm_mem.augmentation.wait(timeout=60)
    assert llm_mem.augmentation.failed() == []
    got = {(m.kind, m.content, m.slot, m.source_message_ids)
           for m in llm_mem.memories() if m.kind != "episodic"}
    assert got == {("attribute", "The user lives in Porto", "lives_in", (1,)),
                   ("skill", "The user codes mostly in Rust", None, (1,))}
    with llm_mem.engine.connect() as c:
        assert c.execute(text("SELECT subject, predicate, object FROM memori_knowledge_graph")
                         ).all() == [("user", "lives_in", "Porto")]
        assert c.execute(text("SELECT summary FROM memori_conversation")).scalar_one() == \
            "The user moved to Porto and codes in Rust."
    assert llm_mem.recall("where does the user live", kinds=["attribute"])[0].content == \
        "The user lives in Porto"


@pytest.mark.vcr
def test_malformed_output_is_retried_then_fails_the_job(llm_mem: Memori) -> None:
    capture_turn(llm_mem)
    assert llm_mem.augmentation.wait(timeout=60)
    [failed] = llm_mem.augmentation.failed()
    assert "malformed extraction output 2 times" in failed["error"]
    assert MALFORMED in failed["error"]  # the raw output is kept
    assert failed["message_ids"] == [1, 2]  # the turn itself stays stored
    assert [m["content"] for m in llm_mem.session_messages()] == [m["text"] for m in TURN]


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ConfigurationError) as err:
        LLMExtractor("", client=object())
    assert err.value.argument == "model"
    with pytest.raises(ConfigurationError) as err:
        LLMExtractor(MODEL, client=object(), attempts=0)
    assert err.value.argument == "attempts"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    author()
