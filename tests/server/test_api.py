"""Every route of ``memori serve`` over real HTTP (httpx), on SQLite, PostgreSQL and MariaDB:
the happy paths, keys (401, 403, revocation), validation errors naming the field, the schema.
The keys test, which runs the ``memori keys`` CLI six times, runs on SQLite and PostgreSQL
(MariaDB's keys are its storage contract's and the API's other tests')."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from memori_server_support import (
    Server,
    assert_error,
    make_key,
    memori_cli,
    serve_backend,
    wait_idle,
)
from sqlalchemy import create_engine, update

from memori_core.server._ready import wait_until
from memori_core.storage import schema as s


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """A server per backend for the module: SQLite, PostgreSQL and MariaDB."""
    yield from serve_backend(request, tmp_path_factory)


_JSON = {"Content-Type": "application/json"}


def _turn(c: httpx.Client, entity: str, text: str, **kw: object) -> dict[str, object]:
    r = c.post("/v1/turns", json={"entity_id": entity, "messages": [
        {"role": "user", "content": text}, {"role": "assistant", "content": "noted"}], **kw})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_health_ready_and_the_openapi_schema(server: Server) -> None:
    c = server.client()
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz").json()
    assert ready["status"] == "ready" and ready["schema_version"] >= 5
    schema = c.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [("/v1/turns", "post"), ("/v1/recall", "post"),
                         ("/v1/memories", "get"), ("/v1/memories", "post"),
                         ("/v1/memories/{memory_id}", "patch"),
                         ("/v1/memories/{memory_id}", "delete"),
                         ("/v1/memories/{memory_id}/history", "get"),
                         ("/v1/memories/{memory_id}/provenance", "get"),
                         ("/v1/entities", "get"), ("/v1/entities/{entity_id}", "delete"),
                         ("/v1/processes", "get"), ("/v1/sessions", "get"),
                         ("/v1/conversations", "get"),
                         ("/v1/conversations/{conversation_id}/messages", "get"),
                         ("/v1/triples", "get"), ("/v1/export", "get"), ("/v1/import", "post"),
                         ("/v1/queue", "get"), ("/v1/queue/{job_id}/retry", "post"),
                         ("/v1/stats", "get"), ("/v1/keys", "post"),
                         ("/v1/keys/{key_id}", "delete")]:
        assert method in paths[path], (path, method)
    turn = schema["components"]["schemas"]["TurnIn"]
    assert turn["additionalProperties"] is False
    assert paths["/v1/recall"]["post"]["responses"]["401"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/ErrorResponse")


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation of an OpenAPI schema."""
    return [(method.upper(), path, op) for path, item in schema["paths"].items()
            for method, op in item.items()]


def test_each_operation_documents_the_answers_it_can_send(server: Server) -> None:
    schema = server.client().get("/openapi.json").json()
    ops = {(m, p): op for m, p, op in _operations(schema)}
    assert set(ops[("GET", "/healthz")]["responses"]) == {"200"}
    assert set(ops[("GET", "/readyz")]["responses"]) == {"200", "503"}
    error_ref = "#/components/schemas/ErrorResponse"
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # not our 422 shape
    v1 = [(m, p, op) for m, p, op in _operations(schema) if p.startswith("/v1/")]
    assert len(v1) >= 25
    for method, path, op in v1:
        codes = set(op["responses"])
        # the key is checked first: every /v1 route may answer 401, 429 (rate) and 503 (a key
        # that could not be checked)
        assert {"401", "429", "503"} <= codes, (method, path, codes)
        for code in codes - {"200", "201"}:
            assert op["responses"][code]["content"]["application/json"]["schema"][
                "$ref"] == error_ref, (method, path, code)
        takes_body = "requestBody" in op
        assert ({"400", "413"} <= codes) is takes_body, (method, path, codes)
        assert ("400" in codes or "413" in codes) is takes_body, (method, path, codes)
        has_inputs = takes_body or bool(op.get("parameters"))
        assert ("422" in codes) is has_inputs, (method, path, codes)
    # 403 everywhere but where no key can be refused: its own grant, and the list of entities
    # (filtered to the key's)
    unforbidden = {(m, p) for m, p, op in v1 if "403" not in op["responses"]}
    assert unforbidden == {("GET", "/v1/keys/me"), ("GET", "/v1/entities")}
    # and a route whose path names a record documents 404 only where it can answer it
    assert "404" in ops[("GET", "/v1/memories/{memory_id}")]["responses"]
    assert "404" not in ops[("GET", "/v1/sessions/{session_id}/messages")]["responses"]


