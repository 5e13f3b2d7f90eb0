"""The dashboard in a real browser: headless Debian Chromium (Playwright for Python) against a
real ``memori serve`` on 127.0.0.1 (SQLite and PostgreSQL), its database filled by the
real capture path (turns through ``POST /v1/turns``, augmented by the server's offline rules;
keys from ``memori keys create``). Sign in, browse, filter, provenance, edit, delete, forget,
export, the recall playground against in-process ``mem.context``, the graph, conversations,
the queue, a read-only key, XSS payloads as text, keyboard, labels and contrast; every page
without a console error, CSP violation or dialog. Screenshots of each page go to the artifacts
directory (``MEMORI_ARTIFACTS`` or pytest's tmp, printed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_support import LOW_CONTRAST, Tab, artifacts, chromium, launch, sign_in
from memori_databases import create_database
from playwright.sync_api import Browser, Playwright, expect, sync_playwright
from sqlalchemy import create_engine, update

from memori_core import Memori
from memori_core.storage import schema as s
from memori_core.testing import HashEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from memori_server_support import NO_LIMIT, make_key, start_server, wait_idle

XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]
ANN_TURNS = [  # (process, session, user message)
    ("coach", "s1", "I live in Lisbon and keep bees"),
    ("coach", "s1", "My favourite colour is green"),
    ("coach", "s1", "I work at Acme as a nurse"),
    ("chef", "s2", "I am allergic to peanuts"),
    ("chef", "s2", "I like spicy food and I love hiking"),
    ("coach", "s3", "My dog is called Rex"),
]
#: an entity id that is markup, with characters a hash route and a query string escape
ODD = "<img src=x onerror=alert(1)> ?#&é"
QUERY = "where does the user live and what is she allergic to?"


def _turn(c: httpx.Client, entity: str, text: str, process: str | None = None,
          session: str | None = None) -> None:
    r = c.post("/v1/turns", json={"entity_id": entity, "process_id": process,
                                  "session_id": session, "messages": [
                                      {"role": "user", "content": text},
                                      {"role": "assistant", "content": "noted"}]})
    assert r.status_code == 201, r.text


# the dashboard reads and writes only through /v1, whose every route runs on MariaDB too in
# tests/server (test_api, test_dashboard_api): the browser tests take the embedded default and
# PostgreSQL, to keep make test within its time
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dash(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, Any]]:
    """A server on a new SQLite or PostgreSQL database with entities ann (two
    processes, three sessions), eve (edited and deleted), bob (forgotten), xss (payloads), cat
    (a failed job), ODD (an id that is markup) and pg-000 to pg-054 (paging), and an admin, a
    write and a read key."""
    url, drop = create_database(request.param, tmp_path_factory)
    srv = start_server(url, *NO_LIMIT)
    try:
        c = srv.client(srv.admin)
        for process, session, text in ANN_TURNS:
            _turn(c, "ann", text, process, session)
        _turn(c, "eve", "I live in Oslo")
        _turn(c, "eve", "I speak Portuguese and English")
        _turn(c, "bob", "I live in Rome")
        _turn(c, "xss", XSS[0], "p", "x1")
        for payload in XSS:
            assert c.post("/v1/memories", json={"entity_id": "xss", "content": payload}
                          ).status_code == 201
        _turn(c, "cat", "I like tea")
        assert c.post("/v1/memories", json={"entity_id": ODD, "content": XSS[0]}
                      ).status_code == 201
        for i in range(55):
            assert c.post("/v1/memories", json={"entity_id": f"pg-{i:03d}",
                                                "content": f"note {i}"}).status_code == 201
        for entity in ("ann", "eve", "bob", "xss", "cat"):
            wait_idle(c, entity)
        yield {"srv": srv, "api": c, "backend": request.param,
               "write": make_key(srv.db_url, "--scope", "write", "--name", "writer"),
               "read": make_key(srv.db_url, "--scope", "read", "--name", "reader")}
    finally:
        srv.stop()
        drop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    pw: Playwright = sync_playwright().start()
    try:
        b = launch(pw)
        yield b
        b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts(tmp_path_factory)


@pytest.fixture
def tab(browser: Browser, dash: dict[str, Any], shots: Path) -> Iterator[Tab]:
    """A fresh browser context on the server; at the end, no console error, CSP violation or
    dialog is left (a test that expects one removes it from ``tab.errors``)."""
    folder = shots / dash["backend"]
    folder.mkdir(exist_ok=True)
    t = Tab(browser, dash["srv"].url, folder)
    try:
        yield t
        t.assert_clean()
    finally:
        t.close()


def _api(dash: dict[str, Any]) -> httpx.Client:
    return dash["api"]


def _rows(tab: Tab, selector: str) -> list[str]:
    return [t.strip() for t in tab.page.locator(selector).all_inner_texts()]


def _memory_texts(tab: Tab) -> list[str]:
    return _rows(tab, "table.memories[aria-label=Memories] a.memory-link")


def _api_memories(dash: dict[str, Any], **params: Any) -> list[str]:
    r = _api(dash).get("/v1/memories", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return [m["content"] for m in r.json()["items"]]


def test_a_bad_key_is_refused_then_sign_in_reload_and_sign_out(tab: Tab,
                                                                 dash: dict[str, Any]) -> None:
    tab.open("/")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    tab.shot("01-sign-in")
    tab.page.get_by_label("API key").fill("mk_not_a_real_key")
    tab.page.get_by_role("button", name="Sign in").click()
    expect(tab.page.get_by_role("alert")).to_contain_text("That key was refused")
    # the browser logs the refused request (401) as a console error: the only one expected
    assert len(tab.errors) == 1 and "401" in tab.errors[0], tab.errors
    tab.errors.clear()

    sign_in(tab, dash["srv"].admin)
    expect(tab.page.get_by_test_id("who")).to_have_text("tests · admin key")
    tab.reload()  # the session survives a reload (GET /ui/session)
    expect(tab.page.locator("#entities")).to_be_visible()
    tab.after_render(lambda: tab.page.get_by_role("button", name="Sign out").click())
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert tab.context.request.get("/ui/session").status == 401
    assert tab.context.request.get("/v1/entities").status == 401


def test_revoking_the_key_signs_the_page_out(tab: Tab, dash: dict[str, Any]) -> None:
    key = make_key(dash["srv"].db_url, "--scope", "read", "--name", "short-lived")
    sign_in(tab, key)
    assert _api(dash).delete(f"/v1/keys/{key.split('_')[1]}").status_code == 200
    tab.go("/e/ann/memories")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(tab.page.locator("#sign-out")).to_have_count(0)
    # the refused request (401) is the console error the browser logs
    assert tab.errors and all("401" in e for e in tab.errors), tab.errors
    tab.errors.clear()


def test_entities_list_their_counts_search_by_prefix_and_page(tab: Tab,
                                                             dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.shot("02-entities")
    api = {e["entity_id"]: e for e in _api(dash).get(
        "/v1/entities", params={"entity_id": ["ann", "eve"]}).json()["items"]}
    for entity in ("ann", "eve"):
        row = tab.page.locator("#entities tr", has=tab.page.get_by_role("link", name=entity,
                                                                        exact=True))
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        assert cells[:3] == [str(api[entity]["memories"]), str(api[entity]["messages"]),
                             str(api[entity]["sessions"])]
    tab.page.get_by_label("Entity id starts with").fill("pg-")
    tab.after_render(lambda: tab.page.get_by_role("button", name="Search").click())
    first = _rows(tab, "#entities a.entity-link")
    assert first == [f"pg-{i:03d}" for i in range(50)]
    tab.page.get_by_role("button", name="Next →").click()
    expect(tab.page.locator("#entities a.entity-link")).to_have_count(5)
    assert _rows(tab, "#entities a.entity-link") == [f"pg-{i:03d}" for i in range(50, 55)]
    expect(tab.page.get_by_role("button", name="Next →")).to_be_disabled()
    tab.page.get_by_role("button", name="← Previous").click()
    expect(tab.page.locator("#entities a.entity-link")).to_have_count(50)


def test_memories_filter_by_kind_process_text_and_date(tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.after_render(lambda: tab.page.get_by_role("link", name="ann", exact=True).click())
    assert _memory_texts(tab) == _api_memories(dash, entity_id="ann", scope="entity")
    tab.shot("03-memories")
    page = tab.page

    page.get_by_label("attribute").check()
    tab.after_render(lambda: page.get_by_role("button", name="Filter").click())
    kinds = _rows(tab, "table.memories .kind")
    assert kinds and set(kinds) == {"attribute"}
    assert _memory_texts(tab) == _api_memories(dash, entity_id="ann", scope="entity",
                                               kind="attribute")
    page.get_by_label("attribute").uncheck()

    page.get_by_label("Process").select_option("chef")
    tab.after_render(lambda: page.get_by_role("button", name="Filter").click())
    assert _memory_texts(tab) == _api_memories(dash, entity_id="ann", process_id="chef")
    assert set(_rows(tab, "table.memories td:nth-child(5)")) <= {"chef", "—"}
    page.get_by_label("Process").select_option("")

    page.get_by_label("Text contains").fill("PEANUTS")
    tab.after_render(lambda: page.get_by_role("button", name="Filter").click())
    found = _memory_texts(tab)
    assert found and all("peanuts" in t.lower() for t in found)
    assert found == _api_memories(dash, entity_id="ann", scope="entity", q="PEANUTS")
    page.get_by_label("Text contains").fill("")

    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    page.get_by_label("Created from").fill(tomorrow)
    tab.after_render(lambda: page.get_by_role("button", name="Filter").click())
    expect(page.get_by_role("status")).to_have_text("No memory matches.")
    page.get_by_label("Created from").fill("")
    page.get_by_label("Created before").fill(tomorrow)
    tab.after_render(lambda: page.get_by_role("button", name="Filter").click())
    assert _memory_texts(tab) == _api_memories(dash, entity_id="ann", scope="entity")
    assert "until=" + tomorrow in page.url  # the filter is in the route: it reloads as is
    tab.reload()
    expect(page.get_by_label("Created before")).to_have_value(tomorrow)


def test_a_memory_opens_its_provenance_and_conversation(tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/ann/memories")
    tab.after_render(lambda: tab.page.get_by_role(
        "link", name="The user lives in Lisbon and keep bees").click())
    prov = tab.page.locator("#provenance")
    expect(prov.locator(".message-text")).to_have_text(["I live in Lisbon and keep bees"])
    expect(prov).to_contain_text("session s1, coach")
    tab.shot("04-memory")
    tab.after_render(lambda: prov.get_by_role("link").first.click())
    expect(tab.page.locator("#messages .message-text")).to_have_text(
        ["I live in Lisbon and keep bees", "noted", "My favourite colour is green", "noted",
         "I work at Acme as a nurse", "noted"])
    # the timeline: every session of ann, newest first, as the API lists them
    sessions = [x["session_id"] for x in _api(dash).get(
        "/v1/sessions", params={"entity_id": "ann"}).json()["items"]]
    heads = _rows(tab, ".session-head strong")
    assert heads == [f"Session {x}" for x in sessions] and len(heads) == 3
    tab.shot("07-conversations")


def test_edit_keeps_history_and_delete_removes_the_memory(tab: Tab,
                                                         dash: dict[str, Any]) -> None:
    sign_in(tab, dash["write"])  # a write key edits and deletes; it cannot forget
    tab.go("/e/eve/memories")
    expect(tab.page.locator("#forget-open")).to_have_count(0)
    old = next(m for m in _api(dash).get("/v1/memories", params={
        "entity_id": "eve", "scope": "entity"}).json()["items"]
        if m["content"] == "The user lives in Oslo")
    tab.after_render(lambda: tab.page.get_by_role("link", name="The user lives in Oslo").click())
    tab.page.get_by_role("button", name="Edit").click()
    tab.page.get_by_label("Text").fill("The user lives in Bergen")
    tab.page.get_by_label("Importance (0 to 1)").fill("0.8")
    tab.after_render(lambda: tab.page.get_by_role("button", name="Save").click())
    expect(tab.page.locator("#memory-content")).to_have_text("The user lives in Bergen")
    new_id = int(tab.page.url.rsplit("/", 1)[1])
    assert new_id != old["id"]
    expect(tab.page.locator("#history a.memory-link")).to_have_text(["The user lives in Oslo"])
    c = _api(dash)
    assert c.get(f"/v1/memories/{old['id']}", params={"entity_id": "eve"}
                 ).json()["superseded_by"] == new_id
    new = c.get(f"/v1/memories/{new_id}", params={"entity_id": "eve"}).json()
    assert (new["content"], new["importance"]) == ("The user lives in Bergen", 0.8)
    # the old version shows what superseded it, and offers no edit
    tab.go(f"/e/eve/memory/{old['id']}")
    expect(tab.page.locator("#superseded-by")).to_have_text(f"#{new_id}")
    expect(tab.page.locator("#edit")).to_have_count(0)

    tab.go(f"/e/eve/memory/{new_id}")
    tab.page.get_by_role("button", name="Delete").click()
    tab.after_render(lambda: tab.page.get_by_role("button", name="Yes, delete it").click())
    expect(tab.page.get_by_role("status").first).to_have_text(f"Deleted memory #{new_id}.")
    assert "The user lives in Bergen" not in _memory_texts(tab)
    assert c.get(f"/v1/memories/{new_id}", params={"entity_id": "eve"}).status_code == 404


def test_forget_needs_the_typed_entity_id_then_it_is_gone_everywhere(
        tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/bob/memories")
    tab.page.get_by_role("button", name="Forget entity…").click()
    confirm = tab.page.get_by_role("button", name="Forget this entity for good")
    expect(confirm).to_be_disabled()
    tab.page.get_by_label("Type the entity id (bob) to confirm").fill("bo")
    expect(confirm).to_be_disabled()
    tab.page.get_by_label("Type the entity id (bob) to confirm").fill("bob")
    tab.after_render(confirm.click)
    expect(tab.page.get_by_role("status").first).to_contain_text("Forgot bob")
    expect(tab.page.locator("#entities")).to_be_visible()
    assert "bob" not in _rows(tab, "#entities a.entity-link")
    tab.page.get_by_label("Entity id starts with").fill("bob")
    tab.after_render(lambda: tab.page.get_by_role("button", name="Search").click())
    expect(tab.page.get_by_role("status")).to_contain_text("No entity id starts with")
    c = _api(dash)
    assert c.get("/v1/entities", params={"entity_id": "bob"}).json()["items"] == []
    assert c.get("/v1/memories", params={"entity_id": "bob", "scope": "entity"}
                 ).json()["items"] == []
    assert c.get("/v1/triples", params={"entity_id": "bob"}).json()["items"] == []
    assert c.get("/v1/sessions", params={"entity_id": "bob"}).json()["items"] == []


def test_export_downloads_the_entitys_json(tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/ann/memories")
    with tab.page.expect_download() as info:
        tab.page.get_by_role("button", name="Export JSON").click()
    download = info.value
    assert download.suggested_filename == "memori-export-ann.json"
    got = json.loads(Path(download.path()).read_text())
    want = _api(dash).get("/v1/export", params={"entity_id": "ann"}).json()
    got.pop("exported_at")
    want.pop("exported_at")
    assert got == want and len(got["memories"]) >= len(ANN_TURNS)


@pytest.mark.real_clock  # the server's clock is the real one: so is this process's
def test_the_playground_shows_the_block_in_process_recall_builds(tab: Tab,
                                                                 dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/ann/playground")
    tab.page.get_by_label("Message from ann").fill(QUERY)
    tab.page.get_by_label("Persona (process)").select_option("chef")
    tab.page.get_by_role("button", name="Recall").click()
    block = tab.page.locator("#context-block")
    expect(block).to_be_visible()
    with Memori(conn=dash["srv"].db_url, embedder=HashEmbedder(),
                augmentation_workers=0) as mem:
        mem.attribution(entity_id="ann", process_id="chef")
        ctx = mem.context(QUERY)
        hits = mem.recall(QUERY)
    assert ctx.block is not None and "peanuts" in ctx.block
    assert block.text_content() == ctx.block
    expect(tab.page.locator("#budget")).to_have_text(
        f"{ctx.tokens} tokens of a {ctx.budget}-token budget · {len(ctx.lines)} lines")
    expect(tab.page.locator("#hits tbody td.content")).to_have_text([h.content for h in hits])
    headers = _rows(tab, "#hits thead th")
    assert {"Score", "Dense rank", "Lexical rank", "Recency", "Mentions"} <= set(headers)
    tab.shot("05-playground")


def test_the_graph_draws_every_triple_and_a_click_lists_its_sources(
        tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/ann/graph")
    triples = _api(dash).get("/v1/triples", params={"entity_id": "ann", "limit": 1000}
                             ).json()["items"]
    assert len(triples) >= 5
    page = tab.page
    page.wait_for_function("() => window.__memoriGraph && window.__memoriGraph.nodes().length")
    labels = page.evaluate("() => window.__memoriGraph.nodes().map(n => n.data('label'))")
    edges = page.evaluate("() => window.__memoriGraph.edges().map(e => [e.source().data('label'),"
                          " e.data('label'), e.target().data('label')])")
    assert sorted(labels) == sorted({t["subject"] for t in triples} |
                                    {t["object"] for t in triples})
    assert sorted(map(tuple, edges)) == sorted((t["subject"], t["predicate"], t["object"])
                                               for t in triples)
    # a real click on the node "user": its triples and their source memories
    box = page.locator("#graph").bounding_box()
    assert box is not None
    x, y = page.evaluate("() => { const p = window.__memoriGraph.nodes()"
                         ".filter(n => n.data('label') === 'user').renderedPosition();"
                         " return [p.x, p.y]; }")
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#node-panel[data-loaded='true']")
    mine = [t for t in triples if "user" in (t["subject"], t["object"])]
    expect(page.locator("#node-triples li")).to_have_count(len(mine))
    # the capture path links each triple to the memory it was drawn from
    assert all(t["memory_id"] is not None for t in triples), triples
    linked = {t["memory_id"] for t in mine}
    want = sorted(_api(dash).get(f"/v1/memories/{m}", params={"entity_id": "ann"}
                                 ).json()["content"] for m in linked)
    assert sorted(_rows(tab, "#node-memories a.memory-link")) == want
    # the keyboard way to the same panel: the node list; the memories that mention the node
    page.get_by_label("Node", exact=True).select_option(label="peanuts")
    expect(page.locator("#node-panel h3")).to_have_text("peanuts")
    page.wait_for_selector("#node-panel[data-loaded='true']")
    mention = _api_memories(dash, entity_id="ann", scope="entity", q="peanuts", limit=10)
    assert _rows(tab, "#node-mentions a.memory-link") == mention and len(mention) == 2
    tab.shot("06-graph")


def test_the_queue_shows_a_failed_job_with_its_error_and_retries_it(
        tab: Tab, dash: dict[str, Any]) -> None:
    c = _api(dash)
    job = c.get("/v1/queue", params={"entity_id": "cat"}).json()["items"][0]["id"]
    engine = create_engine(dash["srv"].db_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(s.augmentation_job).where(s.augmentation_job.c.id == job)
                         .values(status="failed", error=f"boom {XSS[1]}"))
    finally:
        engine.dispose()
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/cat/queue")
    row = tab.page.locator(f"#jobs tr[data-job-id='{job}']")
    expect(row.locator(".status")).to_have_text("failed")
    expect(row.locator(".error-text")).to_have_text(f"boom {XSS[1]}")
    expect(tab.page.locator("#queue-counts")).to_contain_text("failed: 1")
    tab.shot("08-queue")
    row.get_by_role("button", name=f"Retry job {job}").click()
    expect(tab.page.get_by_role("status").first).to_have_text(f"Job #{job} queued again.")
    wait_idle(c, "cat")
    assert c.get("/v1/queue", params={"entity_id": "cat", "status": "failed"}
                 ).json()["items"] == []
    assert tab.page.locator("main img").count() == 0


def test_a_read_key_sees_no_edit_buttons_and_its_forced_write_is_refused(
        tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["read"])
    expect(tab.page.get_by_test_id("who")).to_have_text("reader · read key")
    mid = next(m["id"] for m in _api(dash).get("/v1/memories", params={
        "entity_id": "ann", "scope": "entity"}).json()["items"])
    tab.go(f"/e/ann/memory/{mid}")
    expect(tab.page.locator("#memory-content")).to_be_visible()
    for selector in ("#edit", "#delete", "#forget-open"):
        expect(tab.page.locator(selector)).to_have_count(0)
    tab.go("/e/cat/queue")
    expect(tab.page.locator("#jobs")).to_be_visible()
    expect(tab.page.locator("button.retry")).to_have_count(0)
    status = tab.page.evaluate(
        """async (id) => {
          const s = await (await fetch('/ui/session')).json();
          const r = await fetch(`/v1/memories/${id}?entity_id=ann`, {method: 'PATCH',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token},
            body: JSON.stringify({content: 'overwritten'})});
          return [r.status, (await r.json()).error.code];
        }""", mid)
    assert status == [403, "forbidden"]
    assert len(tab.errors) == 1 and "403" in tab.errors[0], tab.errors
    tab.errors.clear()
    assert _api(dash).get(f"/v1/memories/{mid}", params={"entity_id": "ann"}
                          ).json()["content"] != "overwritten"


def test_xss_payloads_render_as_text(tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    tab.go("/e/xss/memories")
    texts = _memory_texts(tab)
    for payload in XSS:
        assert payload in texts
    page = tab.page
    for route in ["/e/xss/memories", "/e/xss/conversations", "/e/xss/graph"]:
        tab.go(route)
        assert page.locator("main script, main img").count() == 0
    # the captured turn's episodic memory: provenance and the conversation show the text
    episodic = next(m["id"] for m in _api(dash).get("/v1/memories", params={
        "entity_id": "xss", "scope": "entity", "kind": "episodic"}).json()["items"])
    tab.go(f"/e/xss/memory/{episodic}")
    expect(page.locator("#provenance .message-text").first).to_have_text(XSS[0])
    href = page.locator("#provenance a").first.get_attribute("href")
    assert href is not None and href.startswith("#/e/xss/conversations?c=")
    tab.go(href[1:])
    expect(page.locator("#messages .message-text").first).to_have_text(XSS[0])
    # an entity id that is markup: listed, opened and titled as text
    tab.go("/")
    tab.after_render(lambda: page.get_by_role("link", name=ODD, exact=True).click())
    expect(page.locator("#entity-id")).to_have_text(ODD)
    expect(page.locator("a.memory-link")).to_have_text([XSS[0]])
    assert page.locator("main img, main script").count() == 0
    img = next(m["id"] for m in _api(dash).get("/v1/memories", params={
        "entity_id": "xss", "scope": "entity"}).json()["items"] if m["content"] == XSS[1])
    tab.go(f"/e/xss/memory/{img}")
    expect(page.locator("#memory-content")).to_have_text(XSS[1])
    assert page.locator("img").count() == 0 and page.locator("body script").count() == 0
    assert tab.dialogs == []


def test_keyboard_skip_link_landmarks_labels_and_contrast(tab: Tab, dash: dict[str, Any]) -> None:
    sign_in(tab, dash["srv"].admin)
    page = tab.page
    for route in ["/", "/e/ann/memories", "/e/ann/playground", "/e/ann/graph",
                  "/e/ann/conversations", "/e/ann/queue"]:
        tab.go(route)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                 .filter(e => e.type !== 'hidden' && e.labels.length === 0
                   && !e.getAttribute('aria-label'))
                 .map(e => e.outerHTML)""")
        assert unlabelled == [], (route, unlabelled)
        for landmark in ("banner", "main", "contentinfo"):
            expect(page.get_by_role(landmark)).to_have_count(1)
        assert page.evaluate(LOW_CONTRAST) == [], route
    tab.go("/e/ann/memories")
    tab.reload()  # focus at the start of the page
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("() => document.activeElement.id") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    # tab to the first memory link and open it with the keyboard
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('memory-link')"):
            break
    else:
        raise AssertionError("no memory link reached by Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    tab.after_render(lambda: page.keyboard.press("Enter"))
    expect(page.locator("#provenance")).to_be_visible()


def test_a_missing_chromium_fails_naming_the_install_command(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMORI_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception) as failed:
        chromium()
    assert "apt-get install -y --no-install-recommends chromium" in str(failed.value)
    assert "never skip" in str(failed.value)
