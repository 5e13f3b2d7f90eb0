"""What the fault-injection tests share: child processes that capture, augment or load a database
(and report over stdout), checks that every stored turn is whole and augmented once, and a
private PostgreSQL cluster a test may stop and start.

Run as a script it is the child: ``python memori_reliability_support.py capture|worker|load ...``.

(A module of its own, not ``conftest``: several test folders have a ``conftest.py``, so
``from conftest import ...`` could find another one.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pwd
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve()

#: the user message of turn ``marker``: the RuleExtractor makes one preference of it, so a turn
#: augmented once holds exactly two memories (episodic + preference), each mentioned once
USER = "I like topic {marker}"
ASSISTANT = "Noted, topic {marker}"
#: a marker is one word ``t<run>x<n>`` (the HashEmbedder and BM25 see it as one token)
MARKER = re.compile(r"\bt(\d+)x(\d+)\b")


def marker(run: int, n: int) -> str:
    return f"t{run}x{n}"


def turn_messages(mark: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": USER.format(marker=mark)},
            {"role": "assistant", "content": ASSISTANT.format(marker=mark)}]


def sizes(fast: object, full: object, full_timeout: float = 3600) -> list[Any]:
    """The two sizes of a scenario as parameters: ``fast`` (id "fast", run by ``make test``)
    and ``full`` (id "full", marked ``reliability``: ``make test-reliability``, with a
    per-test timeout of ``full_timeout`` seconds instead of the suite's 300)."""
    import pytest  # not in the children: they start faster without it

    return [pytest.param(fast, id="fast"),
            pytest.param(full, id="full", marks=[pytest.mark.reliability,
                                                 pytest.mark.timeout(full_timeout)])]


# ---- child processes -----------------------------------------------------------------------
#: children started and not finished yet (``kill_live`` ends them after a failed test)
LIVE: list[Child] = []


def kill_live() -> None:
    """SIGKILL every child still running (a test that failed half-way leaves some)."""
    while LIVE:
        LIVE.pop().kill()


class Child:
    """A child process whose stdout lines are read by a thread, so the parent can wait for a
    line with a deadline and still have every line the child wrote before it died.

    Args:
        args: the command.
        env: extra environment variables.
    """

    def __init__(self, args: Sequence[str], **env: str) -> None:
        self.name = " ".join(args)
        self.proc = subprocess.Popen(
            list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []  # complete lines read so far
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()
        LIVE.append(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a line cut by the kill was never acknowledged
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line starting with ``prefix`` (earlier lines are kept in ``lines``).

        Raises:
            AssertionError: the child ended or ``timeout`` seconds passed first.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line from {self.name} within "
                                     f"{timeout} s; stderr: {self.stderr[-2000:]}") from None
            if line is None:
                self._lines.put(None)
                self.proc.wait(timeout=30)
                self._err.join(timeout=30)
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before "
                                     f"a {prefix!r} line; stderr: {self.stderr[-2000:]}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> list[str]:
        """SIGKILL; returns every complete line the child wrote."""
        self.proc.send_signal(signal.SIGKILL)
        return self.finish(timeout=30)

    def finish(self, timeout: float) -> list[str]:
        """Wait for the child to exit (killing it after ``timeout`` seconds); every line it
        wrote.

        Raises:
            AssertionError: it did not exit in time (it is killed first).
        """
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"{self.name} did not finish within {timeout} s "
                                 "(deadlock?); it was killed") from None
        if self in LIVE:
            LIVE.remove(self)
        self._reader.join(timeout=30)
        self._err.join(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except BrokenPipeError:  # stdin of a killed child
                    pass
        while (line := self._lines.get()) is not None:
            self.lines.append(line)
        self._lines.put(None)
        return self.lines


def child(mode: str, *args: str, **env: str) -> Child:
    """This module run as a child process in ``mode`` (see ``main``)."""
    return Child([sys.executable, str(HERE), mode, *args], **env)


def poll_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` (the effect of another process in the database) until it holds or
    ``timeout`` seconds passed. Returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---- what the database holds -----------------------------------------------------------------
@dataclass
class StoredTurn:
    marker: str
    messages: list[tuple[int, str, int]]  # (message id, role, conversation id), in id order


def stored_turns(url: str) -> dict[str, StoredTurn]:
    """Every turn in the database, by marker."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            rows = c.execute(text("SELECT id, role, content, conversation_id FROM "
                                  "memori_conversation_message ORDER BY id")).all()
    finally:
        engine.dispose()
    turns: dict[str, StoredTurn] = {}
    for mid, role, content, conv in rows:
        found = MARKER.search(content)
        assert found is not None, f"message {mid} has no turn marker: {content!r}"
        turns.setdefault(found.group(0), StoredTurn(found.group(0), [])).messages.append(
            (int(mid), role, int(conv)))
    return turns


def check_whole(turns: dict[str, StoredTurn]) -> None:
    """Every stored turn is one user message then its assistant message, in one conversation:
    never one without the other, never twice.

    Raises:
        AssertionError: naming the first turn that is not.
    """
    for t in turns.values():
        roles = [role for _, role, _ in t.messages]
        assert roles == ["user", "assistant"], f"turn {t.marker} is stored as {t.messages}"
        (_, _, user_conv), (_, _, assistant_conv) = t.messages
        assert user_conv == assistant_conv, f"turn {t.marker} spans conversations: {t.messages}"


def check_acknowledged(turns: dict[str, StoredTurn], acked: dict[int, list[int]],
                       seed: int) -> int:
    """Every acknowledged turn is stored; the only others are, per run, the one turn in flight
    when it was killed (the turn after its last acknowledged one).

    Args:
        turns: ``stored_turns``.
        acked: turn numbers each run acknowledged, in order, by run.

    Returns:
        how many un-acknowledged turns were stored (at most one per run).
    """
    stored: dict[int, set[int]] = defaultdict(set)
    for mark in turns:
        found = MARKER.fullmatch(mark)
        assert found is not None
        stored[int(found.group(1))].add(int(found.group(2)))
    extra = 0
    for run in set(acked) | set(stored):
        done = acked.get(run, [])
        assert done == list(range(len(done))), f"run {run} acknowledged {done} (seed {seed})"
        missing = set(done) - stored[run]
        assert not missing, f"run {run}: acknowledged turns {sorted(missing)} were lost " \
                            f"(seed {seed})"
        more = stored[run] - set(done)
        assert more <= {len(done)}, f"run {run}: turns {sorted(more)} stored but never " \
                                    f"acknowledged; only turn {len(done)} was in flight " \
                                    f"(seed {seed})"
        extra += len(more)
    return extra


def check_augmented_once(url: str, turns: dict[str, StoredTurn]) -> None:
    """Each turn has one job, done, over exactly its messages; its user message has exactly one
    episodic memory and one preference, each mentioned once (a job processed twice shows as a
    mention count of 2, a lost one as a missing memory).

    Raises:
        AssertionError: naming what differs.
    """
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            jobs = c.execute(text("SELECT id, status, message_ids FROM memori_augmentation_job "
                                  "ORDER BY id")).all()
            facts = c.execute(text(
                "SELECT f.kind, f.mention_count, m.message_id FROM memori_entity_fact f "
                "JOIN memori_fact_mention m ON m.fact_id = f.id")).all()
            fact_count = c.execute(text("SELECT COUNT(*) FROM memori_entity_fact")).scalar_one()
            triples = c.execute(text("SELECT COUNT(*), COALESCE(MAX(mention_count), 0) FROM "
                                     "memori_knowledge_graph")).one()
    finally:
        engine.dispose()
    by_messages = {tuple(json.loads(ids)): (jid, status) for jid, status, ids in jobs}
    assert len(by_messages) == len(jobs), "two jobs over the same messages"
    turn_ids = {tuple(mid for mid, _, _ in t.messages): t.marker for t in turns.values()}
    assert set(by_messages) == set(turn_ids), (
        f"jobs without a turn: {sorted(set(by_messages) - set(turn_ids))[:5]}; turns without "
        f"a job: {[turn_ids[k] for k in sorted(set(turn_ids) - set(by_messages))][:5]}")
    unfinished = [(jid, s) for jid, s in by_messages.values() if s != "done"]
    assert not unfinished, f"jobs not done: {unfinished[:10]}"
    per_message: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for kind, mentions, mid in facts:
        per_message[int(mid)].append((kind, int(mentions)))
    for t in turns.values():
        user_id = t.messages[0][0]
        got = sorted(per_message.get(user_id, []))
        assert got == [("episodic", 1), ("preference", 1)], \
            f"turn {t.marker}: memories of its user message {got}"
    assert fact_count == 2 * len(turns) == len(facts), (fact_count, len(facts), len(turns))
    assert triples[0] == len(turns) and (triples[1] == 1 or not turns), triples


@dataclass(frozen=True)
class Tally:
    """What a kill test measured, for the figures table (``tests/memori_figures.py``)."""

    acknowledged: int  # turns whose ``capture`` returned
    lost: int  # acknowledged turns not stored whole, or (augmented) without their memories
    duplicated: int  # turns stored, or augmented, more than once


def tally(url: str, acknowledged: Sequence[str], augmented: bool = True) -> Tally:
    """Count, in the database, what ``check_acknowledged`` and ``check_augmented_once`` check:
    acknowledged turns (by marker) lost, and any stored turn stored or augmented twice. Never
    raises on what it counts, so a test records its figures before it asserts.

    Args:
        augmented: augmentation ran to completion: a turn's job must be done once and its user
            message hold one episodic memory and one preference, each mentioned once.
    """
    turns = stored_turns(url)
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            jobs = c.execute(text("SELECT status, message_ids FROM memori_augmentation_job")
                             ).all()
            facts = c.execute(text(
                "SELECT f.kind, f.mention_count, m.message_id FROM memori_entity_fact f "
                "JOIN memori_fact_mention m ON m.fact_id = f.id")).all()
    finally:
        engine.dispose()
    by_message = {mid: t.marker for t in turns.values() for mid, _, _ in t.messages}
    jobs_of: dict[str, list[str]] = defaultdict(list)
    for status, ids in jobs:
        first = (json.loads(ids) or [None])[0]
        if first in by_message:
            jobs_of[by_message[first]].append(status)
    memories: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for kind, mentions, mid in facts:
        memories[int(mid)].append((kind, int(mentions)))

    def augmented_twice(t: StoredTurn) -> bool:
        got = memories.get(t.messages[0][0], [])
        return len(jobs_of[t.marker]) > 1 or len(got) > 2 or any(n > 1 for _, n in got)

    duplicated = sum(1 for t in turns.values() if len(t.messages) > 2 or (
        augmented and augmented_twice(t)))
    lost = 0
    for mark in acknowledged:
        t = turns.get(mark)
        if t is None or [role for _, role, _ in t.messages][:2] != ["user", "assistant"]:
            lost += 1
        elif augmented and ("done" not in jobs_of[mark] or not {"episodic", "preference"} <= {
                kind for kind, _ in memories.get(t.messages[0][0], [])}):
            lost += 1
    return Tally(len(acknowledged), lost, duplicated)


# ---- a private PostgreSQL cluster --------------------------------------------------------------
def _pg_bindir() -> Path:
    """The newest PostgreSQL server binaries on this machine (Debian layout, else PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError("no PostgreSQL server binaries (pg_ctl) in /usr/lib/postgresql/*/bin "
                           "or on PATH")
    return Path(pg_ctl).parent


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


class PrivateCluster:
    """A PostgreSQL cluster of one test session, on its own port and data directory, that a
    test may stop (``immediate``: as if the server crashed; ``fast``: a clean shutdown) and
    start again. The shared server on 5432 is never touched.

    As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).

    Raises:
        RuntimeError: from ``start()``, with initdb's / pg_ctl's output, when it cannot run.
    """

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="memori-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True,
                              text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stdout[-1000:]} {proc.stderr[-1000:]}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        """``mode``: ``immediate`` (no checkpoint, crash recovery at the next start), ``fast``
        (connections are terminated, then a clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        """URL of a new, empty database on this cluster."""
        name = f"memori_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


# ---- the children ------------------------------------------------------------------------------
def _exit_with_parent() -> None:
    """End this child when the test that started it is gone (its stdin reaches EOF)."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _capture(url: str, run: int) -> None:
    """Capture turns t<run>x0, t<run>x1, ... forever, with augmentation in this process too,
    printing ``ack <marker>`` once ``capture`` returned for each."""
    from memori_core import Memori
    from memori_core.testing import HashEmbedder

    mem = Memori(conn=url, embedder=HashEmbedder(), augmentation_batch_size=10)
    for n in itertools.count():
        mark = marker(run, n)
        mem.attribution(entity_id=f"kill-user-{n % 3}", process_id="kill-app")
        mem.capture(turn_messages(mark))
        print(f"ack {mark}", flush=True)


def _worker(url: str, local: bool) -> int:
    """``memori worker --db url``: the real command. Without ``local`` its embedder is the
    HashEmbedder (the command loads the local model otherwise, ~10 s per start)."""
    from memori_core import Memori, cli
    from memori_core.testing import HashEmbedder

    if not local:
        cli.open_memori = lambda db, **settings: Memori(
            conn=db, embedder=HashEmbedder(), **settings)
    return cli.main(["worker", "--db", url])


def _load(url: str, process: int, threads: int, turns: int) -> int:
    """``threads`` threads, each capturing ``turns`` turns for its own entity and session,
    started together once the parent writes ``go``; then augmentation is waited for. Prints
    ``ready``, then one JSON line: errors, turns captured per entity, augmentation counters."""
    from memori_core import Memori
    from memori_core.testing import HashEmbedder

    mem = Memori(conn=url, embedder=HashEmbedder(), augmentation_batch_size=50)
    mem._ensure_ready()
    start = threading.Barrier(threads)
    errors: list[str] = []
    captured: dict[str, int] = {}

    def work(t: int) -> None:
        entity = f"load-{process}-{t}"
        try:
            mem.attribution(entity_id=entity, process_id=f"proc-{process}")
            mem.set_session(f"session-{process}-{t}")
            start.wait(timeout=60)
            for n in range(turns):
                mem.capture(turn_messages(marker(process * 1000 + t, n)))
                captured[entity] = n + 1
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            errors.append(f"{entity}: {type(exc).__name__}: {exc}")

    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    _exit_with_parent()
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    try:
        finished = mem.augmentation.wait(timeout=600)
    except Exception as exc:  # noqa: BLE001 - reported
        errors.append(f"augmentation.wait: {type(exc).__name__}: {exc}")
        finished = False
    mem.close()  # joins the workers: their counters are final
    print(json.dumps({"errors": errors, "captured": captured, "augmented": finished,
                      "augmentation": mem.augmentation.counters}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="child processes of the reliability tests")
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("capture")
    c.add_argument("url")
    c.add_argument("run", type=int)
    w = sub.add_parser("worker")
    w.add_argument("url")
    w.add_argument("--local", action="store_true", help="the local embedding model")
    lo = sub.add_parser("load")
    lo.add_argument("url")
    lo.add_argument("process", type=int)
    lo.add_argument("threads", type=int)
    lo.add_argument("turns", type=int)
    args = ap.parse_args(argv)
    if args.mode != "load":  # it reads "go" from stdin first
        _exit_with_parent()
    if args.mode == "capture":
        _capture(args.url, args.run)
        return 0
    if args.mode == "worker":
        return _worker(args.url, args.local)
    return _load(args.url, args.process, args.threads, args.turns)


if __name__ == "__main__":
    sys.exit(main())

