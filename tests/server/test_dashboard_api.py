"""The API the dashboard adds (issue 20), over real HTTP against a real ``memori serve`` on
SQLite, PostgreSQL and MariaDB: ``GET /v1/memories`` searched by text (``q``: a
case-insensitive substring, ``%`` and ``_`` literal) and by creation date (``since``
inclusive, ``until`` exclusive), bad values answered 422 naming the field, key scoping kept;
``POST /v1/recall`` hits carry ``why`` (their score's parts), and the SDK's remote mode maps
it back onto ``RecallHit.why``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import httpx
import pytest
from memori_server_support import Server, assert_error, make_key, serve_backend, wait_idle

from memori_core import ConfigurationError, Memori
from memori_core.testing import HashEmbedder
from memori_core.types import RecallWhy

#: (text, said at: ISO 8601 UTC) of the dated entity's turns, one episodic memory each
DATED = [
    ("Started pottery classes", "2024-03-01T09:00:00+00:00"),
    ("Visited Lisbon in spring", "2024-04-30T23:59:59+00:00"),
    ("Ran the Lisbon half marathon", "2024-05-01T00:00:00+00:00"),
    ("Adopted a cat named Pixel", "2024-05-01T12:00:00+00:00"),
    ("Finished the lake painting", "2024-06-01T00:00:00+00:00"),
]
#: the texts of the search entity's memories (remembered: kind fact)
TEXTS = ["Got 50% off the violin", "Prefers snake_case names", "Lives in LISBON",
         "Scored 100 percent", "My name is Ana", "Says a!b often", "Uses a\\b paths"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """A server per backend, the two entities stored: ``dash-dated`` (turns with dates) and
    ``dash-text`` (remembered texts)."""
    for srv in serve_backend(request, tmp_path_factory):
        c = srv.client(srv.admin)
        for text, when in DATED:
            r = c.post("/v1/turns", json={"entity_id": "dash-dated", "messages": [
                {"role": "user", "content": text, "created_at": when}]})
            assert r.status_code == 201, r.text
        for text in TEXTS:
            r = c.post("/v1/memories", json={"entity_id": "dash-text", "content": text})
            assert r.status_code == 201, r.text
        wait_idle(c, "dash-dated")
        yield srv


def listed(c: httpx.Client, **params: Any) -> list[str]:
    """The contents of every page of ``GET /v1/memories`` with ``params`` (pages of 2)."""
    out: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        r = c.get("/v1/memories", params={**params, "limit": 2, **cursor})
        assert r.status_code == 200, r.text
        page = r.json()
        out += [m["content"] for m in page["items"]]
        if page["next_cursor"] is None:
            return out
        cursor = {"cursor": page["next_cursor"]}


def test_q_is_a_case_insensitive_substring_with_wildcards_taken_literally(
        server: Server) -> None:
    c = server.client(server.admin)
    text = {"entity_id": "dash-text"}
    assert listed(c, **text, q="lisbon") == ["Lives in LISBON"]
    assert listed(c, **text, q="LiSbOn") == ["Lives in LISBON"]
    assert listed(c, **text, q="%") == ["Got 50% off the violin"]
    assert listed(c, **text, q="0%") == ["Got 50% off the violin"]
    assert listed(c, **text, q="_") == ["Prefers snake_case names"]
    assert listed(c, **text, q="a!b") == ["Says a!b often"]  # the escape character, literal
    assert listed(c, **text, q="a\\b") == ["Uses a\\b paths"]
    assert listed(c, **text, q="a_b") == []  # not "a, any character, b"
    assert listed(c, **text, q="n%a") == []  # not "n, anything, a"
    assert listed(c, **text, q="zebra") == []
    # newest first, paged with the filter kept across the cursor
    assert listed(c, **text, q="a") == [t for t in reversed(TEXTS) if "a" in t.lower()]
    assert listed(c, **text, q="") == list(reversed(TEXTS))  # empty: no condition
    assert listed(c, **text, q="pixel") == []  # another entity's words are not searched


def test_since_is_inclusive_and_until_exclusive(server: Server) -> None:
    c = server.client(server.admin)
    dated = {"entity_id": "dash-dated", "kind": "episodic"}
    everything = [t for t, _ in reversed(DATED)]
    assert listed(c, **dated) == everything
    may = ["Adopted a cat named Pixel", "Ran the Lisbon half marathon"]
    assert listed(c, **dated, since="2024-05-01", until="2024-06-01") == may
    assert listed(c, **dated, since="2024-05-01T00:00:00Z", until="2024-06-01T00:00:00Z") == may
    # an offset is converted: 02:00 at +02:00 is midnight UTC
    assert listed(c, **dated, since="2024-05-01T02:00:00+02:00",
                  until="2024-06-01T00:00:00") == may
    assert listed(c, **dated, until="2024-05-01") == ["Visited Lisbon in spring",
                                                      "Started pottery classes"]
    assert listed(c, **dated, since="2024-06-01") == ["Finished the lake painting"]
    assert listed(c, **dated, since="2025-01-01") == []
    # with q and kind together
    assert listed(c, **dated, q="lisbon", since="2024-05-01") == ["Ran the Lisbon half marathon"]


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"),
    ({"since": "2024-13-01"}, "since"),
    ({"until": "1714556800"}, "until"),  # Unix seconds are not ISO 8601
    ({"until": "2024-05-01T25:00"}, "until"),
    ({"since": "2024-05-02", "until": "2024-05-01"}, "until"),
    ({"since": "2024-05-01", "until": "2024-05-01"}, "until"),  # an empty window
    ({"since": "0001-01-01T00:00:00+01:00"}, "since"),  # before year 1 in UTC
    ({"q": "x" * 201}, "q"),
    ({"q": "a\x00b"}, "q"),  # no SQL text holds a NUL: refused, not a database error
], ids=["word", "month-13", "unix-seconds", "hour-25", "until-before-since", "empty-window",
        "before-year-1", "q-too-long", "q-nul"])
def test_a_bad_search_is_answered_422_naming_the_field(server: Server, params: dict[str, str],
                                                       field: str) -> None:
    c = server.client(server.admin)
    r = c.get("/v1/memories", params={"entity_id": "dash-dated", **params})
    error = assert_error(r, 422, "invalid_request", field)
    assert field in error["message"]


def test_the_keys_entity_scope_still_applies_to_a_search(server: Server) -> None:
    reader = server.client(make_key(server.db_url, "--scope", "read", "--entity", "dash-text"))
    assert listed(reader, entity_id="dash-text", q="lisbon") == ["Lives in LISBON"]
    assert listed(reader, q="lisbon") == ["Lives in LISBON"]  # the key's only entity
    r = reader.get("/v1/memories", params={"entity_id": "dash-dated", "q": "lisbon",
                                           "since": "2024-01-01"})
    assert_error(r, 403, "forbidden")
    # a write is refused to a read key whatever it searched
    r = reader.post("/v1/memories", json={"entity_id": "dash-text", "content": "x"})
    assert_error(r, 403, "forbidden")


def test_recall_hits_say_why_they_scored_what_they_did(server: Server) -> None:
    c = server.client(server.admin)
    r = c.post("/v1/recall", json={"entity_id": "dash-dated", "query": "Lisbon marathon",
                                   "limit": 5, "scope": "entity"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and hits[0]["content"].endswith("Ran the Lisbon half marathon")
    for h in hits:
        why = h["why"]
        assert set(why) == {"dense_rank", "lexical_rank", "fused", "recency", "mentions",
                            "context"}
        total = why["fused"] + why["recency"] + why["mentions"] + why["context"]
        assert h["score"] == pytest.approx(total, abs=1e-9)
        assert why["dense_rank"] is not None or why["lexical_rank"] is not None
        assert (why["lexical_rank"] is not None) is (h["lexical"] > 0)
    assert hits[0]["why"]["lexical_rank"] == 1  # both words
    schema = c.get("/openapi.json").json()["components"]["schemas"]
    assert "why" in schema["HitOut"]["properties"] and "WhyOut" in schema
    query = {p["name"] for p in c.get("/openapi.json").json()["paths"]["/v1/memories"]["get"][
        "parameters"]}
    assert {"q", "since", "until"} <= query


def test_remote_mode_maps_why_and_searches_alike(server: Server) -> None:
    with Memori(url=server.url, api_key=server.admin, request_backoff_factor=0.05,
                llm_set_aside_path="off") as far:
        far.attribution(entity_id="dash-dated")
        hits = far.recall("Lisbon marathon", limit=5, scope="entity")
        assert hits and all(isinstance(h.why, RecallWhy) for h in hits)
        for h in hits:
            assert h.why is not None
            assert h.score == pytest.approx(h.why.fused + h.why.recency + h.why.mentions
                                            + h.why.context, abs=1e-9)
        page, cursor = far.memory_page(kinds=["episodic"], q="LISBON", since="2024-05-01",
                                       scope="entity")
        assert [m.content for m in page] == ["Ran the Lisbon half marathon"] and cursor is None


def test_the_python_api_takes_the_same_search(server: Server) -> None:
    """``Memori.memory_page`` (what the route calls) on the server's database: dates as
    ``date``, naive ``datetime`` (UTC) or ISO strings; bad values name their argument."""
    with Memori(conn=server.db_url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        mem.attribution(entity_id="dash-dated")
        may = ["Adopted a cat named Pixel", "Ran the Lisbon half marathon"]
        bounds: list[tuple[Any, Any]] = [(date(2024, 5, 1), date(2024, 6, 1)),
                                         (datetime(2024, 5, 1), datetime(2024, 6, 1)),
                                         ("2024-05-01", "2024-06-01T00:00:00+00:00")]
        for since, until in bounds:
            page, _ = mem.memory_page(kinds=["episodic"], since=since, until=until)
            assert [m.content for m in page] == may, (since, until)
        page, _ = mem.memory_page(kinds=["episodic"], q="PIXEL")
        assert [m.content for m in page] == ["Adopted a cat named Pixel"]
        bad: list[tuple[dict[str, Any], str]] = [
            ({"q": 5}, "q"), ({"q": "x" * 201}, "q"), ({"since": 1714556800}, "since"),
            ({"until": "soon"}, "until"),
            ({"since": date(2024, 5, 2), "until": date(2024, 5, 1)}, "until")]
        for kwargs, argument in bad:
            with pytest.raises(ConfigurationError) as err:
                mem.memory_page(**kwargs)
            assert err.value.argument == argument, kwargs
