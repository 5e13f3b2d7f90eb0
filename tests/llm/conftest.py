"""Fixtures of the provider-wrapper tests: cassettes, a deterministic ``Memori``, a TCP proxy
in front of PostgreSQL and a local OpenAI-compatible server (helpers in ``memori_llm_support``).

Cassettes live in ``cassettes/<provider>/<test module>/<test name>.yaml`` and are replayed with
``--record-mode=none`` (pytest-recording's default): no test reaches a provider. ``make record``
re-records them with real keys (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``).
"""

from __future__ import annotations

import _socket
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from memori_cassettes import CASSETTES, configure
from memori_cassettes import vcr_config as _vcr_config
from memori_llm_support import ENTITY, PROCESS, TcpProxy, new_memori, serve_echo

from memori_core import Memori


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "authored: replays a cassette no live provider can "
                                       "produce (an injected error, an example endpoint); "
                                       "`make record` leaves it alone")


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    configure(vcr)


#: google-genai's async client subclasses aiohttp.ClientSession, which aiohttp deprecates: the
#: SDK's own warning, silenced for these tests only
_GENAI_AIOHTTP = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
    ":DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(_GENAI_AIOHTTP)


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return _vcr_config()


@pytest.fixture
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    """``cassettes/<provider>/<module>``: the provider is the test's ``provider`` parameter or
    the module's ``CASSETTE_PROVIDER`` (only tests marked ``vcr`` use a cassette)."""
    callspec = getattr(request.node, "callspec", None)
    provider = (callspec.params.get("provider") if callspec else None) or \
        getattr(request.module, "CASSETTE_PROVIDER", "none")  # "none": a test without cassettes
    return str(CASSETTES / provider / Path(request.node.fspath).stem)


@pytest.fixture(autouse=True)
def _network_when_recording(record_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make record`` (``--record-mode=rewrite``) must reach the providers: the root conftest
    allows loopback only, so the real ``connect`` of the socket type is put back, for this
    test only. Replaying (``none``) keeps the block."""
    if record_mode != "none":
        monkeypatch.setattr(socket.socket, "connect", _socket.socket.connect)


@pytest.fixture
def lmem(sqlite_url: str) -> Iterator[Memori]:
    """A fresh ``new_memori`` on SQLite, attributed to ENTITY / PROCESS."""
    mem = new_memori(sqlite_url)
    mem.attribution(entity_id=ENTITY, process_id=PROCESS)
    try:
        yield mem
    finally:
        mem.close()


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """A ``TcpProxy`` in front of the test PostgreSQL server (127.0.0.1:5432)."""
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def echo_server() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/v1``) of a local OpenAI-compatible echo server."""
    with serve_echo() as url:
        yield url
