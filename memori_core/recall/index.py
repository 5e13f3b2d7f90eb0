"""Per-entity recall indexes, cached in an LRU bounded in bytes.

Each entity's memories live in an ``EntityIndex``: a ``faiss.IndexIDMap2`` over ``IndexFlatIP``
keyed by the ``memori_entity_fact`` row id (vectors are unit length, so inner product is cosine
similarity and the search is exact over every memory, no cap), a BM25 index over the same rows,
and per-row process / kind / superseded columns for filtering. A cached index is brought up to date
before each search by one primary-key read (the entity's ``memory_version``): new rows are added
incrementally, supersession flags re-read, and removed rows rebuild it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from memori_core.augmentation.base import MEMORY_KINDS
from memori_core.recall.lexical import BM25Index
from memori_core.storage.store import MemoryRow, Store

__all__ = ["EntityIndex", "Filter", "IndexCache"]

_KIND_CODE = {k: i for i, k in enumerate(MEMORY_KINDS)}
#: below this many excluded rows a dense search over-fetches and drops them, instead of building
#: a FAISS id selector (which costs ~1 ms per 10k allowed ids)
_OVERFETCH_MAX = 256


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

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.lexical = BM25Index()
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
        return (self.count * (self.dim * 4 + 64) + self.lexical.nbytes + self._ids.nbytes
                + self._proc.nbytes + self._kind.nbytes + self._superseded.nbytes)

    def add(self, rows: Sequence[MemoryRow]) -> None:
        if not rows:
            return
        vectors = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
        with self.lock:
            self.index.add_with_ids(vectors.reshape(len(rows), -1).astype(np.float32),
                                    np.asarray([r.id for r in rows], dtype=np.int64))
            self.lexical.add([r.text for r in rows])
            self._ids.append([r.id for r in rows])
            self._proc.append([-1 if r.process_id is None else r.process_id for r in rows])
            self._kind.append([_KIND_CODE.get(r.kind, -1) for r in rows])
            self._superseded.append([r.superseded for r in rows])
            self.count += len(rows)
            self.max_id = max(self.max_id, max(r.id for r in rows))

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

    def search(self, query: np.ndarray, text: str, k: int, flt: Filter
               ) -> tuple[list[tuple[int, float]], list[tuple[int, float]], dict[int, float]]:
        """Candidates of both rankers.

        Args:
            query: float32 array, shape (dim,), unit length.
            text: the query text, for BM25.
            k: candidates wanted from each ranker.
            flt: which rows may be returned.

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
                params = faiss.SearchParameters(  # type: ignore[call-arg]
                    sel=faiss.IDSelectorBatch(ids[mask]))
                scores, found = self.index.search(q, k, params=params)
                dense = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True)
                         if i >= 0]
            bm25 = self.lexical.scores(text)
            if mask is not None:
                bm25[~mask] = 0.0
            top = np.argpartition(-bm25, min(k, len(bm25) - 1))[:k] if len(bm25) > k \
                else np.arange(len(bm25))
            top = top[bm25[top] > 0]
            top = top[np.argsort(-bm25[top], kind="stable")]
            lexical = [(int(ids[p]), float(bm25[p])) for p in top]
            similarity = dict(dense)
            missing = [i for i, _ in lexical if i not in similarity]
            if missing:
                vecs = np.vstack([self.index.reconstruct(i) for i in missing])
                similarity.update(zip(missing, (vecs @ q[0]).tolist(), strict=True))
        return dense, lexical, similarity


class IndexCache:
    """Entity indexes kept in memory, least recently used evicted beyond ``max_bytes``.

    Args:
        store: where memories are read from.
        max_bytes: upper bound on the summed ``EntityIndex.nbytes`` (``Config.recall_cache_bytes``).
        batch: rows read per query while loading (``Config.recall_embeddings_limit``); never a
            cap on what is indexed.
    """

    def __init__(self, store: Store, max_bytes: int, batch: int) -> None:
        self._store = store
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
            idx = self._fill(EntityIndex(dim), entity_pk)  # new, or rows were removed
        else:
            with idx.lock:
                if (idx.count, idx.max_id) != (count, max_id):
                    self._fill(idx, entity_pk)
                idx.set_superseded(self._store.superseded_ids(entity_pk))
            if idx.count < count:  # a lower id committed after a higher one: reload whole
                idx = self._fill(EntityIndex(dim), entity_pk)
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
        """Add the entity's rows with id above ``idx.max_id``, in batches."""
        for rows in self._store.memory_embeddings(entity_pk, idx.max_id, self._batch):
            idx.add(rows)
        return idx

    @property
    def nbytes(self) -> int:
        """Summed ``EntityIndex.nbytes`` of the cached indexes."""
        with self._lock:
            return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        while self._nbytes > self._max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._nbytes -= old.nbytes
