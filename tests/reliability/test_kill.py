"""SIGKILL at random points, on SQLite and PostgreSQL: of the app process while it captures
(its own augmentation workers running too), and of a ``memori worker`` while it augments. After
the restart every acknowledged turn is stored exactly once and whole (user and assistant message
together, never one of them alone), at most the one turn in flight when the process died is
stored besides, and once augmentation has run to completion every stored turn is augmented
exactly once.

The kill points come from a seeded generator; the seed is printed with a failure
(``MEMORI_RELIABILITY_SEED=<seed>`` replays it).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pytest
from memori_figures import Recorder
from memori_reliability_support import (
    MARKER,
    check_acknowledged,
    check_augmented_once,
    check_whole,
    child,
    marker,
    poll_until,
    sizes,
    stored_turns,
    tally,
    turn_messages,
)
from sqlalchemy import text

from memori_core import Memori
from memori_core.testing import HashEmbedder

#: the longest random wait, in seconds, between the app's first acknowledged turn and the kill
MAX_APP_DELAY_S = 0.25
#: the longest random wait, in seconds, after the worker reached its random job count
MAX_WORKER_DELAY_S = 0.05
#: the next worker takes over the jobs a killed one had claimed after this lease (seconds)
WORKER_ENV = {"MEMORI_AUGMENTATION_LEASE_SECONDS": "1", "MEMORI_AUGMENTATION_BATCH_SIZE": "5",
              "MEMORI_AUGMENTATION_BATCH_SECONDS": "0"}


def build(url: str) -> None:
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        mem.config.storage.build()


def job_counts(mem: Memori) -> dict[str, int]:
    with mem.engine.connect() as c:
        return dict(c.execute(text("SELECT status, COUNT(*) FROM memori_augmentation_job "
                                   "GROUP BY status")).all())


# the children stamp jobs and leases with the real clock, which this test's Memori must share
@pytest.mark.real_clock
@pytest.mark.parametrize("kills", sizes(2, 20))
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_app_killed_while_capturing_keeps_every_acknowledged_turn_once(
        db_url: str, backend: str, kills: int, seed: int, figures: Recorder) -> None:
    rng = random.Random(seed)
    build(db_url)
    acked: dict[int, list[int]] = {}
    for run in range(kills):
        app = child("capture", db_url, str(run))
        app.expect("ack ", timeout=60)  # it is capturing (and augmenting)
        time.sleep(rng.uniform(0, MAX_APP_DELAY_S))  # the random kill point
        lines = app.kill()
        acked[run] = [int(m.group(2)) for line in lines if line.startswith("ack ")
                      for m in [MARKER.search(line)] if m is not None]
    turns = stored_turns(db_url)
    # the next instance takes over the jobs the killed apps left queued or claimed
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_lease_seconds=1) as mem:
        print(f"jobs after {kills} kills: {job_counts(mem)}")
        finished = mem.augmentation.wait(timeout=120)
        left, failed = job_counts(mem), mem.augmentation.failed()
    figures.kill("capture", backend, kills, **vars(tally(
        db_url, [marker(run, n) for run, done in acked.items() for n in done])))
    check_whole(turns)
    in_flight = check_acknowledged(turns, acked, seed)
    print(f"{in_flight} turns stored in flight")
    assert len(turns) == sum(map(len, acked.values())) + in_flight
    assert finished, left
    assert failed == []
    check_augmented_once(db_url, turns)


@dataclass(frozen=True)
class WorkerPlan:
    kills: int
    turns: int  # queued before each worker starts
    local: bool  # the worker loads the local embedding model (as users run it)


# the fast form's worker (HashEmbedder) augments ~40 turns in well under the kill window: 300
# leave at least 150 to go at the kill, so each kill lands mid-work
@pytest.mark.parametrize("plan", sizes(WorkerPlan(kills=2, turns=300, local=False),
                                       WorkerPlan(kills=20, turns=300, local=True)))
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_killed_while_augmenting_leaves_every_turn_augmented_once(
        db_url: str, backend: str, plan: WorkerPlan, seed: int, figures: Recorder) -> None:
    rng = random.Random(seed)
    build(db_url)
    local = ("--local",) if plan.local else ()
    # the app captures and runs no workers: `memori worker` processes do the augmentation
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0) as app:
        left: list[dict[str, int]] = []
        for run in range(plan.kills):
            for n in range(plan.turns):
                app.attribution(entity_id=f"kill-user-{n % 3}", process_id="kill-app")
                app.capture(turn_messages(marker(run, n)))
            target = job_counts(app).get("done", 0) + rng.randint(1, plan.turns // 2)
            worker = child("worker", db_url, *local, **WORKER_ENV)
            if run == 0:
                # the first kill lands while a batch is claimed and not finished (a random
                # point may always fall between batches when they take a few ms)
                def mid_batch(t: int = target) -> bool:
                    counts = job_counts(app)
                    return counts.get("done", 0) >= t and counts.get("running", 0) > 0
                assert poll_until(mid_batch, timeout=300, interval=0.0005), \
                    (job_counts(app), worker.stderr, seed)
            else:
                assert poll_until(lambda t=target: job_counts(app).get("done", 0) >= t,  # type: ignore[misc]
                                  timeout=300), (job_counts(app), worker.stderr, seed)
                time.sleep(rng.uniform(0.01, MAX_WORKER_DELAY_S))  # the random kill point
            worker.kill()
            left.append(job_counts(app))
        print(f"jobs after each kill: {left}")
        last = child("worker", db_url, *local, **WORKER_ENV)
        finished = poll_until(lambda: set(job_counts(app)) == {"done"}, timeout=600)
        figures.kill("worker", backend, plan.kills, **vars(tally(
            db_url, [marker(run, n) for run in range(plan.kills) for n in range(plan.turns)])))
        assert finished, (job_counts(app), last.stderr, seed)
        # every kill hit a worker with work left, and at least one hit it mid-batch (jobs
        # claimed, not finished)
        assert all(c.get("queued", 0) + c.get("running", 0) for c in left), (left, seed)
        assert any(c.get("running", 0) for c in left), (left, seed)
        last.proc.terminate()
        assert last.finish(timeout=60)[-1].startswith("memori worker stopped"), last.stderr
    turns = stored_turns(db_url)
    check_whole(turns)
    assert len(turns) == plan.kills * plan.turns
    check_augmented_once(db_url, turns)
