"""``kill -9`` of ``memori serve`` under capture load loses no acknowledged turn, on SQLite and
PostgreSQL: concurrent httpx clients POST ``/v1/turns`` (each turn's text unique), the server
is SIGKILLed once a random number of turns (seeded; the seed is printed, ``MEMORI_KILL_SEED``
replays it) have been acknowledged, restarted on the same database, and twice over. Then
every turn answered 201 is stored exactly once, a turn answered otherwise not at all, and a
turn that got no answer (in flight at the kill) once or not at all, never twice.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from memori_databases import create_database
from memori_server_support import NO_LIMIT, Server, start_server
from sqlalchemy import create_engine, func, select

from memori_core.storage import schema as s

CLIENTS = 4
ROUNDS = 2


@dataclass
class Load:
    """What the clients sent, by the answer each turn got."""

    acked: list[str] = field(default_factory=list)
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    done: int = 0  # clients that stopped
    changed: threading.Condition = field(default_factory=threading.Condition)


def _client(srv: Server, n: int, load: Load) -> None:
    """POST turns until the server stops answering."""
    c = httpx.Client(base_url=srv.url, timeout=60,
                     headers={"Authorization": f"Bearer {srv.admin}"})
    try:
        while True:
            text = f"turn of client {n}: {uuid.uuid4().hex}"
            try:
                r = c.post("/v1/turns", json={
                    "entity_id": f"kill-{n % 2}", "session_id": "shared",
                    "messages": [{"role": "user", "content": text},
                                 {"role": "assistant", "content": f"noted: {text}"}]})
            except httpx.TransportError:
                with load.changed:
                    load.unanswered.append(text)
                return
            with load.changed:
                if r.status_code == 201:
                    load.acked.append(text)
                else:
                    load.refused.append((text, r.status_code, r.text[:300]))
                load.changed.notify_all()
    finally:
        c.close()
        with load.changed:
            load.done += 1
            load.changed.notify_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    url, drop = create_database(request.param, tmp_path_factory)
    yield url
    drop()  # type: ignore[operator]


def test_kill_9_under_capture_load_loses_no_acknowledged_turn(db_url: str) -> None:
    seed = int(os.environ.get("MEMORI_KILL_SEED", random.randrange(2**32)))
    print(f"MEMORI_KILL_SEED={seed}")
    rng = random.Random(seed)
    load = Load()
    admin: str | None = None
    for round_ in range(ROUNDS):
        srv = start_server(db_url, *NO_LIMIT, admin=admin)
        admin = srv.admin
        try:
            kill_at = len(load.acked) + rng.randint(5, 150)
            before_done = load.done
            threads = [threading.Thread(target=_client, args=(srv, n, load))
                       for n in range(CLIENTS)]
            for t in threads:
                t.start()
            with load.changed:  # the moment: this many turns acknowledged in all
                assert load.changed.wait_for(
                    lambda k=kill_at, d=before_done: len(load.acked) >= k or load.done > d,
                    timeout=120), "no progress in 120 s"
                assert load.done == before_done, f"a client stopped early: {load.refused[-3:]}"
            srv.proc.kill()  # SIGKILL
            srv.proc.wait(30)
            for t in threads:
                t.join(90)
                assert not t.is_alive(), "a client still waits on the killed server"
            print(f"round {round_}: killed at {len(load.acked)} acknowledged turns "
                  f"(target {kill_at}), {len(load.unanswered)} unanswered so far")
        finally:
            srv.stop()

    srv = start_server(db_url, *NO_LIMIT, admin=admin)  # the last restart, to read back
    try:
        stored = _stored_user_texts(db_url)
        acked, unanswered = set(load.acked), set(load.unanswered)
        assert len(acked) == len(load.acked) and not acked & unanswered
        lost = [t for t in load.acked if stored[t] != 1]
        assert not lost, f"seed {seed}: acknowledged turns stored {[stored[t] for t in lost]} " \
                         f"times: {lost[:5]}"
        assert all(stored[t] <= 1 for t in unanswered), (seed, {t: stored[t] for t in unanswered})
        assert not [r for r in load.refused if stored[r[0]]], (seed, load.refused[:5])
        strays = set(stored) - acked - unanswered - {r[0] for r in load.refused}
        assert not strays, (seed, list(strays)[:5])
        # each turn is whole: its assistant message beside it, once
        answers = _stored_user_texts(db_url, role="assistant")
        assert all(answers[f"noted: {t}"] == stored[t] for t in stored), seed
        # the restarted server answers for them through the API as well
        c = srv.client(srv.admin)
        got = c.get("/v1/export", params={"entity_id": "kill-0"})
        assert got.status_code == 200, got.text
        assert sum(1 for t in load.acked if t in got.text) == sum(
            1 for t in load.acked if t.startswith(("turn of client 0", "turn of client 2")))
    finally:
        srv.stop()
    print(f"{len(load.acked)} acknowledged turns stored once each; {len(load.unanswered)} "
          f"unanswered ({sum(stored[t] for t in load.unanswered)} of them stored)")


def _stored_user_texts(db_url: str, role: str = "user") -> Counter[str]:
    """How many times each message text of ``role`` is stored."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            m = s.conversation_message
            rows = conn.execute(select(m.c.content, func.count()).where(m.c.role == role)
                                .group_by(m.c.content)).all()
    finally:
        engine.dispose()
    return Counter({str(content): int(n) for content, n in rows})
