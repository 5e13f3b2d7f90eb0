"""Every ```python block of integrations/langchain/README.md runs and prints what the README
says it prints. The Bedrock calls replay ``cassettes/langchain/test_langchain_readme/`` (fake
credentials); the blocks use the embedded default database and the real local embedding
model, as a user's copy would."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from integrations.readme_blocks import examples, readme
from vcr.cassette import Cassette

README = readme("langchain")
TEXT = README.read_text(encoding="utf-8")
EXAMPLES = examples(README)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("no_default_db", "aws_env"),
    # LangChain's own deprecation of the chain the issue asks for (see the README)
    pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated"
                               ":langchain_core._api.LangChainDeprecationWarning"),
]


def test_every_python_block_has_its_output_documented() -> None:
    assert len(EXAMPLES) == TEXT.count("```python") == 5
    assert all(example.prints is not None for example in EXAMPLES)
    assert "MemoriStore(mem)" in EXAMPLES[4].code  # run by test_langgraph_store.py


def run(index: int, marker: str) -> None:
    code, expected = EXAMPLES[index]
    assert marker in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{README}:python-block-{index}", "exec"), {"__name__": "readme"})
    assert out.getvalue() == expected


@pytest.mark.vcr
@pytest.mark.default_cassette("history.yaml")
def test_history_chain_example(vcr: Cassette) -> None:
    run(0, "RunnableWithMessageHistory")
    assert vcr.all_played and vcr.play_count == 2


@pytest.mark.vcr
@pytest.mark.default_cassette("agent.yaml")
def test_agent_middleware_example(vcr: Cassette) -> None:
    run(1, "MemoriMiddleware(mem)")
    assert vcr.all_played and vcr.play_count == 2
    documented = re.search(r"The system prompt Bedrock received ends with the framed memory "
                           r"block:\n\n```\n(.*?)\n```", TEXT, re.S)
    assert documented is not None
    for request in vcr.requests:  # both model calls of the agent got the memory
        assert json.loads(request.body)["system"] == [{"text": documented.group(1)}]


@pytest.mark.vcr
@pytest.mark.default_cassette("bedrock.yaml")
def test_chat_bedrock_example(vcr: Cassette) -> None:
    run(2, "ChatBedrock(")
    assert vcr.all_played and vcr.play_count == 1
    system = json.loads(vcr.requests[0].body)["system"]
    assert '- 2026-01-01 fact: "The user is allergic to peanuts"' in system.splitlines()


def test_retriever_example() -> None:
    run(3, "MemoriRetriever(")
