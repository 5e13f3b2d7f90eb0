"""``RemoteMemori``: the ``Memori`` API against a ``memori serve`` (what ``Memori(url=...)``
returns).

A subclass of ``Memori``, so ``isinstance(mem, Memori)`` holds and attribution (entity,
process, session in context variables, ``with mem.attribution(...):``) is the local code
itself; the methods that read or write memories send one request each (``memories`` and
``forget_memories`` one per page or id) under the current attribution, as the request's
``entity_id`` / ``process_id`` / ``session_id``. ``mem.llm`` is the local ``LLMRegistry``
unchanged: registered clients recall and capture through the server, and a turn whose capture
fails (the server unreachable or answering 503 after the retries) is spilled and written
later, once (``POST /v1/turns`` carries an ``Idempotency-Key`` the server stores a turn once
for).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from memori_core._attribution import AttributionState
from memori_core._memori import Memori, memory_id_list
from memori_core._records import (
    Page,
    _cursor,
    _page_size,
    _row_id,
    check_entity_filter,
    check_memory_search,
    check_statuses,
    check_update,
    decode_cursor,
    encode_cursor,
    in_row_range,
)
from memori_core.augmentation.base import check_kinds
from memori_core.config import Config, StorageHandle
from memori_core.context import MemoryContext
from memori_core.context._steps import ContextLine
from memori_core.errors import ConfigurationError, StorageError
from memori_core.integration import check_limit
from memori_core.llm.registry import LLMRegistry
from memori_core.recall.rank import Scope, check_scope
from memori_core.remote._http import Http
from memori_core.types import Memory, RecallHit, RecallWhy, check_id

__all__ = ["RemoteAugmentation", "RemoteMemori"]

#: roles the server's history accepts; other roles (OpenAI's ``developer``) are sent as user
#: messages: only their text and ids matter to the context block
_ROLES = ("system", "user", "assistant", "tool")
#: items per page when ``memories()`` lists them all
_PAGE = 1000
#: seconds between two looks at the queue in ``augmentation.wait``
_POLL_S = 0.05


def _naive(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp of the API as the naive UTC datetime local mode gives."""
    if value is None:
        return None
    found = datetime.fromisoformat(value)
    return found.astimezone(timezone.utc).replace(tzinfo=None) if found.tzinfo else found


def _hit(d: Mapping[str, Any]) -> RecallHit:
    why = d.get("why")
    return RecallHit(**{**d, "created_at": _naive(d["created_at"]),
                        "source_message_ids": tuple(d["source_message_ids"]),
                        "memory_ids": tuple(d["memory_ids"]),
                        "why": None if why is None else RecallWhy(**why)})


def _memory(d: Mapping[str, Any]) -> Memory:
    return Memory(**{**d, "created_at": _naive(d["created_at"]),
                     "last_seen_at": _naive(d["last_seen_at"]),
                     "source_message_ids": tuple(d["source_message_ids"])})


