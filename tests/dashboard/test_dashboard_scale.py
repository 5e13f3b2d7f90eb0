"""The dashboard at scale, in a real browser (headless Debian Chromium): an entity with 10,000
memories and 2,000 triples (imported through ``POST /v1/import``). The figures are measured in
the browser and printed (``-s`` shows them; ``benchmarks/dashboard_browser.py`` prints the
same); nothing here asserts a duration: the tests check that every page works at this size."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import (
    Tab,
    artifacts,
    big_export,
    launch,
    measure_graph,
    sign_in,
    timed_render,
)
from playwright.sync_api import Browser, expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from memori_server_support import NO_LIMIT, Server, start_server

MEMORIES, TRIPLES = 10_000, 2_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose entity ``big`` holds ``MEMORIES`` memories and ``TRIPLES`` triples."""
    path = tmp_path_factory.mktemp("dashboard-scale") / "big.db"
    srv = start_server(f"sqlite:///{path}", *NO_LIMIT)
    try:
        c = srv.client(srv.admin)
        r = c.post("/v1/import", json={"data": big_export("big", TRIPLES, MEMORIES)},
                   timeout=300)
        assert r.status_code == 201, r.text
        assert r.json()["counts"]["memori_knowledge_graph"] == TRIPLES
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tab(big: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tab]:
    with sync_playwright() as pw:
        browser: Browser = launch(pw)
        t = Tab(browser, big.url, artifacts(tmp_path_factory))
        try:
            sign_in(t, big.admin)
            yield t
            t.assert_clean()
        finally:
            t.close()
            browser.close()


def test_ten_thousand_memories_first_page_and_search(tab: Tab, big: Server) -> None:
    first = timed_render(tab, lambda: tab.page.evaluate("() => { location.hash = "
                                                        "'#/e/big/memories'; }"))
    expect(tab.page.locator("table.memories tbody tr")).to_have_count(50)
    tab.page.get_by_label("Text contains").fill("topic 42 ")
    search = timed_render(tab, lambda: tab.page.get_by_role("button", name="Filter").click())
    found = [t.strip() for t in tab.page.locator("a.memory-link").all_inner_texts()]
    assert len(found) == 50 and all("topic 42 " in t for t in found)
    nxt = tab.page.get_by_role("button", name="Next →")
    nxt.click()
    expect(tab.page.get_by_text("Page 2")).to_be_visible()
    print(f"\ndashboard, {MEMORIES} memories (browser): first page rendered {first:.0f} ms, "
          f"search rendered {search:.0f} ms")


def test_a_graph_of_two_thousand_triples_draws_and_answers_input(tab: Tab, big: Server
                                                                   ) -> None:
    figures: dict[str, Any] = measure_graph(tab, "/e/big/graph")
    assert figures["edges"] == TRIPLES
    assert figures["nodes"] == tab.page.evaluate("() => window.__memoriGraph.nodes().length")
    assert figures["input_events"] > 0
    # the busiest node's panel: its triples, each naming a memory, and those memories
    degree = tab.page.evaluate("() => window.__memoriGraph.nodes(':selected')[0].degree()")
    expect(tab.page.locator("#node-triples li")).to_have_count(degree)
    assert tab.page.locator("#node-memories a.memory-link").count() > 0
    tab.shot("09-graph-2000")
    print(f"\ndashboard graph, {figures['nodes']} nodes / {figures['edges']} triples (browser): "
          f"drawn in {figures['draw_ms']:.0f} ms (fetch {figures['fetch_ms']:.0f}, layout "
          f"{figures['layout_ms']:.0f}); pan/zoom input to frame p50 "
          f"{figures['input_p50_ms']:.1f} ms, max {figures['input_max_ms']:.1f} ms over "
          f"{figures['input_events']} inputs, longest frame gap "
          f"{figures['frame_gap_max_ms']:.0f} ms; click to panel {figures['click_ms']:.0f} ms")
