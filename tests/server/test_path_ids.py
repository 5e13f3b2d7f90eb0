"""Entity and session ids holding ``/`` (``org/ann``) in a route's path: sent percent-encoded
(``org%2Fann``, as the remote client and the dashboard send them), they reach the route whole.
Starlette decodes the path before routing, so these routes take the rest of the path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from memori_server_support import Server, serve_backend, wait_idle

ENTITY, SESSION = "org/ann", "chat/1"


@pytest.fixture(scope="module", params=["sqlite"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Server]:
    yield from serve_backend(request, tmp_path_factory)


def test_ids_with_a_slash_reach_the_session_and_forget_routes(srv: Server) -> None:
    c = srv.client(srv.admin)
    for sid in (SESSION, "other/2"):
        r = c.post("/v1/turns", json={"entity_id": ENTITY, "session_id": sid, "messages": [
            {"role": "user", "content": f"I live in Lisbon ({sid})"}]})
        assert r.status_code == 201, r.text
    wait_idle(c, ENTITY)
    r = c.get("/v1/sessions/chat%2F1/messages", params={"entity_id": ENTITY})
    assert r.status_code == 200, r.text
    assert [m["content"] for m in r.json()["items"]] == ["I live in Lisbon (chat/1)"]
    r = c.delete("/v1/sessions/chat%2F1", params={"entity_id": ENTITY})
    assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
    gone = c.get("/v1/sessions/chat%2F1/messages", params={"entity_id": ENTITY})
    assert gone.json()["items"] == []
    kept = c.get("/v1/sessions/other%2F2/messages", params={"entity_id": ENTITY})
    assert len(kept.json()["items"]) == 1
    r = c.delete("/v1/entities/org%2Fann")
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["memori_entity"] == 1
    ids = [e["entity_id"] for e in c.get("/v1/entities").json()["items"]]
    assert ENTITY not in ids


def test_ids_with_line_breaks_reach_the_routes_whole(srv: Server) -> None:
    c = srv.client(srv.admin)
    entity = "line\nbreak/é"
    r = c.post("/v1/turns", json={"entity_id": entity, "session_id": "s\n1", "messages": [
        {"role": "user", "content": "I use Python"}]})
    assert r.status_code == 201, r.text
    r = c.get("/v1/sessions/s%0A1/messages", params={"entity_id": entity})
    assert [m["content"] for m in r.json()["items"]] == ["I use Python"], r.text
    wait_idle(c, entity)
    r = c.delete("/v1/entities/line%0Abreak%2F%C3%A9")
    assert r.status_code == 200 and r.json()["counts"]["memori_entity"] == 1, r.text
