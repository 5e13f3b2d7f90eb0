"""The dashboard's sign-in against a real ``memori serve`` (SQLite): the session cookie stands
in for the bearer key on every ``/v1`` route, a write needs its CSRF token, the key's scope and
revocation still apply, and the dashboard's answers carry the security headers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from memori_databases import create_database
from memori_server_support import (
    NO_LIMIT,
    Server,
    assert_error,
    make_key,
    memori_cli,
    serve_backend,
    start_server,
)

from memori_core.server._session import COOKIE, CSRF_HEADER, SECURITY_HEADERS, Sessions

ENTITY = "dash-user"


@pytest.fixture(scope="module", params=["sqlite"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Server]:
    yield from serve_backend(request, tmp_path_factory)


def sign_in(srv: Server, key: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in with ``key`` (no Authorization header) and its CSRF
    token."""
    c = srv.client()
    r = c.post("/ui/session", json={"key": key})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf_token"]


def count(c: httpx.Client) -> int:
    r = c.get("/v1/memories", params={"entity_id": ENTITY, "scope": "entity"})
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


def test_sign_in_sets_a_strict_http_only_cookie_and_answers_the_grant(srv: Server) -> None:
    c = srv.client()
    r = c.post("/ui/session", json={"key": srv.admin})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"]["scope"] == "admin" and len(body["csrf_token"]) >= 40
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie
    assert "samesite=strict" in cookie and "path=/" in cookie and "secure" not in cookie
    again = c.get("/ui/session")
    assert again.status_code == 200 and again.json()["csrf_token"] == body["csrf_token"]


@pytest.mark.parametrize("key", ["", "mk_nope", "mk_" + "0" * 12 + "_" + "0" * 64])
def test_a_bad_key_is_refused_and_sets_no_cookie(srv: Server, key: str) -> None:
    c = srv.client()
    r = c.post("/ui/session", json={"key": key})
    assert r.status_code in (401, 422), r.text
    assert_error(r, r.status_code, "unauthorized" if r.status_code == 401 else
                 "invalid_request", "key")
    assert "set-cookie" not in r.headers
    assert_error(c.get("/v1/entities"), 401, "unauthorized")


def test_the_cookie_reads_and_a_write_needs_its_csrf_token(srv: Server) -> None:
    c, csrf = sign_in(srv, srv.admin)
    before = count(c)
    body = {"entity_id": ENTITY, "content": "likes green tea"}
    assert_error(c.post("/v1/memories", json=body), 403, "forbidden", CSRF_HEADER)
    assert_error(c.post("/v1/memories", json=body, headers={CSRF_HEADER: csrf[:-1] + "x"}),
                 403, "forbidden", CSRF_HEADER)
    assert count(c) == before  # nothing written by a refused write
    r = c.post("/v1/memories", json=body, headers={CSRF_HEADER: csrf})
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    assert count(c) == before + 1
    # every unsafe method is checked, not only POST
    assert_error(c.delete(f"/v1/memories/{mid}", params={"entity_id": ENTITY}), 403,
                 "forbidden", CSRF_HEADER)
    assert c.delete(f"/v1/memories/{mid}", params={"entity_id": ENTITY},
                    headers={CSRF_HEADER: csrf}).status_code == 200
    assert count(c) == before


def test_another_sessions_csrf_token_does_not_pass(srv: Server) -> None:
    c, _ = sign_in(srv, srv.admin)
    _, other = sign_in(srv, srv.admin)
    assert_error(c.post("/v1/memories", json={"entity_id": ENTITY, "content": "x"},
                        headers={CSRF_HEADER: other}), 403, "forbidden", CSRF_HEADER)


def test_a_read_keys_session_may_read_but_not_write(srv: Server) -> None:
    key = make_key(srv.db_url, "--scope", "read", "--entity", ENTITY)
    c, csrf = sign_in(srv, key)
    assert c.get("/ui/session").json()["key"]["scope"] == "read"
    assert count(c) >= 0
    assert_error(c.post("/v1/memories", json={"entity_id": ENTITY, "content": "nope"},
                        headers={CSRF_HEADER: csrf}), 403, "forbidden")
    assert_error(c.get("/v1/memories", params={"entity_id": "someone-else"}), 403,
                 "forbidden", "entity_id")


