"""Recall: embed the query once, search the entity's index by vector and by BM25, fuse the two
rankings, weigh in recency, mentions, conversation, participant and date, threshold, hydrate hits,
and fold the memories of one source turn into one hit.

Score of a candidate (``RecallHit.score``)::

    fused   = (1 / (k + rank_vector) + w_lex / (k + rank_bm25)) / ((1 + w_lex) / (k + 1))
    score   = fused + w_recency * 0.5 ** (age_days / half_life) + w_mention * (1 - 1 / mentions)
    score  += w_conversation * mass(conversation) / max mass + w_speaker * [query names speaker]
    score  += w_date * (1 on a day the query names, 0.5 in a month it names)

``fused`` is reciprocal-rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009) scaled to (0, 1]; a
ranker that did not return the candidate contributes 0; BM25 is the memory's own text plus
``recall_reply_weight`` times its reply field (``memori_core.recall.index``). ``mass`` is the
summed score of the candidates from one conversation (a prior for the conversation the query is
about). Weights and half-life are ``Config`` fields. A candidate whose cosine similarity to the
query is under ``recall_relevance_threshold`` is dropped, whatever its lexical rank. Then the
memories of one source turn become one hit (``one_per_turn``), optionally spread over
conversations (``diversify``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from memori_core.config import Config
from memori_core.embeddings.base import Embedder
from memori_core.errors import ConfigurationError, RecallError, StorageError
from memori_core.recall.dense import exact_top_k
from memori_core.recall.index import INDEXED_CHARS, Filter, IndexCache
from memori_core.recall.lexical import (
    mean_length,
    query_terms,
    score_postings,
    score_texts,
    term_counts,
    tokenize,
)
from memori_core.storage.packed import MIN_PACK, Packed
from memori_core.storage.store import EntityGone, LexicalCorpus, Store, normalize_text, utcnow
from memori_core.types import RecallHit, RecallWhy

__all__ = ["Recaller", "Scope", "check_scope", "diversify", "fuse", "named_dates",
           "one_per_turn", "query_text", "scope_processes"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

Scope = Literal["process", "entity"]
#: (dense, lexical, similarity): the candidates of both rankers (``EntityIndex.search``)
Candidates = tuple[list[tuple[int, float]], list[tuple[int, float]], dict[int, float]]
#: the candidate path's lexical pool, in multiples of the candidates wanted: the reply field
#: read backwards can lift a memory whose own text ranks below the cut
LEXICAL_POOL = 4
#: the candidate path reads every memory's text (its BM25 mean length exactly) of an entity
#: of at most this many memories; above, it scales the mean character count by the pool's
#: tokens per character
EXACT_LENGTHS_BELOW = 256
#: memories a cold recall re-scores by id from packed codes at most (``exact_top_k``'s
#: ``most``: a quarter of the entity's memories, at least 4 x the candidates wanted, up to
#: this); past it, a filter excluding most memories, one read of every vector the filter
#: allows costs less
RESCORED_MOST = 16_384
#: memories past the packed blocks that a cold recall tokenizes for BM25 at most (a few
#: ms); more (an import not packed yet), and it takes the full-text pool instead
TAIL_MOST = 2048
#: query vectors a Recaller keeps (384 float32 each with the default model: about 0.4 MB)
QUERY_VECTORS = 256
_NAME_WORD = re.compile(r"[\w'-]+")
_MONTHS = {m: i for i, m in enumerate(("january february march april may june july august "
                                        "september october november december").split(), 1)}
_MONTH = (r"(?P<month>" + "|".join(_MONTHS) + r"|sept|" + "|".join(m[:3] for m in _MONTHS)
          + r")\.?")
_DATES = [re.compile(p, re.I) for p in (
    r"\b(?P<year>\d{4})-(?P<mon>\d{1,2})-(?P<day>\d{1,2})\b",
    r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(?P<year>\d{4})\b",
    r"\b" + _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})\b",
    r"\b" + _MONTH + r",?\s+(?P<year>\d{4})\b")]


def named_dates(query: str) -> list[tuple[int, int, int | None]]:
    """(year, month, day or None) of each date the query names: "8 May 2023", "May 8, 2023",
    "2023-05-08", "May 2023"."""
    out: list[tuple[int, int, int | None]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATES:
        for m in pattern.finditer(query):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue  # "May 2023" inside "8 May 2023"
            g = m.groupdict()
            month = int(g["mon"]) if g.get("mon") else _month(g["month"])
            day = int(g["day"]) if g.get("day") else None
            if 1 <= month <= 12 and (day is None or 1 <= day <= 31):
                out.append((int(g["year"]), month, day))
                taken.append((m.start(), m.end()))
    return out


def _date_match(dates: Sequence[tuple[int, int, int | None]], when: datetime) -> float:
    """1 when ``when`` is on a day of ``dates``, 0.5 when only in a month of them, else 0."""
    best = 0.0
    for year, month, day in dates:
        if (year, month) == (when.year, when.month):
            best = max(best, 1.0 if day == when.day else 0.5 if day is None else 0.0)
    return best


def _month(name: str) -> int:
    name = name.lower().rstrip(".")
    return next(i for m, i in _MONTHS.items() if m.startswith(name))


def check_scope(scope: object) -> None:
    """Raises: ConfigurationError unless ``scope`` is ``"process"`` or ``"entity"``."""
    if scope not in ("process", "entity"):
        raise ConfigurationError(f"scope must be 'process' or 'entity', got {scope!r}",
                                 argument="scope")


def scope_processes(store: Store, process_id: str | None, scope: Scope
                    ) -> list[int | None] | None:
    """Process row ids a read may see: with ``scope="process"`` and a process set, that
    persona's own memories plus those captured with no process at all; else None (all)."""
    if scope != "process" or process_id is None:
        return None
    process_pk = store.find_pk("process", process_id)
    return [None] if process_pk is None else [process_pk, None]


