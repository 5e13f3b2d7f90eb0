"""What the provider-wrapper tests share besides fixtures: the texts every cassette was
authored with, a deterministic ``Memori``, one driver per provider, a TCP proxy that takes
PostgreSQL away from memori, and a local OpenAI-compatible echo server.

(A module of its own, not ``conftest``: several test folders have a ``conftest.py``, so
``from conftest import ...`` could find another one.)
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from memori_remote_mode import memori

from memori_core import Memori
from memori_core.context import BLOCK_END, BLOCK_HEADER, BLOCK_START

#: the memory and question every injection test uses (they share words, so the HashEmbedder
#: recalls the memory well above the 0.1 threshold)
MEMORY = "The user is allergic to peanuts"
#: the day the tests' memories are stored on: tests/conftest.py's TEST_CLOCK_START
DAY = "2026-01-01"
#: the block every injection test expects: MEMORY as the only recalled fact, dated
BLOCK = "\n".join([BLOCK_START, BLOCK_HEADER, f'- {DAY} fact: "{MEMORY}"', BLOCK_END])
#: the four ways a provider call is made
MODES = ["sync", "async", "stream", "async_stream"]
QUESTION = "Which snack is safe for someone allergic to peanuts like me?"
#: a question sharing no word with MEMORY: nothing clears the threshold
UNRELATED = "Tell me a joke"
ENTITY, PROCESS = "user-1", "chef"

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5",
          "google": "gemini-2.5-flash"}


def api_key(provider: str) -> str:
    """The real key when recording, else a dummy (never stored: headers are allow-listed)."""
    env = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
           "google": "GEMINI_API_KEY", "xai": "XAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY"}
    return os.environ.get(env[provider], f"test-{provider}-key")


def new_memori(url: str, **settings: Any) -> Memori:
    """A built ``Memori`` with the HashEmbedder and no background workers, so recall sees only
    what a test stored (augmentation runs when a test calls ``augmentation.run_once()``); in
    remote mode a client of a ``memori serve`` over ``url`` run so (``memori_remote_mode``)."""
    return memori(url, augmentation_workers=0, **settings)


# ---- one way to call each provider (used by the cross-provider tests) ------------------------
class Driver:
    """How the cross-provider tests make a plain chat call on one provider."""

    provider = ""

    def client(self, is_async: bool) -> Any:
        raise NotImplementedError

    def ask(self, client: Any, text: str) -> str:
        raise NotImplementedError

    async def aask(self, client: Any, text: str) -> str:
        raise NotImplementedError


class OpenAIDriver(Driver):
    provider = "openai"

    def client(self, is_async: bool) -> Any:
        import openai

        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(api_key=api_key("openai"), max_retries=0)

    def ask(self, client: Any, text: str) -> str:
        reply = client.chat.completions.create(model=MODELS["openai"],
                                               messages=[{"role": "user", "content": text}])
        return str(reply.choices[0].message.content)

    async def aask(self, client: Any, text: str) -> str:
        reply = await client.chat.completions.create(
            model=MODELS["openai"], messages=[{"role": "user", "content": text}])
        return str(reply.choices[0].message.content)


class AnthropicDriver(Driver):
    provider = "anthropic"

    def client(self, is_async: bool) -> Any:
        import anthropic

        cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        return cls(api_key=api_key("anthropic"), max_retries=0)

    def ask(self, client: Any, text: str) -> str:
        reply = client.messages.create(model=MODELS["anthropic"], max_tokens=256,
                                       messages=[{"role": "user", "content": text}])
        return str(reply.content[0].text)

    async def aask(self, client: Any, text: str) -> str:
        reply = await client.messages.create(model=MODELS["anthropic"], max_tokens=256,
                                             messages=[{"role": "user", "content": text}])
        return str(reply.content[0].text)


class GoogleDriver(Driver):
    provider = "google"

    def client(self, is_async: bool) -> Any:
        from google import genai

        return genai.Client(api_key=api_key("google"))

    def ask(self, client: Any, text: str) -> str:
        return str(client.models.generate_content(model=MODELS["google"], contents=text).text)

    async def aask(self, client: Any, text: str) -> str:
        reply = await client.aio.models.generate_content(model=MODELS["google"], contents=text)
        return str(reply.text)


DRIVERS: dict[str, Driver] = {d.provider: d for d in (OpenAIDriver(), AnthropicDriver(),
                                                       GoogleDriver())}


# ---- a database outage, seen from the client -----------------------------------------------
class TcpProxy:
    """A loopback TCP proxy in front of a server: ``cut()`` closes every connection and stops
    listening (clients get "connection refused", as when the server is down); ``restore()``
    listens again on the same port; ``hang()`` keeps every connection open but passes nothing
    on, new ones included (a server that stopped answering), until ``flow()``. The server
    itself is never touched.

    Args:
        upstream: (host, port) of the real server.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._flowing = threading.Event()
        self._flowing.set()

    def hang(self) -> None:
        """Hold every byte in both directions (and every new connection) until ``flow()``."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def start(self) -> TcpProxy:
        self.restore()
        return self

    def restore(self) -> None:
        """Listen (again) on ``self.port`` (a free port the first time)."""
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def cut(self) -> None:
        """Stop listening and close every open connection, both sides."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    def close(self) -> None:
        self.flow()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut(): the listener was shut down
                return
            self._flowing.wait()
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(server)
                    return
                self._conns.update((client, server))
            for src, dst in ((client, server), (server, client)):
                t = threading.Thread(target=_pipe, args=(src, dst, self._flowing), daemon=True)
                t.start()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _pipe(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
    try:
        while data := src.recv(65536):
            flowing.wait()
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


# ---- local HTTP endpoints -------------------------------------------------------------------
class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A loopback JSON endpoint answering every POST at once with ``reply(path, body)``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def reply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        data = json.dumps(self.reply(self.path.split("?")[0], body)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class EchoHandler(JsonHandler):
    """Answers ``POST /v1/chat/completions``; the reply text is the system message (where
    memori puts its block) and the last user message, so a test can see what was sent."""

    def reply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        text = f"{' '.join(system)} | {body['messages'][-1]['content']}"
        return {"id": "chatcmpl-local", "object": "chat.completion", "created": 0,
                "model": body["model"], "choices": [{
                    "index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text}}]}


@contextlib.contextmanager
def serve(handler: type[JsonHandler]) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a threaded server running ``handler``, for the
    duration of the ``with``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serve_echo() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/v1``) of a local OpenAI-compatible server answering
    at once with ``EchoHandler``, for the duration of the ``with``."""
    with serve(EchoHandler) as url:
        yield f"{url}/v1"
