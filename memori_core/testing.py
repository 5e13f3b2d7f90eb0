"""Test doubles that ship with memori: deterministic, instant, no model download, no network.

``HashEmbedder`` maps texts to unit vectors by hashing their words, so texts that share words are
similar and identical texts are identical vectors. Use it in your own tests::

    mem = Memori(conn="sqlite:///test.db", embedder=HashEmbedder())

``offline_openai()`` is a real ``openai.OpenAI`` client whose requests are answered on this
machine by a stand-in model that repeats the memories memori showed it: the quickstart's
"tell it, then ask later" runs without a key, and a test sees what a model was given::

    client = offline_openai()          # with a key: client = openai.OpenAI()
    mem.llm.register(client)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from memori_core.context import read_block
from memori_core.embeddings.base import l2_normalize
from memori_core.errors import ConfigurationError

__all__ = ["OFFLINE_NOTHING", "HashEmbedder", "offline_answer", "offline_openai"]

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Bag-of-words feature hashing: each word adds 1 to two of ``dim`` buckets, so texts
    without shared words are near-orthogonal, and two different words only look identical when
    both of their buckets collide.

    Args:
        dim: vector length (default 256).
        name: model name recorded in the database.
    """

    def __init__(self, dim: int = 256, name: str = "memori-hash") -> None:
        self._dim = dim
        self.name = f"{name}-{dim}"
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array, shape (len(texts), dim), L2-normalised (all-zero for wordless text)."""
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[row, h % self._dim] += 1.0
                out[row, (h >> 32) % self._dim] += 1.0
        return l2_normalize(out)


#: the stand-in model's answer when it was shown no memory
OFFLINE_NOTHING = "I don't remember anything about that yet."


def offline_answer(messages: Sequence[dict[str, Any]]) -> str:
    """What the stand-in model of ``offline_openai`` answers to chat ``messages`` (OpenAI
    shape): the memories of the ``<memori_context>`` block in its system or developer messages,
    in block order, as ``"From memory: first; second."``, or ``OFFLINE_NOTHING``."""
    shown: list[str] = []
    for message in messages:
        if message.get("role") not in ("system", "developer"):
            continue
        content = message.get("content")
        parts = [content] if isinstance(content, str) else [
            part.get("text", "") for part in content or [] if isinstance(part, dict)]
        for text in parts:
            shown += [memory.rstrip(".") for _day, _kind, memory in read_block(text)]
    return f"From memory: {'; '.join(shown)}." if shown else OFFLINE_NOTHING


def offline_openai() -> Any:
    """An ``openai.OpenAI`` client answered on this machine (an ``httpx.MockTransport``): no key,
    no network. ``chat.completions.create`` (streamed or not) answers with ``offline_answer``
    of the request's messages, so a registered client shows what memori put into its prompt;
    other endpoints answer 404 (``openai.NotFoundError``).

    Returns:
        ``openai.OpenAI``; register it like a real one (``mem.llm.register(client)``).

    Raises:
        ConfigurationError: when the ``openai`` package is missing (extra ``openai``).
    """
    try:
        import openai
    except ImportError as exc:
        raise ConfigurationError('offline_openai() needs the openai package: pip install '
                                 '"memori-core[openai]"', argument="openai") from exc
    try:  # the HTTP library the openai client is built on (httpx2 from openai 2.x, else httpx)
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]
    counter = itertools.count(1)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {
                "message": f"the offline model answers chat completions only, not "
                           f"{request.method} {request.url.path}", "type": "not_found"}})
        body = json.loads(request.content)
        text = offline_answer(body.get("messages") or [])
        head = {"id": f"chatcmpl-offline-{next(counter)}", "created": int(time.time()),
                "model": body.get("model", "offline")}
        if not body.get("stream"):
            return httpx.Response(200, json={
                **head, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
        chunks = [{"role": "assistant", "content": text}, {}]
        events = "".join(
            "data: " + json.dumps({**head, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "logprobs": None,
                 "finish_reason": None if delta else "stop"}]}) + "\n\n" for delta in chunks)
        return httpx.Response(200, content=(events + "data: [DONE]\n\n").encode(),
                              headers={"content-type": "text/event-stream"})

    return openai.OpenAI(api_key="offline", base_url="http://offline.memori.invalid/v1",
                         http_client=httpx.Client(transport=httpx.MockTransport(answer)),
                         max_retries=0)