@dataclasses.dataclass(frozen=True)
class _Pool:
    """A cold recall's lexical pool (``Recaller._pool``): memory ids (the database's order),
    document frequency by query word (PostgreSQL; else empty), indexed text by id, and
    (memory of the pool, memory it replies to, its message's text) (``Store.replied_by``)."""

    ids: list[int]
    df: dict[str, int]
    texts: dict[int, str]
    replies: list[tuple[int, int, str]]


@dataclasses.dataclass(frozen=True)
class _Ranked:
    """A cold recall's lexical ranking from the packed postings (``Recaller._from_postings``),
    and the blocks it was computed over (the dense side's must be the same)."""

    block_ids: tuple[int, ...]
    ranking: list[tuple[int, float]]


class _Later(Generic[T]):
    """A result of ``Recaller._beside``: computed on the helper thread (``future``), or on the
    caller's when first asked for (``fn``, run at most once)."""

    def __init__(self, future: Future[T] | None, fn: Callable[[], T]) -> None:
        self._future = future
        self._fn: Callable[[], T] | None = fn
        self._done: tuple[T] | None = None

    def __call__(self) -> T:
        if self._future is not None:
            return self._future.result()
        if self._done is None:
            fn, self._fn = self._fn, None
            assert fn is not None
            self._done = (fn(),)
        return self._done[0]

    def settle(self) -> None:
        """Wait for a helper thread's work nobody will read (an error is raised instead, or
        the recall took another path), its error dropped: the first one is raised. Work not
        started is not run."""
        if self._future is not None:
            with contextlib.suppress(Exception):
                self._future.result()


def _settle(later: _Later[Any] | None) -> None:
    if later is not None:
        later.settle()


def _two_connections(pool: Any) -> bool:
    """Whether ``pool`` gives a thread a second connection while it holds one: not a static
    or per-thread pool (one shared connection), nor a queue pool of one with no overflow (a
    second checkout would wait for the first)."""
    if type(pool).__name__ in ("StaticPool", "SingletonThreadPool"):
        return False
    size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", None)
    if callable(size) and isinstance(overflow, int):
        return overflow < 0 or size() + overflow >= 2
    return True


def fuse(rankings: Sequence[tuple[Sequence[int], float]], k: float) -> dict[int, float]:
    """Weighted reciprocal-rank fusion.

    Args:
        rankings: (ids best first, weight) per ranker.
        k: the RRF constant.

    Returns:
        id -> fused score in (0, 1] (1: first in every ranker with a weight).
    """
    best = sum(w for _, w in rankings) / (k + 1)
    out: dict[int, float] = {}
    if best <= 0:
        return out
    for ids, weight in rankings:
        for rank, i in enumerate(ids, start=1):
            out[i] = out.get(i, 0.0) + weight / (k + rank) / best
    return out


def one_per_turn(hits: Sequence[RecallHit]) -> list[RecallHit]:
    """One hit per source turn: a turn's episodic memory and the memories extracted from it
    are one thing said, so they take one slot, not several.

    Hits sharing their first source message form a group, ranked where its best member
    ranked. The group shows the clearer text: the one memory extracted from the turn when
    there is exactly one (third person: "The user is allergic to peanuts"), else the turn
    itself, which holds everything said (several partial facts, or none). ``score`` is the
    group's best, ``similarity`` and ``id`` are those of the memory shown, ``memory_ids`` all
    members (best first), ``source_message_ids`` the union, ``created_at`` the earliest,
    ``lexical`` the best BM25 score, ``why`` the best member's (it explains ``score``).
    Memories with no source message (``remember``) are groups of their own. Groups showing the
    same text (normalized: said in two turns, or remembered and also extracted) are one hit.

    Args:
        hits: best first.

    Returns:
        hits best first, one per group.
    """
    groups: dict[object, list[RecallHit]] = {}
    for h in hits:
        key: object = h.source_message_ids[0] if h.source_message_ids else ("memory", h.id)
        groups.setdefault(key, []).append(h)
    # the same text from two turns, or remembered and also extracted, is one memory to show
    merged: dict[str, list[RecallHit]] = {}
    for members in groups.values():  # dicts keep insertion order: best group first
        merged.setdefault(normalize_text(_shown(members).content), []).extend(members)
    out = []
    for members in merged.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        shown = _shown(members)
        sources = sorted({m for h in members for m in h.source_message_ids})
        out.append(dataclasses.replace(
            shown, score=members[0].score, memory_ids=tuple(h.id for h in members),
            source_message_ids=tuple(sources),
            created_at=min(h.created_at for h in members),
            mention_count=max(h.mention_count for h in members),
            lexical=max(h.lexical for h in members), why=members[0].why))
    return out


