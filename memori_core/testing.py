"""Test doubles that ship with memori: deterministic, instant, no model download.

``HashEmbedder`` maps texts to unit vectors by hashing their words, so texts that share words are
similar and identical texts are identical vectors. Use it in your own tests::

    mem = Memori(conn="sqlite:///test.db", embedder=HashEmbedder())
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from memori_core.embeddings.base import l2_normalize

__all__ = ["HashEmbedder"]

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Bag-of-words feature hashing: each word adds 1 to two of ``dim`` buckets, so texts
    without shared words are near-orthogonal, and two different words only look identical when
    both of their buckets collide.

    Args:
        dim: vector length (default 256).
        name: model name recorded in the database.
    """

    def __init__(self, dim: int = 256, name: str = "memori-hash") -> None:
        self._dim = dim
        self.name = f"{name}-{dim}"
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array, shape (len(texts), dim), L2-normalised (all-zero for wordless text)."""
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[row, h % self._dim] += 1.0
                out[row, (h >> 32) % self._dim] += 1.0
        return l2_normalize(out)
