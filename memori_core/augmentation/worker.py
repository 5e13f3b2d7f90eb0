"""Durable background augmentation.

``capture`` writes a job row into ``memori_augmentation_job`` in the same transaction as the turn.
Workers claim jobs in batches (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB; SQLite has one
writer), build memories (episodic + the extractor's), embed them in one batch, upsert them with
provenance, and mark the jobs done in one transaction. An extractor with ``wants_related``
(``LLMExtractor``) is given the entity's related memories (``Conversation.related``: exact
cosine over the current memories of the job's entity and process) and its UPDATEs and DELETEs
are applied in that same transaction, to rows of the job's own entity and process only (DELETE:
``superseded_by`` = the memory's own id). Jobs of one batch are planned before any is written,
so a turn is decided against memories written by earlier batches. A failing job is retried
with exponential backoff (``request_backoff_factor * 2**attempt`` seconds) and marked
``failed`` with its error after ``request_num_backoff`` attempts; it is never dropped. When the extractor is what fails, the
last attempt still writes the turn's episodic memories (recall works when nothing was
extracted) and then marks the job ``failed``. A worker that dies leaves its jobs
``running`` with a lease; they become claimable again after ``augmentation_lease_seconds``.

Workers run as threads of a ``Memori`` instance (``Config.augmentation_workers``) or as their own
process (``memori worker --db URL``).
"""

from __future__ import annotations

import atexit
import dataclasses
import heapq
import itertools
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, or_, update

from memori_core.augmentation.base import (
    INDEXED_CHARS,
    MEMORY_KINDS,
    Conversation,
    ExtractedMemory,
    Extraction,
    Extractor,
    RelatedFn,
    RelatedMemory,
    Triple,
    episodic_memories,
)
from memori_core.config import Config
from memori_core.embeddings.base import Embedder
from memori_core.errors import AugmentationError, ConfigurationError
from memori_core.storage import schema as s
from memori_core.storage.store import (
    JobRow,
    JobsGone,
    LeaseLost,
    NewMemory,
    NewTriple,
    Store,
    clip_importance,
)

__all__ = ["Augmentation"]


@dataclass
class _Plan:
    """What one job will write."""

    job: JobRow
    memories: list[ExtractedMemory]
    triples: list[Triple] = field(default_factory=list)
    process_attributes: list[str] = field(default_factory=list)
    summary: str | None = None
    when: dict[int, Any] = field(default_factory=dict)  # message id -> created_at
    #: the extractor failed on the job's last attempt: only the episodic memories are written
    #: and the job ends ``failed`` with this error
    error: str | None = None
    #: row ids the extractor marks no longer true (``Extraction.deletes``)
    deletes: tuple[int, ...] = ()

_log = logging.getLogger(__name__)
#: characters of a slot and of a triple's subject and predicate (VARCHAR(255) columns)
MAX_KEY_CHARS = 255


#: row ids an extractor may name: what a BIGINT primary key holds (others are no row, and
#: would fail the whole batch's statement)
_MAX_ROW_ID = 2**63 - 1


def _row_ids(values: object, what: str, job_id: int) -> tuple[int, ...]:
    """An extractor's ``supersedes`` / ``deletes``: ints, those that can be row ids kept.

    Raises:
        AugmentationError: not a list or tuple of ints.
    """
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in values):
        raise AugmentationError(f"extractor returned {what} that are not row ids: "
                                f"{values!r:.200}", job_id=job_id)
    return tuple(dict.fromkeys(i for i in values if 0 < i <= _MAX_ROW_ID))


