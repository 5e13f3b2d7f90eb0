"""The public surface is pinned: adding or removing a name is a deliberate change."""

import memori_core
from memori_core import errors


def test_public_names() -> None:
    assert sorted(memori_core.__all__) == sorted([
        "AugmentationError", "AuthenticationError", "Config", "ConfigurationError", "Conversation", "EmbeddingsConfig",
        "Embedder", "ExtractedMemory", "Extraction", "Extractor", "LocalEmbedder", "Memori", "Memory",
        "MemoriError", "ProviderError", "RecallError", "RecallHit", "StorageError", "Triple",
        "__version__",
    ])
    for name in memori_core.__all__:
        assert getattr(memori_core, name) is not None


def test_error_tree_has_one_root() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.MemoriError)
        assert name in (errors.__doc__ or "")


def test_plugins_import_and_depend_on_the_core() -> None:
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[2]
    for folder, dist, module in [("langchain", "memori-langchain", "memori_langchain"),
                                 ("pydantic_ai", "memori-pydantic-ai", "memori_pydantic_ai"),
                                 ("agno", "memori-agno", "memori_agno"),
                                 ("llamaindex", "memori-llamaindex", "memori_llamaindex")]:
        meta = tomllib.loads((root / "integrations" / folder / "pyproject.toml").read_text())
        assert meta["project"]["name"] == dist
        assert any(d.startswith("memori-core") for d in meta["project"]["dependencies"])
        mod = __import__(module)
        assert mod.__version__ == memori_core.__version__
