"""``MemoriConversationStore``: Pydantic AI's ``ConversationStore`` on memori's conversation tables.

Per entity: a conversation is the memori session named by its id, holding its chat messages only
(the first row of an entry carries ``metadata["pydantic_ai_entry"]``: id, parent id, message as
JSON). The session ``index_session`` is the log: one row per save or delete
(``metadata["pydantic_ai_record"]``); a row written against a stale revision is ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import TypeAdapter
from pydantic_ai import conversation_store as cs
from pydantic_ai.conversation_store import ConversationEntry, ConversationRecord
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest

from memori_core import ConfigurationError, Memori
from memori_core.integration import check_memori, check_text, storable
from memori_pydantic_ai._capability import CAPTURED
from memori_pydantic_ai._convert import to_memori_messages
from memori_pydantic_ai._deps import MemoriDeps, resolve_target

__all__ = ["DEFAULT_INDEX_SESSION", "MemoriConversationStore"]

T = TypeVar("T")

#: The memori session holding a store's log of saves (per entity).
DEFAULT_INDEX_SESSION = "pydantic_ai.conversations"
_LOCATION_CACHE_SIZE = 100_000  # entry id -> conversation, kept in memory
_MAX_ID = 255  # memori session ids are VARCHAR(255)
_RECORD = TypeAdapter(ConversationRecord)
_ENTRY, _EVENT = "pydantic_ai_entry", "pydantic_ai_record"
_FIX = ("MemoriConversationStore(mem, entity_id=\"user_123\"), or call "
        "mem.attribution(entity_id=\"user_123\") before using the store")


class _Log:
    """The index session replayed: each conversation's current record (as JSON)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.records: dict[str, dict[str, Any] | None] = {}  # every conversation, oldest first
        self.forked_from: dict[str, str | None] = {}  # kept after a delete
        for row in rows:
            event = (row.get("metadata") or {}).get(_EVENT) or {}
            if (cid := event.get("conversation_id")) and event["expected_revision"] == (self.records.get(cid) or {}).get("revision"):
                self.records[cid] = event["record"]
                if event["record"] is not None:
                    self.forked_from[cid] = event["record"].get("forked_from")

    def record(self, cid: str) -> ConversationRecord | None:
        return None if (data := self.records.get(cid)) is None else _RECORD.validate_python(data)

    def ancestors(self, cid: str) -> list[str]:
        """The conversations ``cid`` was forked from, nearest first."""
        out: list[str] = []
        parent = self.forked_from.get(cid)
        while parent is not None and parent not in out and parent != cid:
            out.append(parent)
            parent = self.forked_from.get(parent)
        return out


class MemoriConversationStore(cs.ConversationStore):
    """A Pydantic AI ``ConversationStore`` in memori's conversation tables: a conversation's
    session shows its messages (``mem.session_messages(cid)``), augmentation learns from them,
    ``mem.clear_session(cid)`` erases them; ``load`` gives back what was saved. The store
    captures what it saves: use ``MemoriCapability(mem, capture=False)`` with it.

    Args:
        memori: the ``Memori`` instance.
        entity_id: whose conversations (default: the calling task's attribution, per call).
        process_id: the process rows are captured under (needs ``entity_id``).
        index_session: the session holding the store's log (no conversation may use its id).

    Limits (memori has no conditional write): the revision check is exact within a process and
    on SQLite; on PostgreSQL or MariaDB two processes saving one conversation at once may both
    succeed (the later row is ignored on load). A save failing between its messages and its
    record leaves messages no record points at. ``delete`` erases what no live fork reads.

    Raises:
        ConfigurationError: a bad argument, no entity, or a run ``MemoriCapability`` captured.
        StorageError: the database failed. ``ConversationConflict``: as Pydantic AI documents.
    """

    def __init__(self, memori: Memori, *, entity_id: str | None = None,
                 process_id: str | None = None,
                 index_session: str = DEFAULT_INDEX_SESSION) -> None:
        self.memori = check_memori(memori)
        if entity_id is None and process_id is not None:
            raise ConfigurationError("process_id needs an entity_id", argument="entity_id")
        self.index_session = _check_id(index_session, "index_session", None)
        self._deps = None if entity_id is None else MemoriDeps(memori, entity_id, process_id)
        self._write_lock = threading.Lock()
        self._where: dict[tuple[str, str], str] = {}  # (entity, entry id) -> conversation

    async def _run(self, fn: Callable[[_Session], T]) -> T:
        target = replace(resolve_target(self.memori, self._deps, _FIX),
                         session_id=self.index_session)
        return await target.run(lambda mem: fn(_Session(self, mem, target.entity_id)))

    def _cid(self, conversation_id: str) -> str:
        return _check_id(conversation_id, "conversation_id", self.index_session)

    async def read_record(self, conversation_id: str) -> ConversationRecord | None:
        cid = self._cid(conversation_id)
        return await self._run(lambda s: s.log().record(cid))

    async def read_records(self, *, scope: str | None = None,
                           limit: int | None = None) -> Sequence[ConversationRecord]:
        return await self._run(lambda s: s.records(scope, limit))

    async def write_record(self, record: ConversationRecord, *,
                           new_entries: Sequence[ConversationEntry] = (),
                           expected_revision: str | None) -> None:
        cid = self._cid(record.conversation_id)
        if any(isinstance(e.message, ModelRequest) and CAPTURED in (e.message.metadata or {})
               for e in new_entries):
            raise ConfigurationError(
                "MemoriCapability captured this run already and the store captures what it saves:"
                " use MemoriCapability(mem, capture=False) with the store", argument="capture")
        await self._run(lambda s: s.write(cid, record, list(new_entries), expected_revision))

    async def delete_record(self, conversation_id: str, *, expected_revision: str) -> None:
        cid = self._cid(conversation_id)
        await self._run(lambda s: s.write(cid, None, [], expected_revision))

    async def read_entry(self, entry_id: str) -> ConversationEntry:
        return await self._run(lambda s: s.entry(entry_id))

    async def read_history(self, head_id: str | None, *,
                           limit: int | None = None) -> list[ConversationEntry]:
        return await self._run(lambda s: s.history(head_id, limit))


