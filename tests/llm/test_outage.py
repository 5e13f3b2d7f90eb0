"""PostgreSQL goes away in the middle of a run (a proxy between memori and the server cuts every
connection and refuses new ones; the shared server itself is never stopped): the provider calls
still succeed, their turns wait in the bounded spill buffer, and are written, in order, when the
database is back."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from memori_figures import Recorder
from memori_llm_support import DRIVERS, ENTITY, MEMORY, PROCESS, QUESTION, TcpProxy, new_memori
from sqlalchemy.engine import make_url

CASSETTE_PROVIDER = "openai"
OUTAGE = ["Second question", "Third question", "Fourth question"]
AFTER = "Fifth question"


@pytest.mark.vcr
@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_calls_succeed_while_postgres_is_down_and_spilled_turns_are_written_after(
        provider: str, pg_url: str, pg_proxy: TcpProxy, vcr: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="memori_core.llm")
    driver = DRIVERS[provider]
    url = make_url(pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    mem = new_memori(url, llm_spill_turns=2)
    try:
        mem.attribution(entity_id=ENTITY, process_id=PROCESS)
        mem.remember(MEMORY)
        client = driver.client(False)
        mem.llm.register(client)
        replies = {QUESTION: driver.ask(client, QUESTION)}  # with the database: injected

        pg_proxy.cut()
        for question in OUTAGE:  # no recall, no capture: the calls still return
            replies[question] = driver.ask(client, question)
        stats = mem.llm.stats()
        assert stats["recall_errors"] == 3
        assert stats["capture_errors"] >= 1  # the first; later turns queue behind it
        assert stats["turns_spilled"] == 3
        # bounded: 2 turns; the oldest goes to the set-aside file, not lost
        assert (stats["spill_pending"], stats["spill_set_aside"], stats["spill_dropped"]) == \
            (2, 1, 0)
        assert "spill buffer is full" in caplog.text and "recall failed" in caplog.text

        pg_proxy.restore()
        replies[AFTER] = driver.ask(client, AFTER)  # written after the spilled turns
        assert mem.llm.flush() == 0
        kept = [QUESTION, OUTAGE[1], OUTAGE[2], AFTER]  # the oldest spilled turn was set aside
        assert [(m["role"], m["content"]) for m in mem.session_messages()] == [
            pair for q in kept for pair in (("user", q), ("assistant", replies[q]))]
        stats = mem.llm.stats()
        assert (stats["spill_written"], stats["spill_pending"], stats["turns_captured"]) == \
            (2, 0, 4)
        assert mem.llm.retry_set_aside() == (1, 0)  # written last: nothing was lost
        assert [m["content"] for m in mem.session_messages() if m["role"] == "user"] == [
            *kept, OUTAGE[0]]
        assert mem.stats()["llm"]["spill_dropped"] == 0
    finally:
        mem.close()


def test_forget_drops_the_entitys_spilled_turns(pg_url: str, pg_proxy: TcpProxy,
                                                echo_server: str) -> None:
    """Turns spilled during an outage belong to their entity too: ``forget`` drops them from the
    buffer, so writing the buffer later cannot bring a forgotten entity back."""
    import openai

    url = make_url(pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    # a long first retry: nothing drains the buffer on its own during the test
    mem = new_memori(url, request_backoff_factor=60)
    try:
        client = openai.OpenAI(base_url=echo_server, api_key="local", max_retries=0)
        mem.llm.register(client, recall=False)
        ask = lambda text: client.chat.completions.create(  # noqa: E731
            model="echo", messages=[{"role": "user", "content": text}])
        pg_proxy.cut()
        for entity in ("leaving", "staying", "leaving"):
            mem.attribution(entity_id=entity, process_id=PROCESS)
            ask(f"{entity} said this during the outage")
        assert mem.llm.stats()["spill_pending"] == 3
        pg_proxy.restore()

        counts = mem.forget("leaving")
        assert sum(counts.values()) == 0  # nothing of it reached the database
        stats = mem.llm.stats()
        assert (stats["spill_forgotten"], stats["spill_pending"]) == (2, 1)
        assert mem.llm.flush() == 0
        mem.attribution(entity_id="staying", process_id=PROCESS)
        assert [m["content"] for m in mem.session_messages()][0] == \
            "staying said this during the outage"
        assert "during the outage" not in json.dumps(mem.export(entity_id="leaving"))
    finally:
        mem.close()


#: wrapped calls made while the database hangs: ``make test``, ``make test-reliability``
HUNG_CALLS = [pytest.param(2, id="fast"),
              pytest.param(20, id="full", marks=pytest.mark.reliability)]


@pytest.mark.parametrize("calls", HUNG_CALLS)
def test_a_hung_database_holds_no_call_past_the_bound(pg_url: str, pg_proxy: TcpProxy,
                                                       echo_server: str, calls: int,
                                                       figures: Recorder) -> None:
    """Issue 18.3: the database stops answering (connections stay open, nothing comes back):
    each call still returns, without memories and with its turn spilled, instead of waiting
    as long as the database hangs (without the bound these calls block until ``flow()``);
    once it answers again every turn is stored once, in order.

    Each call is timed; the long form records the worst against the bound
    (``database_timeout_seconds``, 1 s) for the figures table. The bound is for the whole
    call: once recall has timed out, capture spills at once, so no call waits more than one
    bound (with slack for a busy machine)."""
    import openai

    bound = 1.0
    url = make_url(pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    mem = new_memori(url, database_timeout_seconds=bound)
    try:
        client = openai.OpenAI(base_url=echo_server, api_key="local", max_retries=0)
        mem.llm.register(client)
        mem.attribution(entity_id=ENTITY, process_id=PROCESS)
        mem.remember(MEMORY)
        ask = lambda text: client.chat.completions.create(  # noqa: E731
            model="echo", messages=[{"role": "user", "content": text}])
        ask("before the hang")
        pg_proxy.hang()
        said, took = [], []
        for n in range(calls):
            said.append(f"during the hang, call {n}")
            start = time.monotonic()
            assert ask(said[-1]).choices[0].message.content  # the provider's reply came back
            took.append(time.monotonic() - start)
        print("call latencies during the hang (s):", [round(t, 3) for t in took])
        figures.hang(took, bound_s=bound)
        stats = mem.llm.stats()
        assert stats["recall_errors"] == calls and stats["turns_spilled"] == calls
        assert max(took) <= bound + 0.5, took
        pg_proxy.flow()
        assert mem.llm.flush() == 0
        assert [m["content"] for m in mem.session_messages() if m["role"] == "user"] == [
            "before the hang", *said]
    finally:
        pg_proxy.flow()
        mem.close()
