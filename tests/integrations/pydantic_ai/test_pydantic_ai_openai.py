"""An agent on Pydantic AI's OpenAI Chat Completions model, replayed from a cassette
(cassettes/pydantic_ai/test_pydantic_ai_openai/): the memory block reaches OpenAI as the system
message, the tools as OpenAI functions, and OpenAI's tool calls are captured.

Replay matches method, URI and body, so the requests this test makes must be byte-for-byte (as
JSON) what the cassette holds: the clock is fixed (memory lines carry their date) and, before the
second run, only the memory the model stored is kept, so what augmentation extracts from the
first run cannot change the second request.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from memori_pydantic_ai import MemoriCapability, MemoriDeps
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from memori_core import Memori

FACT = "The user's home city is Lisbon"


@pytest.mark.vcr
@pytest.mark.usefixtures("frozen_day")
def test_openai_agent_remembers_across_runs(smem: Memori) -> None:
    # a real key only when re-recording (--record-mode=rewrite); replay needs none
    key = os.environ.get("OPENAI_API_KEY", "sk-replayed-from-cassette")
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(api_key=key))
    agent = Agent(model, deps_type=MemoriDeps, capabilities=[MemoriCapability()])
    deps = MemoriDeps(smem, "user_123", session_id="s1")

    async def first() -> str:
        result = await agent.run("Please remember that my home city is Lisbon.", deps=deps)
        return result.output

    assert "Lisbon" in asyncio.run(first())
    with smem.attribution(entity_id="user_123"):
        rows = smem.session_messages("s1")
        assert [r["role"] for r in rows] == ["user", "assistant", "tool", "assistant"]
        call = rows[1]["tool_calls"][0]
        assert call["function"] == {"name": "remember", "arguments": f'{{"fact":"{FACT}"}}'}
        assert rows[2]["tool_call_id"] == call["id"] and rows[2]["content"].startswith(
            "Remembered (memory ")
        assert rows[3]["metadata"]["pydantic_ai"]["model_name"].startswith("gpt-4o-mini")
        assert smem.augmentation.wait(timeout=30)
        stored = [m for m in smem.memories() if m.content == FACT]
        assert len(stored) == 1 and stored[0].kind == "fact"
        smem.forget_memories([m.id for m in smem.memories() if m.content != FACT])

    second = agent.run_sync("What is my home city?", deps=deps)  # the sync face, same code
    assert "Lisbon" in second.output
    request = second.all_messages()[0]
    assert f'- 2026-01-15 fact: "{FACT}"' in (request.instructions or "")  # type: ignore[union-attr]
