"""Exact dense top-k of a cold recall from an entity's packed 8-bit codes.

The codes (``memori_core.storage.packed``) give every memory a score within a known margin of
its exact cosine similarity. ``exact_top_k`` re-scores exactly, from the stored float32
vectors, the memories with the highest upper bounds (score + margin), more of them each round,
until the k-th best exact similarity found is above every upper bound left: no memory left
can then enter the top k, so it is the exact top k (ties: higher id first, as the in-process
index and the full read rank), read from a few hundred vectors instead of every one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from memori_core.storage.packed import Packed, bounds

__all__ = ["FIRST_ROUND", "exact_top_k"]

#: memories re-scored in the first round, per candidate wanted (and at least 256); each
#: further round re-scores 4 times as many
FIRST_ROUND = 4


def exact_top_k(packed: Packed, query: np.ndarray, k: int,
                tail: Sequence[tuple[int, float]],
                rescore: Callable[[np.ndarray], dict[int, float]], most: int
                ) -> tuple[list[tuple[int, float]], dict[int, float]] | None:
    """The exact top ``k`` by cosine similarity over the packed memories and ``tail``.

    Args:
        packed: the entity's blocks (``Store.packed_vectors``).
        query: float32 array, shape (dim,), unit length.
        k: candidates wanted.
        tail: (id, exact similarity) of the memories past ``packed.last_id`` the recall's
            filter allows (``Store.memory_vectors(after_id=...)``).
        rescore: the exact similarity of memories by id (int64 array), those the filter
            allows only (``Store.memory_similarities``); a memory deleted meanwhile is left out.
        most: memories to re-score at most; past it None is returned (a filter that excludes
            most memories: reading every allowed vector then costs less).

    Returns:
        (the top ``k`` as (id, similarity), best first; every exact similarity computed, by
        id), or None past ``most``.
    """
    known = dict(tail)
    n = len(packed)
    if not n:
        return _top(known, k), known
    scores, margins = bounds(packed, query)
    upper = scores + margins
    done = np.zeros(n, dtype=np.bool_)
    m = min(n, max(FIRST_ROUND * k, 256))
    while True:
        take = np.arange(n) if m >= n else np.argpartition(-upper, m - 1)[:m]
        take = take[~done[take]]
        if int(done.sum()) + len(take) > most:
            return None
        known.update(rescore(packed.ids[take]))
        done[take] = True
        left = upper[~done]
        if not left.size:
            break
        if len(known) >= k:
            kth = np.partition(np.fromiter(known.values(), np.float64, len(known)),
                               len(known) - k)[len(known) - k]
            if float(left.max()) < kth:
                break
        m *= 4
    return _top(known, k), known


def _top(known: dict[int, float], k: int) -> list[tuple[int, float]]:
    """The best ``k`` of ``known``, best first, ties higher id first."""
    return sorted(known.items(), key=lambda x: (-x[1], -x[0]))[:k]
