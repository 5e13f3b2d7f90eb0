"""``MemoriStore``: LangGraph's long-term memory store (``BaseStore``) over memori.

Namespaces (``entity_at=1``, the default): the label at ``entity_at`` is memori's entity, so a
user's items are that entity's memories and no read of one user's namespace touches another's::

    ("memories", "alice")            -> entity "alice"
    ("memories", "alice", "prefs")   -> entity "alice"
    ("docs",)                        -> entity ``shared_entity`` ("langgraph"): app-wide

Every item is stored under ``process_id`` (default ``"langgraph"``). One item is one memory
(``Memori.remember``): the text of its indexed fields (what recall searches), then one line
``langgraph-item:`` + JSON of namespace, key and value (what ``get`` returns). Its slot is a
hash of (namespace, key): a newer value supersedes the older, which is then deleted. One
registry memory per namespace under ``shared_entity`` answers ``list_namespaces`` and
searches whose prefix names no user.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, NamedTuple

from langgraph.store import base as lg

from memori_core import ConfigurationError, Memori, Memory
from memori_core.integration import attributed, check_memori, clean

__all__ = ["MemoriStore"]

_ITEM, _ITEM_SLOT = "langgraph-item:", "langgraph:"  # an item's last line, its slot prefix
_NAMESPACE, _NAMESPACE_SLOT = "langgraph-namespace:", "langgraph-ns:"  # a registry memory's
Namespace = tuple[str, ...]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=True).encode()).hexdigest()[:48]


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


class _Row(NamedTuple):
    """A stored item: its memory, the ``Item`` its text holds, whether recall may rank it."""

    memory: Memory
    item: lg.Item
    indexed: bool


def _parse(memory: Memory) -> _Row | None:
    """The item a memory holds, or None for any other memory."""
    text, at = memory.content, memory.content.rfind(_ITEM)
    if not (memory.slot or "").startswith(_ITEM_SLOT) or at < 0 or (at and text[at - 1] != "\n"):
        return None
    data = json.loads(text[at + len(_ITEM):])
    created = datetime.fromisoformat(data["c"]) if "c" in data else memory.created_at
    return _Row(memory, lg.Item(value=data["v"], key=data["k"], namespace=tuple(data["ns"]),
                             created_at=_utc(created), updated_at=_utc(memory.last_seen_at)),
                bool(data.get("i", True)))


_COMPARE = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}


def _matches(value: Any, wanted: Any) -> bool:
    """``InMemoryStore``'s ``filter``: equality (dicts and lists field by field) and
    ``$eq $ne $gt $gte $lt $lte`` (the last four as floats; a missing or non-numeric field
    does not match, where ``InMemoryStore`` raises)."""
    if isinstance(wanted, dict) and any(k.startswith("$") for k in wanted):
        return all(_operator(value, op, arg) for op, arg in wanted.items())
    if isinstance(wanted, dict):
        return isinstance(value, dict) and all(_matches(value.get(k), v)
                                               for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (isinstance(value, (list, tuple)) and len(value) == len(wanted)
                and all(_matches(a, b) for a, b in zip(value, wanted, strict=True)))
    return bool(value == wanted)


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op in ("$eq", "$ne"):
        return bool(value == arg) == (op == "$eq")
    if op not in _COMPARE:
        raise ValueError(f"Unsupported operator: {op}")
    try:
        return bool(_COMPARE[op](float(value), float(arg)))
    except (TypeError, ValueError):
        return False


def _check_labels(op: lg.Op) -> None:
    """The labels of an op passed to ``batch`` directly (``BaseStore``'s methods check them
    before): non-empty strings without ``.`` or NUL."""
    labels: Iterable[Any] = ()
    if isinstance(op, (lg.GetOp, lg.PutOp)):
        labels = op.namespace
    elif isinstance(op, lg.SearchOp):
        labels = op.namespace_prefix
    elif isinstance(op, lg.ListNamespacesOp):
        labels = [label for c in op.match_conditions or () for label in c.path]
    for label in labels:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise lg.InvalidNamespaceError(f"Invalid namespace label {label!r}: labels are "
                                        f"non-empty strings without '.' or NUL")


def _condition(condition: lg.MatchCondition, namespace: Namespace) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type not in ("prefix", "suffix"):
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    if condition.match_type == "suffix":
        path, namespace = path[::-1], namespace[::-1]
    return all(p == "*" or n == p for n, p in zip(namespace, path, strict=False))


class MemoriStore(lg.BaseStore):
    """LangGraph's ``BaseStore`` over memori: long-term memory for ``create_agent(...,
    store=...)``, ``runtime.store`` in tools and langmem's memory tools, searched with
    memori's recall. ``put`` / ``get`` / ``delete`` / ``search`` / ``list_namespaces`` (and
    their async twins) answer like ``InMemoryStore``, except:

    - values are stored as JSON (tuples come back as lists; a value JSON cannot hold raises
      ``ConfigurationError``);
    - ``search(..., query=...)`` ranks by ``Memori.recall`` (``score`` = its score); items
      recall does not return (``index=False``, under the relevance threshold) follow with
      ``score=None``; without a query, newest update first;
    - a range filter on a missing or non-numeric field does not match (no ``TypeError``);
    - ``list_namespaces`` lists namespaces holding items; no TTL (``supports_ttl = False``).

    Args:
        entity_at: position of the user id in a namespace (module docstring).
        process_id: memori's process of every item; memori's own recall (``with_memori``,
            ``MemoriMiddleware``) shows items to calls under this process, under none, or
            with ``scope="entity"``.
        shared_entity: the entity of namespaces too short to name a user, and of the
            namespace registry.
        fields: the value's fields embedded for search, as ``InMemoryStore``'s ``index``
            (default ``["$"]``: the whole value); ``put(..., index=...)`` overrides them.

    Raises:
        ConfigurationError: a bad argument; a namespace label that is not a valid entity id.
        StorageError, RecallError: the database or recall failed.
    """

    supports_ttl = False

    def __init__(self, memori: Memori, *, entity_at: int = 1,
                 process_id: str | None = "langgraph", shared_entity: str = "langgraph",
                 fields: Sequence[str] | None = None) -> None:
        self.memori = check_memori(memori)
        if isinstance(entity_at, bool) or not isinstance(entity_at, int) or entity_at < 0:
            raise ConfigurationError(f"entity_at must be an int >= 0, got {entity_at!r}",
                                     argument="entity_at")
        self.entity_at, self.process_id, self.shared_entity = entity_at, process_id, shared_entity
        self.fields = list(fields or ["$"])
        with attributed(memori, shared_entity, process_id, names={"entity_id": "shared_entity"}):
            pass  # the ids are checked now, not at the first put
        self._registered: set[Namespace] = set()

    def _as(self, entity: str) -> AbstractContextManager[Memori]:
        """``memori`` attributed to ``entity`` under the store's process (an invalid entity
        raises ``ConfigurationError`` naming ``namespace``)."""
        return attributed(self.memori, entity, self.process_id, names={"entity_id": "namespace"})

    def entity_of(self, namespace: Namespace) -> str:
        """The memori entity that holds ``namespace``'s items."""
        return namespace[self.entity_at] if len(namespace) > self.entity_at else self.shared_entity

    def _rows(self, entity: str) -> list[_Row]:
        """The items stored under ``entity`` (current and superseded), in no set order."""
        with self._as(entity) as mem:
            memories = mem.memories(include_superseded=True)
        return [r for m in memories if m.process_id == self.process_id
                for r in [_parse(m)] if r is not None]

    def _namespaces(self) -> set[Namespace]:
        """Every namespace ever registered (some may be empty now)."""
        with self._as(self.shared_entity) as mem:
            memories = mem.memories()
        found = {tuple(json.loads(m.content[len(_NAMESPACE):])) for m in memories
                 if m.process_id == self.process_id
                 and (m.slot or "").startswith(_NAMESPACE_SLOT)}
        self._registered |= found
        return found

    def _register(self, namespace: Namespace) -> None:
        if namespace not in self._registered:
            with self._as(self.shared_entity) as mem:  # the same text again: one more mention
                mem.remember(_NAMESPACE + json.dumps(list(namespace), ensure_ascii=True),
                             slot=_NAMESPACE_SLOT + _digest(*namespace), importance=0.0)
            self._registered.add(namespace)

    def batch(self, ops: Iterable[lg.Op]) -> list[lg.Result]:
        """Run ``ops`` like ``InMemoryStore``: every get, search and list sees the store as it
        was before the batch; then the puts (and deletes) run, the last one per (namespace,
        key) winning."""
        ops = list(ops)
        for op in ops:
            _check_labels(op)
        rows = functools.cache(self._rows)  # each entity's rows read once per batch
        results: list[lg.Result] = []
        puts: dict[tuple[Namespace, str], lg.PutOp] = {}
        for op in ops:
            if isinstance(op, lg.GetOp):
                items = [r.item for r in self._mine(rows, op) if r.memory.superseded_by is None]
                results.append(items[0] if items else None)
            elif isinstance(op, lg.SearchOp):
                results.append(self._search(op, rows))
            elif isinstance(op, lg.ListNamespacesOp):
                results.append(self._list(op, rows))
            elif isinstance(op, lg.PutOp):
                puts[(op.namespace, op.key)] = op
                results.append(None)
            else:
                raise ValueError(f"Unknown operation type: {type(op)}")
        for op in puts.values():
            self._put(self._mine(rows, op), op)
        return results

    async def abatch(self, ops: Iterable[lg.Op]) -> list[lg.Result]:
        """``batch`` in a worker thread (memori's storage is synchronous)."""
        return await asyncio.to_thread(self.batch, list(ops))

    def _mine(self, rows: Callable[[str], list[_Row]], op: lg.GetOp | lg.PutOp) -> list[_Row]:
        """The rows of ``op``'s item (current and superseded)."""
        return [r for r in rows(self.entity_of(op.namespace))
                if (r.item.namespace, r.item.key) == (op.namespace, op.key)]

    def _put(self, mine: list[_Row], op: lg.PutOp) -> None:
        """Store ``op.value`` (superseding the item's older values at once), then delete the
        older values: an item keeps no history."""
        new_id, text, line = None, None, ""
        if op.value is not None:
            text, line = self._text(op, [r for r in mine if r.memory.superseded_by is None])
            self._register(op.namespace)
        with self._as(self.entity_of(op.namespace)) as mem:
            if text is not None:
                new_id = mem.remember(f"{text}\n{_ITEM}{line}", importance=0.0,
                                      slot=_ITEM_SLOT + _digest(*op.namespace, op.key))
            if old := [r.memory.id for r in mine if r.memory.id != new_id]:
                mem.forget_memories(old)

    def _text(self, op: lg.PutOp, current: list[_Row]) -> tuple[str, str]:
        """What recall embeds and searches (the indexed fields' text), and the item's JSON
        line (an update keeps the item's creation time)."""
        value = dict(op.value or {})
        data: dict[str, Any] = {"ns": list(op.namespace), "k": op.key, "v": value}
        if current:
            data["c"] = current[0].item.created_at.isoformat()
        paths = [] if op.index is False else self.fields if op.index is None else op.index
        try:
            text = str(clean("\n".join(t for p in paths for t in lg.get_text_at_path(
                value, p if p == "$" else lg.tokenize_path(p))))[0])
            if not text:
                data["i"] = False
            return text, json.dumps(data, ensure_ascii=True)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"MemoriStore stores values as JSON: {exc}",
                                     argument="value") from exc

    def _entities(self, prefix: Namespace) -> list[str]:
        """The entities whose items a search under ``prefix`` may return."""
        if len(prefix) > self.entity_at:
            return [prefix[self.entity_at]]
        return sorted({self.entity_of(ns) for ns in self._namespaces()
                       if ns[:len(prefix)] == prefix})

    def _search(self, op: lg.SearchOp, rows: Callable[[str], list[_Row]]) -> list[lg.SearchItem]:
        prefix = tuple(op.namespace_prefix)
        found = [r for entity in self._entities(prefix) for r in rows(entity)
                 if r.memory.superseded_by is None and r.item.namespace[:len(prefix)] == prefix
                 and all(_matches(r.item.value.get(k), v) for k, v in (op.filter or {}).items())]
        found.sort(key=lambda r: (r.memory.last_seen_at, r.memory.id), reverse=True)
        scores: dict[int, float] = {}
        for entity in sorted({self.entity_of(r.item.namespace) for r in found} if op.query else ()):
            with self._as(entity) as mem:
                # as many hits as recall can see: the entity's other memories must not push
                # items out
                for hit in mem.recall(op.query or "", limit=max(1, len(mem.memories()))):
                    for mid in hit.memory_ids or (hit.id,):
                        scores.setdefault(mid, hit.score)
        ranked = sorted((r for r in found if r.indexed and r.memory.id in scores),
                        key=lambda r: scores[r.memory.id], reverse=True)  # stable
        found = ranked + [r for r in found if not (r.indexed and r.memory.id in scores)]
        return [lg.SearchItem(i.namespace, i.key, i.value, i.created_at, i.updated_at,
                           scores.get(r.memory.id) if r.indexed else None)
                for r in found[op.offset:op.offset + op.limit] for i in [r.item]]

    def _list(self, op: lg.ListNamespacesOp, rows: Callable[[str], list[_Row]]
              ) -> list[Namespace]:
        registered = self._namespaces()
        held = {r.item.namespace for entity in sorted({self.entity_of(ns) for ns in registered})
                for r in rows(entity) if r.memory.superseded_by is None}
        namespaces = [ns for ns in registered & held
                      if all(_condition(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            namespaces = list({ns[:op.max_depth] for ns in namespaces})
        return sorted(namespaces)[op.offset:op.offset + op.limit]
