"""Exact vector search per entity with FAISS, cached in an LRU bounded in bytes.

Each entity's memories live in a ``faiss.IndexIDMap2`` over ``IndexFlatIP`` keyed by the
``memori_entity_fact`` row id; vectors are unit length, so inner product is cosine similarity and
the search is exact over every memory of the entity (no cap). A cached index is brought up to date
before each search by a cheap check (row count and highest id): new rows are added incrementally,
anything else (rows removed) rebuilds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import faiss
import numpy as np

from memori_core.storage.store import Store

__all__ = ["EntityIndex", "IndexCache"]


class EntityIndex:
    """All memory embeddings of one entity.

    Attributes:
        count: rows indexed.
        max_id: highest row id indexed.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.by_process: dict[int | None, list[int]] = {}
        self.count = 0
        self.max_id = 0
        self.version = -1  # the entity's memory_version this index matches
        self.lock = threading.RLock()

    @property
    def nbytes(self) -> int:
        """Approximate resident size in bytes (vectors, ids, process map)."""
        return self.count * (self.dim * 4 + 8 + 64)

    def add(self, ids: Sequence[int], processes: Sequence[int | None], vectors: np.ndarray
            ) -> None:
        with self.lock:
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.asarray(ids, dtype=np.int64))
            for i, p in zip(ids, processes, strict=True):
                self.by_process.setdefault(p, []).append(int(i))
            self.count += len(ids)
            self.max_id = max(self.max_id, max(ids, default=0))

    def search(self, query: np.ndarray, k: int, processes: Sequence[int | None] | None
               ) -> list[tuple[int, float]]:
        """Top-``k`` (row id, cosine similarity), best first.

        Args:
            query: float32 array, shape (dim,), unit length.
            processes: restrict to memories of these process row ids (None in the list means
                memories captured without a process); None searches all.
        """
        with self.lock:
            if processes is None:
                k = min(k, self.count)
                params = None
            else:
                allowed = [i for p in processes for i in self.by_process.get(p, ())]
                k = min(k, len(allowed))
                params = faiss.SearchParameters(  # type: ignore[call-arg]
                    sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
            if k <= 0:
                return []
            # one query is cheapest single-threaded; OpenMP workers spinning after a search
            # also steal the cores the query embedding needs (measured: 2-4x slower recall).
            # This sets the calling thread's OpenMP team size only.
            faiss.omp_set_num_threads(1)
            scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), k,
                                            params=params)
        return [(int(i), float(sc)) for i, sc in zip(ids[0], scores[0], strict=True) if i >= 0]


class IndexCache:
    """Entity indexes kept in memory, least recently used evicted beyond ``max_bytes``.

    Args:
        store: where memories are read from.
        dim: embedding dimension.
        max_bytes: upper bound on the summed ``EntityIndex.nbytes`` (``Config.recall_cache_bytes``).
        batch: rows read per query while loading (``Config.recall_embeddings_limit``).
    """

    def __init__(self, store: Store, max_bytes: int, batch: int) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._batch = batch
        self._entries: OrderedDict[int, EntityIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, entity_pk: int, dim: int) -> EntityIndex:
        """The entity's index, brought up to date with the database."""
        version = self._store.memory_version(entity_pk)  # read first: later writes bump it
        with self._lock:
            idx = self._entries.get(entity_pk)
            if idx is not None:
                self._entries.move_to_end(entity_pk)
        if idx is not None and idx.version == version and idx.dim == dim:
            return idx
        count, max_id = self._store.memory_counts(entity_pk)
        if idx is None or idx.dim != dim or max_id < idx.max_id or count < idx.count:
            idx = self._fill(EntityIndex(dim), entity_pk)  # new, or rows were removed
        elif (idx.count, idx.max_id) != (count, max_id):
            with idx.lock:
                self._fill(idx, entity_pk)
            if idx.count < count:  # a lower id committed after a higher one: reload whole
                idx = self._fill(EntityIndex(dim), entity_pk)
        idx.version = version
        with self._lock:
            self._entries[entity_pk] = idx
            self._entries.move_to_end(entity_pk)
            self._evict()
        return idx

    def _fill(self, idx: EntityIndex, entity_pk: int) -> EntityIndex:
        """Add the entity's rows with id above ``idx.max_id``, in batches."""
        for rows in self._store.memory_embeddings(entity_pk, idx.max_id, self._batch):
            vecs = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
            idx.add([r.id for r in rows], [r.process_id for r in rows],
                    vecs.reshape(len(rows), -1))
        return idx

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(i.nbytes for i in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        total = sum(i.nbytes for i in self._entries.values())
        while total > self._max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            total -= old.nbytes
