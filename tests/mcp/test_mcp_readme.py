"""The README's MCP client configuration launches a working server: the JSON block is read from
the README and its command, args and env are run as written (only the database path replaced)
through the MCP SDK's stdio client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
from memori_mcp_support import call_ok, server_env, stdio_session, text_of

README = Path(__file__).resolve().parents[2] / "README.md"


def _config() -> dict[str, object]:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- mcp-client-config -->\n```json\n(.*?)```", text, re.S)
    assert found is not None, "README: no ```json block after <!-- mcp-client-config -->"
    return dict(json.loads(found.group(1))["mcpServers"]["memori"])


def test_readme_client_config_launches_the_server(tmp_path: Path) -> None:
    config = _config()
    command, args, env = config["command"], list(config["args"]), dict(config["env"])
    assert command == "memori" and isinstance(command, str)
    assert env.keys() == {"MEMORI_ENTITY_ID", "MEMORI_PROCESS_ID"}
    db = args.index("--db") + 1
    args[db] = f"sqlite:///{tmp_path / 'memori.db'}"  # the one substitution
    full_env = {**server_env(None), **env}  # PATH finds this virtualenv's `memori`

    async def run() -> None:
        async with stdio_session(command, args, full_env, tmp_path / "server.log") as s:
            assert {t.name for t in (await s.list_tools()).tools} == {
                "remember", "search_memories", "list_memories", "delete_memory"}
            await call_ok(s, "remember", text="My daughter Ana is vegetarian")
            found = await s.call_tool("search_memories", {"query": "vegetarian recipes for Ana"})
            assert "vegetarian" in text_of(found)

    anyio.run(run)
    log = (tmp_path / "server.log").read_text(encoding="utf-8")
    assert f"entity {env['MEMORI_ENTITY_ID']!r} process {env['MEMORI_PROCESS_ID']!r}" in log
    assert (tmp_path / "memori.db").exists()
