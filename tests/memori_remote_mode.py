"""The suites once more in remote mode: ``pytest --memori-remote`` (or ``MEMORI_TEST_REMOTE=1``;
``make test-remote``) runs the plugin and wrapper suites (``tests/integrations``,
``tests/llm``) with ``RemoteMemori`` clients of a real ``memori serve`` instead of local
``Memori`` instances.

The one switch is ``memori(url, **settings)``: the shared fixtures that hand out a ``Memori``
(``mem`` and ``smem`` in ``tests/conftest.py``, ``new_memori`` and so ``lmem`` in
``tests/llm/memori_llm_support.py``) call it. In local mode it is
``Memori(conn=url, embedder=HashEmbedder(), **settings)``, built. In remote mode it starts
(once per database URL, stopped when the test ends) a ``memori serve --embedder hash`` on a
free 127.0.0.1 port over that same test database, and returns
``Memori(url=..., api_key=<an admin key>, **settings)``. The server is the real command
(``memori serve``: ``memori_core.cli.main``), run by ``memori_remote_serve.py``, a process
started ahead with its imports done (one spare kept ready for the next test), with memori's clock
shifted to the test's (``tests/conftest.py``'s ``memori_clock``: the dates in the injected
blocks, and so the cassettes, do not depend on the day the tests run); the ``settings`` also
reach it as ``MEMORI_*`` variables (``augmentation_workers=0``: the server runs no
augmentation either).

Tests that by nature cannot run remotely are deselected, never skipped silently: every one is
listed in ``LOCAL_ONLY`` with the reason, a line of which is printed at the end of the run
per reason with its count; an entry that matches no collected test of its file fails the run
(a renamed test must not drop out of the list unnoticed).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memori_core import Memori
from memori_core.testing import HashEmbedder

__all__ = ["ENV", "HOST", "LOCAL_ONLY", "OPTION", "RemoteServer", "deselect_local_only", "enabled",
           "end", "memori", "stop_servers", "stop_spare",
           "wait_ready"]

#: the pytest option and the environment variable that switch remote mode on
OPTION, ENV = "--memori-remote", "MEMORI_TEST_REMOTE"
#: where the servers listen: cassettes never hold requests to it (no cassette holds this host:
#: the local OpenAI-compatible servers of the cassettes are ``localhost``)
HOST = "127.0.0.1"

# ---- why a test cannot run remotely ---------------------------------------------------------
ENGINE = "reads or writes memori's database itself (mem.engine, SQL): the server's in remote mode"
OUTAGE = ("takes the database away from the Memori (a TCP proxy, a statement timeout): in remote "
          "mode the database is the server's (tests/server covers its outage: 503, Retry-After)")
EMBEDDER = ("reaches into the Memori's embedder (mem.embedder): in remote mode it is the server's "
            "(Memori(url=...) has none and refuses embedder=)")
LIMITS = ("stores a memory over the server's request limits (10 MiB a body, 100,000 characters a "
          "memory: memori_core/server/models.py), which a local Memori has no reason for")
RUN_ONCE = ("runs augmentation in the test process (augmentation.run_once): in remote mode the "
            "server's workers do it (RemoteAugmentation has wait, pending and failed)")
COUNTS = ("counts the Memori's method calls, and a local context() calls recall() inside it: a "
          "remote context() is one request (POST /v1/recall), so the count differs by design")
SETTINGS = ("sets a recall or context setting on mem.config (conscious_ingest): in remote mode "
            "those are the server's, fixed when it starts")

#: test (``path::name``, relative to ``tests/``, without parameters) -> why it runs locally only
LOCAL_ONLY: dict[str, str] = {
    "integrations/agno/test_agno_memory_manager.py::"
    "test_memories_are_selected_for_the_input_within_the_budget": LIMITS,
    "integrations/agno/test_agno_memory_manager.py::"
    "test_get_user_memories_is_the_framed_block": SETTINGS,
    "integrations/langchain/test_langchain_history.py::"
    "test_a_second_memori_instance_on_the_same_database_sees_the_history": ENGINE,
    "integrations/langchain/test_langchain_turns.py::"
    "test_ten_megabytes_of_input_get_a_bounded_block": LIMITS,
    "integrations/llamaindex/test_llamaindex_block.py::"
    "test_a_short_chat_is_captured_without_any_flush": COUNTS,
    "integrations/llamaindex/test_llamaindex_memory.py::"
    "test_a_tool_turn_costs_one_recall_one_read_one_capture_and_the_prompt_is_framed": COUNTS,
    "integrations/llamaindex/test_llamaindex_memory.py::"
    "test_the_memory_block_is_bounded_by_memoris_budget": LIMITS,
    "llm/test_context_e2e.py::test_a_huge_memory_is_cut_and_the_block_stays_in_budget": LIMITS,
    "llm/test_context_e2e.py::test_what_the_request_shows_is_not_repeated_and_unrelated_gets_"
    "nothing": RUN_ONCE,
    "llm/test_openai.py::test_streamed_turn_is_augmented_like_any_other": RUN_ONCE,
    "llm/test_openai.py::test_recall_failure_is_logged_counted_and_the_call_goes_on": EMBEDDER,
    "llm/test_outage.py::test_a_hung_database_holds_no_call_past_the_bound": OUTAGE,
    "llm/test_set_aside.py::test_a_refused_turn_outlives_the_process_and_retry_writes_it_once":
        ENGINE,
    "llm/test_set_aside.py::test_forget_removes_the_entitys_set_aside_turns": ENGINE,
    "llm/test_set_aside.py::test_turns_unwritten_at_close_are_kept_and_written_later": ENGINE,
}


def enabled(config: pytest.Config | None = None) -> bool:
    """Whether this run is in remote mode (the option, or ``MEMORI_TEST_REMOTE=1``)."""
    if config is not None and config.getoption(OPTION, default=False):
        return True
    return os.environ.get(ENV, "") not in ("", "0")


def deselect_local_only(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In remote mode, deselect the ``LOCAL_ONLY`` tests (reported by ``pytest_deselected``
    and counted per reason in ``summary``). Fails when an entry matches no collected test of
    a collected file."""
    if not enabled(config):
        return
    root = Path(__file__).resolve().parent
    kept, dropped, seen_files, matched = [], [], set(), set()
    for item in items:
        path = Path(str(item.fspath)).resolve()
        rel = path.relative_to(root).as_posix() if root in path.parents else str(path)
        seen_files.add(rel)
        name = f"{rel}::{item.name.split('[')[0]}"
        if item.cls is not None:
            name = f"{rel}::{item.cls.__name__}::{item.name.split('[')[0]}"
        if name in LOCAL_ONLY:
            dropped.append(item)
            matched.add(name)
            _COUNTS[LOCAL_ONLY[name]] += 1
        else:
            kept.append(item)
    stale = [n for n in LOCAL_ONLY if n.split("::")[0] in seen_files and n not in matched]
    if stale:
        raise pytest.UsageError(f"LOCAL_ONLY names tests that were not collected: {stale}")
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


