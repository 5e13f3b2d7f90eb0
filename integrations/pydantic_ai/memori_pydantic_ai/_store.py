"""``MemoriConversationStore``: Pydantic AI's ``ConversationStore`` on memori's conversation tables.

Layout, per memori entity (all through ``Memori``'s public API):

- each Pydantic AI conversation is the memori session named by its ``conversation_id``; every
  stored ``ConversationEntry`` is captured there as ordinary memori messages (``user``,
  ``assistant``, ``tool``: see ``to_memori_messages``), so augmentation turns the user's words
  into memories; the first row of an entry carries ``metadata["pydantic_ai_entry"]`` =
  ``{"id", "parent_id", "message"}`` (the message as ``ModelMessagesTypeAdapter`` JSON);
- each save of a conversation appends one ``system`` row with ``metadata["pydantic_ai_record"]``
  = ``{"expected_revision", "record"}`` (``record`` None for a delete) in the same capture, so
  the entries and their record are written in one transaction;
- the session ``index_session`` lists the conversations (``metadata["pydantic_ai_index"]`` =
  ``{"conversation_id", "event": "created" | "deleted", "forked_from"}``), for listing them and
  finding the entries a fork shares with the conversation it came from.

Memori sessions only grow (rows are never updated), so a record is the newest record row whose
``expected_revision`` was the revision current before it: a row that lost a race to another
writer is ignored when the log is replayed, and its writer gets ``ConversationConflict``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
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
from memori_pydantic_ai._convert import to_memori_messages
from memori_pydantic_ai._deps import Target

__all__ = ["DEFAULT_INDEX_SESSION", "MemoriConversationStore"]

T = TypeVar("T")

#: The memori session that lists a store's conversations (per entity).
DEFAULT_INDEX_SESSION = "pydantic_ai.conversations"
#: How many entry locations (entry id -> conversation) a store keeps in memory.
_LOCATION_CACHE_SIZE = 100_000
_MAX_ID = 255  # memori session ids are VARCHAR(255)

_RECORD = TypeAdapter(ConversationRecord)
_ENTRY_KEY, _RECORD_KEY, _INDEX_KEY = "pydantic_ai_entry", "pydantic_ai_record", "pydantic_ai_index"


def _dump_message(entry: ConversationEntry) -> Any:
    return ModelMessagesTypeAdapter.dump_python([entry.message], mode="json")[0]


def _entry_metas(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored entries in a session's rows by id, still as JSON (cheap: not validated)."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        meta = (row.get("metadata") or {}).get(_ENTRY_KEY)
        if meta is not None and "message" in meta:
            found[meta["id"]] = meta
    return found


def _entry(meta: dict[str, Any]) -> ConversationEntry:
    message = ModelMessagesTypeAdapter.validate_python([meta["message"]])[0]
    return ConversationEntry(id=meta["id"], parent_id=meta["parent_id"], message=message)


def _replay(rows: list[dict[str, Any]]) -> ConversationRecord | None:
    """The current record in a session's rows: each record row applies only if it was written
    against the revision current before it (a row that lost a race is ignored)."""
    current: ConversationRecord | None = None
    for row in rows:
        event = (row.get("metadata") or {}).get(_RECORD_KEY)
        if event is None:
            continue
        if event["expected_revision"] == (current.revision if current is not None else None):
            data = event["record"]
            current = None if data is None else _RECORD.validate_python(data)
    return current


class _Index:
    """The index session replayed: which conversations exist, and what each was forked from."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.known: dict[str, None] = {}  # every conversation ever created, oldest first
        self.live: dict[str, None] = {}
        self.forked_from: dict[str, str | None] = {}
        for row in rows:
            event = (row.get("metadata") or {}).get(_INDEX_KEY)
            if event is None:
                continue
            cid = event["conversation_id"]
            if event["event"] == "created":
                self.known[cid] = None
                self.live[cid] = None
                self.forked_from[cid] = event.get("forked_from")
            else:
                self.live.pop(cid, None)

    def ancestors(self, cid: str) -> list[str]:
        """The conversations ``cid`` was forked from, nearest first (their entries may be in
        its history)."""
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
    entity: its messages are ordinary memori messages (``mem.session_messages(cid)`` shows them,
    augmentation turns the user's into memories, ``mem.clear_session(cid)`` erases them), and the
    full Pydantic AI message rides along in the rows' metadata, so ``load`` gives back exactly
    what was saved. Two entities never see each other's conversations; ``scope=`` narrows further
    as Pydantic AI documents.

    Args:
        memori: the ``Memori`` instance.
        entity_id: whose conversations (default: the attribution set with ``mem.attribution``
            in the calling task, read at every call).
        process_id: the process rows are captured under (default: the calling task's, or none
            with an explicit ``entity_id``).
        index_session: the memori session listing the conversations (default
            ``"pydantic_ai.conversations"``); no conversation may use this id.

    ``delete`` appends a tombstone and then erases the conversation's messages
    (``Memori.clear_session``) unless a live fork still reads them; messages erased later once
    no fork needs them. Memories already extracted from them stay (``Memori.forget_memories``).

    Limits (memori's public API has no conditional write): the revision check is exact between
    tasks and threads using one store, and between processes on SQLite; on PostgreSQL or MariaDB
    two processes saving the same conversation in the same instant may both succeed, the later
    row being ignored on the next load. Reads replay the conversation's session (and, for
    listing and forks, the index), so their cost grows with the conversation's saves.

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori``, an invalid id, no entity (at call
            time; ``argument`` names what to fix).
        StorageError: the database failed (from every method).
        ConversationConflict: as ``ConversationStore`` documents.
    """

    def __init__(self, memori: Memori, *, entity_id: str | None = None,
                 process_id: str | None = None,
                 index_session: str = DEFAULT_INDEX_SESSION) -> None:
        if not isinstance(memori, Memori):
            raise ConfigurationError(
                f"memori must be a memori_core.Memori, got {type(memori).__name__}",
                argument="memori")
        if entity_id is None and process_id is not None:
            raise ConfigurationError(
                "process_id needs an entity_id: MemoriConversationStore(mem, entity_id=..., "
                "process_id=...)", argument="entity_id")
        self.index_session = _check_conversation_id(index_session, "index_session", None)
        if entity_id is not None:  # the core's rules, now rather than at the first save
            with memori.attribution(entity_id=entity_id, process_id=process_id):
                memori.set_session(index_session)
        self.memori = memori
        self.entity_id = entity_id
        self.process_id = process_id
        self._write_lock = threading.Lock()
        self._locations: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._locations_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"MemoriConversationStore(entity_id={self.entity_id!r}, "
                f"index_session={self.index_session!r})")

    # ---- attribution & threads ---------------------------------------------------------------
    def _target(self) -> Target:
        if self.entity_id is not None:
            return Target(self.memori, self.entity_id, self.process_id, self.index_session)
        entity = self.memori.entity_id
        if entity is None:
            raise ConfigurationError(
                "MemoriConversationStore needs to know whose conversations to use: "
                "MemoriConversationStore(mem, entity_id=\"user_123\"), or call "
                "mem.attribution(entity_id=\"user_123\") before using the store",
                argument="entity_id")
        return Target(self.memori, entity, self.memori.process_id, self.index_session)

    async def _run(self, fn: Callable[[_Session], T]) -> T:
        target = self._target()
        return await target.run(lambda mem: fn(_Session(self, mem, target.entity_id)))

    def _cid(self, conversation_id: str) -> str:
        return _check_conversation_id(conversation_id, "conversation_id", self.index_session)

    # ---- ConversationStore primitives --------------------------------------------------------
    async def read_record(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation's current record, or None when the store doesn't have it."""
        cid = self._cid(conversation_id)
        return await self._run(lambda s: s.record(cid))

    async def read_records(self, *, scope: str | None = None,
                           limit: int | None = None) -> Sequence[ConversationRecord]:
        """The entity's conversations (with ``scope`` when given), last saved first."""
        return await self._run(lambda s: s.records(scope, limit))

    async def write_record(self, record: ConversationRecord, *,
                           new_entries: Sequence[ConversationEntry] = (),
                           expected_revision: str | None) -> None:
        """Append ``new_entries`` and ``record`` to the conversation's session in one capture.

        Raises:
            ConversationConflict: the stored revision isn't ``expected_revision``, the head
                entry is missing, or another writer won the race.
        """
        cid = self._cid(record.conversation_id)
        await self._run(lambda s: s.write(cid, record, list(new_entries), expected_revision))

    async def delete_record(self, conversation_id: str, *, expected_revision: str) -> None:
        """Delete the conversation's record; erase its messages unless a live fork reads them.

        Raises:
            ConversationConflict: the stored revision isn't ``expected_revision``.
        """
        cid = self._cid(conversation_id)
        await self._run(lambda s: s.delete(cid, expected_revision))

    async def read_entry(self, entry_id: str) -> ConversationEntry:
        """The entry with this id.

        Raises:
            KeyError: the store has no such entry.
        """
        return await self._run(lambda s: s.entry(entry_id))

    async def read_history(self, head_id: str | None, *,
                           limit: int | None = None) -> list[ConversationEntry]:
        """The entries up to ``head_id``, oldest first (only the last ``limit``), read session
        by session rather than one call per entry.

        Raises:
            KeyError: an entry of the history is missing.
        """
        return await self._run(lambda s: s.history(head_id, limit))

    # ---- entry locations -----------------------------------------------------------------------
    def _remember_locations(self, entity: str, cid: str, entry_ids: Iterable[str]) -> None:
        with self._locations_lock:
            for entry_id in entry_ids:
                self._locations[(entity, entry_id)] = cid
                self._locations.move_to_end((entity, entry_id))
            while len(self._locations) > _LOCATION_CACHE_SIZE:
                self._locations.popitem(last=False)

    def _location(self, entity: str, entry_id: str) -> str | None:
        with self._locations_lock:
            return self._locations.get((entity, entry_id))


class _Session:
    """The store's operations for one call, in a worker thread, under the entity's attribution
    (``Target.call`` restores the caller's afterwards)."""

    def __init__(self, store: MemoriConversationStore, mem: Memori, entity: str) -> None:
        self.store, self.mem, self.entity = store, mem, entity
        self.loaded: dict[str, dict[str, dict[str, Any]]] = {}  # session -> entry id -> JSON

    # reads
    def rows(self, cid: str) -> list[dict[str, Any]]:
        rows = self.mem.session_messages(cid)
        self.loaded[cid] = _entry_metas(rows)
        self.store._remember_locations(self.entity, cid, self.loaded[cid])
        return rows

    def index(self) -> _Index:
        return _Index(self.mem.session_messages(self.store.index_session))

    def record(self, cid: str) -> ConversationRecord | None:
        return _replay(self.rows(cid))

    def records(self, scope: str | None, limit: int | None) -> list[ConversationRecord]:
        found = [r for cid in self.index().live
                 if (r := self.record(cid)) is not None and (scope is None or r.scope == scope)]
        found.sort(key=lambda r: r.updated_at, reverse=True)
        return found[:limit]

    def find(self, entry_id: str) -> dict[str, Any] | None:
        """An entry's stored JSON, from the sessions read so far, the one it was last seen in,
        or else every conversation the entity ever had (a fork's history crosses sessions)."""
        for entries in self.loaded.values():
            if entry_id in entries:
                return entries[entry_id]
        cached = self.store._location(self.entity, entry_id)
        candidates = [cached] if cached is not None else []
        for cid in [*candidates, *(c for c in self.index().known if c != cached)]:
            if cid not in self.loaded:
                self.rows(cid)
                if entry_id in self.loaded[cid]:
                    return self.loaded[cid][entry_id]
        return None

    def entry(self, entry_id: str) -> ConversationEntry:
        found = self.find(entry_id)
        if found is None:
            raise KeyError(f"conversation entry {entry_id!r} is not in the store")
        return _entry(found)

    def history(self, head_id: str | None, limit: int | None) -> list[ConversationEntry]:
        out: list[ConversationEntry] = []
        entry_id = head_id
        while entry_id is not None and (limit is None or len(out) < limit):
            entry = self.entry(entry_id)
            out.append(entry)
            entry_id = entry.parent_id
        out.reverse()
        return out

    # writes
    def capture(self, cid: str, messages: list[dict[str, Any]]) -> None:
        self.mem.set_session(cid)
        self.mem.capture(messages)

    def write(self, cid: str, record: ConversationRecord, new_entries: list[ConversationEntry],
              expected_revision: str | None) -> None:
        with self.store._write_lock:
            current = self.record(cid)
            if (current.revision if current is not None else None) != expected_revision:
                raise ConversationConflict(cid)
            new_ids = {e.id for e in new_entries}
            if (record.head_id is not None and record.head_id not in new_ids
                    and self.find(record.head_id) is None):
                raise ConversationConflict(cid)  # a concurrent delete released the fork's base
            if expected_revision is None:  # a new conversation (or a fork): list it first
                self.capture(self.store.index_session, [_index_row(cid, "created",
                                                                   record.forked_from)])
            rows = [row for entry in new_entries for row in _entry_rows(entry)]
            rows.append(_record_row(record, expected_revision))
            self.capture(cid, rows)
            stored = self.record(cid)
            if stored is None or stored.revision != record.revision:
                raise ConversationConflict(cid)  # another process's row came first

    def delete(self, cid: str, expected_revision: str) -> None:
        with self.store._write_lock:
            current = self.record(cid)
            if current is None or current.revision != expected_revision:
                raise ConversationConflict(cid)
            self.capture(cid, [_record_row(None, expected_revision)])
            if self.record(cid) is not None:
                raise ConversationConflict(cid)
            self.capture(self.store.index_session, [_index_row(cid, "deleted", None)])
            index = self.index()
            needed = {a for live in index.live for a in index.ancestors(live)}
            for gone in [cid, *index.ancestors(cid)]:
                if gone not in index.live and gone not in needed:
                    self.mem.clear_session(gone)


def _check_conversation_id(value: object, argument: str, index_session: str | None) -> str:
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
        rows = [{"role": "system" if isinstance(entry.message, ModelRequest) else "assistant",
                 "content": "", "metadata": {}}]
    rows[0]["metadata"][_ENTRY_KEY] = {"id": entry.id, "parent_id": entry.parent_id,
                                       "message": _dump_message(entry)}
    for row in rows[1:]:
        row["metadata"][_ENTRY_KEY] = {"id": entry.id}
    return rows


def _record_row(record: ConversationRecord | None, expected_revision: str | None
                ) -> dict[str, Any]:
    data = None if record is None else _RECORD.dump_python(record, mode="json")
    what = "deleted" if record is None else f"saved, revision {record.revision}"
    return {"role": "system", "content": f"[pydantic-ai conversation {what}]",
            "metadata": {_RECORD_KEY: {"expected_revision": expected_revision, "record": data}}}


def _index_row(cid: str, event: str, forked_from: str | None) -> dict[str, Any]:
    return {"role": "system", "content": f"[pydantic-ai conversation {cid} {event}]",
            "metadata": {_INDEX_KEY: {"conversation_id": cid, "event": event,
                                      "forked_from": forked_from}}}
