"""Many users at once on one registered client: each call is recalled for and captured under
its own entity (asyncio tasks here, threads in test_registry.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from memori_llm_support import DRIVERS, new_memori

CASSETTE_PROVIDER = "openai"
N = 100
QUESTION = "What is my locker code?"


def entity(i: int) -> str:
    return f"user-{i:03d}"


def code(i: int) -> int:
    return 4000 + i


@pytest.mark.vcr
@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_100_concurrent_async_calls_with_100_entities_are_never_mixed(
        provider: str, sqlite_url: str, vcr: Any) -> None:
    driver = DRIVERS[provider]
    mem = new_memori(sqlite_url)
    try:
        for i in range(N):
            with mem.attribution(entity_id=entity(i), process_id="concierge"):
                mem.remember(f"The locker code is {code(i)}")
        client = driver.client(True)
        mem.llm.register(client)

        async def one(i: int) -> str:
            # each task has its own copy of the context: its own attribution
            mem.attribution(entity_id=entity(i), process_id="concierge")
            return await driver.aask(client, QUESTION)

        async def run() -> list[str]:
            try:
                return await asyncio.gather(*(one(i) for i in range(N)))
            finally:
                if provider == "google":
                    await client.aio.aclose()
                else:
                    await client.close()

        replies = asyncio.run(run())
        # the provider saw each entity's own memory (the cassette matches on the body) and
        # answered with it
        assert all(str(code(i)) in reply for i, reply in enumerate(replies))
        assert vcr.all_played and len(vcr.requests) == N
        for i in range(N):
            with mem.attribution(entity_id=entity(i), process_id="concierge"):
                assert [(m["role"], m["content"]) for m in mem.session_messages()] == [
                    ("user", QUESTION), ("assistant", replies[i])]
        stats = mem.llm.stats()
        assert (stats["calls"], stats["injected"], stats["turns_captured"]) == (N, N, N)
    finally:
        mem.close()
