"""`memori worker` processes on one PostgreSQL: two never process a job twice, and a worker
killed with SIGKILL mid-batch leaves its jobs claimable, so after a restart every turn is augmented
exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from memori_core import Memori
from memori_core.testing import HashEmbedder

pytestmark = pytest.mark.slow


@contextmanager
def worker(url: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """A `memori worker` process (the real CLI, local embedding model, offline)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "memori_core.cli", "worker", "--db", url],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def queue_turns(url: str, n: int) -> None:
    """n turns captured by an app that runs no workers of its own."""
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as app:
        app.config.storage.build()
        for i in range(n):
            app.attribution(entity_id=f"user-{i % 5}")
            app.capture([{"role": "user", "content": f"I like topic number {i}"}])


def counts(url: str) -> dict[str, int]:
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as mem, \
            mem.engine.connect() as c:
        return {
            "done": c.execute(text("SELECT COUNT(*) FROM memori_augmentation_job "
                                   "WHERE status = 'done'")).scalar_one(),
            "episodic": c.execute(text("SELECT COUNT(*) FROM memori_entity_fact "
                                       "WHERE kind = 'episodic'")).scalar_one(),
            "max_mentions": c.execute(text("SELECT COALESCE(MAX(mention_count), 0) FROM "
                                           "memori_entity_fact")).scalar_one(),
            "mentions": c.execute(text("SELECT COUNT(*) FROM memori_fact_mention")).scalar_one(),
            "facts": c.execute(text("SELECT COUNT(*) FROM memori_entity_fact")).scalar_one(),
        }


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)  # polling a subprocess's effect in the database, not synchronising ours
    return False


def test_two_worker_processes_never_process_a_job_twice(pg_url: str) -> None:
    queue_turns(pg_url, 400)
    with worker(pg_url), worker(pg_url):
        assert wait_for(lambda: counts(pg_url)["done"] == 400, timeout=240), counts(pg_url)
    c = counts(pg_url)
    # each turn is one episodic memory and one preference, each mentioned once by its one
    # message: a job processed twice would show as a mention count of 2
    assert c["episodic"] == 400 and c["facts"] == 800 and c["max_mentions"] == 1
    assert c["mentions"] == 800


def test_a_worker_killed_mid_batch_leaves_its_jobs_to_the_next(pg_url: str) -> None:
    queue_turns(pg_url, 600)
    lease = {"MEMORI_AUGMENTATION_LEASE_SECONDS": "3", "MEMORI_AUGMENTATION_BATCH_SIZE": "50"}
    with worker(pg_url, **lease) as first:
        # kill it once it has finished a batch and claimed more
        assert wait_for(lambda: counts(pg_url)["done"] >= 50, timeout=180), counts(pg_url)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed_at = counts(pg_url)["done"]
    assert killed_at < 600  # it died with work left
    with worker(pg_url, **lease):
        assert wait_for(lambda: counts(pg_url)["done"] == 600, timeout=240), counts(pg_url)
    c = counts(pg_url)
    assert c["episodic"] == 600 and c["facts"] == 1200 and c["max_mentions"] == 1
    assert c["mentions"] == 1200
