"""The local embedder with the real all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from memori_core import ConfigurationError
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
        LocalEmbedder().embed(["x"])


def test_default_name_matches_case_insensitively_like_the_hub() -> None:
    e = LocalEmbedder("all-minilm-l6-V2")
    assert e.name == "all-MiniLM-L6-v2" and e.dim == 384


def test_a_mistyped_hub_name_fails_with_a_hint_instead_of_retrying(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the hub host does not resolve here
    with pytest.raises(ConfigurationError, match="check the name") as info:
        LocalEmbedder("all-MiniLM-L7-v2").embed(["x"])
    assert "all-MiniLM-L6-v2" in str(info.value)
