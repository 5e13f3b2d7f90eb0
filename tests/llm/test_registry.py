"""``mem.llm.register`` / ``unregister``: what is wrapped, what is restored, what is refused."""

from __future__ import annotations

import threading
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from memori_llm_support import PROCESS, api_key, new_memori

from memori_core import ConfigurationError, Memori
from memori_core.llm import SUPPORTED_CLIENTS, LLMRegistry

#: (client factory, [(resource path, method)]) of every supported SDK
CLIENTS: dict[str, tuple[Any, list[tuple[str, str]]]] = {
    "openai": (lambda: openai.OpenAI(api_key=api_key("openai")),
               [("chat.completions", "create"), ("chat.completions", "parse"),
                ("responses", "create")]),
    "async_openai": (lambda: openai.AsyncOpenAI(api_key=api_key("openai")),
                     [("chat.completions", "create"), ("chat.completions", "parse"),
                      ("responses", "create")]),
    "azure": (lambda: openai.AzureOpenAI(api_key="k", api_version="2024-10-21",
                                         azure_endpoint="https://example.openai.azure.com"),
              [("chat.completions", "create"), ("responses", "create")]),
    "anthropic": (lambda: anthropic.Anthropic(api_key=api_key("anthropic")),
                  [("messages", "create"), ("messages", "stream")]),
    "async_anthropic": (lambda: anthropic.AsyncAnthropic(api_key=api_key("anthropic")),
                        [("messages", "create"), ("messages", "stream")]),
    "anthropic_bedrock": (lambda: anthropic.AnthropicBedrock(
        aws_region="us-east-1", aws_access_key="test", aws_secret_key="test"),
        [("messages", "create"), ("messages", "stream")]),
    "google": (lambda: genai.Client(api_key=api_key("google")),
               [("models", "generate_content"), ("models", "generate_content_stream"),
                ("aio.models", "generate_content"), ("aio.models", "generate_content_stream")]),
}