#: bodies no route could parse or validate, and a key-less request must not get to try
_BAD_BODIES: list[dict[str, Any]] = [
    {"content": b'{"entity_id": "ann", "messages": [', "headers": _JSON},  # not JSON
    {"content": b"[1, 2]", "headers": _JSON},  # not an object
    {"content": b'{"bogus": 1, "limit": "ten"}', "headers": _JSON},  # unknown, wrong type
    {"content": b"", "headers": _JSON},  # nothing
    {"content": b"<xml/>", "headers": {"Content-Type": "text/xml"}},  # not JSON at all
]


def test_no_key_or_a_bad_key_gets_401_whatever_the_request(server: Server) -> None:
    """Every /v1 operation of the schema, with no key or a bad one, answers 401 before its
    body, parameters or path are looked at: malformed JSON, wrong types, unknown fields, a
    path parameter of the wrong type, a body over the size limit."""
    schema = server.client().get("/openapi.json").json()
    anon = server.client()
    wrong_secret = server.admin[:-1] + ("0" if server.admin[-1] != "0" else "1")
    callers = {"no key": {}, "not a bearer key": {"Authorization": "Basic YWxhZGRpbjpzZXNhbWU="},
               "malformed key": {"Authorization": "Bearer nope"},
               "unknown key": {"Authorization": "Bearer mk_000000000000_" + "0" * 64},
               "wrong secret": {"Authorization": f"Bearer {wrong_secret}"}}
    tried = 0
    for method, path, op in _operations(schema):
        if not path.startswith("/v1/"):
            continue
        url = re.sub(r"\{[^}]+\}", "not-a-number", path)  # every path parameter wrong
        bodies = _BAD_BODIES if "requestBody" in op else [{}]
        for who, headers in callers.items():
            for body in bodies:
                r = anon.request(method, url, params={"limit": "ten", "cursor": "nope",
                                                      "colour": "red"},
                                 headers={**headers, **body.get("headers", {})},
                                 content=body.get("content"))
                err = assert_error(r, 401, "unauthorized", "Authorization")
                assert "Bearer" in r.headers["WWW-Authenticate"], (method, path, who)
                assert err["message"], (method, path, who)
                if body.get("content"):  # the body is left unread: the connection closes
                    assert r.headers["Connection"] == "close", (method, path, who)
                tried += 1
    assert tried >= 25 * len(callers)
    # a body over the size limit (10 MiB) is refused by its key first, before a byte of it
    # is sent; with a valid key, by its size
    for headers, status in ((b"", b"401"), (f"Authorization: Bearer {server.admin}\r\n"
                                            .encode(), b"413")):
        answer = _raw_post(server.url, b"POST /v1/turns HTTP/1.1\r\nHost: x\r\n" + headers
                           + b"Content-Type: application/json\r\n"
                           b"Content-Length: 104857600\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:300]
        assert b"connection: close" in answer.lower(), answer[:300]
    # and with a valid key the same requests reach validation
    admin = server.client(server.admin)
    assert_error(admin.post("/v1/recall", content=_BAD_BODIES[0]["content"], headers=_JSON),
                 400, "invalid_json", "body")
    assert_error(admin.get("/v1/memories/not-a-number", params={"entity_id": "ann"}), 422,
                 "invalid_request", "memory_id")


def _raw_post(url: str, head: bytes) -> bytes:
    """Send ``head`` (request line and headers, no body) and read the answer's head and body
    until the server closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_capture_recall_and_memories(server: Server) -> None:
    c = server.client(server.admin)
    first = _turn(c, "ann", "I live in Lisbon and keep bees", process_id="coach",
                  session_id="s1")
    assert first["session_id"] == "s1" and len(first["message_ids"]) == 2  # type: ignore[arg-type]
    _turn(c, "ann", "My favourite colour is green", process_id="coach", session_id="s1")
    _turn(c, "bob", "I live in Oslo")
    wait_idle(c, "ann")
    wait_idle(c, "bob")

    r = c.post("/v1/recall", json={"entity_id": "ann", "process_id": "coach",
                                   "query": "where does the user live?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "Lisbon" in body["hits"][0]["content"] and body["hits"][0]["created_at"].endswith("Z")
    assert body["context"]["block"].startswith("<memori_context>")
    assert "Lisbon" in body["context"]["block"] and "Oslo" not in body["context"]["block"]
    r = c.post("/v1/recall", json={"entity_id": "ann", "query": "bees", "context": False,
                                   "kinds": ["episodic"], "limit": 1})
    assert r.json()["context"] is None and [h["kind"] for h in r.json()["hits"]] == ["episodic"]

    # paging through every memory, newest first
    seen, cursor = [], None
    while True:
        page = c.get("/v1/memories", params={"entity_id": "ann", "limit": 2,
                                             **({"cursor": cursor} if cursor else {})}).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [m["id"] for m in seen]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 4
    facts = c.get("/v1/memories", params=[("entity_id", "ann"), ("kind", "fact"),
                                          ("kind", "attribute")]).json()["items"]
    assert facts and all(m["kind"] in ("fact", "attribute") for m in facts)

    made = c.post("/v1/memories", json={"entity_id": "ann", "content": "The user is allergic "
                                        "to peanuts", "importance": 1.0})
    assert made.status_code == 201 and made.json()["importance"] == 1.0
    mid = made.json()["id"]
    assert c.get(f"/v1/memories/{mid}", params={"entity_id": "ann"}).json() == made.json()
    patched = c.patch(f"/v1/memories/{mid}", params={"entity_id": "ann"},
                      json={"content": "The user is allergic to peanuts and cashews"})
    assert patched.status_code == 200, patched.text
    new = patched.json()["memory"]
    assert patched.json()["supersedes"] == mid and new["id"] != mid
    old = c.get(f"/v1/memories/{mid}", params={"entity_id": "ann"}).json()
    assert old["superseded_by"] == new["id"]
    history = c.get(f"/v1/memories/{new['id']}/history", params={"entity_id": "ann"}).json()
    assert [m["id"] for m in history["items"]] == [mid]

    lisbon = next(m for m in seen if "Lisbon" in m["content"])
    prov = c.get(f"/v1/memories/{lisbon['id']}/provenance", params={"entity_id": "ann"}).json()
    assert prov["messages"][0]["content"] == "I live in Lisbon and keep bees"
    assert prov["messages"][0]["session_id"] == "s1"
    assert prov["conversations"][0]["messages"] == 4

    gone = c.delete(f"/v1/memories/{new['id']}", params={"entity_id": "ann"})
    assert gone.json() == {"deleted": 1}
    assert_error(c.get(f"/v1/memories/{new['id']}", params={"entity_id": "ann"}), 404,
                 "not_found", "memory_id")
    # bob's memory is not ann's
    bobs = c.get("/v1/memories", params={"entity_id": "bob"}).json()["items"][0]["id"]
    assert_error(c.get(f"/v1/memories/{bobs}", params={"entity_id": "ann"}), 404, "not_found")
    assert_error(c.delete(f"/v1/memories/{bobs}", params={"entity_id": "ann"}), 404,
                 "not_found")


def test_entities_sessions_conversations_triples_queue_stats(server: Server) -> None:
    c = server.client(server.admin)
    _turn(c, "cat-1", "I live in Rome", process_id="p1", session_id="a")
    _turn(c, "cat-1", "I like tea", process_id="p2", session_id="b")
    wait_idle(c, "cat-1")
    ents = c.get("/v1/entities", params={"prefix": "cat-"}).json()
    assert [e["entity_id"] for e in ents["items"]] == ["cat-1"]
    assert ents["items"][0]["messages"] == 4 and ents["items"][0]["sessions"] == 2
    procs = c.get("/v1/processes", params={"entity_id": "cat-1"}).json()["items"]
    assert [(p["process_id"], p["messages"]) for p in procs] == [("p1", 2), ("p2", 2)]
    sessions = c.get("/v1/sessions", params={"entity_id": "cat-1"}).json()["items"]
    assert [x["session_id"] for x in sessions] == ["b", "a"]
    only = c.get("/v1/sessions", params={"entity_id": "cat-1", "process_id": "p1"}).json()
    assert [x["session_id"] for x in only["items"]] == ["a"]
    convs = c.get("/v1/conversations", params={"entity_id": "cat-1", "session_id": "a"}).json()
    [conv] = convs["items"]
    msgs = c.get(f"/v1/conversations/{conv['id']}/messages",
                 params={"entity_id": "cat-1"}).json()["items"]
    assert [m["content"] for m in msgs] == ["I live in Rome", "noted"]
    assert_error(c.get(f"/v1/conversations/{conv['id']}/messages",
                       params={"entity_id": "ann"}), 404, "not_found", "conversation_id")
    triples = c.get("/v1/triples", params={"entity_id": "cat-1"}).json()["items"]
    assert ("user", "lives_in", "rome") in [(t["subject"], t["predicate"], t["object"]) for t in triples]
    queue = c.get("/v1/queue", params={"entity_id": "cat-1"}).json()
    assert queue["counts"]["done"] == 2 and len(queue["items"]) == 2
    stats = c.get("/v1/stats").json()
    assert stats["tables"]["memori_conversation_message"] >= 4

    # a failed job, retried by an admin key
    engine = create_engine(server.db_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(s.augmentation_job).where(
                s.augmentation_job.c.id == queue["items"][0]["id"]).values(status="failed",
                                                                           error="boom"))
    finally:
        engine.dispose()
    failed = c.get("/v1/queue", params={"entity_id": "cat-1", "status": "failed"}).json()
    assert [j["error"] for j in failed["items"]] == ["boom"] and failed["counts"]["failed"] == 1
    job = failed["items"][0]["id"]
    writer = server.client(make_key(server.db_url, "--scope", "write"))
    assert_error(writer.post(f"/v1/queue/{job}/retry", params={"entity_id": "cat-1"}), 403,
                 "forbidden")
    r = c.post(f"/v1/queue/{job}/retry", params={"entity_id": "cat-1"})
    assert r.json() == {"id": job, "status": "queued"}
    wait_idle(c, "cat-1")
    assert_error(c.post(f"/v1/queue/{job}/retry", params={"entity_id": "cat-1"}), 404,
                 "not_found", "job_id")


def test_export_forget_import(server: Server) -> None:
    c = server.client(server.admin)
    _turn(c, "exp", "I play the cello")
    wait_idle(c, "exp")
    data = c.get("/v1/export", params={"entity_id": "exp"}).json()
    assert data["format"] == "memori.export" and data["memories"]
    forgot = c.delete("/v1/entities/exp").json()["counts"]
    assert forgot["memori_conversation_message"] == 2
    assert c.get("/v1/memories", params={"entity_id": "exp"}).json()["items"] == []
    imported = c.post("/v1/import", json={"data": data})
    assert imported.status_code == 201 and imported.json()["counts"]["memori_entity_fact"] >= 1
    again = c.post("/v1/import", json={"data": data})  # never merged
    assert again.status_code == 422 and again.json()["error"]["code"] == "invalid_request"
    hits = c.post("/v1/recall", json={"entity_id": "exp", "query": "cello"}).json()["hits"]
    assert hits and "cello" in hits[0]["content"]


@pytest.mark.parametrize("server", ["sqlite", "postgresql"], indirect=True)
def test_keys_scopes_bindings_and_revocation(server: Server) -> None:
    anon = server.client()
    err = assert_error(anon.get("/v1/memories", params={"entity_id": "ann"}), 401,
                       "unauthorized", "Authorization")
    assert "Bearer" in anon.get("/v1/stats").headers["WWW-Authenticate"]
    assert err["message"]
    bad = server.client("mk_000000000000_" + "0" * 64)
    assert_error(bad.get("/v1/stats"), 401, "unauthorized")
    forged = server.admin[:-1] + ("0" if server.admin[-1] != "0" else "1")
    assert_error(server.client(forged).get("/v1/stats"), 401, "unauthorized")

    reader = server.client(make_key(server.db_url, "--scope", "read", "--entity", "ann"))
    assert reader.get("/v1/memories").status_code == 200  # its only entity by default
    assert_error(reader.get("/v1/memories", params={"entity_id": "bob"}), 403, "forbidden",
                 "entity_id")
    assert_error(reader.post("/v1/turns", json={"messages": [{"role": "user",
                                                              "content": "hi"}]}),
                 403, "forbidden")
    assert_error(reader.get("/v1/stats"), 403, "forbidden")
    assert [e["entity_id"] for e in reader.get("/v1/entities").json()["items"]] in (
        ["ann"], [])
    prefixed = server.client(make_key(server.db_url, "--scope", "write", "--entity-prefix",
                                      "team-"))
    assert prefixed.post("/v1/turns", json={"entity_id": "team-1", "messages": [
        {"role": "user", "content": "hello"}]}).status_code == 201
    assert_error(prefixed.post("/v1/memories", json={"entity_id": "TEAM-1", "content": "x"}),
                 403, "forbidden", "entity_id")
    assert_error(prefixed.post("/v1/turns", json={"messages": [
        {"role": "user", "content": "hello"}]}), 422, "invalid_request", "entity_id")
    assert_error(prefixed.delete("/v1/entities/team-1"), 403, "forbidden")

    # keys over the API (admin), revoked at once on this server
    admin = server.client(server.admin)
    made = admin.post("/v1/keys", json={"scope": "read", "entity_ids": ["x"], "name": "n"})
    assert made.status_code == 201 and made.json()["grant"]["entity_ids"] == ["x"]
    new = server.client(made.json()["key"])
    assert new.get("/v1/memories").status_code == 200
    key_id = made.json()["grant"]["key_id"]
    assert key_id in [k["key_id"] for k in admin.get("/v1/keys").json()["items"]]
    assert admin.delete(f"/v1/keys/{key_id}").json()["revoked_at"] is not None
    assert_error(new.get("/v1/memories"), 401, "unauthorized")
    assert_error(admin.delete(f"/v1/keys/{key_id}"), 404, "not_found", "key_id")
    assert_error(admin.post("/v1/keys", json={"scope": "admin", "entity_ids": ["x"]}), 422,
                 "invalid_request", "scope")

    # revoked by the CLI (another process): refused within the key cache TTL (1 s here)
    cli_key = make_key(server.db_url, "--scope", "read")
    other = server.client(cli_key)
    assert other.get("/v1/entities").status_code == 200
    listed = memori_cli("keys", "list", "--db", server.db_url).stdout
    key_id = cli_key.split("_")[1]
    assert key_id in listed and cli_key.split("_")[2] not in listed  # never the secret
    memori_cli("keys", "revoke", key_id, "--db", server.db_url)
    refused = wait_until(lambda: (r := other.get("/v1/entities")).status_code != 200 and r,
                         5, "the revoked key refused", interval=0.1)
    assert_error(refused, 401, "unauthorized")
    assert memori_cli("keys", "revoke", key_id, "--db", server.db_url,
                      check=False).returncode == 1


def test_bad_requests_name_the_field(server: Server) -> None:
    c = server.client(server.admin)
    assert_error(c.post("/v1/turns", content=b'{"entity_id": "ann", "messages": [',
                        headers={"Content-Type": "application/json"}), 400, "invalid_json",
                 "body")
    assert_error(c.post("/v1/turns", json={"entity_id": "ann", "messages": [
        {"role": "robot", "content": "hi"}]}), 422, "invalid_request", "messages.0.role")
    assert_error(c.post("/v1/turns", json={"entity_id": "ann", "messages": [
        {"role": "user", "content": "hi", "mood": "happy"}]}), 422, "invalid_request",
        "messages.0.mood")
    assert_error(c.post("/v1/turns", json={"entity_id": "ann", "messages": "hi"}), 422,
                 "invalid_request", "messages")
    assert_error(c.post("/v1/turns", json={"entity_id": "ann"}), 422, "invalid_request",
                 "messages")
    assert_error(c.post("/v1/recall", json={"entity_id": "ann", "query": "x", "bogus": 1}),
                 422, "invalid_request", "bogus")
    assert_error(c.post("/v1/recall", json={"entity_id": "ann", "query": "x", "limit": "ten"}),
                 422, "invalid_request", "limit")
    assert_error(c.get("/v1/memories", params={"entity_id": "ann", "colour": "red"}), 422,
                 "invalid_request", "colour")
    assert_error(c.get("/v1/memories", params={"entity_id": "ann", "cursor": "nope"}), 422,
                 "invalid_request", "cursor")
    assert_error(c.get("/v1/memories/abc", params={"entity_id": "ann"}), 422,
                 "invalid_request", "memory_id")
    # the core's ConfigurationError, with its argument as the field
    assert_error(c.post("/v1/recall", json={"entity_id": "a\u0000b", "query": "x"}), 422,
                 "invalid_request", "entity_id")
    assert_error(c.post("/v1/memories", json={"entity_id": "ann", "content": "a\u0000b"}), 422,
                 "invalid_request", "content")
    assert_error(c.get("/v1/nowhere"), 404, "not_found")
    assert_error(c.put("/v1/memories"), 405, "method_not_allowed")
