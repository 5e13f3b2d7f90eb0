"""``MemoriConversationStore``: Pydantic AI's ``ConversationStore`` on memori's conversation tables.

Layout, per memori entity (all through ``Memori``'s public API):

- each Pydantic AI conversation is the memori session named by its ``conversation_id``, holding
  only the conversation's chat messages (``user``, ``assistant``, ``tool``: see
  ``to_memori_messages``), so augmentation learns from them once; the first row of an entry
  carries ``metadata["pydantic_ai_entry"]`` = ``{"id", "parent_id", "message"}`` (the message
  as ``ModelMessagesTypeAdapter`` JSON);
- the session ``index_session`` is the store's log: one row per save or delete of any of the
  entity's conversations, ``metadata["pydantic_ai_record"]`` = ``{"conversation_id",
  "expected_revision", "record"}`` (``record`` None for a delete). A record is the newest row
  written against the revision current before it: a row that lost a race to another writer is
  ignored when the log is replayed, and its writer gets ``ConversationConflict``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter
from pydantic_ai.conversation_store import (
    ConversationConflict,
    ConversationEntry,
    ConversationRecord,
    ConversationStore,
)
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest

from memori_core import ConfigurationError, Memori
from memori_core.integration import check_memori, clean
from memori_pydantic_ai._capability import CAPTURED
from memori_pydantic_ai._convert import to_memori_messages
from memori_pydantic_ai._deps import Target

__all__ = ["DEFAULT_INDEX_SESSION", "MemoriConversationStore"]

T = TypeVar("T")

#: The memori session holding a store's log of saves (per entity).
DEFAULT_INDEX_SESSION = "pydantic_ai.conversations"
_LOCATION_CACHE_SIZE = 100_000  # entry id -> conversation, kept in memory
_MAX_ID = 255  # memori session ids are VARCHAR(255)
_RECORD = TypeAdapter(ConversationRecord)
_ENTRY, _EVENT = "pydantic_ai_entry", "pydantic_ai_record"


class _Log:
    """The index session replayed: each conversation's current record (as JSON)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.records: dict[str, dict[str, Any] | None] = {}  # every conversation, oldest first
        self.forked_from: dict[str, str | None] = {}  # kept after a delete
        for row in rows:
            event = (row.get("metadata") or {}).get(_EVENT)
            if event is None:
                continue
            cid, current = event["conversation_id"], self.records.get(event["conversation_id"])
            if event["expected_revision"] == (current or {}).get("revision"):
                self.records[cid] = event["record"]
                if event["record"] is not None:
                    self.forked_from[cid] = event["record"].get("forked_from")

    def record(self, cid: str) -> ConversationRecord | None:
        data = self.records.get(cid)
        return None if data is None else _RECORD.validate_python(data)

    def ancestors(self, cid: str) -> list[str]:
        """The conversations ``cid`` was forked from, nearest first."""
        out: list[str] = []
        parent = self.forked_from.get(cid)
        while parent is not None and parent not in out and parent != cid:
            out.append(parent)
            parent = self.forked_from.get(parent)
        return out


class MemoriConversationStore(ConversationStore):
    """A Pydantic AI ``ConversationStore`` keeping conversations in memori's conversation tables.

    ::

        store = MemoriConversationStore(mem, entity_id="user_123")
        conversation = await store.load(cid) or Conversation(conversation_id=cid)
        result = await agent.run("Hi", conversation=conversation)
        await store.save(result)

    Each conversation is the memori session named by its ``conversation_id``, of the store's
    entity: it holds the conversation's chat messages and nothing else
    (``mem.session_messages(cid)`` shows them, augmentation learns from them,
    ``mem.clear_session(cid)`` erases them); the full Pydantic AI message rides along in the
    rows' metadata, so ``load`` gives back exactly what was saved. The store captures what it
    saves, so pair it with ``MemoriCapability(mem, capture=False)``: a run the capability
    captured already is refused (``ConfigurationError``, ``argument="capture"``).

    Args:
        memori: the ``Memori`` instance.
        entity_id: whose conversations (default: the attribution set with ``mem.attribution``
            in the calling task, read at every call).
        process_id: the process rows are captured under (default: the calling task's, or none
            with an explicit ``entity_id``).
        index_session: the memori session holding the store's log (default
            ``"pydantic_ai.conversations"``); no conversation may use this id.

    Limits (memori's public API has no conditional write): the revision check is exact between
    tasks and threads using one store, and between processes on SQLite; on PostgreSQL or MariaDB
    two processes saving the same conversation at the same instant may both succeed, the later
    row being ignored on the next load. The entries and the record are two captures: a save
    that fails between them leaves entries no record points at (never loaded). Reads replay the
    log, so their cost grows with the number of saves. ``delete`` erases the conversation's
    messages unless a live fork still reads them; memories extracted from them stay.

    Raises:
        ConfigurationError: a bad argument, no entity, or a run ``MemoriCapability`` captured.
        StorageError: the database failed (from every method).
        ConversationConflict: as ``ConversationStore`` documents.
    """

    def __init__(self, memori: Memori, *, entity_id: str | None = None,
                 process_id: str | None = None,
                 index_session: str = DEFAULT_INDEX_SESSION) -> None:
        self.memori = check_memori(memori)
        if entity_id is None and process_id is not None:
            raise ConfigurationError(
                "process_id needs an entity_id: MemoriConversationStore(mem, entity_id=..., "
                "process_id=...)", argument="entity_id")
        self.index_session = _check_id(index_session, "index_session", None)
        if entity_id is not None:  # the core's rules, now rather than at the first save
            Target(memori, entity_id, process_id, index_session).call(lambda m: None)
        self.entity_id, self.process_id = entity_id, process_id
        self._write_lock = threading.Lock()
        self._locations: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._locations_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"MemoriConversationStore(entity_id={self.entity_id!r}, "
                f"index_session={self.index_session!r})")

    async def _run(self, fn: Callable[[_Session], T]) -> T:
        entity, process = self.entity_id, self.process_id
        if entity is None:
            entity, process = self.memori.entity_id, self.memori.process_id
        if entity is None:
            raise ConfigurationError(
                "MemoriConversationStore needs to know whose conversations to use: "
                "MemoriConversationStore(mem, entity_id=\"user_123\"), or call "
                "mem.attribution(entity_id=\"user_123\") before using the store",
                argument="entity_id")
        target = Target(self.memori, entity, process, self.index_session)
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
                "MemoriConversationStore captures the runs it saves, and MemoriCapability "
                "captured this one already: use MemoriCapability(mem, capture=False) with the "
                "store so each message is stored once", argument="capture")
        await self._run(lambda s: s.write(cid, record, list(new_entries), expected_revision))

    async def delete_record(self, conversation_id: str, *, expected_revision: str) -> None:
        cid = self._cid(conversation_id)
        await self._run(lambda s: s.delete(cid, expected_revision))

    async def read_entry(self, entry_id: str) -> ConversationEntry:
        return await self._run(lambda s: s.entry(entry_id))

    async def read_history(self, head_id: str | None, *,
                           limit: int | None = None) -> list[ConversationEntry]:
        """The entries up to ``head_id``, oldest first, read session by session."""
        return await self._run(lambda s: s.history(head_id, limit))

    def _located(self, entity: str, entry_id: str) -> str | None:
        with self._locations_lock:
            return self._locations.get((entity, entry_id))

    def _locate(self, entity: str, cid: str, entry_ids: Sequence[str]) -> None:
        with self._locations_lock:
            for entry_id in entry_ids:
                self._locations[(entity, entry_id)] = cid
                self._locations.move_to_end((entity, entry_id))
            while len(self._locations) > _LOCATION_CACHE_SIZE:
                self._locations.popitem(last=False)


