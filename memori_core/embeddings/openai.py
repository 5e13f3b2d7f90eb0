"""``OpenAIEmbedder``: embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI,
Azure, vLLM, Ollama, Nebius, NVIDIA NIM, ...).

Requires the ``openai`` package (``pip install "memori-core[openai]"``) unless a client is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memori_core.embeddings.base import l2_normalize
from memori_core.errors import ConfigurationError, ProviderError

__all__ = ["OpenAIEmbedder"]


class OpenAIEmbedder:
    """Embed through an OpenAI-compatible embeddings API.

    Args:
        model: e.g. ``"text-embedding-3-small"`` (1536-d) or ``"nomic-embed-text"`` on Ollama.
        client: an ``openai.OpenAI`` (or compatible) client; default one built from
            ``base_url`` / ``api_key`` (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` when None).
        base_url: e.g. ``"http://localhost:11434/v1"``.
        api_key: the provider key.
        dimensions: ask the model for vectors of this length (models that support it);
            default the model's own.
        batch_size: texts per request (default 256).
        timeout: seconds per request (default 30).

    Attributes:
        name: ``"openai:<model>"`` plus ``@<dimensions>`` when set: recorded with the database.
        dim: vector length, known after the first call (one probe request if asked first).

    Raises:
        ConfigurationError: no model, or the ``openai`` package is missing.
    """

    def __init__(self, model: str, *, client: Any = None, base_url: str | None = None,
                 api_key: str | None = None, dimensions: int | None = None,
                 batch_size: int = 256, timeout: float = 30.0) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError("model must name the embedding model, e.g. "
                                     "'text-embedding-3-small'", argument="model")
        if client is None:
            try:
                import openai
            except ImportError as exc:  # pragma: no cover - the dev install has it
                raise ConfigurationError('OpenAIEmbedder needs the openai package: pip install '
                                         '"memori-core[openai]"', argument="client") from exc
            client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout)
        self.client = client
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.name = f"openai:{model}" + (f"@{dimensions}" if dimensions else "")
        self._dim: int | None = dimensions

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array, shape (len(texts), dim), rows L2-normalised.

        Raises:
            ProviderError: the endpoint failed or answered with the wrong number of vectors.
        """
        texts = list(texts)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [t if t.strip() else " " for t in texts[start:start + self.batch_size]]
            extra = {"dimensions": self.dimensions} if self.dimensions else {}
            try:
                response = self.client.embeddings.create(model=self.model, input=chunk, **extra)
            except Exception as exc:
                raise ProviderError(f"embedding {len(chunk)} texts with {self.model} failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
            data = sorted(response.data, key=lambda d: d.index)
            if len(data) != len(chunk):
                raise ProviderError(f"{self.model} returned {len(data)} embeddings for "
                                    f"{len(chunk)} texts")
            rows.extend(d.embedding for d in data)
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        out = l2_normalize(np.asarray(rows, dtype=np.float32))
        if self._dim is None:
            self._dim = int(out.shape[1])
        elif out.shape[1] != self._dim:
            raise ProviderError(f"{self.model} returned {out.shape[1]}-d vectors, expected "
                                f"{self._dim}")
        return out
