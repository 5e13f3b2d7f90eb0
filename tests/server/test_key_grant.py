"""``GET /v1/keys/me`` (a key's own grant) and ``GET /v1/entities?entity_id=`` against a real
``memori serve`` over httpx."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from memori_server_support import NO_LIMIT, Server, assert_error, make_key, start_server


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    folder = Path(tempfile.mkdtemp(prefix="memori-keys-me-"))
    server = start_server(f"sqlite:///{folder / 'memori.db'}", *NO_LIMIT)
    try:
        yield server
    finally:
        server.stop()


def test_a_key_reads_its_own_grant(srv: Server) -> None:
    key = make_key(srv.db_url, "--scope", "read", "--entity", "ana", "--name", "ana's")
    me = srv.client(key).get("/v1/keys/me")
    assert me.status_code == 200, me.text
    grant = me.json()
    assert (grant["scope"], grant["entity_ids"], grant["entity_prefix"], grant["name"]) == (
        "read", ["ana"], None, "ana's")
    assert "key" not in grant and grant["revoked_at"] is None
    admin = srv.client(srv.admin).get("/v1/keys/me").json()
    assert admin["scope"] == "admin" and admin["entity_ids"] is None
    assert grant["key_id"] in {k["key_id"] for k in
                               srv.client(srv.admin).get("/v1/keys").json()["items"]}
    assert_error(srv.client().get("/v1/keys/me"), 401, "unauthorized")
    assert_error(srv.client("mk_nope").get("/v1/keys/me"), 401, "unauthorized")


def test_entities_filtered_by_id_within_the_key(srv: Server) -> None:
    admin = srv.client(srv.admin)
    for who in ("eve", "finn", "gil"):
        assert admin.post("/v1/memories", json={"entity_id": who, "content": "x"}
                          ).status_code == 201
    named = admin.get("/v1/entities", params={"entity_id": ["gil", "eve", "nobody"]}).json()
    assert [e["entity_id"] for e in named["items"]] == ["eve", "gil"]
    bound = srv.client(make_key(srv.db_url, "--scope", "read", "--entity", "eve"))
    assert [e["entity_id"] for e in bound.get("/v1/entities", params={
        "entity_id": ["eve", "finn"]}).json()["items"]] == ["eve"]
    assert bound.get("/v1/entities", params={"entity_id": "finn"}).json() == {
        "items": [], "next_cursor": None}
    assert_error(admin.get("/v1/entities", params={"entity_id": ""}), 422, "invalid_request")
