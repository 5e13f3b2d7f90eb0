"""Support of the server tests: a real ``memori serve`` process on 127.0.0.1 (a free port), on SQLite and PostgreSQL, with
the deterministic test embedder (``--embedder hash``), and keys made by ``memori keys
create``. Clients are ``httpx``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from memori_databases import create_database
from memori_remote_mode import end, wait_ready

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from memori_llm_support import TcpProxy

__all__ = ["NO_LIMIT", "Server", "TcpProxy", "assert_error", "make_key", "memori_cli",
           "serve_backend", "server", "start_server", "wait_idle"]

#: every server here runs without a rate limit unless a test says otherwise
NO_LIMIT = ("--rate-limit", "0", "--key-cache-ttl", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memori_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``memori ARGS`` (``python -m memori_core.cli``) and return what it did."""
    proc = subprocess.run([sys.executable, "-m", "memori_core.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"memori {' '.join(args)} exited {proc.returncode}: "
                             f"{proc.stdout}{proc.stderr}")
    return proc


def make_key(db_url: str, *args: str) -> str:
    """``memori keys create --db URL ARGS``: the key, the last word of its output."""
    return memori_cli("keys", "create", "--db", db_url, *args).stdout.split()[-1]


@dataclass
class Server:
    """A running ``memori serve``: ``url``, its database ``db_url``, an admin key, and
    ``client(key)`` (an httpx.Client sending that key)."""

    url: str
    db_url: str
    proc: subprocess.Popen[str]
    admin: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        end(self.proc)


def start_server(db_url: str, *extra: str, admin: str | None = None) -> Server:
    """Start ``memori serve`` on ``db_url`` and wait until ``/readyz`` answers 200."""
    admin = admin or make_key(db_url, "--scope", "admin", "--name", "tests")
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="memori-serve-", suffix=".log")[1])
    with log.open("w") as out:  # a file, never a pipe nobody reads (it would fill up)
        proc = subprocess.Popen(
            [sys.executable, "-m", "memori_core.cli", "serve", "--db", db_url, "--port",
             str(port), "--embedder", "hash", *extra], stdout=out, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, log)
    return Server(url, db_url, proc, admin)


def serve_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Server]:
    """For a fixture: a server on a new database of the backend ``request.param``, without a
    rate limit, key cache TTL 1 s; stopped and its database dropped after."""
    url, drop = create_database(request.param, tmp_path_factory)
    srv = start_server(url, *NO_LIMIT)
    try:
        yield srv
    finally:
        srv.stop()
        drop()  # type: ignore[operator]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """A server per backend for the module (SQLite, PostgreSQL)."""
    yield from serve_backend(request, tmp_path_factory)


def wait_idle(client: httpx.Client, entity: str, timeout: float = 30) -> None:
    """Poll ``GET /v1/queue`` until the entity has no queued or running job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = client.get("/v1/queue", params={"entity_id": entity}).json()["counts"]
        if counts["queued"] == 0 and counts["running"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"augmentation of {entity} not done in {timeout} s")


def assert_error(response: httpx.Response, status: int, code: str,
                 field: str | None = "<any>") -> dict[str, Any]:
    """The response is the error shape with ``status``, ``code`` (and ``field``)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message", "field"}, body
    assert body["error"]["code"] == code, body
    if field != "<any>":
        assert body["error"]["field"] == field, body
    return dict(body["error"])
