"""A registered OpenAI client and a plugin work unchanged on a remote ``Memori``; a server
killed while the client captures loses no acknowledged turn."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from memori_remote_support import (
    NO_LIMIT,
    Server,
    remote,
    restart,
    sqlite_server,
    start_server,
)

from memori_core.context import BLOCK_START
from memori_core.server._ready import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from memori_llm_support import serve_echo

__all__ = ["sqlite_server"]


def test_a_registered_openai_client_recalls_and_captures_through_the_server(
        sqlite_server: Server) -> None:
    openai = pytest.importorskip("openai")
    user = f"llm-{uuid.uuid4().hex[:8]}"
    with serve_echo() as base, remote(sqlite_server) as mem:
        client = openai.OpenAI(base_url=base, api_key="local", max_retries=0)
        mem.llm.register(client)
        mem.attribution(entity_id=user)
        mem.remember("The user is allergic to peanuts")
        reply = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "Any snack with peanuts?"}])
        text = reply.choices[0].message.content or ""
        assert BLOCK_START in text and "allergic to peanuts" in text  # the system slot it got
        assert mem.llm.stats()["turns_captured"] == 1
        stored = mem.session_messages()
        assert [m["role"] for m in stored] == ["user", "assistant"]
        assert stored[0]["content"] == "Any snack with peanuts?"
        assert mem.forget(user)["memori_entity"] == 1


def test_a_plugin_works_unchanged_in_remote_mode(sqlite_server: Server) -> None:
    pytest.importorskip("pydantic_ai")
    from memori_pydantic_ai import MemoriCapability
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    seen: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info.instructions or "")
        return ModelResponse(parts=[TextPart("Try apple slices.")])

    user = f"plugin-{uuid.uuid4().hex[:8]}"
    with remote(sqlite_server) as mem:
        mem.attribution(entity_id=user)
        mem.remember("The user is allergic to peanuts")
        agent = Agent(FunctionModel(model), capabilities=[MemoriCapability(mem)],
                      instructions="Be brief.")
        agent.run_sync("Any snack without peanuts? I am allergic")
        assert seen[0].startswith("Be brief.\n\n" + BLOCK_START)
        assert 'fact: "The user is allergic to peanuts"' in seen[0]
        contents = [m["content"] for m in mem.session_messages()]
        assert "Any snack without peanuts? I am allergic" in contents
        assert "Try apple slices." in contents
        mem.forget(user)


def test_a_killed_server_loses_no_acknowledged_turn(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    openai = pytest.importorskip("openai")
    db = f"sqlite:///{tmp_path_factory.mktemp('kill') / 'memori.db'}"
    server = start_server(db, *NO_LIMIT)
    user = f"kill-{uuid.uuid4().hex[:8]}"
    sent: list[str] = []
    try:
        with serve_echo() as base, remote(server, database_timeout_seconds=1) as mem:
            client = openai.OpenAI(base_url=base, api_key="local", max_retries=0)
            mem.llm.register(client, recall=False)
            mem.attribution(entity_id=user)

            def say(i: int) -> None:
                text = f"message number {i}"
                client.chat.completions.create(model="echo",
                                               messages=[{"role": "user", "content": text}])
                sent.append(text)  # the call returned: the turn is acknowledged

            for i in range(5):
                say(i)
            os.kill(server.proc.pid, signal.SIGKILL)  # mid-stream: no shutdown at all
            server.proc.wait(10)
            for i in range(5, 15):
                say(i)  # every call still succeeds; turns spill
            assert mem.llm.stats()["turns_spilled"] >= 1
            server = restart(server, *NO_LIMIT)
            # each flush writes back what it can; done when nothing is left spilled
            wait_until(lambda: mem.llm.flush() == 0, 60, "the spilled turns written back",
                       interval=0.2)
            users = [m["content"] for m in mem.session_messages() if m["role"] == "user"]
            assert sorted(users) == sorted(sent) and len(users) == 15  # each once
    finally:
        server.stop()
