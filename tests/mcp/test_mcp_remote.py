"""``memori mcp --url``: the MCP tools over a real ``memori serve`` (the SDK's remote mode),
driven by the MCP SDK's own client over stdio and streamable HTTP; the entity from
``MEMORI_ENTITY_ID`` or from the key's binding (``GET /v1/keys/me``)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import anyio
from memori_mcp_support import (
    MEMORI,
    call_error,
    call_ok,
    http_server,
    http_session,
    server_env,
    stdio_session,
    text_of,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))
from memori_remote_support import Server, make_key, remote, sqlite_server

__all__ = ["sqlite_server"]


def _env(key: str | None, entity: str | None = None, var: str = "MEMORI_API_KEY"
         ) -> dict[str, str]:
    env = server_env(entity)
    if key is not None:
        env[var] = key
    return env


def _refused(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([MEMORI, "mcp", *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert done.stdout == ""  # nothing on the protocol channel
    return done.stderr


def test_the_tools_act_for_the_entity_the_key_is_bound_to(sqlite_server: Server,
                                                          tmp_path: Path) -> None:
    ana = f"ana-{uuid.uuid4().hex[:8]}"
    key = make_key(sqlite_server.db_url, "--scope", "write", "--entity", ana)

    async def run() -> None:
        async with stdio_session(MEMORI, ["mcp", "--url", sqlite_server.url], _env(key),
                                 tmp_path / "server.log") as s:
            assert {t.name for t in (await s.list_tools()).tools} == {
                "remember", "search_memories", "list_memories", "delete_memory"}
            stored = await call_ok(s, "remember", text="I'm allergic to peanuts")
            assert stored["augmented"] is True and len(stored["message_ids"]) == 1
            direct = await call_ok(s, "remember", text="The user prefers aisle seats",
                                   kind="preference")
            found = await s.call_tool("search_memories",
                                      {"query": "is the user allergic to peanuts?"})
            assert not found.is_error and "allergic to peanuts" in text_of(found)
            listed = await call_ok(s, "list_memories", limit=100)
            assert direct["memory_id"] in {m["id"] for m in listed["memories"]}
            assert (await call_ok(s, "delete_memory", memory_id=direct["memory_id"])
                    ) == {"deleted": direct["memory_id"]}
            assert "memory_id" in await call_error(s, "delete_memory",
                                                   memory_id=direct["memory_id"])

    anyio.run(run)
    assert f"entity {ana!r} on memori server {sqlite_server.url}" in \
        (tmp_path / "server.log").read_text(encoding="utf-8")
    with remote(sqlite_server) as mem, mem.attribution(entity_id=ana):  # stored as ana's
        contents = {m.content for m in mem.memories()}
        assert "The user prefers aisle seats" not in contents
        assert any("peanuts" in c for c in contents)
        assert [m["content"] for m in mem.session_messages(
            mem.conversations()[0][0]["session_id"])] == ["I'm allergic to peanuts"]


def test_entity_from_the_environment_and_key_from_a_named_variable(
        sqlite_server: Server, tmp_path: Path) -> None:
    bo = f"bo-{uuid.uuid4().hex[:8]}"
    with remote(sqlite_server) as mem, mem.attribution(entity_id=bo):
        mem.remember("The user's dog is called Rex")

    async def run() -> None:
        async with stdio_session(
                MEMORI, ["mcp", "--url", sqlite_server.url, "--api-key-env", "MY_MEMORI_KEY",
                         "--allow-forget"], _env(sqlite_server.admin, bo, "MY_MEMORI_KEY"),
                tmp_path / "server.log") as s:
            found = await s.call_tool("search_memories", {"query": "the user's dog is called"})
            assert "Rex" in text_of(found)
            forgot = await call_ok(s, "forget_entity", confirm=True)
            assert forgot["deleted"]["memori_entity"] == 1

    anyio.run(run)
    with remote(sqlite_server) as mem:
        assert mem.entities(ids=[bo]) == ([], None)


def test_url_without_a_usable_key_or_entity_is_refused(sqlite_server: Server,
                                                       tmp_path: Path) -> None:
    url = ["--url", sqlite_server.url]
    both = _refused(["--db", f"sqlite:///{tmp_path / 'm.db'}", *url], _env(None, "e"))
    assert "--db" in both and "--url" in both and "not both" in both
    assert not (tmp_path / "m.db").exists()
    neither = _refused([], _env(None, "e"))
    assert "--db" in neither and "--url" in neither
    assert "MEMORI_API_KEY" in _refused(url, _env(None, "e"))
    assert "OTHER_KEY" in _refused([*url, "--api-key-env", "OTHER_KEY"],
                                   _env(sqlite_server.admin, "e"))
    unbound = make_key(sqlite_server.db_url, "--scope", "write")
    assert "MEMORI_ENTITY_ID" in _refused(url, _env(unbound))
    assert "API key" in _refused(url, _env("mk_wrong"))


def test_a_read_key_lists_but_cannot_remember(sqlite_server: Server, tmp_path: Path) -> None:
    cy = f"cy-{uuid.uuid4().hex[:8]}"
    key = make_key(sqlite_server.db_url, "--scope", "read", "--entity", cy)

    async def run() -> None:
        async with stdio_session(MEMORI, ["mcp", "--url", sqlite_server.url], _env(key),
                                 tmp_path / "server.log") as s:
            assert (await call_ok(s, "list_memories"))["memories"] == []
            assert "scope" in await call_error(s, "remember", text="x", kind="fact")

    anyio.run(run)


def test_over_streamable_http_the_tools_act_through_the_server(sqlite_server: Server,
                                                               tmp_path: Path) -> None:
    """``memori mcp --url --transport http``: the SDK's streamable HTTP client, a key bound to
    one entity; what it stores is that entity's on the server, and a read key's server
    refuses its writes as a tool error."""
    di = f"di-{uuid.uuid4().hex[:8]}"
    key = make_key(sqlite_server.db_url, "--scope", "write", "--entity", di)
    log = tmp_path / "server.log"

    async def run() -> None:
        with http_server(["--url", sqlite_server.url], _env(key), log,
                         "--allow-forget") as url:
            async with http_session(url) as s:
                assert {t.name for t in (await s.list_tools()).tools} == {
                    "remember", "search_memories", "list_memories", "delete_memory",
                    "forget_entity"}
                stored = await call_ok(s, "remember", text="I'm allergic to peanuts")
                assert stored["augmented"] is True
                direct = await call_ok(s, "remember", text="The user prefers aisle seats",
                                       kind="preference")
                found = await s.call_tool("search_memories", {"query": "which seat for the "
                                                              "user?"})
                assert not found.is_error and "aisle seats" in text_of(found)
                listed = await call_ok(s, "list_memories", limit=100)
                assert direct["memory_id"] in {m["id"] for m in listed["memories"]}
                assert (await call_ok(s, "delete_memory", memory_id=direct["memory_id"])
                        ) == {"deleted": direct["memory_id"]}
                # a write key may not forget: the server's 403, as a tool error
                assert "scope" in await call_error(s, "forget_entity", confirm=True)

    anyio.run(run)
    assert f"entity {di!r} on memori server {sqlite_server.url}, serving http://" in \
        log.read_text(encoding="utf-8")
    with remote(sqlite_server) as mem, mem.attribution(entity_id=di):  # stored as di's
        contents = {m.content for m in mem.memories()}
        assert any("peanuts" in c for c in contents)
        assert "The user prefers aisle seats" not in contents
