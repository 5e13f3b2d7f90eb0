"""ONNX Runtime inference for a local sentence-transformers model: the same vectors, faster.

A model is exported once with ``torch.onnx`` (its transformer and mean or CLS pooling; vectors are
L2-normalised by the caller) into a cache directory keyed by a fingerprint of the
model's files; the export is checked against the torch model on probe texts and used only when the
two agree to 1e-4 per component. Later processes load the cached export without importing torch.

Cache: ``$MEMORI_CACHE_DIR/onnx`` (default ``~/.cache/memori/onnx``, ``$XDG_CACHE_HOME`` honoured).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxEncoder", "cache_dir", "export", "fingerprint"]

_log = logging.getLogger(__name__)
_META = "memori_onnx.json"
_FORMAT = 1
#: largest component difference from the torch model accepted on the probe texts
_TOLERANCE = 1e-4
#: texts per ONNX Runtime pass at most: bigger padded batches outgrow the CPU caches (measured
#: here: CPU time per text 20-25 % higher at 64 than at 16)
MAX_BATCH = 16
_PROBES = ["hello", "The user lives in Lisbon and runs 30 minutes flat.",
           "Prefer low-carb dinners on weekdays; what did I say about my 5K goal in June?"]


def cache_dir() -> Path:
    """Where exports are kept: ``$MEMORI_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/memori/onnx``,
    else ``~/.cache/memori/onnx``."""
    root = os.environ.get("MEMORI_CACHE_DIR")
    if root:
        return Path(root) / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "memori" / "onnx"


def fingerprint(model_dir: Path) -> str:
    """Hex digest of a model directory: every file's relative path, size and mtime, plus the
    export format. A changed or reinstalled model gets a new export."""
    h = hashlib.sha256(f"memori-onnx-{_FORMAT}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(model_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]



@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Hide a library logger's messages below ERROR for a while (the exporter logs one
    warning per torchvision operator it cannot register: noise for a text model)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

class OnnxEncoder:
    """An exported model: tokenizer + ONNX Runtime session; no torch.

    A call that fits one pass (a recall's query) runs on a session with one intra-op thread per
    core, without spinning (threads sleep between calls, so concurrent callers are not starved);
    measured here: 9.8 ms instead of 14.5 ms for a LoCoMo turn. Longer lists are split into
    passes run at once on ``workers`` threads, each on a single-threaded session (1.8x the
    throughput of one thread; a shared intra-op pool did worse).

    Args:
        path: an export directory written by ``export``.
        workers: passes of one ``encode`` call run in parallel (default: the CPU count).

    Raises:
        ImportError: when onnxruntime or tokenizers is not installed.
        OSError, ValueError: when the export is missing or unreadable.
    """

    def __init__(self, path: Path, workers: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((path / _META).read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} holds export format {meta.get('format')!r}, "
                             f"expected {_FORMAT}")
        self.dim = int(meta["dim"])
        self._inputs: list[str] = list(meta["inputs"])
        self._lower = bool(meta["lowercase"])
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(meta["max_seq_length"]))
        self._tokenizer.no_padding()
        self._pad_id = int(meta["pad_id"])
        self._workers = max(1, workers or os.cpu_count() or 1)

        def session(threads: int) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(path / "model.onnx"), options,
                                        providers=["CPUExecutionProvider"])

        self._session = session(1)
        self._query_session = session(self._workers) if self._workers > 1 else self._session
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """float32 array, shape (len(texts), dim), as the model's own pipeline outputs it.

        Texts are batched by length (as sentence-transformers does) so padding stays small,
        at most ``min(batch_size, MAX_BATCH)`` per pass.
        """
        batch_size = max(1, min(batch_size, MAX_BATCH))
        items = [t.lower() for t in texts] if self._lower else list(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        if len(chunks) == 1 or self._workers == 1:
            session = self._query_session if len(chunks) == 1 else self._session
            for chunk in chunks:
                out[chunk] = self._run([items[i] for i in chunk], session)
            return out
        results = self._executor().map(
            lambda c: self._run([items[i] for i in c], self._session), chunks)
        for chunk, vectors in zip(chunks, results, strict=True):
            out[chunk] = vectors
        return out

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="memori-onnx")
            return self._pool

    def _run(self, batch: list[str], session: Any) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(batch)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = e.attention_mask
            types[row, :n] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        result = session.run(None, {name: feeds[name] for name in self._inputs})[0]
        return np.asarray(result, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def export(model: Any, target: Path) -> Path:
    """Export a loaded ``SentenceTransformer`` to ``target`` (written atomically) and check it.

    Returns:
        ``target``.

    Raises:
        ImportError: when torch.onnx's exporter needs a package that is missing (onnxscript).
        ValueError: when the model is not a plain transformer pipeline, or the export disagrees
            with the torch model on the probe texts.
    """
    import torch

    first = model[0]
    tokenizer: Any = getattr(first, "tokenizer", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kinds = [type(module).__name__ for module in model]
    pooling = getattr(model[1], "pooling_mode", None) if len(kinds) > 1 else None
    if backend is None or not hasattr(first, "auto_model") or kinds[0] != "Transformer" or \
            kinds[1:2] != ["Pooling"] or pooling not in ("mean", "cls") or \
            any(k != "Normalize" for k in kinds[2:]):
        raise ValueError(f"only Transformer + mean/cls Pooling (+ Normalize) models with a fast "
                         f"tokenizer are exported, not {kinds} (pooling {pooling!r})")
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids")
              if n in tokenizer.model_input_names]
    if inputs[:2] != ["input_ids", "attention_mask"]:
        raise ValueError(f"unsupported model inputs {tokenizer.model_input_names}")

    class _Pipeline(torch.nn.Module):
        """The transformer and its pooling; normalisation is done by the caller."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = first.auto_model

        def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            return self.pool(hidden, attention_mask)

    class _TypedPipeline(_Pipeline):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,  # type: ignore[override]
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids)[0]
            return self.pool(hidden, attention_mask)

    sample = tokenizer(_PROBES[1:], padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in inputs)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        started = time.perf_counter()
        with warnings.catch_warnings(), torch.no_grad(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                (_TypedPipeline() if len(inputs) == 3 else _Pipeline()).eval(), args, dynamo=True, input_names=inputs,
                output_names=["sentence_embedding"], verbose=False, report=False,
                dynamic_shapes=tuple({0: batch, 1: seq} for _ in inputs))
            assert program is not None
            program.save(str(tmp / "model.onnx"), external_data=False)
        backend.save(str(tmp / "tokenizer.json"))
        want = _unit(np.asarray(model.encode(_PROBES, convert_to_numpy=True,
                                             show_progress_bar=False), dtype=np.float32))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        meta = {"format": _FORMAT, "dim": int(want.shape[1]),
                "inputs": inputs, "max_seq_length": int(model.max_seq_length),
                "lowercase": bool(getattr(first, "do_lower_case", False)), "pad_id": int(pad_id)}
        (tmp / _META).write_text(json.dumps(meta))
        encoder = OnnxEncoder(tmp, workers=1)
        got = encoder.encode(_PROBES, batch_size=2)
        diff = float(np.abs(want - _unit(got)).max())
        if not diff <= _TOLERANCE:
            raise ValueError(f"the ONNX export differs from the torch model by {diff:.2e}")
        try:
            os.replace(tmp, target)
        except OSError:  # another process exported it first: theirs is as good
            if not (target / _META).is_file():
                raise
        _log.info("exported %s to ONNX in %.1f s (max difference %.1e)", target.name,
                  time.perf_counter() - started, diff)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