def resolve(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_register_wraps_this_client_only_and_unregister_restores_it(smem: Memori,
                                                                    kind: str) -> None:
    factory, methods = CLIENTS[kind]
    client, other = factory(), factory()
    originals = {(p, m): getattr(resolve(client, p), m) for p, m in methods}
    assert smem.llm.register(client) is smem
    assert smem.llm.is_registered(client) and not smem.llm.is_registered(other)
    for path, method in methods:
        wrapped = getattr(resolve(client, path), method)
        assert wrapped.__memori_registry__ is smem.llm
        assert wrapped.__wrapped__ == originals[(path, method)]
        assert not hasattr(getattr(resolve(other, path), method), "__memori_registry__")
        # on the instance only: the class keeps the SDK's method
        assert method in vars(resolve(client, path))
    assert smem.llm.stats()["clients"] == 1
    assert smem.llm.unregister(client) is smem
    for path, method in methods:
        assert method not in vars(resolve(client, path))
        assert getattr(resolve(client, path), method) == originals[(path, method)]
    assert smem.llm.stats()["clients"] == 0


def test_registering_again_on_the_same_instance_is_harmless(smem: Memori) -> None:
    client = openai.OpenAI(api_key=api_key("openai"))
    original = client.chat.completions.create
    smem.llm.register(client)
    smem.llm.register(client, recall=False)
    smem.llm.unregister(client)
    assert client.chat.completions.create == original
    assert "create" not in vars(client.chat.completions)


def test_one_client_on_two_instances_is_a_clear_error(smem: Memori, sqlite_url: str,
                                                      tmp_path: Any) -> None:
    client = openai.OpenAI(api_key=api_key("openai"))
    smem.llm.register(client)
    other = new_memori(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with pytest.raises(ConfigurationError, match="already registered with another Memori") \
                as info:
            other.llm.register(client)
        assert info.value.argument == "client"
        smem.llm.unregister(client)
        other.llm.register(client)  # fine once the first instance let go
        assert other.llm.is_registered(client)
    finally:
        other.close()


def test_an_unknown_client_is_refused_with_the_supported_list(smem: Memori) -> None:
    with pytest.raises(ConfigurationError) as info:
        smem.llm.register(object())
    assert info.value.argument == "client"
    for supported in ("openai.OpenAI", "AzureOpenAI", "anthropic.Anthropic", "google.genai.Client",
                      "OpenAI(base_url=...)"):
        assert supported in str(info.value)
    assert all(s.split(" ")[0] in str(info.value) for s in SUPPORTED_CLIENTS)


def test_xai_sdk_client_is_pointed_at_the_openai_compatible_api(smem: Memori) -> None:
    xai_client = type("Client", (), {"__module__": "xai_sdk.sync.client"})()
    with pytest.raises(ConfigurationError, match=r"https://api\.x\.ai/v1") as info:
        smem.llm.register(xai_client)
    assert info.value.argument == "client"


def test_unregistering_a_client_that_is_not_registered_is_an_error(smem: Memori) -> None:
    with pytest.raises(ConfigurationError, match="not registered") as info:
        smem.llm.unregister(openai.OpenAI(api_key=api_key("openai")))
    assert info.value.argument == "client"


def test_recall_must_be_a_bool(smem: Memori) -> None:
    with pytest.raises(ConfigurationError) as info:
        smem.llm.register(openai.OpenAI(api_key=api_key("openai")), recall="yes")  # type: ignore[arg-type]
    assert info.value.argument == "recall"


def test_a_call_without_attribution_is_refused_before_anything_is_sent(smem: Memori) -> None:
    # no cassette and no network: had the request been sent, the error would be another
    client = openai.OpenAI(api_key=api_key("openai"), max_retries=0)
    smem.llm.register(client)
    with pytest.raises(ConfigurationError, match="needs an attribution") as info:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
    assert info.value.argument == "entity_id"
    assert smem.llm.stats()["calls"] == 0


def test_close_restores_every_client_and_refuses_new_ones(sqlite_url: str) -> None:
    mem = new_memori(sqlite_url)
    client = anthropic.Anthropic(api_key=api_key("anthropic"))
    original = client.messages.create
    mem.llm.register(client)
    mem.close()
    assert client.messages.create == original
    with pytest.raises(ConfigurationError, match="closed"):
        mem.llm.register(client)


@pytest.mark.parametrize(("setting", "value"), [("llm_history_messages", -1),
                                                ("llm_history_tokens", 0),
                                                ("llm_spill_turns", 0)])
def test_llm_settings_are_validated(sqlite_url: str, setting: str, value: int) -> None:
    with pytest.raises(ConfigurationError) as info:
        Memori(conn=sqlite_url, **{setting: value})
    assert info.value.argument == setting


def test_llm_settings_come_from_the_environment(sqlite_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORI_LLM_HISTORY_MESSAGES", "6")
    monkeypatch.setenv("MEMORI_LLM_SPILL_TURNS", "50")
    mem = new_memori(sqlite_url)
    try:
        assert (mem.config.llm_history_messages, mem.config.llm_history_tokens,
                mem.config.llm_spill_turns) == (6, 2000, 50)
    finally:
        mem.close()


def test_stats_report_the_llm_counters(smem: Memori) -> None:
    assert isinstance(smem.llm, LLMRegistry)
    assert smem.stats()["llm"] == {
        "calls": 0, "injected": 0, "recall_errors": 0, "history_errors": 0,
        "capture_errors": 0, "turns_captured": 0, "turns_spilled": 0, "spill_written": 0,
        "spill_dropped": 0, "spill_forgotten": 0, "spill_set_aside": 0, "text_cleaned": 0,
        "spill_pending": 0, "set_aside_pending": 0, "clients": 0}


def test_threads_with_different_users_on_one_client_are_never_mixed(sqlite_url: str,
                                                                    echo_server: str) -> None:
    mem = new_memori(sqlite_url)
    users = [f"user-{i:02d}" for i in range(16)]
    client = openai.OpenAI(base_url=echo_server, api_key="local", max_retries=0)
    try:
        for u in users:
            with mem.attribution(entity_id=u, process_id=PROCESS):
                mem.remember(f"The locker code of {u} is {u[-2:]}42")
        mem.llm.register(client)
        start = threading.Barrier(len(users))
        replies: dict[str, str] = {}

        def work(u: str) -> None:
            mem.attribution(entity_id=u, process_id=PROCESS)  # this thread's own
            start.wait()
            for _ in range(3):
                reply = client.chat.completions.create(
                    model="local", messages=[{"role": "user", "content": f"code? ({u})"}])
                replies[u] = str(reply.choices[0].message.content)

        threads = [threading.Thread(target=work, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for u in users:
            # the echo server answered with what was injected: this user's memory only
            assert f"of {u} is" in replies[u]
            assert sum(f"of {v} is" in replies[u] for v in users) == 1
            with mem.attribution(entity_id=u, process_id=PROCESS):
                session = mem.session_messages()
            assert [m["role"] for m in session] == ["user", "assistant"] * 3
            assert all(m["content"] == f"code? ({u})" for m in session[0::2])
            # the reply echoed the injected block: capture stripped it, the rest is this user's
            assert all(m["content"] == f" | code? ({u})" for m in session[1::2])
    finally:
        mem.close()
        client.close()  # its pool holds a connection per thread to the echo server