class _Session:
    """The store's operations for one call, in a worker thread, under the entity's attribution."""

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
        self.store._locate(self.entity, cid, list(entries))
        return entries

    def find(self, entry_id: str) -> dict[str, Any] | None:
        """An entry's JSON: from the sessions read so far, the one it was last seen in, or
        every conversation the entity ever had (a fork's history crosses sessions)."""
        for entries in self.loaded.values():
            if entry_id in entries:
                return entries[entry_id]
        cached = self.store._located(self.entity, entry_id)
        for cid in [*([cached] if cached else []), *reversed(self.log().records)]:
            if cid not in self.loaded and entry_id in self.load(cid):
                return self.loaded[cid][entry_id]
        return None

    def entry(self, entry_id: str) -> ConversationEntry:
        found = self.find(entry_id)
        if found is None:
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
        self.mem.capture(clean(rows)[0])

    def event(self, cid: str, record: ConversationRecord | None, expected: str | None) -> None:
        data = None if record is None else _RECORD.dump_python(record, mode="json")
        self.capture(self.store.index_session, [{"role": "system", "content": "", "metadata": {
            _EVENT: {"conversation_id": cid, "expected_revision": expected, "record": data}}}])

    def write(self, cid: str, record: ConversationRecord, new_entries: list[ConversationEntry],
              expected: str | None) -> None:
        with self.store._write_lock:
            current = self.log().record(cid)
            if (current.revision if current is not None else None) != expected:
                raise ConversationConflict(cid)
            if (record.head_id is not None and record.head_id not in {e.id for e in new_entries}
                    and self.find(record.head_id) is None):
                raise ConversationConflict(cid)  # a concurrent delete released the fork's base
            rows = [row for entry in new_entries for row in _entry_rows(entry)]
            if rows:
                self.capture(cid, rows)
            self.event(cid, record, expected)
            stored = self.log().record(cid)
            if stored is None or stored.revision != record.revision:
                raise ConversationConflict(cid)  # another process's row came first

    def delete(self, cid: str, expected: str) -> None:
        with self.store._write_lock:
            current = self.log().record(cid)
            if current is None or current.revision != expected:
                raise ConversationConflict(cid)
            self.event(cid, None, expected)
            log = self.log()
            if log.record(cid) is not None:
                raise ConversationConflict(cid)
            live = [c for c, r in log.records.items() if r is not None]
            needed = {a for c in live for a in log.ancestors(c)}
            for gone in [cid, *log.ancestors(cid)]:
                if gone not in live and gone not in needed:
                    self.mem.clear_session(gone)


def _check_id(value: object, argument: str, index_session: str | None) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
        raise ConfigurationError(
            f"{argument} must be a non-empty str of at most {_MAX_ID} characters (it names a "
            f"memori session), got {value!r}", argument=argument)
    if value == index_session:
        raise ConfigurationError(
            f"{argument} {value!r} is the store's index session; use another conversation id or "
            "MemoriConversationStore(..., index_session=...)", argument=argument)
    return value


def _entry_rows(entry: ConversationEntry) -> list[dict[str, Any]]:
    rows = to_memori_messages(entry.message)
    if not rows:  # nothing to show as a chat message (e.g. only thinking): keep the entry anyway
        rows = [{"role": "assistant", "content": "", "metadata": {}}]
    message = ModelMessagesTypeAdapter.dump_python([entry.message], mode="json")[0]
    rows[0]["metadata"][_ENTRY] = {"id": entry.id, "parent_id": entry.parent_id,
                                   "message": message}
    return rows
