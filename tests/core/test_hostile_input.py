"""Input that used to crash with something other than a ``MemoriError`` (issue 18.9): deep
nesting in capture and import, counts past what a backend stores, non-integer links,
float versions, embeddings that are not unit vectors."""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from memori_core import ConfigurationError, Memori


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("message", [
    {"role": "user", "content": "hi", "metadata": {"a": nested(5000)}},
    {"role": "user", "content": [{"type": "text", "text": "hi", "extra": nested(5000)}]},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "args": nested(5000)}]},
])
def test_capture_of_deeply_nested_parts_is_a_configuration_error(
        smem: Memori, message: dict[str, Any]) -> None:
    smem.attribution(entity_id="deep")
    with pytest.raises(ConfigurationError, match="too deeply") as e:
        smem.capture([message])
    assert e.value.argument == "messages"
    assert smem.session_messages() == []


def _vector(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "count past 32 bits": (lambda d: d["memories"][0].__setitem__("mention_count", 2**63),
                           "memories[0].mention_count"),
    "count at 2**31": (lambda d: d["memories"][0].__setitem__("mention_count", 2**31),
                       "memories[0].mention_count"),
    "float version": (lambda d: d.__setitem__("version", 1.0), "version"),
    "dict as a link": (lambda d: d["triples"][0].__setitem__("memory_id", {}),
                       "triples[0].memory_id"),
    "NaN embedding": (lambda d: d["memories"][0].__setitem__(
        "embedding", _vector([math.nan] * d["dimension"])), "memories[0].embedding"),
    "not a unit vector": (lambda d: d["memories"][0].__setitem__(
        "embedding", _vector([3.0] * d["dimension"])), "memories[0].embedding"),
    "deep metadata": (lambda d: d["sessions"][0]["conversations"][0]["messages"][0]
                      .__setitem__("metadata", {"a": nested(5000)}), "too deeply"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_import_refuses_hostile_exports_on_every_backend_alike(mem: Memori, name: str,
                                                              db_url: str) -> None:
    mem.attribution(entity_id="source", process_id="coach")
    mem.capture([{"role": "user", "content": "I live in Lisbon"}])
    assert mem.augmentation.wait(timeout=30)
    data = mem.export()
    assert data["triples"], "RuleExtractor makes a triple of it"
    mutate, where = MUTATIONS[name]
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(ConfigurationError, match=where.replace("[", r"\[").replace("]", r"\]")):
        mem.import_(bad, entity_id="copy")
    assert mem.export(entity_id="copy")["memories"] == []  # nothing written
    mem.import_(data, entity_id="copy")  # the untouched export still imports