def _apply_decisions(conn: Connection, plan: _Plan, ids: Sequence[int]) -> bool:
    """Apply one job's UPDATEs and DELETEs in its write transaction, to non-episodic rows of
    the job's own entity and process only (ids of any other row are ignored):

    - a memory the job states again that is superseded and has no slot (a slot's history is
      ``Store._supersede``'s) is current again, since it was just said;
    - each ``ExtractedMemory.supersedes`` row gets ``superseded_by`` = the new memory's id;
    - each ``_Plan.deletes`` row still current gets ``superseded_by`` = its own id (no
      replacement: recall leaves it out, ``include_superseded=True`` shows it).

    Args:
        conn: the write transaction.
        plan: the job's plan.
        ids: the row ids ``Store.upsert_memories`` gave ``plan.memories``, in order.

    Returns:
        Whether any row changed (the entity's ``memory_version`` must then be bumped).
    """
    f, job = s.entity_fact.c, plan.job
    mine = and_(f.entity_id == job.entity_id, f.kind != "episodic",
                f.process_id.is_(None) if job.process_id is None
                else f.process_id == job.process_id)
    changed = 0
    stated = [fid for fid, m in zip(ids, plan.memories, strict=True) if m.kind != "episodic"]
    if stated:
        changed += conn.execute(update(s.entity_fact).where(
            mine, f.id.in_(stated), f.slot.is_(None), f.superseded_by.is_not(None))
            .values(superseded_by=None)).rowcount
    for fid, m in zip(ids, plan.memories, strict=True):
        old = [i for i in m.supersedes if i != fid]
        if old:
            changed += conn.execute(update(s.entity_fact).where(
                mine, f.id.in_(old), or_(f.superseded_by.is_(None), f.superseded_by != fid))
                .values(superseded_by=fid)).rowcount
    if plan.deletes:
        changed += conn.execute(update(s.entity_fact).where(
            mine, f.id.in_(list(plan.deletes)), f.superseded_by.is_(None))
            .values(superseded_by=f.id)).rowcount
    return changed > 0


def _by_similarity(item: tuple[int, float]) -> tuple[float, int]:
    """Sort key of (row id, similarity): the most similar, then the newest."""
    return item[1], item[0]


def _error_text(exc: BaseException) -> str:
    """A job's error: ``Type: message``, storable on every backend whatever the exception
    says (NUL, lone surrogates)."""
    return f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00").encode(
        "utf-8", "backslashreplace").decode("utf-8")


def _check_storable(plan: _Plan) -> None:
    """Fail one job, not its whole batch: text no database can store (NUL, lone surrogates,
    a key over ``MAX_KEY_CHARS``) would otherwise fail the batch's shared transaction.

    Raises:
        AugmentationError: naming the field and the memory, triple or attribute.
    """
    fields: list[tuple[str, object, int | None]] = []  # (what, value, max characters)
    for m in plan.memories:
        fields += [("memory content", m.content, None), ("memory slot", m.slot, MAX_KEY_CHARS),
                   ("memory embed_text", m.embed_text, None),
                   ("memory search_text", m.search_text, None)]
    for t in plan.triples:
        fields += [("triple subject", t.subject.strip(), MAX_KEY_CHARS),
                   ("triple predicate", t.predicate.strip(), MAX_KEY_CHARS),
                   ("triple object", t.object, None)]
    fields += [("process attribute", a, None) for a in plan.process_attributes]
    fields.append(("summary", plan.summary, None))
    for what, value, limit in fields:
        if value is None:
            continue
        problem = ""
        if not isinstance(value, str):
            problem = f"is a {type(value).__name__}, not a str"
        elif "\x00" in value:
            problem = "contains a NUL character"
        elif limit is not None and len(value) > limit:
            problem = f"is {len(value)} characters (at most {limit})"
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                problem = "is not valid Unicode (a lone surrogate)"
        if problem:
            raise AugmentationError(f"extractor returned a {what} that cannot be stored: it "
                                    f"{problem}: {value!r:.200}", job_id=plan.job.id)


#: seconds an idle worker waits for a wake-up before looking for jobs queued by other processes
IDLE_RECHECK_S = 1.0


