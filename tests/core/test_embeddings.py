"""The local embedder with the real all-MiniLM-L6-v2, offline."""

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
from memori_core.embeddings.local import LocalEmbedder


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
    with pytest.raises(ConfigurationError, match=r'pip install "memori-core\[local\]"'):
        LocalEmbedder(backend="torch").embed(["x"])  # an ONNX export needs no torch at all


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

    def run() -> list[object]:
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                             text=True, timeout=240, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    first = run()  # exports, checked against torch, into the cache
    exports = list((tmp_path / "onnx").iterdir())
    assert [p.name.split("-")[0] for p in exports] == ["all"]  # all-MiniLM-L6-v2-<fingerprint>
    second = run()
    assert first[0] == second[0] == "onnx"
    assert (first[1], second[1]) == (True, False)  # only the export needed torch
    np.testing.assert_allclose(first[2], second[2], atol=1e-6)

    (exports[0] / "model.onnx").write_bytes(b"not a model")  # a damaged cache: exported again
    third = run()
    assert third[0] == "onnx" and third[1] is True
    np.testing.assert_allclose(third[2], second[2], atol=1e-6)


def test_backend_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="auto, onnx, torch") as info:
        LocalEmbedder(backend="gpu")
    assert info.value.argument == "embeddings_backend"
    with pytest.raises(ConfigurationError, match="local directory") as info:
        LocalEmbedder("some-org/some-hub-model", backend="onnx").embed(["x"])
    assert info.value.argument == "embeddings_backend"
    with pytest.raises(ConfigurationError, match="embeddings_backend"):
        Config.from_env(environ={"MEMORI_EMBEDDINGS_BACKEND": "gpu"})
    assert Config.from_env({"embeddings_backend": "torch"}).embeddings.backend == "torch"
