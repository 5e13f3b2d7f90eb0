"""Author test_pydantic_ai_openai/test_openai_agent_remembers_across_runs.yaml without a key.

The requests are what pydantic-ai's OpenAIChatModel sends for the test's flow (recorded by vcrpy
over an httpx2 MockTransport, so nothing leaves the machine); the responses are written by hand in
the wire format of OpenAI's Chat Completions API reference. Run from the repository root:

    .venv/bin/python cassettes/pydantic_ai/author_cassettes.py

Re-run it whenever the plugin changes what it sends (tool descriptions, the memory block); the
flow below must stay the one in tests/integrations/pydantic_ai/test_pydantic_ai_openai.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "integrations" / "pydantic_ai"))

import httpx2
import time_machine
import vcr
from conftest import CASSETTES, FROZEN_DAY, ReadableJsonYaml, _keep_headers
from memori_pydantic_ai import MemoriCapability, MemoriDeps
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from memori_core import Memori
from memori_core.testing import HashEmbedder

FACT = "The user's home city is Lisbon"
PATH = CASSETTES / "test_pydantic_ai_openai" / "test_openai_agent_remembers_across_runs.yaml"


def completion(n: int, message: dict[str, Any], finish: str, prompt: int, output: int) -> dict[str, Any]:
    """A chat.completion object as the API reference documents it."""
    return {
        "id": f"chatcmpl-memori{n}", "object": "chat.completion", "created": 1768467600 + n,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": finish,
                     "message": {"role": "assistant", "refusal": None, "annotations": [], **message}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_560af6e559",
    }


RESPONSES = [
    completion(1, {"content": None, "tool_calls": [{
        "id": "call_q5Xb2wWm7sYJd1fLk3RtN8aH", "type": "function",
        "function": {"name": "remember", "arguments": json.dumps({"fact": FACT}, separators=(",", ":"))}}]},
        "tool_calls", 182, 21),
    completion(2, {"content": "Got it! I'll remember that your home city is Lisbon."}, "stop", 215, 14),
    completion(3, {"content": "Your home city is Lisbon."}, "stop", 231, 7),
]


def handler(request: httpx2.Request) -> httpx2.Response:
    assert str(request.url) == "https://api.openai.com/v1/chat/completions", request.url
    return httpx2.Response(200, json=RESPONSES.pop(0))


def main() -> None:
    recorder = vcr.VCR(record_mode="all", match_on=["method", "uri", "body"],
                       filter_headers=["authorization"], before_record_request=_keep_headers,
                       before_record_response=_keep_headers, decode_compressed_response=True)
    recorder.register_serializer("yaml", ReadableJsonYaml)
    PATH.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp, time_machine.travel(FROZEN_DAY):
        mem = Memori(conn=f"sqlite:///{tmp}/author.db", embedder=HashEmbedder())
        mem.config.storage.build()
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
        model = OpenAIChatModel("gpt-4o-mini",
                                provider=OpenAIProvider(api_key="sk-authoring", http_client=client))
        agent = Agent(model, deps_type=MemoriDeps, capabilities=[MemoriCapability()])
        deps = MemoriDeps(mem, "user_123", session_id="s1")
        with recorder.use_cassette(str(PATH)):
            async def first() -> str:
                return (await agent.run("Please remember that my home city is Lisbon.", deps=deps)).output

            print(asyncio.run(first()))
            with mem.attribution(entity_id="user_123"):
                assert mem.augmentation.wait(timeout=30)
                mem.forget_memories([m.id for m in mem.memories() if m.content != FACT])
            print(agent.run_sync("What is my home city?", deps=deps).output)
        mem.close()
    assert not RESPONSES, "the flow made fewer requests than authored"
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