def test_revoking_the_key_ends_its_sessions(srv: Server) -> None:
    key = make_key(srv.db_url, "--scope", "read", "--entity", ENTITY)
    c, _ = sign_in(srv, key)
    assert count(c) >= 0
    key_id = key.split("_")[1]
    memori_cli("keys", "revoke", key_id, "--db", srv.db_url)
    # the server re-reads a cached key's row after its TTL (1 s here)
    deadline = time.monotonic() + 30
    while c.get("/v1/entities").status_code == 200:
        assert time.monotonic() < deadline, "a revoked key's session still reads"
        time.sleep(0.1)
    assert_error(c.get("/v1/memories", params={"entity_id": ENTITY}), 401, "unauthorized")
    assert_error(c.get("/ui/session"), 401, "unauthorized")
    assert_error(c.post("/ui/session", json={"key": key}), 401, "unauthorized", "key")


def test_sign_out_ends_the_session_everywhere(srv: Server) -> None:
    c, csrf = sign_in(srv, srv.admin)
    token = c.cookies[COOKIE]
    assert_error(c.delete("/ui/session"), 403, "forbidden", CSRF_HEADER)  # a write, too
    r = c.delete("/ui/session", headers={CSRF_HEADER: csrf})
    assert r.status_code == 204 and COOKIE in r.headers["set-cookie"]
    assert COOKIE not in c.cookies
    stale = srv.client(cookies={COOKIE: token})
    assert_error(stale.get("/v1/entities"), 401, "unauthorized", COOKIE)
    assert_error(stale.get("/ui/session"), 401, "unauthorized", COOKIE)


def test_a_bearer_key_wins_over_a_cookie(srv: Server) -> None:
    c, _ = sign_in(srv, srv.admin)
    r = c.get("/v1/entities", headers={"Authorization": "Bearer mk_wrong"})
    assert_error(r, 401, "unauthorized", "Authorization")
    # and a bearer write needs no CSRF token even beside a cookie
    r = c.post("/v1/memories", json={"entity_id": ENTITY, "content": "bearer write"},
               headers={"Authorization": f"Bearer {srv.admin}"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("path", ["/", "/ui/session", "/static/app.js"])
def test_the_dashboards_answers_carry_the_security_headers(srv: Server, path: str) -> None:
    r = srv.client().get(path)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (path, name, r.status_code)
    csp = r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp


def test_the_dashboard_is_not_in_the_api_schema(srv: Server) -> None:
    paths = srv.client().get("/openapi.json").json()["paths"]
    assert all(p.startswith("/v1/") or p in ("/healthz", "/readyz") for p in paths), paths


def test_no_dashboard_serves_neither_page_nor_sign_in(tmp_path_factory: pytest.TempPathFactory
                                                      ) -> None:
    url, drop = create_database("sqlite", tmp_path_factory)
    s = start_server(url, *NO_LIMIT, "--no-dashboard")
    try:
        c = s.client()
        assert c.get("/").status_code == 404
        assert c.post("/ui/session", json={"key": s.admin}).status_code == 404
        c.cookies.set(COOKIE, "x")
        assert_error(c.get("/v1/entities"), 401, "unauthorized", COOKIE)
    finally:
        s.stop()
        drop()


def test_sessions_end_when_idle_and_beyond_the_bound() -> None:
    idle = Sessions(idle_seconds=-1.0)  # every session is already idle too long
    token, _ = idle.open("mk_key")
    assert idle.get(token) is None and len(idle) == 0
    bounded = Sessions(idle_seconds=60.0, max_sessions=2)
    first, _ = bounded.open("a")
    second, _ = bounded.open("b")
    assert bounded.get(first) is not None  # used: now the most recent
    third, _ = bounded.open("c")
    assert len(bounded) == 2
    assert bounded.get(second) is None  # the least recently used ended
    assert bounded.get(first) is not None and bounded.get(third) is not None
    a, b = Sessions(60.0).open("k"), Sessions(60.0).open("k")
    assert a[0] != b[0] and a[1].csrf_token != b[1].csrf_token