class Augmentation:
    """``mem.augmentation``: the job queue and its workers.

    Args:
        store: the database.
        embedder: embeds new memories.
        extractor: optional extractor run on each turn besides the episodic memories.
        config: worker count, batch size and timing, retries.
        before_wait: called first by ``wait`` (``Memori`` starts its workers there).
    """

    def __init__(self, store: Store, embedder: Embedder, extractor: Extractor | None,
                 config: Config,
                 before_wait: Callable[[], None] | None = None) -> None:
        self._store = store
        self._before_wait = before_wait
        self._embedder = embedder
        self._extractor = extractor
        #: the extractor decides against related memories (``LLMExtractor``): it gets
        #: ``Conversation.related`` and may supersede or delete memories
        self._decides = bool(getattr(extractor, "wants_related", False))
        self._config = config
        self._worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._claims = itertools.count(1)  # claim tokens: f"{worker id}/{n}", one per batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._generation = 0  # batches finished by this instance's workers
        self._threads: list[threading.Thread] = []
        self._model_checked = False
        #: the ConfigurationError that stopped this instance's workers, if any
        self.error: ConfigurationError | None = None
        self.counters = {"jobs_done": 0, "jobs_retried": 0, "jobs_failed": 0,
                         "worker_errors": 0, "memories_written": 0, "leases_lost": 0}
        self._counter_lock = threading.Lock()
        #: claimed jobs (id -> claim token) whose batch failed with the database
        #: (see ``run_once``)
        self._abandoned: dict[int, str] = {}
        self._abandoned_lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start ``Config.augmentation_workers`` worker threads (idempotent)."""
        if self._threads:
            return
        self._stop.clear()
        for i in range(self._config.augmentation_workers):
            t = threading.Thread(target=self._loop, name=f"memori-augmentation-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if self._threads:
            ref = weakref.ref(self)

            def _stop_at_exit() -> None:
                augmentation = ref()
                if augmentation is not None:
                    augmentation.stop()

            atexit.register(_stop_at_exit)
            self.notify()  # pick up jobs left queued by an earlier run

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers after their current batch; queued jobs stay queued for the next
        start. ``timeout`` in seconds per thread."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def notify(self) -> None:
        """Wake the workers: a job was queued."""
        self._wake.set()

    # ---- public API ---------------------------------------------------------------------------
    def wait(self, timeout: float | None = 30.0) -> bool:
        """Block until every job queued so far is finished (done or failed).

        Args:
            timeout: seconds; None waits indefinitely.

        Returns:
            True when they finished, False on timeout.

        Raises:
            StorageError: the schema is not built, or the ``Memori`` instance is closed.
            ConfigurationError: this instance's workers stopped because its embedding model
                cannot be loaded or is not the database's (the jobs stay queued).
        """
        if self._before_wait is not None:
            self._before_wait()
        if not self._threads:
            _log.info("this instance runs no augmentation workers (augmentation_workers=0): "
                      "waiting for other processes, e.g. `memori worker`")
        mark = self._store.max_job_id()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            generation = self._generation  # read before the check: no wake-up is lost
            if self.error is not None:
                raise self.error
            if self._store.unfinished_jobs(mark) == 0:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._progress:
                if self._generation == generation:
                    # woken by our own workers after each batch; re-checked anyway every
                    # IDLE_RECHECK_S for jobs finished by other processes
                    self._progress.wait(IDLE_RECHECK_S if remaining is None
                                        else min(remaining, IDLE_RECHECK_S))

    def pending(self) -> int:
        """Jobs queued or running (in any process): turns not yet recallable."""
        return self._store.unfinished_jobs(self._store.max_job_id())

    def failed(self) -> list[dict[str, Any]]:
        """Jobs marked failed: dicts with ``id``, ``entity_id`` and ``process_id`` (external
        ids), ``message_ids`` (the turn, still stored; its episodic memories too when the
        extractor failed), ``attempts``, ``error``, ``finished_at``."""
        return self._store.failed_jobs()

    def run_once(self) -> int:
        """Claim and process one batch. Returns the number of jobs claimed (0: queue empty)."""
        cfg = self._config
        self._release_abandoned()
        claim = f"{self._worker_id}/{next(self._claims)}"
        jobs = self._store.claim_jobs(claim, cfg.augmentation_batch_size,
                                      timedelta(seconds=cfg.augmentation_lease_seconds))
        if not jobs:
            return 0
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(claim, stop), daemon=True,
                                   name="memori-lease")
        renewer.start()
        try:
            self._process(jobs)
        except ConfigurationError:
            raise  # the jobs were released
        except Exception:
            # the database failed mid-batch, and so did recording the jobs' outcome: they go
            # back to the queue once it is reachable, instead of waiting out their lease
            with self._abandoned_lock:
                self._abandoned.update((job.id, claim) for job in jobs)
            raise
        finally:
            stop.set()
            renewer.join()
            with self._progress:
                self._generation += 1
                self._progress.notify_all()
        return len(jobs)

    # ---- internals -------------------------------------------------------------------------
    def _release_abandoned(self) -> None:
        """Put back in the queue the jobs of batches that failed with the database (only those
        still claimed by this instance and running). Raises while it is still unreachable."""
        with self._abandoned_lock:  # each failed batch is released once
            for claim in sorted(set(self._abandoned.values())):
                self._store.release_jobs(
                    sorted(i for i, c in self._abandoned.items() if c == claim), claim)
            self._abandoned.clear()

    def _renew(self, claim: str, stop: threading.Event) -> None:
        """Renew the lease of the batch held by ``claim`` every third of
        ``augmentation_lease_seconds`` until ``stop``: a live worker never loses its jobs, while
        a crashed one's are claimable again one lease after its last renewal. A failed renewal
        is logged; fencing (``Store.hold_jobs``) keeps a lease that did run out from being
        committed twice."""
        every = max(self._config.augmentation_lease_seconds / 3, 0.01)
        while not stop.wait(every):
            try:
                if not self._store.renew_jobs(claim):
                    return  # finished (or taken over: the write's fencing says so)
            except Exception as exc:  # noqa: BLE001 - the batch goes on; fencing stands guard
                _log.warning("renewing the lease of augmentation claim %s failed: %s", claim,
                             exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if not self._model_checked:  # a misconfigured worker claims nothing
                    self._check_model()
                claimed = self.run_once()
            except ConfigurationError as exc:
                # this worker's embedder is wrong (missing, or not the database's model): the
                # jobs stay queued for a worker that is configured right; wait() raises it
                _log.error("augmentation workers stopped: %s", exc)
                self.error = exc
                with self._progress:
                    self._generation += 1
                    self._progress.notify_all()
                return
            except Exception:  # noqa: BLE001 - a worker must survive a bad batch or a database outage
                _log.exception("augmentation worker error; retrying")
                self._count("worker_errors")
                self._stop.wait(self._config.request_backoff_factor or 1.0)
                continue
            if claimed == 0:
                self._wake.wait(IDLE_RECHECK_S)
                if not self._stop.is_set() and self._config.augmentation_batch_seconds:
                    # let a burst of captures fill the next batch
                    self._stop.wait(self._config.augmentation_batch_seconds)

    def _check_model(self) -> None:
        """Load the embedder and match it against the database's recorded model.

        Raises:
            ConfigurationError: the model cannot be loaded or differs from the database's.
        """
        self._store.check_embedding_model(self._embedder.name, self._embedder.dim)
        self._model_checked = True

    def reset_model_check(self) -> None:
        """Check the database's embedding model again before the next batch (after a
        re-embed); clears a model mismatch that stopped the workers."""
        self._model_checked = False
        stopped_by_error = self.error is not None
        self.error = None
        if stopped_by_error and self._threads and not self._stop.is_set():
            for t in self._threads:
                t.join(1.0)  # they returned when the error was set
            self._threads = []
            self.start()

    def _count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] += n

    def _plan(self, job: JobRow, loaded: tuple[str, str | None, list[dict[str, Any]],
                                               dict[str, Any] | None],
              extract: bool = True) -> _Plan:
        entity_id, process_id, messages, previous = loaded
        conv = Conversation(entity_id=entity_id, process_id=process_id, messages=messages,
                            previous=previous,
                            related=self._related(job) if self._decides and extract else None)
        plan = _Plan(job, episodic_memories(conv))
        if not extract:
            return plan
        if self._extractor is None or not messages:  # no messages: deleted since the claim
            return plan
        extraction = self._extractor.extract(conv)
        if not isinstance(extraction, Extraction):
            raise AugmentationError(f"extractor returned {type(extraction).__name__}, not an "
                                    "Extraction", job_id=job.id)
        valid_ids = {m["id"] for m in messages}
        for m in extraction.memories:
            if m.kind not in MEMORY_KINDS:
                raise AugmentationError(f"extractor returned unknown kind {m.kind!r}",
                                        job_id=job.id)
            if not m.content.strip():
                continue
            sources = tuple(i for i in m.source_message_ids if i in valid_ids) or \
                tuple(sorted(valid_ids))
            plan.memories.append(ExtractedMemory(m.content.strip(), m.kind, sources, m.slot,
                                                 m.embed_text, m.search_text,
                                                 importance=clip_importance(m.importance),
                                                 supersedes=_row_ids(m.supersedes, "supersedes",
                                                                     job.id)))
        bound = self._config.augmentation_max_memories
        if len(plan.memories) > bound:
            _log.warning("augmentation job %d: the extractor gave %d memories for one turn; "
                         "the first %d are kept (augmentation_max_memories)", job.id,
                         len(plan.memories), bound)
            del plan.memories[bound:]
        plan.deletes = _row_ids(extraction.deletes, "deletes", job.id)
        plan.triples = [t for t in extraction.triples
                        if t.subject.strip() and t.predicate.strip() and t.object.strip()]
        plan.process_attributes = [a.strip() for a in extraction.process_attributes if a.strip()]
        plan.summary = extraction.summary.strip() if extraction.summary else None
        _check_storable(plan)
        return plan

    def _related(self, job: JobRow) -> RelatedFn:
        """``Conversation.related`` for one job: exact cosine similarity over the current,
        non-episodic memories of the job's entity and process (``Store.memory_embeddings``,
        read in batches of ``Config.recall_embeddings_limit``), one embedding call for the
        texts (each cut to ``INDEXED_CHARS``); a memory scores its best text. Hits under
        ``Config.recall_relevance_threshold`` are left out; ties go to the newest."""
        threshold = self._config.recall_relevance_threshold
        batch = self._config.recall_embeddings_limit

        def related(texts: Sequence[str], k: int) -> list[RelatedMemory]:
            wanted = [t[:INDEXED_CHARS] for t in texts if t.strip()]
            if not wanted or k <= 0:
                return []
            queries = np.asarray(self._embedder.embed(wanted), dtype=np.float32)
            dim = queries.shape[1]
            best: dict[int, float] = {}
            for rows in self._store.memory_embeddings(job.entity_id, 0, batch):
                keep = [r for r in rows if not r.superseded and r.kind != "episodic"
                        and r.process_id == job.process_id and len(r.embedding) == 4 * dim]
                if not keep:
                    continue
                vectors = np.frombuffer(b"".join(r.embedding for r in keep),
                                        dtype="<f4").reshape(len(keep), dim)
                scores = (vectors @ queries.T).max(axis=1)
                best.update((r.id, float(score)) for r, score in zip(keep, scores, strict=True)
                            if score >= threshold)
                if len(best) > 4 * k:  # bounded: only the best k can still make it
                    best = dict(heapq.nlargest(k, best.items(), key=_by_similarity))
            top = heapq.nlargest(k, best.items(), key=_by_similarity)
            details = self._store.memory_details(job.entity_id, [i for i, _ in top])
            return [RelatedMemory(i, details[i]["content"], details[i]["kind"],
                                  details[i]["created_at"], score) for i, score in top
                    if i in details and details[i]["superseded_by"] is None]

        return related

    def _process(self, jobs: list[JobRow]) -> None:
        if self._decides and not self._model_checked:
            # the extractor embeds with it (related memories): check it before planning
            try:
                self._check_model()
            except ConfigurationError:
                self._store.release_jobs([job.id for job in jobs], jobs[0].claim)
                raise
        loaded = self._store.load_turns(jobs)
        plans: list[_Plan] = []
        for job in jobs:
            try:
                plans.append(self._plan(job, loaded[job.id]))
            except Exception as exc:  # noqa: BLE001 - recorded on the job, retried, then failed
                if job.attempts < self._config.request_num_backoff:
                    self._fail(job, exc)
                    continue
                # the extractor failed for good: the turn still becomes recallable as said
                # (its episodic memories), and the job ends failed with the error
                plan = self._plan(job, loaded[job.id], extract=False)
                plan.error = _error_text(exc)
                plans.append(plan)
        if not plans:
            return
        for plan in plans:  # the time each memory was said: its newest source message
            _, _, messages, _ = loaded[plan.job.id]
            plan.when = {m["id"]: m.get("created_at") for m in messages}
        try:
            if not self._model_checked:
                self._check_model()
            cap = self._config.embeddings_max_chars  # the model reads ~1,000 characters
            texts = [(m.embed_text or m.content)[:cap] for plan in plans for m in plan.memories]
            vectors = self._embedder.embed(texts) if texts else None
        except ConfigurationError:
            self._store.release_jobs([plan.job.id for plan in plans], plans[0].job.claim)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on each job, which is retried
            for plan in plans:
                self._fail(plan.job, exc)
            return
        offsets, row = {}, 0
        for plan in plans:
            offsets[plan.job.id] = row
            row += len(plan.memories)
        while plans:
            try:
                written = self._write(plans, vectors, offsets)
            except Exception as exc:  # noqa: BLE001 - recorded on each job, which is retried
                if isinstance(exc, LeaseLost):
                    # another worker took them over after their lease ran out: its results
                    # are the ones committed
                    _log.warning("%s; this worker's results for them are dropped", exc)
                    self._count("leases_lost", len(exc.job_ids))
                    plans = [plan for plan in plans if plan.job.id not in exc.job_ids]
                    continue
                gone = exc.job_ids if isinstance(exc, JobsGone) else self._forgotten(plans)
                if gone:
                    # forgotten while they ran (the write failed on their deleted rows, or
                    # was rolled back): their results must not bring the entity back
                    _log.info("augmentation jobs %s were forgotten while they ran; dropped",
                              sorted(gone))
                    plans = [plan for plan in plans if plan.job.id not in gone]
                    continue
                for plan in plans:
                    self._fail(plan.job, exc)
                return
            failed = [plan for plan in plans if plan.error is not None]
            for plan in failed:
                _log.error("augmentation job %d failed after %d attempts (its episodic "
                           "memories are written): %s", plan.job.id, plan.job.attempts,
                           plan.error)
            self._count("jobs_failed", len(failed))
            self._count("jobs_done", len(plans) - len(failed))
            self._count("memories_written", written)
            return

    def _forgotten(self, plans: list[_Plan]) -> set[int]:
        """Jobs of ``plans`` deleted since they were claimed (empty when that cannot be told)."""
        try:
            return self._store.missing_jobs([plan.job.id for plan in plans])
        except Exception:  # noqa: BLE001 - the database is failing: the write error stands
            return set()

    def _write(self, plans: list[_Plan], vectors: Any, offsets: dict[int, int]) -> int:
        """Write the plans' results and finish their jobs in one transaction. Returns the
        number of memories written.

        Raises:
            JobsGone: some of the jobs were deleted meanwhile (nothing was written).
            LeaseLost: some of the jobs are held by another claim now (nothing was written).
        """
        new: list[NewMemory] = []
        #: each triple, and the position in ``new`` of the memory it was drawn from (or None)
        triples: list[tuple[NewTriple, int | None]] = []
        attributes: list[tuple[int, int | None, str]] = []
        summaries: dict[int, str] = {}
        starts: list[int] = []  # where each plan's memories begin in ``new``
        for plan in plans:
            job = plan.job
            starts.append(len(new))
            for row, m in enumerate(plan.memories, start=offsets[job.id]):
                assert vectors is not None
                seen = [plan.when[i] for i in m.source_message_ids if plan.when.get(i)]
                new.append(NewMemory(job.entity_id, job.process_id, m.kind, m.content,
                                     vectors[row], m.source_message_ids, m.slot,
                                     m.search_text, max(seen, default=None),
                                     importance=m.importance))
            triples += [(NewTriple(job.entity_id, job.process_id, t.subject.strip(),
                                   t.predicate.strip(), t.object.strip()),
                         _source_memory(t, plan.memories, starts[-1]))
                        for t in plan.triples]
            if job.process_id is not None:  # an attribute of no process has no owner
                attributes += [(job.process_id, job.entity_id, a)
                               for a in plan.process_attributes]
            if plan.summary:
                summaries[job.conversation_id] = plan.summary
        model = self._embedder.name

        def tx(conn: Connection, _state: Any) -> None:
            # first: locks the job rows, and a batch whose lease ran out writes nothing
            self._store.hold_jobs(conn, [plan.job.id for plan in plans], plans[0].job.claim)
            ids = self._store.upsert_memories(conn, new, model)
            if self._decides:  # in job order: a later turn's decision wins
                changed = {plan.job.entity_id for plan, start in zip(plans, starts, strict=True)
                           if _apply_decisions(conn, plan,
                                               ids[start:start + len(plan.memories)])}
                if changed:
                    self._store._bump_version(conn, sorted(changed))
            self._store.upsert_triples(conn, [
                t if at is None else dataclasses.replace(t, fact_id=ids[at])
                for t, at in triples])
            self._store.upsert_process_attributes(conn, attributes)
            self._store.set_summaries(conn, summaries)
            # last: a job deleted meanwhile rolls all of it back (JobsGone)
            self._store.finish_jobs(conn, [plan.job.id for plan in plans], plans[0].job.claim,
                                    {plan.job.id: plan.error for plan in plans
                                     if plan.error is not None})

        self._store.write(tx)
        return len(new)

    def _fail(self, job: JobRow, exc: BaseException) -> None:
        error = _error_text(exc)
        status = self._store.fail_job(job, job.claim, error,
                                      self._config.request_num_backoff,
                                      self._config.request_backoff_factor)
        if status == "failed":
            _log.error("augmentation job %d failed after %d attempts: %s", job.id, job.attempts,
                       error)
            self._count("jobs_failed")
        else:
            _log.warning("augmentation job %d attempt %d failed (%s); retrying", job.id,
                         job.attempts, error)
            self._count("jobs_retried")


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> set[str]:
    """Lower-cased words (``lives_in``: lives, in)."""
    return set(_WORD.findall(text.lower()))


def _source_memory(triple: Triple, memories: Sequence[ExtractedMemory], first: int
                   ) -> int | None:
    """The position (``first`` + its index) of the memory of the same turn that ``triple``
    was drawn from: the one whose words hold most of the triple's object, then of its subject
    and predicate; a non-episodic memory before an episodic one. None when no memory of the
    turn names a word of the object (the triple keeps no source memory)."""
    obj = _words(triple.object)
    rest = _words(triple.subject) | _words(triple.predicate)
    best: tuple[int, int, int] | None = None
    at = None
    for i, m in enumerate(memories):
        words = _words(m.content)
        hits = len(obj & words)
        if not hits:
            continue
        key = (hits, len(rest & words), m.kind != "episodic")
        if best is None or key > best:
            best, at = key, first + i
    return at