def diversify(hits: Sequence[RecallHit], conversation: dict[int, int], penalty: float,
              limit: int) -> list[RecallHit]:
    """The first ``limit`` of ``hits`` picked greedily: each pick is the best score minus
    ``penalty`` times the hits already picked from its conversation, so one conversation does
    not fill every slot (maximal marginal relevance over conversations). ``conversation`` maps
    a memory id to its conversation; a hit without one is never penalised. The rest follow in
    their order."""
    left = list(hits)
    picked: list[RecallHit] = []
    count: dict[int, int] = {}
    while left and len(picked) < limit:
        def adjusted(h: RecallHit) -> float:
            c = conversation.get(h.id)
            return h.score - penalty * count.get(c, 0) if c is not None else h.score
        best = max(range(len(left)), key=lambda i: (adjusted(left[i]), -i))
        h = left.pop(best)
        c = conversation.get(h.id)
        if c is not None:
            count[c] = count.get(c, 0) + 1
        picked.append(h)
    return picked + left


def _shown(members: Sequence[RecallHit]) -> RecallHit:
    """The member whose text a group shows: its one extracted memory, else its turn."""
    extracted = [h for h in members if h.kind != "episodic"]
    if len({normalize_text(h.content) for h in extracted}) == 1:
        return extracted[0]
    return next((h for h in members if h.kind == "episodic"), members[0])


def query_text(query: str, config: Config) -> str:
    """What recall reads of ``query``: its first ``config.embeddings_max_chars`` characters,
    the most the embedder is given (the model reads about 1,000 characters)."""
    return query[:config.embeddings_max_chars]