_COUNTS: Counter[str] = Counter()


def summary() -> list[str]:
    """One line per reason: how many tests were deselected for it."""
    return [f"{n:3d} deselected: {why}" for why, n in _COUNTS.most_common()]


# ---- the servers ----------------------------------------------------------------------------
@dataclass
class RemoteServer:
    """A running ``memori serve`` over a test database: ``url``, an admin key."""

    url: str
    db_url: str
    admin: str
    proc: subprocess.Popen[str]
    log: Path
    clients: list[Memori] = field(default_factory=list)

    def stop(self) -> None:
        """Close its clients (their spilled turns written or set aside), then end it."""
        for client in self.clients:
            client.close()
        end(self.proc)
        self.log.unlink(missing_ok=True)
        self.log.with_suffix(".set-aside.jsonl").unlink(missing_ok=True)


#: the servers started during the current test, by database URL
_SERVERS: dict[str, RemoteServer] = {}
_SERVE = Path(__file__).resolve().parent / "memori_remote_serve.py"


def _admin_key(db_url: str) -> str:
    """An admin key on ``db_url`` (what ``memori keys create --scope admin`` does, in-process:
    the schema is built first)."""
    from memori_core.server.cli import _ring

    ring, store = _ring(db_url)
    try:
        secret, _ = ring.create("admin", name="remote-mode tests")
    finally:
        store.close()
    return str(secret)