class _Session:
    """The store's operations for one call, in a worker thread, under the attribution."""

    def __init__(self, store: MemoriConversationStore, mem: Memori, entity: str) -> None:
        self.store, self.mem, self.entity = store, mem, entity
        self.loaded: dict[str, dict[str, dict[str, Any]]] = {}  # session -> entry id -> JSON

    def log(self) -> _Log:
        return _Log(self.mem.session_messages(self.store.index_session))

    def records(self, scope: str | None, limit: int | None) -> list[ConversationRecord]:
        log = self.log()
        found = [r for cid in log.records if (r := log.record(cid)) is not None
                 and (scope is None or r.scope == scope)]
        found.sort(key=lambda r: r.updated_at, reverse=True)
        return found[:limit]

    def load(self, cid: str) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        for row in self.mem.session_messages(cid):
            meta = (row.get("metadata") or {}).get(_ENTRY)
            if meta is not None and "message" in meta:
                entries[meta["id"]] = meta
        self.loaded[cid] = entries
        if len(self.store._where) > _LOCATION_CACHE_SIZE:
            self.store._where.clear()
        self.store._where.update({(self.entity, e): cid for e in entries})
        return entries

    def find(self, entry_id: str) -> dict[str, Any] | None:
        """An entry's JSON: from the sessions read so far, the one it was last seen in, or
        every conversation the entity ever had (a fork's history crosses sessions)."""
        for entries in self.loaded.values():
            if entry_id in entries:
                return entries[entry_id]
        cached = self.store._where.get((self.entity, entry_id))
        for cid in [*([cached] if cached else []), *reversed(self.log().records)]:
            if cid not in self.loaded and entry_id in self.load(cid):
                return self.loaded[cid][entry_id]
        return None

    def entry(self, entry_id: str) -> ConversationEntry:
        if (found := self.find(entry_id)) is None:
            raise KeyError(f"conversation entry {entry_id!r} is not in the store")
        message = ModelMessagesTypeAdapter.validate_python([found["message"]])[0]
        return ConversationEntry(id=found["id"], parent_id=found["parent_id"], message=message)

    def history(self, head_id: str | None, limit: int | None) -> list[ConversationEntry]:
        out: list[ConversationEntry] = []
        while head_id is not None and (limit is None or len(out) < limit):
            out.append(self.entry(head_id))
            head_id = out[-1].parent_id
        return out[::-1]

    def capture(self, cid: str, rows: list[dict[str, Any]]) -> None:
        self.mem.set_session(cid)
        self.mem.capture(storable(self.mem, rows, "pydantic-ai"))

    def write(self, cid: str, record: ConversationRecord | None, new: list[ConversationEntry],
              expected: str | None) -> None:
        """Append ``new`` entries and the record (None: a delete) against ``expected``."""
        with self.store._write_lock:
            current = self.log().record(cid)
            if (current.revision if current else None) != expected or (
                    record is not None and record.head_id is not None
                    and record.head_id not in {e.id for e in new}
                    and self.find(record.head_id) is None):  # a delete released a fork's base
                raise cs.ConversationConflict(cid)
            rows = [row for entry in new for row in _entry_rows(entry)]
            if rows:
                self.capture(cid, rows)
            data = None if record is None else _RECORD.dump_python(record, mode="json")
            self.capture(self.store.index_session, [{"role": "system", "content": "", "metadata": {
                _EVENT: {"conversation_id": cid, "expected_revision": expected, "record": data}}}])
            log = self.log()
            stored = log.record(cid)
            if (stored.revision if stored else None) != (record.revision if record else None):
                raise cs.ConversationConflict(cid)  # another process's row came first
            if record is None:  # erase what no live conversation reads any more
                live = [c for c, r in log.records.items() if r is not None]
                needed = {a for c in live for a in log.ancestors(c)}
                for gone in [cid, *log.ancestors(cid)]:
                    if gone not in live and gone not in needed:
                        self.mem.clear_session(gone)


def _check_id(value: object, argument: str, index_session: str | None) -> str:
    if len(check_text(value, argument)) > _MAX_ID or value == index_session:
        raise ConfigurationError(f"{argument} must name a memori session (at most {_MAX_ID} "
                                 f"characters) other than index_session, got {value!r}",
                                 argument=argument)
    return str(value)


def _entry_rows(entry: ConversationEntry) -> list[dict[str, Any]]:
    rows = to_memori_messages(entry.message)
    if not rows:  # nothing to show as a chat message (e.g. only thinking): keep the entry anyway
        rows = [{"role": "assistant", "content": "", "metadata": {}}]
    message = ModelMessagesTypeAdapter.dump_python([entry.message], mode="json")[0]
    rows[0]["metadata"][_ENTRY] = {"id": entry.id, "parent_id": entry.parent_id,
                                   "message": message}
    return rows
