"""MemoriDeps: one agent, many users at once, never mixed."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import pytest
from memori_pydantic_ai import MemoriCapability, MemoriDeps
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from memori_core import ConfigurationError, Memori

USERS = [f"user{i}" for i in range(6)]


def test_concurrent_users_never_mixed(smem: Memori) -> None:
    for user in USERS:
        with smem.attribution(entity_id=user):
            smem.remember(f"The code word of {user} is word{user[-1]}")
    seen: dict[str, str] = {}

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = messages[0].parts[0].content  # type: ignore[union-attr]
        user = re.search(r"user\d", str(prompt)).group(0)  # type: ignore[union-attr]
        await asyncio.sleep(0.01)  # let the other runs interleave
        if len(messages) == 1:
            seen[user] = info.instructions or ""
            return ModelResponse(parts=[ToolCallPart("remember", {"fact": f"{user} likes tea"})])
        return ModelResponse(parts=[TextPart(f"done {user}")])

    agent = Agent(FunctionModel(model), deps_type=MemoriDeps,
                  capabilities=[MemoriCapability()])

    async def chat(user: str) -> str:
        deps = MemoriDeps(smem, user, process_id="assistant", session_id=f"s-{user}")
        result = await agent.run(f"I am {user}: what is the code word?", deps=deps)
        return result.output

    async def main() -> list[str]:
        return list(await asyncio.gather(*(chat(u) for u in USERS)))

    assert asyncio.run(main()) == [f"done {u}" for u in USERS]
    for user in USERS:
        others = [u for u in USERS if u != user]
        assert f"The code word of {user} is word{user[-1]}" in seen[user]
        assert not any(f"The code word of {o}" in seen[user] for o in others)
        with smem.attribution(entity_id=user, process_id="assistant"):
            rows = smem.session_messages(f"s-{user}")
            assert rows[0]["content"] == f"I am {user}: what is the code word?"
            assert rows[-1]["content"] == f"done {user}"
            assert all(o not in str(r["content"]) for r in rows for o in others)
            # (augmentation of the captured runs may add episodic memories at any moment)
            assert sorted(m.content for m in smem.memories() if m.kind != "episodic") == sorted(
                [f"The code word of {user} is word{user[-1]}", f"{user} likes tea"])
    assert smem.entity_id is None


def test_deps_memori_is_used_over_the_capabilitys(smem: Memori, sqlite_url: str) -> None:
    from memori_core.testing import HashEmbedder

    other = Memori(conn=sqlite_url.replace(".db", "-other.db"), embedder=HashEmbedder())
    other.config.storage.build()
    try:
        agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("ok")])),
                      deps_type=MemoriDeps, capabilities=[MemoriCapability(smem)])
        agent.run_sync("hello", deps=MemoriDeps(other, "u1"))
        with other.attribution(entity_id="u1"):
            assert [r["content"] for r in other.session_messages()] == ["hello", "ok"]
        with smem.attribution(entity_id="u1"):
            assert smem.session_messages() == []
    finally:
        other.close()


def test_subclassed_deps_carry_your_own_fields(smem: Memori) -> None:
    @dataclass
    class AppDeps(MemoriDeps):
        locale: str = "en"

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")])

    agent = Agent(FunctionModel(model), deps_type=AppDeps, capabilities=[MemoriCapability()])
    agent.run_sync("hola", deps=AppDeps(smem, "u1", locale="es"))
    with smem.attribution(entity_id="u1"):
        assert smem.session_messages()[0]["content"] == "hola"


def test_deps_without_session_use_the_instances_session(smem: Memori) -> None:
    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("ok")])),
                  deps_type=MemoriDeps, capabilities=[MemoriCapability()])
    agent.run_sync("one", deps=MemoriDeps(smem, "u1"))
    agent.run_sync("two", deps=MemoriDeps(smem, "u1"))
    with smem.attribution(entity_id="u1"):
        assert [r["content"] for r in smem.session_messages() if r["role"] == "user"] == [
            "one", "two"]


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"memori": "sqlite://", "entity_id": "u"}, "memori"),
    ({"entity_id": None}, "entity_id"),
    ({"entity_id": ""}, "entity_id"),
    ({"entity_id": "x" * 256}, "entity_id"),
    ({"entity_id": "u", "process_id": ""}, "process_id"),
    ({"entity_id": "u", "session_id": 7}, "session_id"),
])
def test_bad_deps_name_the_argument(smem: Memori, kwargs: dict[str, object],
                                    argument: str) -> None:
    kwargs.setdefault("memori", smem)
    with pytest.raises(ConfigurationError) as err:
        MemoriDeps(**kwargs)  # type: ignore[arg-type]
    assert err.value.argument == argument
    assert smem.entity_id is None  # validation left no attribution behind
