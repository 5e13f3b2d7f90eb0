"""The augmentation queue is durable: jobs survive a restart, an abandoned claim is taken over
once its lease expires, and a job that keeps failing ends ``failed`` with its error, never lost."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from memori_figures import Recorder
from sqlalchemy import func, select, text, update

from memori_core import Conversation, Extraction, Memori
from memori_core.storage import schema, store
from memori_core.testing import HashEmbedder


def jobs(mem: Memori) -> list[dict[str, Any]]:
    j = schema.augmentation_job.c
    with mem.engine.connect() as c:
        rows = c.execute(select(j.id, j.status, j.attempts, j.error, j.claimed_by)
                         .order_by(j.id)).all()
    return [dict(r._mapping) for r in rows]


def count(mem: Memori, table: Any) -> int:
    with mem.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def test_jobs_left_queued_are_finished_by_the_next_instance(db_url: str) -> None:
    first = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    first.config.storage.build()
    first.attribution(entity_id="restart", process_id="agent")
    said = [f"remember the number {n} forever" for n in range(5)]
    ids = [first.capture([{"role": "user", "content": s},
                          {"role": "assistant", "content": "ok"}])[0] for s in said]
    assert not first.augmentation.wait(timeout=0.2)  # nobody works on them
    first.close()

    second = Memori(conn=db_url, embedder=HashEmbedder())
    try:
        assert [j["status"] for j in jobs(second)] == ["queued"] * 5
        assert count(second, schema.entity_fact) == 0
        assert second.augmentation.pending() == 5
        assert second.augmentation.wait(timeout=30)  # starts the workers itself
        assert [j["status"] for j in jobs(second)] == ["done"] * 5
        assert second.augmentation.failed() == []
        second.attribution(entity_id="restart", process_id="agent")
        for s, mid in zip(said, ids, strict=True):
            hit = second.recall(s)[0]
            assert (hit.content, hit.source_message_ids) == (s, (mid,))
        assert count(second, schema.entity_fact) == 5
        assert count(second, schema.fact_mention) == 5
    finally:
        second.close()


def abandon(mem: Memori, claimed_seconds_ago: float) -> None:
    """Make every job look claimed by a worker that vanished."""
    with mem.engine.begin() as c:
        c.execute(update(schema.augmentation_job).values(
            status="running", attempts=1, claimed_by="dead-worker",
            claimed_at=store.utcnow() - timedelta(seconds=claimed_seconds_ago)))  # memori's clock


def test_an_expired_lease_is_reclaimed_and_processed_once(db_url: str) -> None:
    first = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    first.config.storage.build()
    first.attribution(entity_id="lease", process_id="agent")
    ids = first.capture([{"role": "user", "content": "the lease ran out"},
                         {"role": "user", "content": "and someone else took over"}])
    first.close()

    second = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_lease_seconds=1)
    try:
        abandon(second, claimed_seconds_ago=3600)
        assert second.augmentation.wait(timeout=30)
        (job,) = jobs(second)
        assert job["status"] == "done"
        assert job["attempts"] == 2
        assert job["claimed_by"] != "dead-worker"
        assert second.stats()["augmentation"]["jobs_done"] == 1
        assert count(second, schema.entity_fact) == 2
        f, m = schema.entity_fact.c, schema.fact_mention.c
        with second.engine.connect() as c:
            assert c.execute(select(f.mention_count).order_by(f.id)).scalars().all() == [1, 1]
            assert sorted(c.execute(select(m.message_id)).scalars()) == ids
        # the old worker coming back cannot finish or fail the job it lost
        with second.engine.begin() as c:
            second._store.finish_jobs(c, [job["id"]], "dead-worker")
        assert jobs(second)[0]["claimed_by"] == job["claimed_by"]
        second.attribution(entity_id="lease", process_id="agent")
        assert second.recall("the lease ran out")[0].source_message_ids == (ids[0],)
    finally:
        second.close()


def test_a_live_lease_is_not_taken_over(db_url: str) -> None:
    mem = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                 augmentation_lease_seconds=300)
    try:
        mem.config.storage.build()
        mem.attribution(entity_id="busy")
        mem.capture([{"role": "user", "content": "someone is working on this"}])
        abandon(mem, claimed_seconds_ago=10)
        assert mem.augmentation.run_once() == 0
        assert jobs(mem)[0]["status"] == "running"
        abandon(mem, claimed_seconds_ago=301)
        assert mem.augmentation.run_once() == 1
        assert jobs(mem)[0]["status"] == "done"
        assert count(mem, schema.entity_fact) == 1
    finally:
        mem.close()


class AlwaysFails:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def extract(self, conversation: Conversation) -> Extraction:
        with self.lock:
            self.calls += 1
        raise RuntimeError(f"extractor exploded on {conversation.entity_id}")


def test_an_always_failing_extractor_ends_failed_with_its_error(db_url: str) -> None:
    extractor = AlwaysFails()
    mem = Memori(conn=db_url, embedder=HashEmbedder(), extractor=extractor,
                 request_num_backoff=2, request_backoff_factor=0)
    try:
        mem.config.storage.build()
        mem.attribution(entity_id="unlucky", process_id="agent")
        ids = mem.capture([{"role": "user", "content": "this turn cannot be augmented"},
                           {"role": "assistant", "content": "sorry"}])
        assert mem.augmentation.wait(timeout=30)
        failed = mem.augmentation.failed()
        assert len(failed) == 1
        assert failed[0]["error"] == "RuntimeError: extractor exploded on unlucky"
        assert failed[0]["attempts"] == 2
        assert failed[0]["finished_at"] is not None
        assert (failed[0]["entity_id"], failed[0]["message_ids"]) == (
            mem.entity_id, ids)  # the external id, and the turn that is still stored
        assert mem.augmentation.pending() == 0
        assert extractor.calls == 2
        assert [j["status"] for j in jobs(mem)] == ["failed"]
        counters = mem.stats()["augmentation"]
        assert (counters["jobs_failed"], counters["jobs_retried"], counters["jobs_done"]) == (
            1, 1, 0)
        # the turn itself is kept, and on the last attempt its episodic memory was written
        # (recallable as said), nothing of the failed extraction
        assert [m["id"] for m in mem.session_messages()] == ids
        assert [m["content"] for m in mem.session_messages()] == [
            "this turn cannot be augmented", "sorry"]
        assert count(mem, schema.entity_fact) == 1
        [hit] = mem.recall("this turn cannot be augmented")
        assert (hit.kind, hit.content, hit.source_message_ids) == (
            "episodic", "this turn cannot be augmented", (ids[0],))
        # a failed job stays failed: a restart does not run it again
        with mem.engine.connect() as c:
            assert c.execute(text("SELECT status FROM memori_augmentation_job")).scalar_one() \
                == "failed"
    finally:
        mem.close()
    again = Memori(conn=db_url, embedder=HashEmbedder(), extractor=extractor)
    try:
        assert again.augmentation.wait(timeout=30)
        assert extractor.calls == 2
        assert len(again.augmentation.failed()) == 1
    finally:
        again.close()


class Slow:
    """RuleExtractor's output, after ``seconds`` of work (an LLM call, say)."""

    def __init__(self, seconds: float) -> None:
        from memori_core.augmentation.rules import RuleExtractor

        self.seconds = seconds
        self.calls = 0
        self.per_turn: Counter[tuple[int, ...]] = Counter()  # calls by the turn's message ids
        self.lock = threading.Lock()
        self.rules = RuleExtractor()

    def extract(self, conversation: Conversation) -> Extraction:
        with self.lock:
            self.calls += 1
            self.per_turn[tuple(int(m["id"]) for m in conversation.messages)] += 1
        threading.Event().wait(self.seconds)  # the work itself, not a synchronisation
        return self.rules.extract(conversation)


