"""Request size limit (413), per-key rate limit (429), a database outage (503, never 500),
and a property test: a key never reads or writes outside its scope."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memori_databases import create_database
from memori_server_support import NO_LIMIT, Server, TcpProxy, assert_error, start_server
from sqlalchemy.engine import make_url

from memori_core.server._ready import wait_until


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A SQLite server with a 4 KiB body limit and 2 requests/s per key, bursts of 3."""
    url, _ = create_database("sqlite", tmp_path_factory)
    srv = start_server(url, "--max-body-bytes", "4096", "--rate-limit", "2", "--rate-burst", "3")
    yield srv
    srv.stop()


def test_bodies_over_the_limit_get_413_before_they_are_read(limited: Server) -> None:
    c = limited.client(limited.admin)
    big = {"entity_id": "ann", "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_error(c.post("/v1/turns", json=big), 413, "payload_too_large", "body")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"entity_id": "ann", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    assert_error(c.post("/v1/turns", content=chunks(),
                        headers={"Content-Type": "application/json"}), 413,
                 "payload_too_large")
    # a 100 MB body is refused from its Content-Length, before a byte of it is sent
    host, port = limited.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/turns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nAuthorization: Bearer " + limited.admin.encode()
                     + b"\r\nContent-Length: 104857600\r\n\r\n")
        head = ""
        while '"payload_too_large"' not in head:  # the answer may come in several reads
            chunk = sock.recv(65536).decode()
            if not chunk:
                break
            head += chunk
    assert head.startswith("HTTP/1.1 413") and '"payload_too_large"' in head, head


def test_the_rate_limit_is_per_key_with_retry_after(limited: Server) -> None:
    c = limited.client(limited.admin)
    statuses = [c.get("/v1/stats") for _ in range(6)]
    limited_ = [r for r in statuses if r.status_code == 429]
    assert limited_, [r.status_code for r in statuses]
    err = assert_error(limited_[0], 429, "rate_limited")
    assert int(limited_[0].headers["Retry-After"]) >= 1 and err["message"]
    assert c.get("/healthz").status_code == 200  # health is never limited
    other = limited.client(limited.admin)  # the same key from another client: one bucket
    assert other.get("/v1/stats").status_code == 429


def test_a_database_outage_answers_503_with_retry_after_never_500(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    url, drop = create_database("postgresql", tmp_path_factory)
    parsed = make_url(url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
    through = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)
    srv = start_server(through, *NO_LIMIT)
    try:
        c = srv.client(srv.admin)
        turn = {"entity_id": "ann", "messages": [{"role": "user", "content": "I like figs"}]}
        assert c.post("/v1/turns", json=turn).status_code == 201
        proxy.cut()
        for request in (lambda: c.post("/v1/turns", json=turn),
                        lambda: c.post("/v1/recall", json={"entity_id": "ann",
                                                           "query": "figs"}),
                        lambda: c.get("/v1/memories", params={"entity_id": "ann"}),
                        lambda: c.get("/v1/entities"),
                        lambda: c.get("/readyz"),
                        # a key not cached yet cannot be checked: 503 too, not 401
                        lambda: srv.client("mk_0123456789ab_" + "1" * 64).get("/v1/stats")):
            r = request()
            assert_error(r, 503, "unavailable")
            assert int(r.headers["Retry-After"]) >= 1
        proxy.restore()
        # the pool reconnects: a capture is stored again within seconds
        wait_until(lambda: c.post("/v1/turns", json=turn).status_code == 201, 10,
                   "a capture stored after the database came back", interval=0.1)
        assert c.get("/readyz").status_code == 200
    finally:
        srv.stop()
        proxy.close()
        drop()  # type: ignore[operator]


# ---- a key never reads or writes outside its scope -------------------------------------------
ENTITIES = ["alice", "alfred", "bob", "Bob", "carol"]
SPECS = st.one_of(
    st.tuples(st.sampled_from(["read", "write", "admin"]), st.none(), st.none()),
    st.tuples(st.sampled_from(["read", "write"]),
              st.lists(st.sampled_from(ENTITIES), min_size=1, max_size=2, unique=True)
              .map(tuple), st.none()),
    st.tuples(st.sampled_from(["read", "write"]), st.none(), st.sampled_from(["al", "b", "c"])))
#: (method, path, needed scope, where the entity goes: query / body / path / none)
ROUTES: list[tuple[str, str, str, str]] = [
    ("GET", "/v1/memories", "read", "query"), ("POST", "/v1/recall", "read", "body"),
    ("GET", "/v1/processes", "read", "query"), ("GET", "/v1/sessions", "read", "query"),
    ("GET", "/v1/conversations", "read", "query"), ("GET", "/v1/triples", "read", "query"),
    ("GET", "/v1/queue", "read", "query"), ("GET", "/v1/export", "read", "query"),
    ("GET", "/v1/memories/1", "read", "query"), ("GET", "/v1/memories/1/history", "read",
                                                  "query"),
    ("POST", "/v1/turns", "write", "body"), ("POST", "/v1/memories", "write", "body"),
    ("PATCH", "/v1/memories/1", "write", "query"), ("DELETE", "/v1/memories/2", "write",
                                                    "query"),
    ("DELETE", "/v1/entities/{entity}", "admin", "path"),
    ("POST", "/v1/queue/1/retry", "admin", "query"),
    ("GET", "/v1/stats", "read", "none"), ("GET", "/v1/keys", "admin", "none"),
]
_RANK = {"read": 0, "write": 1, "admin": 2}


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url, _ = create_database("sqlite", tmp_path_factory)
    srv = start_server(url, *NO_LIMIT)
    yield srv
    srv.stop()


def _allows(spec: tuple[str, Any, Any], entity: str) -> bool:
    _, ids, prefix = spec
    if ids is not None:
        return entity in ids
    return prefix is None or entity.startswith(prefix)


def _body(path: str, entity: str) -> dict[str, Any]:
    if path == "/v1/recall":
        return {"entity_id": entity, "query": "what do I like?"}
    if path == "/v1/turns":
        return {"entity_id": entity, "messages": [{"role": "user", "content": "I like kiwis"}]}
    if path == "/v1/memories":
        return {"entity_id": entity, "content": f"{entity} likes plums"}
    return {"content": "edited"}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=SPECS, route=st.sampled_from(ROUTES), entity=st.sampled_from(ENTITIES))
