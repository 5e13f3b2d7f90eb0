"""Per-entity recall indexes, cached in an LRU bounded in bytes.

Each entity's memories live in an ``EntityIndex``: a ``faiss.IndexIDMap2`` over ``IndexFlatIP``
keyed by the ``memori_entity_fact`` row id (vectors are unit length, so inner product is cosine
similarity and the search is exact over every memory, no cap), a BM25 index over the same rows,
and per-row process / kind / superseded columns for filtering. A cached index is brought up to date
before each search by one primary-key read (the entity's ``memory_version``): new rows are added
incrementally, supersession flags re-read, and removed rows rebuild it.

Above ``Config.recall_approximate_above`` rows an entity's dense index may switch to 8-bit scalar
quantisation with an exact re-rank (``faiss.IndexRefineFlat``: the quantised scan proposes
``_REFINE_FACTOR`` x k candidates, their float32 vectors order them). It switches only when its
measured top-10 agreement with the exact search, on probe queries drawn from the entity's own
vectors, is at least ``MIN_AGREEMENT`` (0.99); otherwise it stays exact and measures again when
the entity has doubled. Half the memory traffic per query: about 2x faster at 100k memories.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from memori_core.augmentation.base import INDEXED_CHARS, MEMORY_KINDS
from memori_core.recall.lexical import BM25Index
from memori_core.storage.store import MemoryBlock, MemoryRow, Store

__all__ = ["EntityIndex", "Filter", "IndexCache", "Neighbours"]

#: (message id, speaker, message text, previous message id, next message as (speaker, text)):
#: ``Store.neighbour_messages`` of one episodic memory
Neighbours = tuple[int, str, str, int | None, tuple[str, str] | None]

_KIND_CODE = {k: i for i, k in enumerate(MEMORY_KINDS)}
#: below this many excluded rows a dense search over-fetches and drops them, instead of building
#: a FAISS id selector (which costs ~1 ms per 10k allowed ids)
_OVERFETCH_MAX = 256
#: an approximate index takes over only at or above this measured agreement with exact search
MIN_AGREEMENT = 0.99
#: candidates the quantised scan proposes per hit wanted, re-ranked exactly
_REFINE_FACTOR = 4.0
_PROBES = 64
_PROBE_K = 10


@dataclass(frozen=True)
class Filter:
    """Which rows a search may return.

    Attributes:
        processes: process row ids allowed (None in the list: memories without a process);
            None allows all.
        kinds: memory kinds allowed; None allows all.
        include_superseded: also rows replaced by a newer memory on their slot.
    """

    processes: Sequence[int | None] | None = None
    kinds: Sequence[str] | None = None
    include_superseded: bool = False


class _Growing:
    """A 1-d numpy column appended in chunks, concatenated on read."""

    def __init__(self, dtype: type) -> None:
        self._dtype = dtype
        self._full: np.ndarray = np.empty(0, dtype=dtype)
        self._chunks: list[np.ndarray] = []

    def append(self, values: Sequence[object] | np.ndarray) -> None:
        self._chunks.append(np.asarray(values, dtype=self._dtype))

    @property
    def values(self) -> np.ndarray:
        if self._chunks:
            self._full = np.concatenate([self._full, *self._chunks])
            self._chunks = []
        return self._full

    @property
    def nbytes(self) -> int:
        return self._full.nbytes + sum(c.nbytes for c in self._chunks)


class EntityIndex:
    """All memories of one entity: vectors (FAISS), BM25 postings and filter columns.

    Attributes:
        count: rows indexed.
        max_id: highest row id indexed.
        version: the entity's ``memory_version`` this index matches.
    """

    def __init__(self, dim: int, approximate_above: int = 0, stem: bool = True) -> None:
        self.dim = dim
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        #: rows at which to try the approximate index (0: never); doubled after a failed try
        self._approximate_at = approximate_above
        #: measured agreement of the approximate index in use (None: the search is exact)
        self.agreement: float | None = None
        self.lexical = BM25Index(stem=stem)
        #: the reply field: for an episodic memory, the next message of its conversation when
        #: another speaker said it (row-aligned with ``lexical``; filled when the reply comes)
        self.reply = BM25Index(stem=stem)
        self._said: dict[int, tuple[int, str]] = {}  # message id -> (row position, speaker)
        self._replied: set[int] = set()  # row positions whose reply field is filled
        self._ids = _Growing(np.int64)
        self._proc = _Growing(np.int64)  # -1: no process
        self._kind = _Growing(np.int8)
        self._superseded = _Growing(np.bool_)
        self.count = 0
        self.max_id = 0
        self.version = -1
        self.lock = threading.RLock()

    @property
    def nbytes(self) -> int:
        """Resident size in bytes: vectors, FAISS ids and their reverse map (~56 bytes per id),
        BM25 postings, filter columns."""
        codes = self.dim if self.agreement is not None else 0  # the 8-bit codes
        return (self.count * (self.dim * 4 + codes + 64) + self.lexical.nbytes + self._ids.nbytes
                + self.reply.nbytes + 120 * len(self._said)
                + self._proc.nbytes + self._kind.nbytes + self._superseded.nbytes)

    def add(self, rows: Sequence[MemoryRow],
            neighbours: Mapping[int, Neighbours] | None = None) -> None:
        """Append rows (``add_block`` of their ``MemoryBlock``)."""
        if rows:
            self.add_block(MemoryBlock.of_rows(rows), neighbours)

    def add_block(self, block: MemoryBlock,
                  neighbours: Mapping[int, Neighbours] | None = None) -> None:
        """Append a block of rows (ids above ``max_id``); ``neighbours``
        (``Store.neighbour_messages`` of their episodic memories) fills the reply field: a
        turn's BM25 text gains the message answering it, when another speaker said it, as soon
        as both are indexed (no re-embedding)."""
        n = len(block)
        if not n:
            return
        with self.lock:
            self.index.add_with_ids(np.ascontiguousarray(block.vectors, dtype=np.float32),
                                    block.ids)
            self.lexical.add(block.texts)
            self._ids.append(block.ids)
            self._proc.append(block.process_ids)
            self._kind.append([_KIND_CODE.get(k, -1) for k in block.kinds])
            self._superseded.append(block.superseded)
            self.reply.add([""] * n)
            if neighbours:
                self._link_replies(block.ids.tolist(), neighbours)
            self.count += n
            self.max_id = max(self.max_id, int(block.ids.max()))
            if self.agreement is None and 0 < self._approximate_at <= self.count:
                self._try_approximate()

    def _link_replies(self, ids: Sequence[int],
                      neighbours: Mapping[int, Neighbours]) -> None:
        for pos, i in enumerate(ids, start=self.count):
            found = neighbours.get(i)
            if found is None:
                continue
            message, speaker, text, previous, following = found
            self._said[message] = (pos, speaker)
            if following is not None and following[0] != speaker and pos not in self._replied:
                self.reply.add_to(pos, following[1][:INDEXED_CHARS])
                self._replied.add(pos)
            before = self._said.get(previous) if previous is not None else None
            if before is not None and before[1] != speaker and before[0] not in self._replied:
                self.reply.add_to(before[0], text[:INDEXED_CHARS])
                self._replied.add(before[0])

    def _try_approximate(self) -> None:
        """Build the quantised index beside the exact one; keep it if it agrees enough."""
        vectors = self._vectors()
        ids = self._ids.values
        base = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
        refine = faiss.IndexRefineFlat(base)
        refine.k_factor = _REFINE_FACTOR
        refine.train(vectors)
        candidate = faiss.IndexIDMap2(refine)
        candidate.add_with_ids(vectors, ids)
        # probes like queries: mixtures of two stored memories plus noise, unit length
        rng = np.random.default_rng(self.count)
        pick = rng.integers(0, self.count, size=(_PROBES, 2))
        probes = vectors[pick[:, 0]] + vectors[pick[:, 1]] + rng.standard_normal(
            (_PROBES, self.dim)).astype(np.float32) / np.sqrt(self.dim)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        faiss.omp_set_num_threads(1)
        _, exact = self.index.search(probes, _PROBE_K)
        _, approx = candidate.search(probes, _PROBE_K)
        agreement = float(np.mean([len(set(a) & set(e)) / _PROBE_K
                                   for a, e in zip(approx.tolist(), exact.tolist(), strict=True)]))
        if agreement >= MIN_AGREEMENT:
            self.index, self.agreement = candidate, agreement
        else:
            self._approximate_at = 2 * self.count

    def _vectors(self) -> np.ndarray:
        """The indexed vectors in row-position order, without a copy: float32 array, shape
        (count, dim). Valid until the next ``add``; call under ``lock``."""
        inner: Any = faiss.downcast_index(self.index.index)
        flat: Any = inner if self.agreement is None else faiss.downcast_index(inner.refine_index)
        raw: np.ndarray = faiss.rev_swig_ptr(flat.get_xb(), self.count * self.dim)
        return raw.reshape(self.count, self.dim)

    def set_superseded(self, ids: Sequence[int]) -> None:
        """Replace the superseded flags: exactly ``ids`` are superseded."""
        with self.lock:
            flags = np.isin(self._ids.values, np.asarray(ids, dtype=np.int64))
            self._superseded = _Growing(np.bool_)
            self._superseded.append(flags)

    def _mask(self, flt: Filter) -> np.ndarray | None:
        """Allowed rows (bool, shape (count,)), or None when every row is."""
        mask = None
        if flt.processes is not None:
            allowed = np.asarray([-1 if p is None else p for p in flt.processes], dtype=np.int64)
            mask = np.isin(self._proc.values, allowed)
        if flt.kinds is not None:
            codes = np.asarray([_KIND_CODE[k] for k in flt.kinds], dtype=np.int8)
            kinds = np.isin(self._kind.values, codes)
            mask = kinds if mask is None else mask & kinds
        if not flt.include_superseded:
            current = ~self._superseded.values
            if not current.all():
                mask = current if mask is None else mask & current
        return mask

    def search(self, query: np.ndarray, text: str, k: int, flt: Filter,
               reply_weight: float = 0.0
               ) -> tuple[list[tuple[int, float]], list[tuple[int, float]], dict[int, float]]:
        """Candidates of both rankers.

        Args:
            query: float32 array, shape (dim,), unit length.
            text: the query text, for BM25.
            k: candidates wanted from each ranker.
            flt: which rows may be returned.
            reply_weight: weight of the reply field's BM25 added to the row's own.

        Returns:
            (dense: top-``k`` (row id, cosine similarity) best first; lexical: top-``k``
            (row id, BM25 score > 0) best first; cosine similarity of every candidate).
        """
        with self.lock:
            mask = self._mask(flt)
            ids = self._ids.values
            allowed = self.count if mask is None else int(mask.sum())
            k = min(k, allowed)
            if k <= 0:
                return [], [], {}
            # one query is cheapest single-threaded; OpenMP workers spinning after a search
            # also steal the cores the query embedding needs (measured: 2-4x slower recall).
            # This sets the calling thread's OpenMP team size only.
            faiss.omp_set_num_threads(1)
            q = query.reshape(1, -1).astype(np.float32)
            excluded = self.count - allowed
            if mask is None or excluded <= _OVERFETCH_MAX:
                scores, found = self.index.search(q, min(self.count, k + excluded))
                dense = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True)
                         if i >= 0]
                if mask is not None and excluded:
                    drop = set(ids[~mask].tolist())
                    dense = [(i, s) for i, s in dense if i not in drop][:k]
            else:
                if self.agreement is None:
                    params = faiss.SearchParameters(  # type: ignore[call-arg]
                        sel=faiss.IDSelectorBatch(ids[mask]))
                else:  # the selector reaches the quantised index untranslated: row positions
                    bitmap = np.packbits(mask, bitorder="little")
                    selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
                    params = faiss.IndexRefineSearchParameters(  # type: ignore[call-arg]
                        k_factor=_REFINE_FACTOR,
                        base_index_params=faiss.SearchParameters(sel=selector))  # type: ignore[call-arg]
                scores, found = self.index.search(q, k, params=params)
                dense = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True)
                         if i >= 0]
            bm25 = self.lexical.scores(text)
            if reply_weight > 0 and self._replied:
                bm25 += np.float32(reply_weight) * self.reply.scores(text)
            if mask is not None:
                bm25[~mask] = 0.0
            top = np.argpartition(-bm25, min(k, len(bm25) - 1))[:k] if len(bm25) > k \
                else np.arange(len(bm25))
            top = top[bm25[top] > 0]
            top = top[np.argsort(-bm25[top], kind="stable")]
            lexical = [(int(ids[p]), float(bm25[p])) for p in top]
            similarity = dict(dense)
            missing = [p for p in top.tolist() if int(ids[p]) not in similarity]
            if missing:  # BM25 gives row positions: their vectors are rows of the flat index
                sims = self._vectors()[missing] @ q[0]
                similarity.update(zip(ids[missing].tolist(), sims.tolist(), strict=True))
        return dense, lexical, similarity


class IndexCache:
    """Entity indexes kept in memory, least recently used evicted beyond ``max_bytes``.

    Args:
        store: where memories are read from.
        max_bytes: upper bound on the summed ``EntityIndex.nbytes`` (``Config.recall_cache_bytes``).
        batch: rows read per query while loading (``Config.recall_embeddings_limit``); never a
            cap on what is indexed.
        approximate_above: rows from which an entity index may turn approximate
            (``Config.recall_approximate_above``; 0: never).
        stem: BM25 matches word stems (``Config.recall_stemming``).
        replies: fill the reply field (``Config.recall_reply_weight`` > 0).
    """

    def __init__(self, store: Store, max_bytes: int, batch: int,
                 approximate_above: int = 0, stem: bool = True, replies: bool = True) -> None:
        self._store = store
        self._stem = stem
        self._replies = replies
        self._approximate_above = approximate_above
        self._max_bytes = max_bytes
        self._batch = batch
        self._entries: OrderedDict[int, EntityIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._nbytes = 0  # summed nbytes of the entries, kept current by get()

    def get(self, entity_pk: int, dim: int) -> EntityIndex:
        """The entity's index, brought up to date with the database."""
        version = self._store.memory_version(entity_pk)  # read first: later writes bump it
        with self._lock:
            idx = self._entries.get(entity_pk)
            if idx is not None:
                self._entries.move_to_end(entity_pk)
        if idx is not None and idx.version == version and idx.dim == dim:
            return idx
        old = idx
        before = 0 if old is None else old.nbytes
        count, max_id = self._store.memory_counts(entity_pk)
        if idx is None or idx.dim != dim or max_id < idx.max_id or count < idx.count:
            idx = self._fill(EntityIndex(dim, self._approximate_above, self._stem), entity_pk)  # new, or rows were removed
        else:
            with idx.lock:
                if (idx.count, idx.max_id) != (count, max_id):
                    self._fill(idx, entity_pk)
                idx.set_superseded(self._store.superseded_ids(entity_pk))
            if idx.count < count:  # a lower id committed after a higher one: reload whole
                idx = self._fill(EntityIndex(dim, self._approximate_above, self._stem), entity_pk)
        idx.version = version
        with self._lock:
            if old is not None and self._entries.get(entity_pk) is old:
                self._nbytes -= before
            elif entity_pk in self._entries:  # another thread replaced it meanwhile
                self._nbytes -= self._entries[entity_pk].nbytes
            self._entries[entity_pk] = idx
            self._nbytes += idx.nbytes
            self._entries.move_to_end(entity_pk)
            self._evict()
        return idx

    def _fill(self, idx: EntityIndex, entity_pk: int) -> EntityIndex:
        """Add the entity's rows with id above ``idx.max_id``: read in one query (the
        vectors decoded at once), indexed in batches of ``batch`` rows."""
        block = self._store.memory_block(entity_pk, idx.max_id)  # one read, all rows
        for start in range(0, len(block), self._batch):
            rows = block.slice(start, start + self._batch)
            episodic = [int(i) for i, k in zip(rows.ids, rows.kinds, strict=True)
                        if k == "episodic"]
            idx.add_block(rows, self._store.neighbour_messages(entity_pk, episodic)
                          if self._replies and episodic else None)
        return idx

    def cached(self, entity_pk: int) -> bool:
        """Whether the entity's index is in the cache (maybe behind the database)."""
        with self._lock:
            return entity_pk in self._entries

    @property
    def nbytes(self) -> int:
        """Summed ``EntityIndex.nbytes`` of the cached indexes."""
        with self._lock:
            return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def discard(self, entity_pk: int) -> None:
        """Drop the entity's index, if cached (its rows were deleted: ``Memori.forget``)."""
        with self._lock:
            idx = self._entries.pop(entity_pk, None)
            if idx is not None:
                self._nbytes -= idx.nbytes

    def _evict(self) -> None:
        while self._nbytes > self._max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._nbytes -= old.nbytes
