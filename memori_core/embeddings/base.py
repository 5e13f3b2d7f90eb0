"""The embedder protocol and the byte format of stored embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "from_bytes", "l2_normalize"]


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into unit vectors.

    Attributes:
        name: model identifier recorded with the database (a mismatch is reported).
        dim: vector length.
    """

    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``.

        Returns:
            float32 array, shape (len(texts), dim), each row L2-normalised.
        """
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero. float32 array, same shape."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def from_bytes(raw: bytes, dim: int) -> np.ndarray:
    """Decode a stored embedding (float32 little-endian). float32 array, shape (dim,)."""
    vec = np.frombuffer(raw, dtype="<f4")
    if vec.shape[0] != dim:
        raise ValueError(f"stored embedding has {vec.shape[0]} values, expected {dim}")
    return vec.astype(np.float32, copy=False)