def test_a_key_never_reads_or_writes_outside_its_scope(
        open_server: Server, spec: tuple[str, Any, Any], route: tuple[str, str, str, str],
        entity: str) -> None:
    keys: dict[Any, str] = open_server.__dict__.setdefault("keys_by_spec", {})
    if spec not in keys:
        scope, ids, prefix = spec
        made = open_server.client(open_server.admin).post("/v1/keys", json={
            "scope": scope, "entity_ids": list(ids) if ids else None, "entity_prefix": prefix})
        assert made.status_code == 201, made.text
        keys[spec] = made.json()["key"]
    c = open_server.client(keys[spec])
    method, path, needed, where = route
    path = path.replace("{entity}", entity)
    kw: dict[str, Any] = {}
    if where == "query":
        kw["params"] = {"entity_id": entity}
    if method in ("POST", "PATCH") and path != "/v1/queue/1/retry":
        kw["json"] = _body(path, entity)
    r = c.request(method, path, **kw)
    scope_ok = _RANK[spec[0]] >= _RANK[needed]
    bound = spec[1] is not None or spec[2] is not None
    entity_ok = _allows(spec, entity) if where != "none" else not bound or needed == "admin"
    if scope_ok and entity_ok:
        assert r.status_code not in (401, 403) and r.status_code < 500, (spec, route, r.text)
    else:
        assert_error(r, 403, "forbidden")
    if r.status_code < 300 and method == "GET":
        _only_allowed(r.json(), spec, entity)
    # whatever the key, a list of entities holds only those it may touch
    listed = c.get("/v1/entities")
    assert listed.status_code == 200
    assert all(_allows(spec, e["entity_id"]) for e in listed.json()["items"])


def _only_allowed(body: Any, spec: tuple[str, Any, Any], entity: str) -> None:
    """Anything a read answered belongs to the entity it named (the only one it may read)."""
    text = str(body)
    for other in ENTITIES:
        if other != entity and not _allows(spec, other):
            assert f"{other} likes plums" not in text, (spec, entity, text[:300])


def test_keys_made_by_the_cli_print_the_key_last(open_server: Server) -> None:
    from memori_server_support import memori_cli

    out = memori_cli("keys", "create", "--db", open_server.db_url, "--scope", "write",
                     "--entity", "zed", "--name", "svc").stdout
    key = out.split()[-1]
    assert out.rstrip().endswith(key) and key.startswith("mk_") and len(key) == 3 + 12 + 1 + 64
    c = open_server.client(key)
    assert c.post("/v1/turns", json={"messages": [{"role": "user", "content": "hi"}]}
                  ).status_code == 201
    bad = memori_cli("keys", "create", "--db", open_server.db_url, "--scope", "admin",
                     "--entity", "zed", check=False)
    assert bad.returncode == 2 and "admin key reaches every entity" in bad.stderr
    assert httpx.get(f"{open_server.url}/healthz").status_code == 200