def _dated(d: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """A record of the API with its timestamps ``keys`` as naive UTC datetimes."""
    return {**d, **{k: _naive(d[k]) for k in keys}}


def _message(d: Mapping[str, Any]) -> dict[str, Any]:
    """A stored message of the API as local mode gives it: ``name`` (and the provenance's
    ``conversation_id`` / ``session_id``) only when set, ``created_at`` naive UTC."""
    return {k: (_naive(v) if k == "created_at" else v) for k, v in d.items()
            if v is not None or k not in ("name", "conversation_id", "session_id")}


def _line(d: Mapping[str, Any]) -> ContextLine:
    return ContextLine(content=d["content"], kind=d["kind"], created_at=_naive(d["created_at"]),
                       essential=d["essential"], memory_ids=tuple(d["memory_ids"]),
                       source_message_ids=tuple(d["source_message_ids"]), score=d["score"],
                       similarity=d["similarity"], total_chars=d["total_chars"])


def _history(messages: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """``context(history=...)`` as the server takes it: role, content (text or parts) and the
    stored ``id``, the only parts the pipeline reads."""
    if messages is None:
        return None
    out = []
    for m in messages:
        content = m.get("content")
        item: dict[str, Any] = {
            "role": m.get("role") if m.get("role") in _ROLES else "user",
            "content": content if isinstance(content, (str, list)) else
            ("" if content is None else str(content))}
        mid = m.get("id")
        if isinstance(mid, int) and not isinstance(mid, bool):
            item["id"] = mid
        out.append(item)
    return out


def set_aside_path(url: str, setting: str) -> Path | None:
    """The set-aside file of a remote ``Memori`` for ``Config.llm_set_aside_path``: for
    ``"auto"``, under ``$XDG_STATE_HOME/memori/`` (default ``~/.local/state/memori/``) named
    after the server (``set-aside-remote-<host>-<port>.jsonl``); ``"off"``: None (memory
    only); else the path given."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    parts = urlsplit(url)
    name = "-".join(str(p) for p in ("remote", parts.hostname or "local", parts.port,
                                     parts.path.strip("/")) if p)
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "memori" / f"set-aside-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.jsonl"


class _ServerStorage(StorageHandle):
    """``mem.config.storage`` of a remote instance: the server builds its own schema, so
    ``build()`` only checks the server is ready (``GET /readyz``)."""

    def __init__(self, ready: Callable[[], bool], url: str) -> None:
        super().__init__(None)
        self._ready, self._url = ready, url

    def build(self) -> None:
        """Raises: StorageError when the server is not ready (unreachable, or its database
        down or not migrated)."""
        if not self._ready():
            raise StorageError(f"memori server {self._url} is not ready (GET /readyz)")


class RemoteAugmentation:
    """``mem.augmentation`` of a remote instance: the server's augmentation queue, seen
    through ``GET /v1/queue`` for the entities this instance captured for (and the current
    attribution's)."""

    def __init__(self, memori: RemoteMemori) -> None:
        self._memori = memori
        self._entities: set[str] = set()
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}

    def _note(self, entity_id: str) -> None:
        with self._lock:
            self._entities.add(entity_id)

    def _watched(self) -> list[str]:
        with self._lock:
            found = set(self._entities)
        current = self._memori.entity_id
        if current is not None:
            found.add(current)
        return sorted(found)

    def _queue(self, entity_id: str, statuses: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = self._memori._http.request(
            "GET", "/v1/queue", params={"entity_id": entity_id, "status": list(statuses),
                                        "limit": 1000})
        return found

    def pending(self) -> int:
        """Jobs queued or running of the watched entities: turns not yet recallable."""
        total = 0
        for entity in self._watched():
            counts = self._queue(entity, ("queued", "running"))["counts"]
            total += int(counts.get("queued", 0)) + int(counts.get("running", 0))
        return total

    def wait(self, timeout: float | None = 30.0) -> bool:
        """Block until the server finished every job (done or failed) of the entities this
        instance captured for, and of the current attribution's entity.

        Args:
            timeout: seconds; None waits indefinitely.

        Returns:
            True when they finished, False on timeout.

        Raises:
            StorageError: the server is unreachable or its database down; or the instance is
                closed.
            AuthenticationError: the key may not read the queue of one of the entities.
        """
        self._memori._ensure_ready()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def failed(self) -> list[dict[str, Any]]:
        """Failed jobs of the watched entities, as local mode lists them: dicts with ``id``,
        ``entity_id``, ``process_id``, ``message_ids``, ``attempts``, ``error``,
        ``finished_at`` (UTC, naive)."""
        out = []
        for entity in self._watched():
            for job in self._queue(entity, ("failed",))["items"]:
                out.append({"id": job["id"], "entity_id": entity,
                            "process_id": job["process_id"], "message_ids": job["message_ids"],
                            "attempts": job["attempts"], "error": job["error"],
                            "finished_at": _naive(job["finished_at"])})
        return sorted(out, key=lambda j: j["id"])

    def stop(self) -> None:
        """Nothing runs here: the server's workers do the jobs."""


class RemoteMemori(Memori):
    """``Memori(url=..., api_key=...)``: the ``Memori`` API against a ``memori serve``.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8765`` (default
            ``MEMORI_URL``).
        api_key: its API key (``memori keys create``; default ``MEMORI_API_KEY``).
        config: a ``Config`` (copied); by default ``MEMORI_*`` variables and ``settings``.
            Here it sets the client's side: ``database_timeout_seconds`` (connect and read
            timeout of each request, and the registered clients' bound),
            ``request_backoff_factor`` (first wait between retries), ``llm_*`` (spill
            buffer, set-aside file, history replay) and ``capture_max_message_chars``.
            Recall and context settings are the server's.
        transport: an ``httpx`` transport, for tests.
        **settings: any ``Config`` field.

    Differences from local mode: ``embedder``, ``engine`` and ``reembed`` are the server's
    (not here); ``recall`` / ``context`` use the server's settings; ``stats()`` needs a key
    for every entity; ``forget`` and ``import_`` need an admin key; ``augmentation`` waits
    for the server's jobs of the entities this instance captured for.

    Raises:
        ConfigurationError: no URL or no key, a URL that is not http(s), or an unknown
            setting; ``memori-core[remote]`` not installed.
    """

    def __init__(self, conn: object = None, *, url: str | None = None,
                 api_key: str | None = None, config: Config | None = None,
                 transport: Any = None, **settings: Any) -> None:
        if conn is not None:
            raise ConfigurationError("pass either conn= (a database) or url= (a memori "
                                     "server), not both", argument="conn")
        for name in ("embedder", "extractor"):
            if name in settings:
                raise ConfigurationError(
                    f"{name}= is the server's in remote mode (memori serve runs it); leave it "
                    "out of Memori(url=...)", argument=name)
        url = url or os.environ.get("MEMORI_URL")
        api_key = api_key or os.environ.get("MEMORI_API_KEY")
        if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigurationError(f"url must be a memori server's http(s) URL, e.g. "
                                     f"http://127.0.0.1:8765, got {url!r}", argument="url")
        if not api_key:
            raise ConfigurationError(
                "a memori server needs an API key: Memori(url=..., api_key=...) or "
                "MEMORI_API_KEY (`memori keys create --db URL --scope write` makes one)",
                argument="api_key")
        if config is None:
            config = Config.from_env(settings)
        else:  # a copy, as local mode makes
            config = dataclasses.replace(config, embeddings=dataclasses.replace(config.embeddings))
            for name, value in settings.items():
                config.set(name, value)
            config.validate()
        self.config = config
        self.url = url.rstrip("/")
        self._http = Http(self.url, api_key, timeout=self.config.database_timeout_seconds,
                          backoff=self.config.request_backoff_factor, transport=transport)
        self.config.storage = _ServerStorage(self._reachable, self.url)
        self._queue = RemoteAugmentation(self)
        self.augmentation = self._queue  # type: ignore[assignment]
        self._attribution = AttributionState()
        self._default_session = str(uuid.uuid4())
        self._closed = False
        self._ready = True
        self._ready_lock = threading.Lock()
        self.llm = LLMRegistry(self)

    # ---- what local mode reads from its database ---------------------------------------------
    def _ensure_ready(self) -> None:
        if self._closed:
            raise StorageError("this Memori instance is closed")

    @property
    def _store(self) -> Any:  # type: ignore[override]
        raise ConfigurationError(
            f"this call reads memori's database directly, which is memori server {self.url}'s "
            "in remote mode: use its /v1 API (memori_core.server), or Memori(conn=...) where "
            "the database is reachable", argument="url")

    @property
    def engine(self) -> Any:
        """Not in remote mode: the database is the server's.

        Raises:
            ConfigurationError: always.
        """
        raise ConfigurationError(f"a remote Memori has no engine: the database is memori "
                                 f"server {self.url}'s", argument="engine")

    def _reachable(self) -> bool:
        """Whether the server answers ``GET /readyz`` with 200 (its database reachable and
        migrated)."""
        try:
            self._http.request("GET", "/readyz")
        except Exception:  # noqa: BLE001 - unreachable is the answer
            return False
        return True

    def _set_aside_path(self) -> Path | None:
        return set_aside_path(self.url, self.config.llm_set_aside_path)

    def _turn_stored(self, messages: list[dict[str, Any]]) -> bool:
        # the server stores a turn once for its Idempotency-Key: a spilled turn is sent again
        return False

    def _refusal_hint(self, chars: int, reason: str) -> str:
        return ""

    # ---- capture & recall ---------------------------------------------------------------------
    def capture(self, messages: list[dict[str, Any]]) -> list[int]:
        """Store one turn on the server and queue its augmentation (``POST /v1/turns``), as
        ``Memori.capture`` does locally; the messages are checked here first, the same way.
        Messages without ``created_at`` get the current time (UTC), so a retry of this call
        is the same turn: the request's ``Idempotency-Key`` is a hash of entity, process,
        session and messages, and the server stores a turn once for it.

        Returns:
            the stored message ids, in order.

        Raises:
            ConfigurationError: no attribution, malformed or oversized messages, or the server
                refused them (``argument``: the field it named).
            AuthenticationError: the key may not capture for this entity (401 / 403).
            StorageError: the server is unreachable or its database down, after the retries;
                nothing of the turn was kept, or the server keeps it once when sent again.
        """
        att = self._require_entity("capture")
        normalized = self._normalized(messages)
        self._ensure_ready()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        sent = []
        for m, n in zip(messages, normalized, strict=True):
            item: dict[str, Any] = {"role": n.role, "content": m.get("content"),
                                    "created_at": (n.created_at or now).isoformat() + "+00:00"}
            for key in ("name", "tool_calls", "tool_call_id", "metadata"):
                if m.get(key) is not None:
                    item[key] = m[key]
            sent.append(item)
        body = {"entity_id": att.entity_id, "process_id": att.process_id,
                "session_id": att.session_id or self._default_session, "messages": sent}
        key = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False,
                                        default=str).encode()).hexdigest()
        found = self._http.request("POST", "/v1/turns", body=body, resend=True,
                                   headers={"Idempotency-Key": key})
        self._queue._note(att.entity_id or "")
        return list(found["message_ids"])

    def _recall(self, query: str, limit: int | None, scope: Scope, *, context: bool,
                kinds: Sequence[str] | None = None, include_superseded: bool = False,
                history: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        att = self._require_entity("context" if context else "recall")
        check_scope(scope)
        self._ensure_ready()
        found: dict[str, Any] = self._http.request("POST", "/v1/recall", resend=True, body={
            "entity_id": att.entity_id, "process_id": att.process_id, "query": query,
            "limit": limit, "scope": scope, "kinds": None if kinds is None else list(kinds),
            "include_superseded": bool(include_superseded), "history": _history(history),
            "context": context})
        return found

    def recall(self, query: str, limit: int | None = None, *, scope: Scope = "process",
               kinds: Sequence[str] | None = None, include_superseded: bool = False
               ) -> list[RecallHit]:
        """The current entity's memories most relevant to ``query``, ranked by the server
        (``POST /v1/recall``); arguments and result as ``Memori.recall``.

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            AuthenticationError: the key may not read this entity.
            StorageError: the server is unreachable, or its database or recall failed.
        """
        kinds = check_kinds(kinds)
        found = self._recall(query, limit, scope, context=False, kinds=kinds,
                             include_superseded=include_superseded)
        return [_hit(h) for h in found["hits"]]

    def context(self, query: str, *, history: Sequence[Mapping[str, Any]] | None = None,
                limit: int | None = None, scope: Scope = "process") -> MemoryContext:
        """The context pipeline run by the server for ``query`` (``POST /v1/recall``), as the
        ``MemoryContext`` ``Memori.context`` returns: the same lines, block and tokens.
        ``history`` is sent as role, content and stored ``id`` (roles the server does not
        know, e.g. ``developer``, as ``user``): what the pipeline reads of it.

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            AuthenticationError: the key may not read this entity.
            StorageError: the server is unreachable, or its database or recall failed.
        """
        found = self._recall(query, limit, scope, context=True, history=history)["context"]
        return MemoryContext(lines=[_line(x) for x in found["lines"]], block=found["block"],
                             tokens=found["tokens"], budget=found["budget"])

    def session_messages(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Messages of a session of the current entity, oldest first, as
        ``Memori.session_messages`` gives them (``created_at`` UTC, naive)."""
        found = self._on_session("session_messages", session_id, "GET", "/messages")
        return [_message(m) for m in found["items"]]

    def clear_session(self, session_id: str | None = None) -> int:
        """Delete the messages of a session of the current entity (default: the current one)
        on the server, as ``Memori.clear_session``. Returns how many were deleted."""
        return int(self._on_session("clear_session", session_id, "DELETE", "")["deleted"])

    def _on_session(self, what: str, session_id: str | None, method: str, tail: str) -> Any:
        """``method /v1/sessions/{id}{tail}`` for a session of the current entity (default:
        the current session)."""
        att = self._require_entity(what)
        sid = (att.session_id or self._default_session) if session_id is None else session_id
        check_id(sid, "session_id")
        self._ensure_ready()
        return self._http.request(method, f"/v1/sessions/{quote(sid, safe='')}{tail}",
                                  params={"entity_id": att.entity_id})

    # ---- memories managed directly -------------------------------------------------------------
    def remember(self, content: str, *, kind: str = "fact", slot: str | None = None,
                 importance: float | None = None) -> int:
        """Store a memory for the current entity (and process) on the server
        (``POST /v1/memories``), recallable when this returns; as ``Memori.remember``.

        Returns:
            the memory's row id.

        Raises:
            ConfigurationError: no attribution, or a bad argument (as the server names it).
            AuthenticationError: the key may not write this entity.
            StorageError: the server is unreachable or its database down.
        """
        att = self._require_entity("remember")
        if not isinstance(content, str) or not content.strip():
            raise ConfigurationError("content must be a non-empty str", argument="content")
        self._ensure_ready()
        found = self._http.request("POST", "/v1/memories", body={
            "entity_id": att.entity_id, "process_id": att.process_id, "content": content,
            "kind": kind, "slot": slot, "importance": importance})
        return int(found["id"])

    def memories(self, *, kinds: Sequence[str] | None = None, include_superseded: bool = False,
                 scope: Scope = "process", limit: int | None = None) -> list[Memory]:
        """The current entity's memories, newest first, read a page (1,000) at a time from
        ``GET /v1/memories``; arguments and result as ``Memori.memories``."""
        att = self._require_entity("memories")
        check_scope(scope)
        kinds = check_kinds(kinds)
        limit = check_limit(limit, "limit")
        self._ensure_ready()
        out: list[Memory] = []
        cursor = None
        while limit is None or len(out) < limit:
            page = self._http.request("GET", "/v1/memories", params={
                "entity_id": att.entity_id, "process_id": att.process_id, "kind": kinds,
                "scope": scope, "include_superseded": str(bool(include_superseded)).lower(),
                "limit": _PAGE if limit is None else min(_PAGE, limit - len(out)),
                "cursor": cursor})
            out += [_memory(m) for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return out

    def forget_memories(self, memory_ids: Sequence[int]) -> int:
        """Delete memories of the current entity by id (``DELETE /v1/memories/{id}``, one
        request each); ids of other entities' memories and unknown ids are ignored.

        Returns:
            how many were deleted.
        """
        att = self._require_entity("forget_memories")
        ids = memory_id_list(memory_ids)
        self._ensure_ready()
        deleted = 0
        for mid in dict.fromkeys(ids):
            found = self._http.request("DELETE", f"/v1/memories/{mid}",
                                       params={"entity_id": att.entity_id}, missing=True)
            deleted += 0 if found is None else int(found["deleted"])
        return deleted

    # ---- browsing (``memori_core._records`` over the /v1 routes) ------------------------------
    def _get(self, what: str, path: str, params: Mapping[str, Any] | None = None, *,
             missing: bool = False) -> Any:
        """``GET path`` for the current entity (checked first)."""
        att = self._require_entity(what)
        self._ensure_ready()
        return self._http.request("GET", path, params={"entity_id": att.entity_id,
                                                       **(params or {})}, missing=missing)

    def _of_memory(self, what: str, memory_id: object, method: str = "GET", tail: str = "",
                   body: Any = None) -> Any:
        """``method /v1/memories/{id}{tail}`` for the current entity; None for a memory it
        does not have (404)."""
        mid = _row_id(memory_id, "memory_id")
        att = self._require_entity(what)
        if not in_row_range(mid):
            return None
        self._ensure_ready()
        return self._http.request(method, f"/v1/memories/{mid}{tail}", body=body,
                                  params={"entity_id": att.entity_id}, missing=True)

    def memory(self, memory_id: int) -> Memory | None:
        """One memory of the current entity by id (``GET /v1/memories/{id}``), as
        ``Memori.memory``: None when the entity has no such memory."""
        found = self._of_memory("memory", memory_id)
        return None if found is None else _memory(found)

    def memory_page(self, *, kinds: Sequence[str] | None = None,
                    include_superseded: bool = False, scope: Scope = "process",
                    before: int | None = None, limit: int | None = None,
                    q: str | None = None, since: datetime | date | str | None = None,
                    until: datetime | date | str | None = None) -> Page[Memory]:
        """A page of the current entity's memories, newest first (``GET /v1/memories``);
        arguments (``q``, ``since``, ``until`` included), result and cursor as
        ``Memori.memory_page``."""
        kinds = check_kinds(kinds)
        text, start, end = check_memory_search(q, since, until)
        att, size, cursor = self._paging("memory_page", scope, before, limit)
        page = self._http.request("GET", "/v1/memories", params={
            "entity_id": att.entity_id, "process_id": att.process_id, "kind": kinds,
            "scope": scope, "include_superseded": str(bool(include_superseded)).lower(),
            "limit": size, "cursor": encode_cursor(cursor), "q": text,
            "since": None if start is None else start.isoformat() + "+00:00",
            "until": None if end is None else end.isoformat() + "+00:00"})
        return [_memory(m) for m in page["items"]], decode_cursor(page["next_cursor"])

    def update_memory(self, memory_id: int, content: str, *, kind: str | None = None,
                      slot: str | None = None, importance: float | None = None) -> int | None:
        """Correct a memory of the current entity (``PATCH /v1/memories/{id}``; a write key),
        as ``Memori.update_memory``: the new version's id, or None when the entity has no
        memory ``memory_id``."""
        _row_id(memory_id, "memory_id")
        self._require_entity("update_memory")
        content = check_update(content, kind, slot, importance)
        found = self._of_memory("update_memory", memory_id, "PATCH", body={
            "content": content, "kind": kind, "slot": slot, "importance": importance})
        return None if found is None else int(found["memory"]["id"])

    def memory_history(self, memory_id: int) -> list[Memory] | None:
        """The versions a memory of the current entity replaced, newest first
        (``GET /v1/memories/{id}/history``), as ``Memori.memory_history``."""
        found = self._of_memory("memory_history", memory_id, tail="/history")
        return None if found is None else [_memory(m) for m in found["items"]]

    def memory_provenance(self, memory_id: int) -> dict[str, Any] | None:
        """Where a memory of the current entity came from
        (``GET /v1/memories/{id}/provenance``), as ``Memori.memory_provenance``."""
        found = self._of_memory("memory_provenance", memory_id, tail="/provenance")
        if found is None:
            return None
        return {"messages": [_message(m) for m in found["messages"]],
                "conversations": [_dated(c, "created_at", "last_activity_at")
                                  for c in found["conversations"]]}

    def processes(self) -> list[dict[str, Any]]:
        """The current entity's processes with counts (``GET /v1/processes``), as
        ``Memori.processes``."""
        return list(self._get("processes", "/v1/processes")["items"])

    def sessions(self, *, scope: Scope = "process", before: int | None = None,
                 limit: int | None = None) -> Page[dict[str, Any]]:
        """The current entity's sessions, newest first (``GET /v1/sessions``), as
        ``Memori.sessions``."""
        att, size, cursor = self._paging("sessions", scope, before, limit)
        page = self._get("sessions", "/v1/sessions", {
            "process_id": att.process_id if scope == "process" else None, "limit": size,
            "cursor": encode_cursor(cursor)})
        return ([_dated(x, "created_at", "last_activity_at") for x in page["items"]],
                decode_cursor(page["next_cursor"]))

    def conversations(self, session_id: str | None = None, *, before: int | None = None,
                      limit: int | None = None) -> Page[dict[str, Any]]:
        """The current entity's conversations, newest first (``GET /v1/conversations``), as
        ``Memori.conversations``."""
        if session_id is not None:
            check_id(session_id, "session_id")
        size, cursor = _page_size(limit), _cursor(before, "before")
        page = self._get("conversations", "/v1/conversations", {
            "session_id": session_id, "limit": size, "cursor": encode_cursor(cursor)})
        return ([_dated(x, "created_at", "last_activity_at") for x in page["items"]],
                decode_cursor(page["next_cursor"]))

    def conversation_messages(self, conversation_id: int, *, after: int | None = None,
                              limit: int | None = None) -> Page[dict[str, Any]] | None:
        """Messages of one of the current entity's conversations, oldest first
        (``GET /v1/conversations/{id}/messages``), as ``Memori.conversation_messages``."""
        cid = _row_id(conversation_id, "conversation_id")
        size, cursor = _page_size(limit), _cursor(after, "after")
        if not in_row_range(cid):
            self._require_entity("conversation_messages")
            return None
        page = self._get("conversation_messages", f"/v1/conversations/{cid}/messages", {
            "limit": size, "cursor": encode_cursor(cursor)}, missing=True)
        if page is None:
            return None
        return [_message(m) for m in page["items"]], decode_cursor(page["next_cursor"])

    def triples(self, *, scope: Scope = "process", before: int | None = None,
                limit: int | None = None) -> Page[dict[str, Any]]:
        """The current entity's knowledge-graph triples, newest first (``GET /v1/triples``),
        as ``Memori.triples``."""
        att, size, cursor = self._paging("triples", scope, before, limit)
        page = self._get("triples", "/v1/triples", {
            "process_id": att.process_id if scope == "process" else None, "limit": size,
            "cursor": encode_cursor(cursor)})
        return ([_dated(x, "created_at", "last_seen_at") for x in page["items"]],
                decode_cursor(page["next_cursor"]))

    def jobs(self, *, statuses: Sequence[str] | None = None, before: int | None = None,
             limit: int | None = None) -> tuple[dict[str, int], list[dict[str, Any]], int | None]:
        """The current entity's augmentation jobs: counts and a page, newest first
        (``GET /v1/queue``), as ``Memori.jobs``."""
        found = check_statuses(statuses)
        size, cursor = _page_size(limit), _cursor(before, "before")
        page = self._get("jobs", "/v1/queue", {"status": found, "limit": size,
                                               "cursor": encode_cursor(cursor)})
        return (dict(page["counts"]),
                [_dated(j, "created_at", "run_after", "claimed_at", "finished_at")
                 for j in page["items"]], decode_cursor(page["next_cursor"]))

    def retry_job(self, job_id: int) -> bool:
        """Queue a failed augmentation job of the current entity again
        (``POST /v1/queue/{id}/retry``; an admin key), as ``Memori.retry_job``."""
        jid = _row_id(job_id, "job_id")
        att = self._require_entity("retry_job")
        if not in_row_range(jid):
            return False
        self._ensure_ready()
        return self._http.request("POST", f"/v1/queue/{jid}/retry", missing=True,
                                  params={"entity_id": att.entity_id}) is not None

    def entities(self, *, ids: Sequence[str] | None = None, prefix: str | None = None,
                 after: int | None = None, limit: int | None = None) -> Page[dict[str, Any]]:
        """Entities with counts, in creation order (``GET /v1/entities``), as
        ``Memori.entities``; a key limited to some entities lists only those."""
        ids = check_entity_filter(ids, prefix)
        size, cursor = _page_size(limit), _cursor(after, "after")
        self._ensure_ready()
        if ids is not None and not ids:
            return [], None
        page = self._http.request("GET", "/v1/entities", params={
            "entity_id": ids, "prefix": prefix or None, "limit": size,
            "cursor": encode_cursor(cursor)})
        return ([_dated(e, "created_at") for e in page["items"]],
                decode_cursor(page["next_cursor"]))

    def schema_status(self) -> dict[str, int]:
        """The server's database schema (``GET /readyz``): ``{"version", "latest"}``, equal
        (the server answers only with a current schema).

        Raises:
            StorageError: the server is unreachable or not ready (its database down, or its
                schema not this server's).
        """
        self._ensure_ready()
        version = int(self._http.request("GET", "/readyz")["schema_version"])
        return {"version": version, "latest": version}

    def key_grant(self) -> dict[str, Any]:
        """The grant of this instance's API key (``GET /v1/keys/me``): ``scope``,
        ``entity_ids`` (the only entities it may touch, or None), ``entity_prefix``,
        ``key_id``, ``name``.

        Raises:
            AuthenticationError: the server refuses the key.
            StorageError: the server is unreachable.
        """
        self._ensure_ready()
        found: dict[str, Any] = self._http.request("GET", "/v1/keys/me")
        return found

    # ---- export, import, forget ---------------------------------------------------------------
    def export(self, entity_id: str | None = None, process_id: str | None = None
               ) -> dict[str, Any]:
        """Everything the server stores for an entity (``GET /v1/export``), the format of
        ``Memori.export``."""
        if entity_id is None:
            entity_id = self._require_entity("export").entity_id
        check_id(entity_id, "entity_id")
        self._ensure_ready()
        found: dict[str, Any] = self._http.request(
            "GET", "/v1/export", params={"entity_id": entity_id, "process_id": process_id})
        return found

    def import_(self, data: Mapping[str, Any], *, entity_id: str | None = None
                ) -> dict[str, int]:
        """Restore an export on the server (``POST /v1/import``; an admin key), as
        ``Memori.import_``. Returns rows written per table."""
        if entity_id is not None:
            check_id(entity_id, "entity_id")
        self._ensure_ready()
        found = self._http.request("POST", "/v1/import", body={"data": data,
                                                               "entity_id": entity_id})
        counts: dict[str, int] = found["counts"]
        return counts

    def forget(self, entity_id: str, process_id: str | None = None, *,
               vacuum: bool = False) -> dict[str, int]:
        """Erase an entity (or one of its processes) on the server
        (``DELETE /v1/entities/{id}``; an admin key), after dropping its turns waiting in
        this instance's spill buffer. ``vacuum`` is the server operator's
        (``memori forget --vacuum``): True is refused here.

        Returns:
            rows deleted per table name.
        """
        check_id(entity_id, "entity_id")
        if process_id is not None:
            check_id(process_id, "process_id")
        if vacuum:
            raise ConfigurationError("vacuum rewrites the server's tables: run `memori forget "
                                     "--vacuum` where the server runs", argument="vacuum")
        self._ensure_ready()
        self.llm.forget_spilled(entity_id, process_id)
        found = self._http.request("DELETE", f"/v1/entities/{quote(entity_id, safe='')}",
                                   params={"process_id": process_id})
        counts: dict[str, int] = found["counts"]
        return counts

    def reembed(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Not in remote mode.

        Raises:
            ConfigurationError: always: run ``memori reembed --db URL`` on the server's
                database.
        """
        raise ConfigurationError("re-embedding is the server's: run `memori reembed --db URL` "
                                 "on its database", argument="url")

    def stats(self) -> dict[str, Any]:
        """The server's ``stats`` (``GET /v1/stats``; a key for every entity) with this
        instance's registered-client counters as ``"llm"``."""
        self._ensure_ready()
        found: dict[str, Any] = self._http.request("GET", "/v1/stats")
        return {**found, "llm": self.llm.stats()}

    # ---- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Write the spilled turns (what cannot be written goes to the set-aside file), restore
        registered clients and close the connection pool. Idempotent."""
        if self._closed:
            return
        self.llm.close()
        self._closed = True
        self._http.close()

    def __repr__(self) -> str:
        return f"Memori(url={self.url!r}, closed={self._closed})"
