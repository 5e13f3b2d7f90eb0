"""ONNX Runtime inference for a local sentence-transformers model: the same vectors, no torch.

A model is exported once into a cache directory keyed by a fingerprint of the model's files, and
later processes load the cached export (``OnnxEncoder``: onnxruntime + tokenizers). Two exporters:

- ``export_weights`` (preferred, no torch): builds the ONNX graph of a BERT-family encoder and its
  pooling (mean or CLS, as the model's sentence-transformers config says: ``modules.json``,
  ``1_Pooling/config.json``) from ``model.safetensors`` with ``onnx.helper``; about a second for
  all-MiniLM-L6-v2. Any other architecture is refused with the reason (``Unsupported``).
- ``export`` (torch.onnx): a loaded ``SentenceTransformer``'s transformer and pooling; for the
  models the first refuses, where torch and onnxscript are installed.

Either export is checked before it is cached: against the model's own pipeline
(sentence-transformers) on probe texts, one longer than the model's maximum length, to 1e-4 per
component; without sentence-transformers, ``export_weights`` checks what it can alone: each
probe embeds to a finite, non-zero vector of the model's width, the same alone as in a padded
batch and on a second run. Vectors are L2-normalised by the caller.

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxEncoder", "Unsupported", "cache_dir", "export", "export_weights",
           "fingerprint"]

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
#: longer than any model's maximum length here (about 600 tokens): truncation is checked too
_LONG_PROBE = " ".join(["Émile runs 5K in Zürich every Sunday, rain or shine;"] * 50)
_CHECKED = [*_PROBES, _LONG_PROBE]


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


def _publish(tmp: Path, target: Path, meta: dict[str, Any],
             reference: Callable[[list[str]], Any] | None, started: float) -> Path:
    """Check the export in ``tmp`` (see the module docstring), then move it to ``target``.

    ``reference`` embeds texts with the model's own pipeline; ``meta["dim"]`` is taken from it
    when missing. Raises ValueError when the check fails.
    """
    want = None if reference is None else \
        _unit(np.asarray(reference(_CHECKED), dtype=np.float32))
    if want is not None:
        meta.setdefault("dim", int(want.shape[1]))
    (tmp / _META).write_text(json.dumps(meta))
    encoder = OnnxEncoder(tmp, workers=1)
    got = _unit(encoder.encode(_CHECKED, batch_size=len(_CHECKED)))
    if want is not None:
        diff = float(np.abs(want - got).max())
        if not diff <= _TOLERANCE:
            raise ValueError(f"the ONNX export differs from the model's own pipeline by {diff:.2e}")
        checked = "sentence-transformers"
    else:  # alone: width, finite, non-zero, padding-invariant, deterministic
        raw = np.concatenate([encoder.encode([text], batch_size=1) for text in _CHECKED])
        again = _unit(encoder.encode(_CHECKED, batch_size=len(_CHECKED)))
        if raw.shape != (len(_CHECKED), meta["dim"]) or not np.isfinite(raw).all() or \
                not (np.linalg.norm(raw, axis=1) > 0).all():
            raise ValueError(f"the ONNX export gives vectors of shape {raw.shape}, not finite "
                             f"and non-zero of width {meta['dim']}")
        diff = float(max(np.abs(_unit(raw) - got).max(), np.abs(again - got).max()))
        if not diff <= _TOLERANCE:
            raise ValueError(f"the ONNX export is not deterministic or depends on padding "
                             f"({diff:.2e})")
        checked = "determinism and shape"
    try:
        os.replace(tmp, target)
    except OSError:  # another process exported it first: theirs is as good
        if not (target / _META).is_file():
            raise
    _log.info("exported %s to ONNX with %s in %.1f s (checked: %s, max difference %.1e)",
              target.name, meta.get("exporter"), time.perf_counter() - started, checked, diff)
    return target


def export(model: Any, target: Path) -> Path:
    """Export a loaded ``SentenceTransformer`` with torch.onnx to ``target`` (written atomically)
    and check it against the model.

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
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        meta = {"format": _FORMAT, "inputs": inputs, "max_seq_length": int(model.max_seq_length),
                "lowercase": bool(getattr(first, "do_lower_case", False)), "pad_id": int(pad_id),
                "exporter": "torch.onnx"}
        return _publish(tmp, target, meta, lambda texts: model.encode(
            texts, convert_to_numpy=True, show_progress_bar=False), started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Unsupported(ValueError):
    """``export_weights`` does not handle this model; the message says why."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise Unsupported(f"{path.name} is unreadable ({exc})") from exc
    if not isinstance(value, dict):
        raise Unsupported(f"{path.name} holds no JSON object")
    return value


def _pipeline(model_dir: Path) -> tuple[Path, str]:
    """The transformer's folder and the pooling (``mean`` or ``cls``) that the model's
    sentence-transformers config names; a plain transformers model gets mean pooling, as
    sentence-transformers gives it."""
    path = model_dir / "modules.json"
    if not path.is_file():
        return model_dir, "mean"
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        folders = [model_dir / str(m.get("path", "")) for m in modules]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unsupported(f"modules.json is unreadable ({exc})") from exc
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise Unsupported(f"only Transformer + Pooling (+ Normalize) pipelines are exported "
                          f"without torch, not {' + '.join(kinds)}")
    config = _read_json(folders[1] / "config.json")
    mode: Any = config.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6: one boolean per mode
        mode = [key.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                for key, on in config.items() if key.startswith("pooling_mode_") and on]
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode not in ("mean", "cls"):
        raise Unsupported(f"pooling {mode!r}: only mean or CLS pooling is exported without torch")
    return folders[0], mode


def export_weights(model_dir: Path, target: Path,
                   reference: Callable[[list[str]], Any] | None = None) -> Path:
    """Export a BERT-family sentence-transformers model from its ``model.safetensors`` to
    ``target`` (written atomically) without torch, and check it.

    Args:
        model_dir: the model's directory (``modules.json``, ``config.json``,
            ``model.safetensors``, ``tokenizer.json``, ...).
        target: the export directory to write.
        reference: embeds texts with the model's own pipeline (sentence-transformers), float
            array, shape (n, dim); the export must agree with it to 1e-4 per component. None:
            only determinism, padding invariance and the output shape are checked.

    Returns:
        ``target``.

    Raises:
        Unsupported: for a model this exporter does not build (another architecture, pooling or
            module, weights not in one ``model.safetensors``, no ``tokenizer.json``), with the
            reason; nothing is written.
        ImportError: when safetensors, onnx, onnxruntime or tokenizers is missing.
        ValueError: when the export fails its check.
    """
    started = time.perf_counter()
    folder, pooling = _pipeline(model_dir)
    config = _read_json(folder / "config.json")
    kind = config.get("model_type")
    if kind != "bert":
        raise Unsupported(f"model_type {kind!r}: only BERT encoders are exported without torch")
    if config.get("position_embedding_type", "absolute") != "absolute" or \
            config.get("hidden_act") != "gelu" or config.get("is_decoder"):
        raise Unsupported(f"BERT with position embeddings "
                          f"{config.get('position_embedding_type')!r}, activation "
                          f"{config.get('hidden_act')!r}, decoder {config.get('is_decoder')!r}: "
                          f"only absolute positions, gelu, encoder are exported without torch")
    for name in ("model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise Unsupported(f"no {name} in {folder}: the weights must be in one "
                              f"model.safetensors and the tokenizer a fast one (tokenizer.json)")
    import onnx
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    try:
        weights = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError, TypeError) as exc:  # bfloat16 has no numpy type
        raise Unsupported(f"model.safetensors cannot be read without torch ({exc})") from exc
    try:
        graph = _bert_graph(weights, config, pooling, folder.name or "model")
    except KeyError as exc:
        raise Unsupported(f"weight {exc} is missing: not a BertModel checkpoint") from exc
    sentence = _read_json(folder / "sentence_bert_config.json")
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    positions = int(config["max_position_embeddings"])
    max_length = sentence.get("max_seq_length") or tokenizer_config.get("model_max_length")
    max_length = min(int(max_length or positions), positions)
    pad: Any = tokenizer_config.get("pad_token", "[PAD]")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id(str(pad))
    inputs = ["input_ids", "attention_mask", "token_type_ids"][:len(graph.graph.input)]
    meta = {"format": _FORMAT, "dim": int(config["hidden_size"]), "inputs": inputs,
            "max_seq_length": max_length, "lowercase": bool(sentence.get("do_lower_case")),
            "pad_id": int(pad_id if pad_id is not None else config.get("pad_token_id") or 0),
            "exporter": "safetensors", "pooling": pooling}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp / "model.onnx"))
        shutil.copyfile(folder / "tokenizer.json", tmp / "tokenizer.json")
        return _publish(tmp, target, meta, reference, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bert_graph(weights: dict[str, np.ndarray], config: dict[str, Any], pooling: str,
                name: str) -> Any:
    """The ONNX graph (opset 17) of a BertModel and its pooling: inputs ``input_ids``,
    ``attention_mask`` (and ``token_type_ids``), int64, shape (batch, sequence); output
    ``sentence_embedding``, float32, shape (batch, hidden_size). Raises KeyError for a
    missing weight."""
    from onnx import TensorProto, helper, numpy_helper

    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    width, eps = hidden // heads, float(config.get("layer_norm_eps", 1e-12))
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(key: str, array: Any) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), key))
        return key

    def weight(key: str, transpose: bool = False) -> str:
        array = np.asarray(weights[prefix + key], dtype=np.float32)
        return const(key, array.T if transpose else array)

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, key: str, out: str) -> str:
        product = op("MatMul", [x, weight(f"{key}.weight", transpose=True)], f"{out}_mm")
        return op("Add", [product, weight(f"{key}.bias")], out)

    def norm(x: str, key: str, out: str) -> str:
        return op("LayerNormalization", [x, weight(f"{key}.weight"), weight(f"{key}.bias")], out,
                  axis=-1, epsilon=eps)

    typed = prefix + "embeddings.token_type_embeddings.weight" in weights
    one, axis0 = const("one", np.array(1, np.float32)), const("axis0", np.array([0], np.int64))
    seq = op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    positions = op("Slice", [weight("embeddings.position_embeddings.weight"),
                             const("zero", np.array([0], np.int64)), seq, axis0], "e_pos")
    x = op("Add", [op("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"],
                      "e_word"), positions], "e_wp")
    if typed:
        x = op("Add", [x, op("Gather", [weight("embeddings.token_type_embeddings.weight"),
                                        "token_type_ids"], "e_type")], "e_all")
    x = norm(x, "embeddings.LayerNorm", "h0")
    # attention bias (batch, 1, 1, sequence): 0 where attended, float32's min elsewhere, as
    # transformers builds it
    mask = op("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    bias = op("Mul", [op("Sub", [one, mask], "inv_mask"),
                      const("neg", np.array(np.finfo(np.float32).min, np.float32))], "mask_bias")
    bias = op("Unsqueeze", [bias, const("axes12", np.array([1, 2], np.int64))], "mask_bias4")
    split = const("split_shape", np.array([0, 0, heads, width], np.int64))
    merged = const("merged_shape", np.array([0, 0, hidden], np.int64))
    scale = const("scale", np.array(1 / np.sqrt(width), np.float32))
    root2, half = const("sqrt2", np.array(np.sqrt(2), np.float32)), \
        const("half", np.array(0.5, np.float32))

    def split_heads(x: str, key: str, at: str, perm: list[int]) -> str:
        projected = linear(x, key, at)  # (batch, sequence, hidden) -> (batch, heads, ., .)
        return op("Transpose", [op("Reshape", [projected, split], f"{at}_r")], f"{at}_t",
                  perm=perm)

    for i in range(int(config["num_hidden_layers"])):
        key, at = f"encoder.layer.{i}.", f"l{i}_"
        q = split_heads(x, f"{key}attention.self.query", f"{at}query", [0, 2, 1, 3])
        k = split_heads(x, f"{key}attention.self.key", f"{at}key", [0, 2, 3, 1])
        v = split_heads(x, f"{key}attention.self.value", f"{at}value", [0, 2, 1, 3])
        scores = op("Add", [op("Mul", [op("MatMul", [q, k], f"{at}qk"), scale], f"{at}qks"),
                            bias], f"{at}scores")
        context = op("MatMul", [op("Softmax", [scores], f"{at}probs", axis=-1), v], f"{at}ctx")
        context = op("Reshape", [op("Transpose", [context], f"{at}ctx_t", perm=[0, 2, 1, 3]),
                                 merged], f"{at}ctx_m")
        attended = norm(op("Add", [linear(context, f"{key}attention.output.dense", f"{at}ao"), x],
                           f"{at}ares"), f"{key}attention.output.LayerNorm", f"{at}att")
        inner = linear(attended, f"{key}intermediate.dense", f"{at}inter")
        erf = op("Erf", [op("Div", [inner, root2], f"{at}div")], f"{at}erf")
        gelu = op("Mul", [op("Mul", [inner, op("Add", [erf, one], f"{at}erf1")], f"{at}g1"), half],
                  f"{at}gelu")
        x = norm(op("Add", [linear(gelu, f"{key}output.dense", f"{at}o"), attended], f"{at}ores"),
                 f"{key}output.LayerNorm", f"h{i + 1}")
    if pooling == "cls":
        op("Squeeze", [op("Gather", [x, const("first", np.array([0], np.int64))], "cls", axis=1),
                       const("axis1", np.array([1], np.int64))], "sentence_embedding")
    else:  # mean over the attended tokens
        mask3 = op("Unsqueeze", [mask, const("axis2", np.array([2], np.int64))], "mask3")
        axis1 = const("axis1", np.array([1], np.int64))
        total = op("ReduceSum", [op("Mul", [x, mask3], "masked"), axis1], "summed", keepdims=0)
        count = op("Clip", [op("ReduceSum", [mask3, axis1], "count", keepdims=0),
                            const("tiny", np.array(1e-9, np.float32))], "count_c")
        op("Div", [total, count], "sentence_embedding")
    names = ["input_ids", "attention_mask", "token_type_ids"][:3 if typed else 2]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
                      for n in names],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT,
                                       ["batch", hidden])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