class Recaller:
    """Answers ``Memori.recall``; one per ``Memori`` instance."""

    def __init__(self, store: Store, embedder: Embedder, config: Config) -> None:
        self._store = store
        self._embedder = embedder
        self._config = config
        self.cache = IndexCache(store, config.recall_cache_bytes, config.recall_embeddings_limit,
                                config.recall_approximate_above, config.recall_stemming,
                                config.recall_reply_weight > 0)
        self._model_checked = False
        self._lock = threading.Lock()
        #: entity row id -> the thread building its index after a cold recall (pushdown)
        self._filling: dict[int, threading.Thread] = {}
        self._fallback_logged = False
        self._pgvector_logged: set[str] = set()
        #: entities whose packed vectors a cold recall found missing or out of date: packed
        #: by the background index build (``_fill``)
        self._repack: set[int] = set()
        #: the thread of a cold recall's lexical pool (``_beside``), made on first use; not
        #: where the pool cannot give a second connection (``_two_connections``)
        self._helper: ThreadPoolExecutor | None = None
        self._parallel = _two_connections(store.engine.pool)
        #: the latest queries' vectors (``QUERY_VECTORS`` of them): a model call and the
        #: context pipeline recall for the same message (``recall`` then ``context``)
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()

    def recall(self, query: str, limit: int, *, entity_id: str, process_id: str | None,
               scope: Scope, kinds: Sequence[str] | None = None,
               include_superseded: bool = False) -> list[RecallHit]:
        if not isinstance(query, str):
            raise ConfigurationError(f"query must be a str, got {type(query).__name__}",
                                     argument="query")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a positive int, got {limit!r}",
                                     argument="limit")
        check_scope(scope)
        if not query.strip():
            return []
        # recall reads the query's head, as much of it as the embedder is given: the vector,
        # BM25 and the speaker and date bonuses all see the same bounded text (a 10 MB prompt
        # costs no more than its first ``embeddings_max_chars`` characters)
        query = query_text(query, self._config)
        entity_pk = self._store.find_pk("entity", entity_id)
        if entity_pk is None:
            return []
        flt = Filter(scope_processes(self._store, process_id, scope), kinds, include_superseded)
        pushdown = self._pushdown(entity_pk)
        pool: _Later[_Pool | _Ranked | None] | None = None
        if pushdown and self._config.recall_lexical_weight > 0:
            # the lexical reads run while the query is embedded and the vectors are read
            # (they need the query's words only)
            k, pk = max(limit, self._config.recall_candidates), entity_pk
            pool = self._beside(lambda: self._lexical_reads(query, k, pk, flt))
        try:
            try:
                vector = self._embed_query(query)
            except ConfigurationError:
                raise
            except Exception as exc:
                raise RecallError(f"recall failed: {type(exc).__name__}: {exc}") from exc
            with self._store.read():  # one checkout for the version check, any load, details
                return self._search(vector, query, limit, entity_pk, flt, pushdown, pool)
        except EntityGone:
            # the cached row id was forgotten, maybe by another process that then made the
            # entity again under a new id: look it up once more
            self.cache.discard(entity_pk)
            entity_pk = self._store.find_pk("entity", entity_id)
            if entity_pk is None:
                return []
            pushdown = self._pushdown(entity_pk)
            with self._store.read():
                return self._search(vector, query, limit, entity_pk, flt, pushdown)
        finally:
            _settle(pool)  # waited for on every path: its connection back before returning

    def _pushdown(self, entity_pk: int) -> bool:
        """Whether this recall takes the candidate path (``Config.recall_pushdown``): the
        entity's index is not in the process (cold), it holds more than
        ``recall_pushdown_above`` memories, and the database has full-text search (else
        logged once, with the reason). Asked before the recall's reads begin: SQLite makes
        its FTS5 index here (once per database, when a large entity first needs it), which a
        read transaction begun before would not see.

        Raises:
            StorageError: the database failed.
        """
        cfg = self._config
        if not cfg.recall_pushdown or self.cache.cached(entity_pk):
            return False
        above = cfg.recall_pushdown_above
        if above > 0 and not self._store.holds_more_than(entity_pk, above):
            return False  # small: building its index costs no more than the candidate path
        reason = self._store.fulltext_missing()
        if reason is not None:
            if not self._fallback_logged:
                self._fallback_logged = True
                _log.warning("recall_pushdown: %s; recall uses the in-process index", reason)
            return False
        return True

    def _search(self, vector: np.ndarray, query: str, limit: int, entity_pk: int,
                flt: Filter, pushdown: bool = False,
                pool: _Later[_Pool | _Ranked | None] | None = None) -> list[RecallHit]:
        cfg = self._config
        k = max(limit, cfg.recall_candidates)
        filling: Callable[[int, int], None] | None = None
        try:
            found = self._from_database(vector, query, k, entity_pk, flt, pool) \
                if pushdown else None
            if found is not None:  # built after this recall's reads: the two share the cores
                filling = self._fill_later
            if found is None:
                index = self.cache.get(entity_pk, vector.shape[0])
                found = index.search(vector, query, k, flt, cfg.recall_reply_weight)
            dense, lexical, similarity = found
        except (ConfigurationError, StorageError):
            raise
        except Exception as exc:
            raise RecallError(f"recall failed: {type(exc).__name__}: {exc}") from exc
        threshold = cfg.recall_relevance_threshold
        bm25 = dict(lexical)
        rankings = [([i for i, _ in dense], 1.0)]
        if cfg.recall_lexical_weight > 0:
            rankings.append(([i for i, _ in lexical], cfg.recall_lexical_weight))
        fused = {i: f for i, f in fuse(rankings, cfg.recall_rrf_k).items()
                 if similarity[i] >= threshold}
        # hydrate more than asked: recency and mentions may reorder near the cut, and the
        # memories of one turn fold into one hit
        head = sorted(fused, key=lambda i: -fused[i])[:max(limit * 4, limit + 20)]
        details = self._store.memory_details(entity_pk, head)
        dense_rank = {i: n for n, (i, _) in enumerate(dense, start=1)}
        lexical_rank = {i: n for n, (i, _) in enumerate(lexical, start=1)}
        now = utcnow()
        hits = []
        for i in head:
            d = details.get(i)
            if d is None:  # removed since the index was loaded
                continue
            recency, mentions = self._bonus(d["created_at"], int(d["mention_count"]), now)
            score = fused[i] + (recency + mentions)
            why = RecallWhy(dense_rank=dense_rank.get(i), lexical_rank=lexical_rank.get(i),
                            fused=fused[i], recency=recency, mentions=mentions, context=0.0)
            hits.append(RecallHit(id=i, content=d["content"], kind=d["kind"], score=score,
                                  similarity=similarity[i], created_at=d["created_at"],
                                  source_message_ids=d["source_message_ids"],
                                  process_id=d["process"], mention_count=int(d["mention_count"]),
                                  memory_ids=(i,), lexical=bm25.get(i, 0.0),
                                  importance=float(d["importance"]), why=why))
        conversation: dict[int, int] = {}
        if cfg.recall_conversation_weight > 0 or cfg.recall_speaker_weight > 0 or \
                cfg.recall_conversation_diversity > 0 or cfg.recall_date_weight > 0:
            hits, conversation = self._context_bonus(hits, query, entity_pk)
        hits.sort(key=lambda h: (-h.score, -h.similarity, -h.id))
        shown = one_per_turn(hits)
        if cfg.recall_conversation_diversity > 0 and len(shown) > limit:
            shown = diversify(shown, conversation, cfg.recall_conversation_diversity, limit)
        if filling is not None:
            filling(entity_pk, int(vector.shape[0]))
        return shown[:limit]

    def _from_database(self, vector: np.ndarray, query: str, k: int, entity_pk: int,
                       flt: Filter, pool: _Later[_Pool | _Ranked | None] | None = None
                       ) -> Candidates | None:
        """Candidates of a cold recall (``Config.recall_pushdown``), from the database: dense,
        exact (``_dense``: from the packed vectors, pgvector or one read of every vector);
        lexical, computed on the helper thread (``_lexical_reads``) while this one embeds the
        query and reads the vectors: BM25 exactly as the in-process index scores it, from the
        packed postings of the query's terms (``_from_postings``), else a pool from the
        full-text index (``_pool``) scored with memori's BM25 (``_scored``); the similarity of
        each. ``_search`` then starts building the entity's index in the background, for its
        next recalls.

        Returns:
            None when the in-process index answers instead: its index was built meanwhile
            (warm path), or the vectors are of another dimension (the in-process path
            reports it). Whether to take this path at all is ``_pushdown``'s call.
        """
        if self.cache.cached(entity_pk):
            return None
        lexical_wanted = self._config.recall_lexical_weight > 0
        # the lexical side on a thread of its own, over a second connection (started by
        # ``recall`` before the query's embedding, else here)
        later = pool if pool is not None or not lexical_wanted else \
            self._beside(lambda: self._lexical_reads(query, k, entity_pk, flt))
        found_lexical: list[tuple[int, float]] = []
        try:
            found = self._dense(vector, k, entity_pk, flt)
            blocks = found[3] if found is not None else None
            got = later() if later is not None else None
            if isinstance(got, _Ranked) and blocks is not None and \
                    got.block_ids != blocks.block_ids:
                got = None  # packed again between the two threads' reads
            if isinstance(got, _Ranked):
                found_lexical = got.ranking
            elif lexical_wanted:  # the full-text pool, here when the postings could not answer
                found_lexical = self._scored(
                    query, k, got if isinstance(got, _Pool) else self._pool(
                        query, k, entity_pk, flt), self._corpus(query, entity_pk, blocks))
        except BaseException:
            _settle(later)  # its connection back before the first error is raised
            raise
        if found is None:
            return None  # the in-process path reports the mismatch
        dense, similarity, lookup, _ = found
        lexical: list[tuple[int, float]] = []
        if lexical_wanted:
            similarity.update(lookup([i for i, _ in found_lexical if i not in similarity]))
            # a candidate without a similarity was written after the vectors were read (the
            # next recall has it), removed meanwhile, or is of another model
            lexical = [(i, score) for i, score in found_lexical if i in similarity]
        return dense, lexical, similarity

    def _lexical_reads(self, query: str, k: int, entity_pk: int, flt: Filter
                       ) -> _Pool | _Ranked | None:
        """A cold recall's lexical side, on the helper thread: the ranking from the packed
        postings (``_from_postings``); with ``recall_stemming`` off (the postings hold stems)
        the full-text pool (``_pool``); None when the postings cannot answer (the caller
        gathers the pool then)."""
        if not self._config.recall_stemming:
            return self._pool(query, k, entity_pk, flt)
        return self._from_postings(query, k, entity_pk, flt)

    def _from_postings(self, query: str, k: int, entity_pk: int, flt: Filter
                       ) -> _Ranked | None:
        """The lexical ranking from the packed postings (``Store.packed_postings``: the rows
        of the query's terms' buckets, and every packed memory's id and length) and the
        memories past the blocks (their text, tokenized here; ``TAIL_MOST`` at most): BM25 of
        every memory holding a query term, computed as ``BM25Index.scores`` computes it (the
        same terms, lengths, document frequencies, memory count and mean length); the best
        the filter allows (``Store.allowed_memories``), ``LEXICAL_POOL`` x ``k`` of them; then
        the reply field read backwards (``_with_replies``). Best first, ties lower id first;
        at most ``k``.

        Returns:
            None when the postings cannot answer: no blocks, blocks without postings (packed
            before migration 8: packed again by the background build), blocks packed again
            while read, or more than ``TAIL_MOST`` memories past them.
        """
        store, cfg = self._store, self._config
        words = query_terms(query)
        postings = store.packed_postings(entity_pk, words)
        if isinstance(postings, str):
            if postings == "blocks without postings":
                with self._lock:
                    self._repack.add(entity_pk)
            return None
        tail = store.memory_texts(entity_pk, postings.last_id, TAIL_MOST + 1)
        if len(tail) > TAIL_MOST:
            return None
        tail_counts = term_counts([text for _, text in tail])
        lengths = np.concatenate([postings.lengths, np.asarray(
            [sum(c.values()) for c in tail_counts], dtype=np.float32)])
        rows = len(lengths)
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # the blocks' and the tail's
        for word in words:
            pos, tf = postings.found.get(word, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
            tail_tf = np.asarray([c.get(word, 0) for c in tail_counts], dtype=np.float32)
            at = np.flatnonzero(tail_tf)
            found[word] = (np.concatenate([pos, len(postings.ids) + at]),
                           np.concatenate([tf, tail_tf[at]]))
        score = score_postings(lengths, found)
        held = {word: pos for word, (pos, _) in found.items()}
        ids = np.concatenate([postings.ids, np.asarray([i for i, _ in tail], np.int64)])
        hit = np.flatnonzero(score > 0)
        ranked = hit[np.lexsort((ids[hit], -score[hit]))]  # best first, ties lower id first
        want = k * LEXICAL_POOL
        pool: list[int] = []
        done = 0
        while len(pool) < want and done < len(ranked):  # the filter, applied by the database
            batch = ranked[done:done + want + want // 4]
            done += len(batch)
            allowed = store.allowed_memories(entity_pk, ids[batch].tolist(), flt.processes,
                                             flt.kinds, flt.include_superseded)
            pool += [p for p in batch.tolist() if int(ids[p]) in allowed][:want - len(pool)]
        out = {int(ids[p]): float(score[p]) for p in pool}
        weight = cfg.recall_reply_weight
        replies = [r for r in store.replied_by(entity_pk, list(out), flt.processes, flt.kinds,
                                               flt.include_superseded) if r[0] in out] \
            if weight > 0 and out else []
        if replies:
            in_pool = set(pool)
            holding = {w: set(held[w].tolist()) & in_pool for w in words}
            counts = {int(ids[p]): Counter({w: 1 for w in words if p in holding[w]})
                      for p in pool}
            corpus = LexicalCorpus(rows, 0, {w: len(held[w]) for w in words}, {},
                                   *store.message_stats(entity_pk))
            out = self._with_replies(out, replies, counts, words, corpus, weight,
                                     cfg.recall_stemming)
        return _Ranked(postings.block_ids, sorted(out.items(), key=lambda x: (-x[1], x[0]))[:k])

    def _dense(self, vector: np.ndarray, k: int, entity_pk: int, flt: Filter
               ) -> tuple[list[tuple[int, float]], dict[int, float],
                          Callable[[list[int]], dict[int, float]], Packed | None] | None:
        """A cold recall's dense candidates, exact (best first, ties higher id first), the
        similarities known, and how to look up others by id: from pgvector
        (``recall_pgvector`` where its gate passes), else from the entity's packed 8-bit codes
        re-scored exactly (``recall.dense.exact_top_k``: a few hundred vectors read), else from
        one read of every vector the filter allows; and the packed vectors when read (their
        memory count and characters serve BM25). None: the vectors are of another
        dimension."""
        dim = int(vector.shape[0])
        store = self._store

        def lookup(ids: list[int]) -> dict[int, float]:
            return store.memory_similarities(entity_pk, vector, ids)

        if self._config.recall_pgvector:
            why = store.pgvector_missing(dim)
            if why is None:
                dense = store.nearest_memories(entity_pk, vector, k, flt)
                return dense, dict(dense), lookup, None
            if why not in self._pgvector_logged:  # each reason once: "being installed", ...
                self._pgvector_logged.add(why)
                _log.warning("recall_pgvector: %s; cold recall takes its dense candidates "
                             "from the packed vectors", why)
        blocks = store.packed_vectors(entity_pk, dim)
        if isinstance(blocks, Packed):
            tail_ids, tail_vectors = store.memory_vectors(
                entity_pk, flt.processes, flt.kinds, flt.include_superseded, blocks.last_id)
            if len(tail_ids) >= MIN_PACK:  # written around the packing (an import)
                self._repack.add(entity_pk)
            if len(tail_ids) and tail_vectors.shape[1] != dim:
                return None
            tail = zip(tail_ids.tolist(), (tail_vectors @ vector).tolist(), strict=True) \
                if len(tail_ids) else []

            def rescore(ids: np.ndarray) -> dict[int, float]:
                return store.memory_similarities(entity_pk, vector, ids, flt.processes,
                                                 flt.kinds, flt.include_superseded)

            exact = exact_top_k(blocks, vector, k, list(tail), rescore,
                                max(4 * k, min(len(blocks) // 4, RESCORED_MOST)))
            if exact is not None:
                return exact[0], exact[1], lookup, blocks
        else:
            self._repack.add(entity_pk)  # by the background index build
        ids, vectors = store.memory_vectors(entity_pk, flt.processes, flt.kinds,
                                            flt.include_superseded)
        if len(ids) and vectors.shape[1] != dim:
            return None
        if not len(ids):
            return [], {}, lookup, None
        sims = vectors @ np.asarray(vector, dtype=np.float32)
        n = min(k, len(ids))
        top = np.argpartition(-sims, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
        top = top[np.lexsort((-ids[top], -sims[top]))]  # best first; ties: higher id, as FAISS
        dense = [(int(ids[p]), float(sims[p])) for p in top]
        position = {int(i): p for p, i in enumerate(ids.tolist())}

        def read(wanted: list[int]) -> dict[int, float]:
            return {i: float(sims[position[i]]) for i in wanted if i in position}

        return dense, dict(dense), read, blocks if isinstance(blocks, Packed) else None

    def _beside(self, fn: Callable[[], T]) -> _Later[T]:
        """Start ``fn`` on the recaller's helper thread (a connection of its own) and return
        what waits for its result, raising what it raised; where the pool has one connection
        for every thread (``_two_connections``), ``fn`` runs on the caller's thread when
        first waited for."""
        if not self._parallel:
            return _Later(None, fn)
        with self._lock:
            if self._helper is None:
                self._helper = ThreadPoolExecutor(1, thread_name_prefix="memori-recall-lexical")
            future = self._helper.submit(fn)
        return _Later(future, fn)

    def _words(self, query: str) -> tuple[list[str], list[str], dict[str, str]]:
        """(the query's words, their BM25 terms, term -> the first word it came from)."""
        raw = tokenize(query, stem=False)
        stems = tokenize(query, self._config.recall_stemming)
        words: dict[str, str] = {}
        for word, term in zip(raw, stems, strict=True):
            words.setdefault(term, word)
        return raw, stems, words

    def _pool(self, query: str, k: int, entity_pk: int, flt: Filter) -> _Pool:
        """The lexical pool: ``LEXICAL_POOL`` x ``k`` memories from the full-text index
        (``Store.lexical_candidates``: the database's relevance; their indexed text and, on
        PostgreSQL, each word's document frequency read by the same statement), and the
        memories their messages answer (``Store.replied_by``, with ``recall_reply_weight``)."""
        raw, stems, _ = self._words(query)
        df: dict[str, int] = {}
        texts: dict[int, str] = {}
        pool = self._store.lexical_candidates(entity_pk, raw, flt.processes, flt.kinds,
                                              flt.include_superseded, k * LEXICAL_POOL, stems,
                                              df, texts)
        replies: list[tuple[int, int, str]] = []
        if pool and self._config.recall_reply_weight > 0:
            replies = self._store.replied_by(entity_pk, [i for i, _ in pool], flt.processes,
                                             flt.kinds, flt.include_superseded)
        return _Pool([i for i, _ in pool], df, texts, replies)

    def _corpus(self, query: str, entity_pk: int, blocks: Packed | None = None
                ) -> LexicalCorpus:
        """The entity's BM25 statistics (``Store.lexical_corpus``: memory count, characters,
        messages; document frequencies but on PostgreSQL, where ``_pool`` counts them; every
        memory's text up to ``EXACT_LENGTHS_BELOW`` memories); the count and characters of
        the packed memories from ``blocks`` (read by ``_dense``), when given."""
        cfg = self._config
        return self._store.lexical_corpus(
            entity_pk, self._words(query)[2], [], EXACT_LENGTHS_BELOW, cfg.recall_stemming,
            replies=cfg.recall_reply_weight > 0, count_df=False,
            packed_up_to=None if blocks is None else (blocks.last_id, len(blocks),
                                                      blocks.chars))

    def _scored(self, query: str, k: int, pool: _Pool, corpus: LexicalCorpus
                ) -> list[tuple[int, float]]:
        """The pool scored with the in-process BM25 (``score_texts``: its indexed text
        tokenized as the index does, document frequencies and the memory count of the entity
        from the database; the mean length exact up to ``EXACT_LENGTHS_BELOW`` memories, else
        the mean character count times the pool's tokens per character); then the reply field
        read backwards: a memory that a candidate's message answers gains
        ``recall_reply_weight`` times the candidate's score, as the in-process BM25 adds that
        weight times the score of its reply field (the answering message's text). Best first,
        ties lower id first (as the in-process BM25 ranks); at most ``k``."""
        if not pool.ids:
            return []
        cfg = self._config
        stem = cfg.recall_stemming
        words = self._words(query)[2]
        if pool.df:  # PostgreSQL: counted with the pool
            corpus = dataclasses.replace(corpus, df={
                **corpus.df, **{t: pool.df[w] for t, w in words.items() if w in pool.df}})
        ids = pool.ids
        texts = [pool.texts.get(i, corpus.texts.get(i, "")) for i in ids]
        counts = term_counts(texts, stem)
        tokens = [sum(c.values()) for c in counts]
        if corpus.rows <= EXACT_LENGTHS_BELOW:
            avg = mean_length(np.asarray([len(tokenize(t, stem)) for t in corpus.texts.values()],
                                         dtype=np.float32))
        else:
            chars = sum(len(t) for t in texts)
            avg = corpus.chars / max(corpus.rows, 1) * (sum(tokens) / chars if chars else 1.0)
        terms = query_terms(query, stem)
        scores = score_texts(counts, terms, corpus.rows, avg, corpus.df)
        own = {i: float(x) for i, x in zip(ids, scores.tolist(), strict=True) if x > 0}
        score = dict(own)
        weight = cfg.recall_reply_weight
        replies = [r for r in pool.replies if r[0] in own]
        if weight > 0 and replies:
            score = self._with_replies(score, replies, dict(zip(ids, counts, strict=True)),
                                       terms, corpus, weight, stem)
        return sorted(score.items(), key=lambda x: (-x[1], x[0]))[:k]

    @staticmethod
    def _with_replies(score: dict[int, float], replies: Sequence[tuple[int, int, str]],
                      counts: dict[int, Counter[str]], terms: Sequence[str],
                      corpus: LexicalCorpus, weight: float, stem: bool
                      ) -> dict[int, float]:
        """``score`` plus ``weight`` x the BM25 of each answered memory's reply field (the
        text of the message answering it, ``Store.replied_by`` of the pool's memories), as the
        in-process reply field scores: its document frequencies are the entity's of each term
        scaled by the pool's share of memories holding it whose message holds it too (exact
        when the pool holds every memory holding the term), its mean length the mean
        character count of the entity's messages times these messages' tokens per
        character."""
        texts = [text[:INDEXED_CHARS] for _, _, text in replies]
        said = term_counts(texts, stem)
        chars = sum(len(t) for t in texts)
        per_char = sum(sum(c.values()) for c in said) / chars if chars else 1.0
        avg = corpus.message_chars / max(corpus.messages, 1) * per_char
        df: dict[str, int] = {}
        for t in terms:
            pooled = sum(1 for c in counts.values() if t in c)
            held = sum(1 for c in said if t in c)
            df[t] = round(corpus.df.get(t, 0) * held / pooled) if pooled else held
        reply = score_texts(said, terms, corpus.rows, avg, df)
        out = dict(score)
        for (_, answered, _), x in zip(replies, reply.tolist(), strict=True):
            if x > 0:
                out[answered] = out.get(answered, 0.0) + weight * x
        return out

    def _fill_later(self, entity_pk: int, dim: int) -> None:
        """Build the entity's in-process index on a thread of its own, unless one is."""
        with self._lock:
            if entity_pk in self._filling:
                return
            thread = threading.Thread(target=self._fill, args=(entity_pk, dim),
                                      name=f"memori-recall-fill-{entity_pk}")
            self._filling[entity_pk] = thread
        thread.start()

    def _fill(self, entity_pk: int, dim: int) -> None:
        try:
            self.cache.get(entity_pk, dim)
            with self._lock:
                repack = entity_pk in self._repack
                self._repack.discard(entity_pk)
            if repack:
                self._store.pack_vectors(entity_pk, dim)
        except (StorageError, RuntimeError, ValueError) as exc:  # FAISS raises RuntimeError;
            # nothing is lost: the next recall reads the database again
            _log.warning("building the recall index of entity row %d failed: %s: %s",
                         entity_pk, type(exc).__name__, exc)
        finally:
            with self._lock:
                self._filling.pop(entity_pk, None)

    def wait_filled(self, timeout: float | None = None) -> bool:
        """Wait for the index builds started by cold recalls (``recall_pushdown``).

        Args:
            timeout: seconds in all; None waits as long as they take.

        Returns:
            True when none is left running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._filling.values())
            if not threads:
                return True
            for t in threads:
                t.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._filling

    def close(self) -> None:
        """Wait for the index builds cold recalls started (``wait_filled``), then stop the
        lexical candidates' thread: nothing of this recaller holds a connection after."""
        self.wait_filled()
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.shutdown(wait=True)

    def _context_bonus(self, hits: list[RecallHit], query: str, entity_pk: int
                       ) -> tuple[list[RecallHit], dict[int, int]]:
        """Scores plus the conversation prior and the named-participant bonus, and the
        conversation row id of each hit (by memory id) that has a source message.

        Conversation prior: a conversation several candidates come from is likelier the one
        the query is about; each candidate gains ``recall_conversation_weight`` times its
        conversation's summed relevance over the best conversation's. Named participant: when
        the query names a speaker of the candidates (a message's ``name``, as a whole word),
        the memories that speaker said gain ``recall_speaker_weight``. Named date: a memory
        said on a day the query names gains ``recall_date_weight``, one said in a month it
        names half of it. The sum of the three is each hit's ``why.context``.
        """
        cfg = self._config
        origin = self._store.message_origins(
            entity_pk, sorted({h.source_message_ids[0] for h in hits if h.source_message_ids}))
        of = {h.id: origin.get(h.source_message_ids[0]) if h.source_message_ids else None
              for h in hits}
        mass: dict[int, float] = {}
        for h in hits:
            o = of[h.id]
            if o is not None:
                mass[o[0]] = mass.get(o[0], 0.0) + h.score
        top = max(mass.values(), default=0.0)
        words = {w.lower() for w in _NAME_WORD.findall(query)}
        named = {o[1] for o in of.values() if o is not None and o[1]
                 and o[1].lower() in words}
        dates = named_dates(query) if cfg.recall_date_weight > 0 else []
        out = []
        for h in hits:
            o = of[h.id]
            bonus = 0.0
            if dates and h.created_at is not None:
                bonus += cfg.recall_date_weight * _date_match(dates, h.created_at)
            if o is not None and top > 0:
                bonus += cfg.recall_conversation_weight * mass[o[0]] / top
            if o is not None and o[1] in named:
                bonus += cfg.recall_speaker_weight
            if not bonus:
                out.append(h)
                continue
            why = None if h.why is None else dataclasses.replace(h.why, context=bonus)
            out.append(dataclasses.replace(h, score=h.score + bonus, why=why))
        return out, {i: o[0] for i, o in of.items() if o is not None}

    def essential(self, limit: int, *, entity_id: str, process_id: str | None, scope: Scope
                  ) -> list[RecallHit]:
        """The entity's essential memories (``conscious_ingest``): current, extracted (not
        episodic) memories rated important, most important first, then most mentioned, then
        newest; at most ``limit``. Not ranked by any query: ``score`` and ``similarity`` are 0.

        Raises:
            StorageError: the database failed.
        """
        processes = scope_processes(self._store, process_id, scope)
        none: list[dict[str, Any]] = []
        rows = self._store.for_entity(entity_id, lambda pk: self._store.essential_memories(
            pk, processes, limit), none)
        return [RecallHit(id=int(d["id"]), content=d["content"], kind=d["kind"], score=0.0,
                          similarity=0.0, created_at=d["created_at"],
                          source_message_ids=d["source_message_ids"], process_id=d["process"],
                          mention_count=int(d["mention_count"]), memory_ids=(int(d["id"]),),
                          importance=float(d["importance"]))
                for d in rows]

    def _bonus(self, created_at: datetime, mentions: int, now: datetime
               ) -> tuple[float, float]:
        """(recency bonus, mention bonus) of a memory; the score adds their sum."""
        cfg = self._config
        age_days = max((now - created_at).total_seconds() / 86400.0, 0.0)
        recency = 0.5 ** (age_days / cfg.recall_recency_half_life_days)
        return (cfg.recall_recency_weight * recency,
                cfg.recall_mention_weight * (1.0 - 1.0 / max(mentions, 1)))

    def reset_model_check(self) -> None:
        """Check the database's embedding model again on the next recall (after a re-embed),
        and embed every query again."""
        self._model_checked = False
        with self._vectors_lock:
            self._vectors.clear()

    def _embed_query(self, text: str) -> np.ndarray:
        with self._vectors_lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
        if vector is None:
            vector = self._embedder.embed([text])[0]
            vector.flags.writeable = False  # shared by every recall of this text
            with self._vectors_lock:
                self._vectors[text] = vector
                if len(self._vectors) > QUERY_VECTORS:
                    self._vectors.popitem(last=False)
        if not self._model_checked:
            self._store.check_embedding_model(self._embedder.name, self._embedder.dim)
            self._model_checked = True
        return vector