def test_a_live_worker_renews_its_lease_and_its_job_is_processed_once(db_url: str) -> None:
    """Issue 18.1: two instances, a 1 s lease and an extractor taking 2.5 s: the job is
    done once, with one attempt, every memory mentioned once."""
    first = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    first.config.storage.build()
    first.attribution(entity_id="slow", process_id="agent")
    first.capture([{"role": "user", "content": "I live in Lisbon"}])
    first.close()
    extractor = Slow(2.5)
    both = [Memori(conn=db_url, embedder=HashEmbedder(), extractor=extractor,
                   augmentation_lease_seconds=1) for _ in range(2)]
    try:
        waits = [threading.Thread(target=m.augmentation.wait, args=(30,)) for m in both]
        for t in waits:
            t.start()
        for t in waits:
            t.join()
        (job,) = jobs(both[0])
        assert (job["status"], job["attempts"]) == ("done", 1)
        assert extractor.calls == 1
        with both[0].engine.connect() as c:
            mentions = c.execute(select(schema.entity_fact.c.mention_count)).scalars().all()
        assert mentions and set(mentions) == {1}
        assert sum(m.stats()["augmentation"]["leases_lost"] for m in both) == 0
    finally:
        for m in both:
            m.close()


@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_live_workers_renew_their_leases_over_many_jobs_long(db_url: str, backend: str,
                                                              figures: Recorder) -> None:
    """Issue 18.1, long form: three instances, one worker each, compete for 12 jobs in
    batches of 2 with a 1 s lease, each job taking 3 s (a batch holds its leases 6 s): every
    job is processed once, with one attempt, and no live worker loses a lease."""
    lease, turns, instances = 1.0, 12, 3
    first = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    first.config.storage.build()
    for n in range(turns):
        first.attribution(entity_id=f"slow-{n % 4}", process_id="agent")
        first.capture([{"role": "user", "content": f"I live in city number {n}"}])
    first.close()
    extractor = Slow(3 * lease)
    many = [Memori(conn=db_url, embedder=HashEmbedder(), extractor=extractor,
                   augmentation_lease_seconds=lease, augmentation_batch_size=2)
            for _ in range(instances)]
    try:
        done: list[bool] = []
        waits = [threading.Thread(target=lambda m=m: done.append(m.augmentation.wait(120)))
                 for m in many]
        for t in waits:
            t.start()
        for t in waits:
            t.join()
        rows = jobs(many[0])
        j = schema.augmentation_job.c
        with many[0].engine.connect() as c:
            ids = {r.id: tuple(json.loads(r.message_ids))
                   for r in c.execute(select(j.id, j.message_ids))}
        reprocessed = [r for r in rows if r["attempts"] > 1 or extractor.per_turn[ids[r["id"]]] > 1]
        leases_lost = sum(m.stats()["augmentation"]["leases_lost"] for m in many)
        figures.lease(backend, jobs=len(rows), instances=instances,
                      reprocessed=len(reprocessed), leases_lost=leases_lost)
        assert all(done) and len(rows) == turns
        assert [r["status"] for r in rows] == ["done"] * turns
        assert reprocessed == [] and extractor.calls == turns
        assert leases_lost == 0
        with many[0].engine.connect() as c:
            mentions = c.execute(select(schema.entity_fact.c.mention_count)).scalars().all()
        assert mentions and set(mentions) == {1}
    finally:
        for m in many:
            m.close()


class TakenOver:
    """An extractor during whose work another worker takes the job over (its lease ran out
    while this worker was stalled)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def extract(self, conversation: Conversation) -> Extraction:
        with self.engine.begin() as c:
            c.execute(update(schema.augmentation_job).values(claimed_by="other-worker/1"))
        return Extraction()


def test_a_worker_that_lost_its_lease_commits_nothing(db_url: str) -> None:
    mem = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    try:
        mem.config.storage.build()
        mem.attribution(entity_id="fenced")
        mem.capture([{"role": "user", "content": "my results belong to the new owner"}])
        mem.augmentation._extractor = TakenOver(mem.engine)
        assert mem.augmentation.run_once() == 1
        (job,) = jobs(mem)
        assert (job["status"], job["claimed_by"]) == ("running", "other-worker/1")
        assert count(mem, schema.entity_fact) == 0  # nothing of the stale worker's batch
        assert mem.stats()["augmentation"]["leases_lost"] == 1
    finally:
        mem.close()
