"""``memori mcp`` as MCP clients see it: real server processes (the ``memori`` console script of
this virtualenv, the real local embedding model) driven by the MCP SDK's own client over stdio
and streamable HTTP, on SQLite in ``tmp_path``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
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

from memori_core.context import BLOCK_END, BLOCK_START

TOOLS = {"remember", "search_memories", "list_memories", "delete_memory"}


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'memori.db'}"


def _properties(schema: dict[str, Any]) -> set[str]:
    """Every property name anywhere in a JSON schema."""
    names: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                names.update(props)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def test_without_entity_the_server_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run([MEMORI, "mcp", "--db", _db(tmp_path)], env=server_env(None),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "MEMORI_ENTITY_ID" in done.stderr
    assert done.stdout == ""  # nothing on the protocol channel
    assert not (tmp_path / "memori.db").exists()  # refused before opening anything


def test_stdio_tools_end_to_end(tmp_path: Path) -> None:
    """Over stdio, without --allow-forget: the tools, add -> search -> list -> delete, and bad
    arguments as tool errors naming the argument while the server goes on."""

    async def run() -> None:
        async with stdio_session(MEMORI, ["mcp", "--db", _db(tmp_path)],
                                 server_env("alice", "assistant"),
                                 tmp_path / "server.log") as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == TOOLS  # forget_entity only with --allow-forget
            for tool in tools.values():
                assert not {n for n in _properties(tool.input_schema)
                            if "entity" in n or "user" in n}, tool.name
                assert tool.description

            stored = await call_ok(s, "remember", text="I'm allergic to peanuts")
            assert stored["augmented"] is True and len(stored["message_ids"]) == 1
            direct = await call_ok(s, "remember", text="The user prefers aisle seats",
                                   kind="preference")
            assert isinstance(direct["memory_id"], int)

            result = await s.call_tool("search_memories", {"query": "Which snack is safe "
                                                           "with my peanut allergy?"})
            assert not result.is_error
            block = text_of(result)
            assert block.startswith(BLOCK_START) and block.rstrip().endswith(BLOCK_END)
            assert "allergic to peanuts" in block
            assert result.structured_content is not None
            assert result.structured_content["block"] == block
            hits = result.structured_content["hits"]
            assert any("allergic to peanuts" in h["content"] for h in hits)
            nothing = await s.call_tool("search_memories", {"query": "quantum chromodynamics"})
            assert not nothing.is_error and BLOCK_START not in text_of(nothing)

            page = await call_ok(s, "list_memories", limit=1)
            assert len(page["memories"]) == 1 and page["next_offset"] == 1
            assert page["memories"][0]["id"] == direct["memory_id"]  # newest first
            rest = await call_ok(s, "list_memories", limit=100, offset=1)
            assert rest["next_offset"] is None
            contents = [m["content"] for m in rest["memories"]]
            assert "The user is allergic to peanuts" in contents

            assert await call_ok(s, "delete_memory", memory_id=direct["memory_id"]) == {
                "deleted": direct["memory_id"]}
            left = await call_ok(s, "list_memories")
            assert direct["memory_id"] not in [m["id"] for m in left["memories"]]
            again = await call_error(s, "delete_memory", memory_id=direct["memory_id"])
            assert "memory_id" in again

            for tool, arguments, argument in [
                    ("remember", {"text": "   "}, "text"),
                    ("remember", {"text": "x", "kind": "gossip"}, "kind"),
                    ("remember", {}, "text"),
                    ("search_memories", {"query": ""}, "query"),
                    ("search_memories", {"query": "peanuts", "limit": 0}, "limit"),
                    ("list_memories", {"limit": 1000}, "limit"),
                    ("list_memories", {"offset": -1}, "offset"),
                    ("delete_memory", {"memory_id": "the first"}, "memory_id"),
                    ("remember", {"text": "x" * 1_000_001}, "text")]:
                message = await call_error(s, tool, **arguments)
                assert argument in message, (tool, arguments, message)
            unknown = await s.call_tool("forget_entity", {"confirm": True})
            assert unknown.is_error

            # still serving, and nothing was forgotten
            still = await call_ok(s, "list_memories")
            assert "The user is allergic to peanuts" in [m["content"] for m in still["memories"]]

    anyio.run(run)


def test_two_entities_on_one_database_over_stdio_and_http(tmp_path: Path) -> None:
    """alice over stdio, bob over streamable HTTP with --allow-forget, on the same SQLite file:
    neither sees the other's memories; bob cannot delete alice's; bob's forget erases only
    bob."""
    db = _db(tmp_path)

    async def run() -> None:
        with http_server(["--db", db], server_env("bob"), tmp_path / "bob.log",
                         "--allow-forget") as url:
            async with stdio_session(MEMORI, ["mcp", "--db", db], server_env("alice"),
                                     tmp_path / "alice.log") as alice, \
                    http_session(url) as bob:
                bob_tools = {t.name: t for t in (await bob.list_tools()).tools}
                assert set(bob_tools) == TOOLS | {"forget_entity"}
                for tool in bob_tools.values():
                    assert not {n for n in _properties(tool.input_schema) if "entity" in n}

                await call_ok(alice, "remember", text="I live in Lisbon")
                await call_ok(bob, "remember", text="I live in Oslo")

                alice_block = text_of(await alice.call_tool(
                    "search_memories", {"query": "Where do I live?"}))
                bob_block = text_of(await bob.call_tool(
                    "search_memories", {"query": "Where do I live?"}))
                assert "Lisbon" in alice_block and "Oslo" not in alice_block
                assert "Oslo" in bob_block and "Lisbon" not in bob_block

                alice_list = (await call_ok(alice, "list_memories"))["memories"]
                bob_list = (await call_ok(bob, "list_memories"))["memories"]
                assert alice_list and bob_list
                assert all("Oslo" not in m["content"] for m in alice_list)
                assert all("Lisbon" not in m["content"] for m in bob_list)
                assert not {m["id"] for m in alice_list} & {m["id"] for m in bob_list}

                refused = await call_error(bob, "delete_memory", memory_id=alice_list[0]["id"])
                assert "memory_id" in refused
                assert await call_ok(alice, "list_memories") == {"memories": alice_list,
                                                                 "next_offset": None}

                assert "confirm" in await call_error(bob, "forget_entity", confirm=False)
                assert "limit" in await call_error(bob, "list_memories", limit=0)
                erased = await call_ok(bob, "forget_entity", confirm=True)
                assert erased["deleted"]["memori_entity_fact"] == len(bob_list)
                assert (await call_ok(bob, "list_memories"))["memories"] == []
                assert await call_ok(alice, "list_memories") == {"memories": alice_list,
                                                                 "next_offset": None}
        assert "serving http://127.0.0.1:" in (tmp_path / "bob.log").read_text(encoding="utf-8")

    anyio.run(run)


@pytest.mark.parametrize("value", ["", "x" * 256])
def test_an_invalid_entity_is_refused_naming_the_variable(tmp_path: Path, value: str) -> None:
    env = server_env(None)
    env["MEMORI_ENTITY_ID"] = value
    done = subprocess.run([MEMORI, "mcp", "--db", _db(tmp_path)], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "MEMORI_ENTITY_ID" in done.stderr
