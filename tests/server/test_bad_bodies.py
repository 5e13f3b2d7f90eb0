"""Bad requests beyond those of ``test_api`` / ``test_limits``, on SQLite and PostgreSQL: a
100 MB body streamed (chunked) to a server with its default 10 MB limit gets 413 without the
server reading it all or holding it; bodies that cannot be parsed, that are not an object, or
hold a wrong type inside a union, and cursors past a 64-bit row id, get 4xx naming the field."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
from memori_server_support import Server, assert_error, server

__all__ = ["server"]  # the fixture, imported for pytest

MB = 1024 * 1024


def _memory_kb(pid: int) -> dict[str, int]:
    """The process's resident set now (``VmRSS``) and at its peak (``VmHWM``), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f)
                if k in ("VmRSS", "VmHWM")}


def test_a_100_mb_body_streamed_gets_413_unread_and_never_held(server: Server) -> None:
    c = server.client(server.admin)
    sent = 0

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        nonlocal sent
        yield b'{"entity_id": "ann", "messages": [{"role": "user", "content": "'
        chunk = b"y" * (64 * 1024)
        while sent < 100 * MB:
            sent += len(chunk)
            yield chunk
        yield b'"}]}'

    # the key is checked before the body is read, and argon2 takes 64 MiB to check it: checked
    # (and cached) now, and the peak reset, so what is measured is the body's cost alone
    assert c.get("/v1/stats").status_code == 200
    with open(f"/proc/{server.proc.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = _memory_kb(server.proc.pid)
    r = c.post("/v1/turns", content=body(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large", "body")
    assert r.headers["Connection"] == "close"
    # the server stopped reading soon after its 10 MB limit (what is sent past it sits in
    # socket buffers), and its peak memory grew by far less than the body
    assert sent < 40 * MB, f"the server read {sent / MB:.0f} MB of the body"
    grown_mb = (_memory_kb(server.proc.pid)["VmHWM"] - before["VmRSS"]) / 1024
    assert grown_mb < 50, f"the server's peak memory grew by {grown_mb:.0f} MB"
    assert c.get("/v1/stats").status_code == 200  # and it serves on


def test_bodies_that_do_not_parse_or_are_not_objects_name_the_body(server: Server) -> None:
    c = server.client(server.admin)
    json = {"Content-Type": "application/json"}
    for raw in (b"[" * 100_000 + b"]" * 100_000,  # nested too deep for the parser
                b'{"entity_id": "ann", "query": "x", "limit": ' + b"9" * 5000 + b"}",
                b'{"entity_id": "ann", "query": "x"} and more'):
        assert_error(c.post("/v1/recall", content=raw, headers=json), 400, "invalid_json",
                     "body")
    for raw in (b"", b"[]", b"null", b'"ann"'):
        assert_error(c.post("/v1/recall", content=raw, headers=json), 422, "invalid_request",
                     "body")


def test_wrong_types_name_the_field_not_the_type(server: Server) -> None:
    c = server.client(server.admin)
    for content in (42, [42], {"text": "hi"}):  # content is text or a list of parts
        err = assert_error(c.post("/v1/turns", json={"entity_id": "ann", "messages": [
            {"role": "user", "content": "hi"}, {"role": "user", "content": content}]}),
            422, "invalid_request", "messages.1.content")
        assert err["message"].startswith("messages.1.content: ")
    assert_error(c.post("/v1/recall", json={"entity_id": "ann", "query": "x", "history": [
        {"role": "user", "content": 1}]}), 422, "invalid_request", "history.0.content")
    assert_error(c.post("/v1/turns", json={"entity_id": ["ann"], "messages": [
        {"role": "user", "content": "hi"}]}), 422, "invalid_request", "entity_id")
    assert_error(c.post("/v1/memories", json={"entity_id": "ann", "content": "x",
                                              "importance": "high"}),
                 422, "invalid_request", "importance")
    assert_error(c.get("/v1/memories", params={"entity_id": "ann", "include_superseded":
                                               "maybe"}),
                 422, "invalid_request", "include_superseded")
    assert_error(c.get("/v1/memories", params={"entity_id": "ann", "kind": "dream"}), 422,
                 "invalid_request", "kind.0")


def test_a_cursor_past_a_64_bit_row_id_is_refused_not_an_outage(server: Server) -> None:
    c = server.client(server.admin)
    assert c.post("/v1/turns", json={"entity_id": "ann", "messages": [
        {"role": "user", "content": "I keep bees"}]}).status_code == 201
    conv = c.get("/v1/conversations", params={"entity_id": "ann"}).json()["items"][0]["id"]
    for number in (2**63, -(2**63) - 1, 10**40):
        cursor = base64.urlsafe_b64encode(f"v1:{number}".encode()).decode().rstrip("=")
        for path, params in (("/v1/entities", {}),
                             ("/v1/memories", {"entity_id": "ann"}),
                             ("/v1/sessions", {"entity_id": "ann"}),
                             ("/v1/conversations", {"entity_id": "ann"}),
                             (f"/v1/conversations/{conv}/messages", {"entity_id": "ann"}),
                             ("/v1/triples", {"entity_id": "ann"}),
                             ("/v1/queue", {"entity_id": "ann"})):
            r = c.get(path, params={**params, "cursor": cursor})
            assert_error(r, 422, "invalid_request", "cursor")
    last = base64.urlsafe_b64encode(f"v1:{2**63 - 1}".encode()).decode().rstrip("=")
    assert c.get("/v1/entities", params={"cursor": last}).json()["items"] == []
    assert isinstance(httpx.get(f"{server.url}/healthz").json(), dict)
