"""Support of the remote-mode tests: a real ``memori serve`` (``tests/server``'s helpers) and
``Memori(url=..., api_key=...)`` clients of it. No conftest.py here: ``from conftest import``
must find the root one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from memori_remote_mode import wait_ready
from memori_server_support import (
    NO_LIMIT,
    Server,
    free_port,
    make_key,
    memori_cli,
    start_server,
)

from memori_core import Memori

__all__ = ["NO_LIMIT", "Server", "free_port", "make_key", "memori_cli", "remote", "restart",
           "start_server"]


def restart(server: Server, *extra: str) -> Server:
    """``memori serve`` again on the stopped (or killed) ``server``'s database and port, with
    its admin key; ready when this returns."""
    import os
    import subprocess
    import tempfile

    log = Path(tempfile.mkstemp(prefix="memori-serve-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memori_core.cli", "serve", "--db", server.db_url, "--port",
             server.url.rsplit(":", 1)[1], "--embedder", "hash", *extra], stdout=out,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wait_ready(proc, server.url, log)
    return Server(server.url, server.db_url, proc, server.admin)


def remote(server: Server, key: str | None = None, **settings: Any) -> Memori:
    """A remote ``Memori`` on ``server`` with ``key`` (default its admin key); fast retries
    and a set-aside file kept in memory unless ``settings`` say otherwise."""
    settings.setdefault("request_backoff_factor", 0.05)
    settings.setdefault("llm_set_aside_path", "off")
    return Memori(url=server.url, api_key=key or server.admin, **settings)


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``memori serve`` on a SQLite file for the module (no rate limit)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('remote') / 'memori.db'}"
    srv = start_server(url, *NO_LIMIT)
    try:
        yield srv
    finally:
        srv.stop()
