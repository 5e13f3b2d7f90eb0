"""The context pipeline end to end through a registered OpenAI client, asserted on the request
the (local, OpenAI-compatible) server really received: bounded, dated, each memory once,
nothing the request already shows, nothing for an unrelated question."""

from __future__ import annotations

import re

import openai
from memori_llm_support import new_memori

from memori_core.context import BLOCK_END, BLOCK_START


def test_a_huge_memory_is_cut_and_the_block_stays_in_budget(sqlite_url: str,
                                                             echo_server: str) -> None:
    mem = new_memori(sqlite_url)
    mem.attribution(entity_id="ann", process_id="chef")
    mem.remember("peanut " * 1_500_000)  # a 10.5 MB paste that became one memory
    mem.remember("The user is allergic to peanuts")
    client = openai.OpenAI(base_url=echo_server, api_key="local", max_retries=0)
    mem.llm.register(client)
    try:
        reply = client.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "Which peanut snack is safe?"}])
    finally:
        mem.llm.unregister(client)
        client.close()  # its connection to the local server
        mem.close()
    sent = reply.choices[0].message.content or ""
    system = sent.split(" | ")[0]
    assert system.startswith(BLOCK_START) and system.endswith(BLOCK_END)
    assert len(system) <= mem.config.context_tokens * 4  # the budget, in characters
    lines = system.split("\n")[2:-1]
    cut = [int(m.group(1)) for ln in lines if (m := re.search(r"\(truncated: \d+ of (\d+) "
                                                               r"characters\)$", ln))]
    assert cut and cut[0] > 10_000_000
    assert all(re.match(r'- \d{4}-\d\d-\d\d (fact|episodic): "', ln) for ln in lines)
    assert sum("allergic to peanuts" in ln for ln in lines) == 1


def test_what_the_request_shows_is_not_repeated_and_unrelated_gets_nothing(
        sqlite_url: str, echo_server: str) -> None:
    mem = new_memori(sqlite_url)
    mem.attribution(entity_id="ann", process_id="chef")
    mem.capture([{"role": "user", "content": "I keep bees on the roof"},
                 {"role": "assistant", "content": "Lovely."}])
    mem.augmentation.run_once()
    client = openai.OpenAI(base_url=echo_server, api_key="local", max_retries=0)
    mem.llm.register(client)
    try:
        fresh = client.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "How are my bees on the roof?"}])
        shown = client.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "I keep bees on the roof"},
            {"role": "assistant", "content": "Lovely."},
            {"role": "user", "content": "How are my bees on the roof?"}])
        unrelated = client.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "Quantum chromodynamics lecture schedule"}])
    finally:
        mem.llm.unregister(client)
        client.close()  # its connection to the local server
        mem.close()
    # one line for the turn and the fact drawn from it
    block = (fresh.choices[0].message.content or "").split(" | ")[0]
    assert block.count("bees on the roof") == 1 and BLOCK_START in block
    for reply in (shown, unrelated):  # already in the request / nothing relevant: no block
        assert BLOCK_START not in (reply.choices[0].message.content or "")
