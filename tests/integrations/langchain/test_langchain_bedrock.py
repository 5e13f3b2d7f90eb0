"""Bedrock through LangChain: ``ChatBedrockConverse`` (Converse / ConverseStream) and
``ChatBedrock`` (InvokeModel / InvokeModelWithResponseStream) wrapped by ``with_memori``,
replayed from the Bedrock runtime cassettes (botocore's real HTTP and event-stream parsing,
fake credentials). The replay matches the request body, and each test also reads the injected
memory block in the recorded request body and checks the live request was that one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from botocore.exceptions import HTTPClientError
from langchain_aws import ChatBedrock, ChatBedrockConverse
from langchain_core.messages import HumanMessage, SystemMessage
from memori_langchain import with_memori
from vcr.cassette import Cassette

from memori_core import Memori

pytestmark = pytest.mark.usefixtures("aws_env")

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
GUIDE = "You are a hiking guide. Answer in one sentence."
QUESTION = "Which snacks are safe for someone allergic to peanuts?"
ANSWER = "Apple slices, cheese and pretzels are safe picks without peanuts."
#: the memory's block line, dated the day tests/conftest.py's clock starts
BLOCK_LINE = '- 2026-01-01 fact: "The user is allergic to peanuts"'


@pytest.fixture
def ana(smem: Memori) -> Memori:
    smem.attribution(entity_id="ana", process_id="hiking-guide")
    smem.set_session("trail-1")
    smem.remember("The user is allergic to peanuts")
    return smem


def converse() -> ChatBedrockConverse:
    return ChatBedrockConverse(model=MODEL, region_name="us-east-1")


def invoke_model() -> ChatBedrock:
    return ChatBedrock(model_id=MODEL, region_name="us-east-1")


def sent_system(cassette: Cassette) -> str:
    """The system prompt of the one recorded request, after checking it was played."""
    assert len(cassette.requests) == 1
    assert cassette.play_count == 1 and cassette.all_played
    system: Any = json.loads(cassette.requests[0].body)["system"]
    return system if isinstance(system, str) else system[0]["text"]


def check_sent(cassette: Cassette) -> None:
    text = sent_system(cassette)
    assert text.startswith(GUIDE + "\n\n<memori_context>\n")
    assert BLOCK_LINE in text.splitlines()
    assert text.endswith("</memori_context>")


def text_of(content: Any) -> str:
    """A captured content: a str, or content parts (what a streamed Converse answer is)."""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


def check_captured(mem: Memori) -> None:
    assert [(m["role"], text_of(m["content"])) for m in mem.session_messages()] == [
        ("user", QUESTION), ("assistant", ANSWER)]


@pytest.mark.vcr
def test_converse_invoke(ana: Memori, vcr: Cassette) -> None:
    out = with_memori(converse(), ana).invoke([SystemMessage(GUIDE), HumanMessage(QUESTION)])
    assert out.content == ANSWER
    assert out.usage_metadata is not None and out.usage_metadata["input_tokens"] == 96
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
def test_converse_stream(ana: Memori, vcr: Cassette) -> None:
    llm = with_memori(converse(), ana)
    texts = [c.text for c in llm.stream([SystemMessage(GUIDE), HumanMessage(QUESTION)])]
    assert [t for t in texts if t] == ["Apple slices, ", "cheese and pretzels ",
                                       "are safe picks ", "without peanuts."]
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
def test_invoke_model(ana: Memori, vcr: Cassette) -> None:
    out = with_memori(invoke_model(), ana).invoke([SystemMessage(GUIDE), HumanMessage(QUESTION)])
    assert out.content == ANSWER
    assert out.usage_metadata is not None and out.usage_metadata["output_tokens"] == 14
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
def test_invoke_model_stream(ana: Memori, vcr: Cassette) -> None:
    llm = with_memori(invoke_model(), ana)
    texts = [c.text for c in llm.stream([SystemMessage(GUIDE), HumanMessage(QUESTION)])]
    assert "".join(texts) == ANSWER
    assert len([t for t in texts if t]) == 4  # the four deltas, one chunk each
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
@pytest.mark.default_cassette("test_converse_invoke.yaml")
def test_converse_ainvoke(ana: Memori, vcr: Cassette) -> None:
    llm = with_memori(converse(), ana)
    out = asyncio.run(llm.ainvoke([SystemMessage(GUIDE), HumanMessage(QUESTION)]))
    assert out.content == ANSWER
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
@pytest.mark.default_cassette("test_converse_stream.yaml")
def test_converse_astream(ana: Memori, vcr: Cassette) -> None:
    llm = with_memori(converse(), ana)

    async def run() -> str:
        return "".join([c.text async for c in llm.astream([SystemMessage(GUIDE),
                                                           HumanMessage(QUESTION)])])

    assert asyncio.run(run()) == ANSWER
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
@pytest.mark.default_cassette("test_invoke_model_stream.yaml")
def test_invoke_model_astream(ana: Memori, vcr: Cassette) -> None:
    llm = with_memori(invoke_model(), ana)

    async def run() -> str:
        return "".join([c.text async for c in llm.astream([SystemMessage(GUIDE),
                                                           HumanMessage(QUESTION)])])

    assert asyncio.run(run()) == ANSWER
    check_sent(vcr)
    check_captured(ana)


@pytest.mark.vcr
@pytest.mark.default_cassette("test_converse_invoke.yaml")
def test_a_different_memory_is_a_different_request(smem: Memori, vcr: Cassette) -> None:
    """The body match is strict: with another memory injected, the cassette has no answer."""
    smem.attribution(entity_id="bob", process_id="hiking-guide")
    smem.remember("The user is allergic to peanuts and shellfish")
    with pytest.raises(HTTPClientError, match="No match for the request"):
        with_memori(converse(), smem).invoke([SystemMessage(GUIDE), HumanMessage(QUESTION)])
    assert vcr.play_count == 0
    # the failed call's user message is kept, marked with the error
    (kept,) = smem.session_messages()
    assert kept["content"] == QUESTION
    assert kept["metadata"]["outcome"] == "error"
    assert kept["metadata"]["error"] == "HTTPClientError"


def test_no_cassette_holds_credentials() -> None:
    """Filters are not retroactive: every stored cassette is checked for credentials."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "cassettes" / "langchain"
    files = sorted(root.rglob("*.yaml"))
    assert len(files) == 7
    for path in files:
        text = path.read_text(encoding="utf-8").lower()
        for secret in ("authorization", "x-amz-security-token", "x-amz-date", "akia",
                       "aws4-hmac-sha256", "credential=", "signature="):
            assert secret not in text, f"{path.name} holds {secret!r}"
