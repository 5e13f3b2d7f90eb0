"""Processes x threads capturing at once against one PostgreSQL database and one SQLite file,
each thread for its own entity and session, with an augmentation worker in every process: the
counts are exact per entity, no caller sees an error, background workers hit none either, and
nothing deadlocks (a deadline fails the test instead of hanging it)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
from memori_reliability_support import (
    check_augmented_once,
    check_whole,
    child,
    sizes,
    stored_turns,
)
from sqlalchemy import text

from memori_core import Memori
from memori_core.testing import HashEmbedder


@dataclass(frozen=True)
class Load:
    processes: int
    threads: int  # per process
    turns: int  # per thread
    deadline: float  # seconds for every process to capture and augment everything


@pytest.mark.parametrize("load", sizes(Load(2, 2, 50, deadline=120),
                                       Load(4, 8, 500, deadline=1800)))
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_and_threads_capturing_at_once_keep_exact_counts(db_url: str,
                                                                   load: Load) -> None:
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        mem.config.storage.build()
    procs = [child("load", db_url, str(p), str(load.threads), str(load.turns))
             for p in range(load.processes)]
    for proc in procs:
        proc.expect("ready", timeout=120)
    started = time.monotonic()
    for proc in procs:
        proc.send("go")  # every thread of every process starts capturing now
    reports = []
    for proc in procs:
        lines = proc.finish(timeout=max(1.0, started + load.deadline - time.monotonic()))
        assert proc.proc.returncode == 0 and lines, proc.stderr
        reports.append(json.loads(lines[-1]))
    elapsed = time.monotonic() - started
    total = load.processes * load.threads * load.turns
    print(f"{total} turns captured and augmented in {elapsed:.1f} s; "
          f"{[r['augmentation'] for r in reports]}")

    for p, report in enumerate(reports):
        assert report["errors"] == [], report["errors"][:5]
        assert report["captured"] == {f"load-{p}-{t}": load.turns for t in range(load.threads)}
        assert report["augmented"], report
        counters = report["augmentation"]
        assert counters["jobs_failed"] == counters["worker_errors"] == 0, counters
    assert sum(r["augmentation"]["jobs_done"] for r in reports) == total

    engine = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    try:
        with engine.engine.connect() as c:
            per_entity = {(e, s): n for e, s, n in c.execute(text(
                "SELECT e.external_id, s.external_id, COUNT(*) "
                "FROM memori_conversation_message m "
                "JOIN memori_entity e ON e.id = m.entity_id "
                "JOIN memori_session s ON s.id = m.session_id "
                "GROUP BY e.external_id, s.external_id")).all()}
            jobs = dict(c.execute(text(
                "SELECT e.external_id, COUNT(*) FROM memori_augmentation_job j "
                "JOIN memori_entity e ON e.id = j.entity_id GROUP BY e.external_id")).all())
    finally:
        engine.close()
    assert per_entity == {(f"load-{p}-{t}", f"session-{p}-{t}"): 2 * load.turns
                          for p in range(load.processes) for t in range(load.threads)}
    assert jobs == {f"load-{p}-{t}": load.turns
                    for p in range(load.processes) for t in range(load.threads)}
    turns = stored_turns(db_url)
    assert len(turns) == total
    check_whole(turns)
    check_augmented_once(db_url, turns)