def _env_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def server_for(db_url: str, settings: dict[str, Any]) -> RemoteServer:
    """The ``memori serve`` of ``db_url`` (started the first time, ready when this returns),
    memori's clock starting where the test's is now, ``settings`` as ``MEMORI_*``."""
    found = _SERVERS.get(db_url)
    if found is not None and found.proc.poll() is None:
        return found
    from memori_core.storage import store  # its utcnow is the test's clock (tests/conftest.py)

    admin = _admin_key(db_url)
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    env = {f"MEMORI_{k.upper()}": _env_value(v) for k, v in settings.items()}
    proc, log = _take_spare()
    order = {"start": store.utcnow().isoformat(), "env": env,
             "argv": ["serve", "--db", db_url, "--port", str(port), "--embedder", "hash",
                      "--rate-limit", "0"]}
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(order) + "\n")
    proc.stdin.close()
    url = f"http://{HOST}:{port}"
    wait_ready(proc, url, log)
    server = _SERVERS[db_url] = RemoteServer(url, db_url, admin, proc, log)
    return server


def wait_ready(proc: subprocess.Popen[str], url: str, log: Path, timeout: float = 60) -> None:
    """Wait until the ``memori serve`` ``proc`` at ``url`` answers ``GET /readyz`` with 200
    (``server/_ready.wait_serving``).

    Raises:
        AssertionError: it exited, or was not ready within ``timeout`` seconds (then killed);
            with its output (``log``).
    """
    from memori_core.server._ready import wait_serving

    try:
        wait_serving(proc, f"{url}/readyz", timeout=timeout, log=log)
    except (RuntimeError, TimeoutError) as exc:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise AssertionError(f"memori serve was not ready: {exc}") from None


def end(proc: subprocess.Popen[str]) -> None:
    """Terminate ``proc`` (killed after 15 s) and reap it (``server/_ready.stop``)."""
    from memori_core.server._ready import stop

    stop(proc, grace=15.0)


#: a server process started ahead, its imports done, waiting for its arguments
_SPARE: list[tuple[subprocess.Popen[str], Path]] = []


def _spawn() -> tuple[subprocess.Popen[str], Path]:
    log = Path(tempfile.mkstemp(prefix="memori-serve-", suffix=".log")[1])
    env = {k: v for k, v in os.environ.items() if k != ENV}
    with log.open("w") as out:  # a file, never a pipe nobody reads
        proc = subprocess.Popen([sys.executable, str(_SERVE)], stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**env, "HF_HUB_OFFLINE": "1"})
    return proc, log


def _take_spare() -> tuple[subprocess.Popen[str], Path]:
    """The spare server process (started now when there is none), and another started for
    the next test."""
    taken = _SPARE.pop() if _SPARE else _spawn()
    _SPARE.append(_spawn())
    return taken


def stop_spare() -> None:
    """End the spare server process (at the end of the run)."""
    while _SPARE:
        proc, log = _SPARE.pop()
        assert proc.stdin is not None
        proc.stdin.close()  # it exits without serving
        proc.wait(30)
        log.unlink(missing_ok=True)


def stop_servers() -> None:
    """Stop every server the current test started (before its databases are dropped)."""
    while _SERVERS:
        _SERVERS.popitem()[1].stop()


def memori(url: str, **settings: Any) -> Memori:
    """A built ``Memori`` on the test database ``url`` with the HashEmbedder: local, or in
    remote mode a ``RemoteMemori`` (an admin key) of a ``memori serve`` over ``url``."""
    if not enabled():
        mem = Memori(conn=url, embedder=HashEmbedder(), **settings)
        mem.config.storage.build()
        return mem
    server = server_for(url, settings)
    # beside the log, as local mode's "auto" is beside the database (never under ~/.local)
    settings.setdefault("llm_set_aside_path", str(server.log.with_suffix(".set-aside.jsonl")))
    client = Memori(url=server.url, api_key=server.admin, **settings)
    server.clients.append(client)
    return client


def servers_stopped() -> Iterator[None]:
    """For a fixture: yields, then stops the servers started meanwhile."""
    try:
        yield
    finally:
        stop_servers()
