"""The ``Memori`` facade: wires storage, attribution, capture, augmentation and recall together."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from memori_core._attribution import Attribution, AttributionState
from memori_core._records import Records
from memori_core.augmentation.base import MEMORY_KINDS, Extractor, check_kinds, dated_text
from memori_core.augmentation.rules import RuleExtractor, rate_importance
from memori_core.augmentation.worker import Augmentation
from memori_core.config import Config, StorageHandle
from memori_core.context import ContextSettings, MemoryContext
from memori_core.context import build as build_context
from memori_core.embeddings.base import Embedder
from memori_core.embeddings.local import LocalEmbedder
from memori_core.errors import ConfigurationError, StorageError
from memori_core.llm._set_aside import set_aside_path
from memori_core.llm.registry import LLMRegistry
from memori_core.recall.rank import Recaller, Scope, check_scope, scope_processes
from memori_core.storage import portability
from memori_core.storage.connect import connect
from memori_core.storage.store import Store
from memori_core.types import CapturedMessage, Memory, RecallHit, check_id, normalize_messages

__all__ = ["Memori"]

_log = logging.getLogger("memori_core")


class _Default:
    """The default of ``Memori(extractor=...)``: a ``RuleExtractor``."""

    def __repr__(self) -> str:
        return "RuleExtractor()"


_DEFAULT = _Default()
#: row ids and LIMITs are 64-bit signed integers in every database
_MAX_ROW_ID = 2**63 - 1
_MIN_ROW_ID = -(2**63)


def memory_id_list(memory_ids: object) -> list[int]:
    """``forget_memories``' argument as a list of ints.

    Raises:
        ConfigurationError: not an iterable of ints (``argument="memory_ids"``).
    """
    ids = None if isinstance(memory_ids, (str, bytes, Mapping)) or \
        not isinstance(memory_ids, Iterable) else list(memory_ids)
    if ids is None or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ConfigurationError("memory_ids must be a list of int memory ids",
                                 argument="memory_ids")
    return ids


class Memori(Records):
    """Persistent memory for an LLM application.

    Args:
        conn: where memories live. None: ``MEMORI_DATABASE_URL`` or the embedded SQLite file
            ``./memori.db``. Also a URL string (``sqlite:///file.db``,
            ``postgresql://user@host/db``, ``mysql://`` / ``mariadb://...``), an SQLAlchemy
            ``Engine``, ``sessionmaker`` or ``Session``, a zero-argument callable returning a
            DB-API connection (sqlite3, psycopg, PyMySQL), or a Django connection. memori's
            tables (``memori_*``) are created, or migrated from an older memori-core, on first
            use, beside any tables the database already holds.
        config: a ``Config`` (copied; ``mem.config`` is the instance's own); by default the
            seed's defaults overridden by ``MEMORI_*`` environment variables and by ``settings``.
        embedder: an ``Embedder``; default ``LocalEmbedder(config.embeddings.model)``.
        extractor: the ``Extractor`` run on every turn besides episodic memories: default
            ``RuleExtractor()`` (offline, deterministic); ``LLMExtractor(...)`` for an
            OpenAI-compatible model; None for episodic memories only.
        url: a ``memori serve`` to use instead of a database (default ``MEMORI_URL`` when
            ``conn`` is None): the instance is then a ``memori_core.remote.RemoteMemori``
            (a subclass: the same API over HTTP), with ``api_key`` (default
            ``MEMORI_API_KEY``).
        api_key: the server's API key (``memori keys create``), with ``url``.
        **settings: any ``Config`` field, e.g. ``recall_relevance_threshold=0.2``.

    Attributes:
        config: this instance's ``Config``; ``config.storage.build()`` creates or migrates the
            schema at once (idempotent; otherwise the first call that needs it does).
        augmentation: the background job queue: ``wait(timeout)``, ``pending()``,
            ``failed()``.
        embedder: the ``Embedder`` in use.
        engine: the SQLAlchemy ``Engine`` every ``conn`` form was turned into.
        llm: provider clients made memory-aware: ``llm.register(client)`` (see
            ``memori_core.llm``).

    Attribution (``attribution()``, sessions) belongs to the instance and lives in context
    variables: each thread and asyncio task has its own, and two instances never share one.

    Raises:
        ConfigurationError: for an unsupported ``conn`` or an unknown setting.
        StorageError: when the embedded default database cannot be built.

    Example::

        with Memori() as mem:
            mem.attribution(entity_id="user_123", process_id="support_agent")
            mem.capture([{"role": "user", "content": "I live in Lisbon"}])
            mem.augmentation.wait(timeout=30)
            mem.recall("where does the user live?")
    """

    def __new__(cls, conn: object = None, *args: Any, url: str | None = None,
                **kwargs: Any) -> Memori:
        # Memori(url=...) (or MEMORI_URL without conn) is a client of memori serve
        if cls is Memori and (url is not None or (conn is None and os.environ.get("MEMORI_URL"))):
            from memori_core.remote import RemoteMemori

            return super().__new__(RemoteMemori)
        return super().__new__(cls)

    def __init__(self, conn: object = None, *, config: Config | None = None,
                 embedder: Embedder | None = None,
                 extractor: Extractor | None | _Default = _DEFAULT,
                 url: str | None = None, api_key: str | None = None,
                 **settings: Any) -> None:
        if config is None:
            config = Config.from_env(settings)
        else:
            # a copy: the storage handle set below is this instance's, so one Config can be
            # shared by several instances (on several databases) without rebinding the others
            config = dataclasses.replace(config, embeddings=dataclasses.replace(config.embeddings))
            for name, value in settings.items():
                config.set(name, value)
            config.validate()
        self.config = config
        connected = connect(conn, timeout=config.database_timeout_seconds)
        self._store = Store(connected.engine, connected.owned, pgvector=config.recall_pgvector)
        self.config.storage = StorageHandle(self._store)
        self.embedder: Embedder = embedder or LocalEmbedder(
            config.embeddings.model, batch_size=config.embeddings.batch_size,
            backend=config.embeddings.backend)
        self._recaller = Recaller(self._store, self.embedder, config)
        # wait() starts the workers, so jobs left queued by an earlier run are finished
        if isinstance(extractor, _Default):
            extractor = RuleExtractor()
        elif extractor is not None and not isinstance(extractor, Extractor):
            raise ConfigurationError(
                f"extractor must have an extract(conversation) method (RuleExtractor, "
                f"LLMExtractor, or None), got {type(extractor).__name__}", argument="extractor")
        self.augmentation = Augmentation(self._store, self.embedder, extractor, config,
                                         before_wait=self._ensure_ready)
        self._attribution = AttributionState()
        self._default_session = str(uuid.uuid4())
        self._closed = False
        self._ready = False
        self._ready_lock = threading.Lock()
        self.llm = LLMRegistry(self)
        if conn is None:
            try:
                self._store.build()
                self._ensure_ready()
            except BaseException:
                self.close()  # release the engine; the error is the caller's to see
                raise

    # ---- schema & workers ---------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._closed:
            raise StorageError("this Memori instance is closed")
        if self._ready:
            return
        with self._ready_lock:  # first calls from several threads start the workers once
            if self._ready:
                return
            if not self._store.is_built():
                self._store.build()  # first use: create or migrate (safe across processes)
            self.augmentation.start()
            self._ready = True

    @property
    def engine(self) -> Any:
        """The SQLAlchemy Engine memori uses."""
        return self._store.engine

    # ---- attribution ----------------------------------------------------------------------------
    def attribution(self, entity_id: str | None = None, process_id: str | None = None) -> Memori:
        """Set who the following calls are for, in the current thread or asyncio task.

        Args:
            entity_id: the end user (or other subject) memories belong to; 1-255 characters.
            process_id: the agent, app or persona; memories recalled are scoped to it.

        The session is kept when the entity is unchanged (or was not set yet), else cleared:
        a session belongs to one entity. Both ids are replaced: ``attribution(entity_id=x)``
        clears the process.

        Returns:
            this instance. ``with mem.attribution(...):`` restores the previous attribution
            on exit; only a ``with`` directly on the result of ``attribution()`` does that, any
            other ``with mem:`` closes the instance.

        Raises:
            ConfigurationError: for an empty, overlong or non-string id.
        """
        token = self._attribution.set(entity_id, process_id)
        self._attribution.pending.set(token)
        return self

    @property
    def entity_id(self) -> str | None:
        """The current entity id in this thread / task, or None."""
        return self._attribution.current().entity_id

    @property
    def process_id(self) -> str | None:
        """The current process id in this thread / task, or None."""
        return self._attribution.current().process_id

    @property
    def session_id(self) -> str:
        """The current session id: the one set by ``new_session()`` / ``set_session()`` in this
        thread or task, else the instance's default session (a UUID made when the instance was
        created). Session ids are per entity: the same id under two entities is two sessions.
        So, like the threads of a web server, every context capturing for one user continues
        the same session until it is changed; the conversations in it are split after
        ``session_timeout_minutes`` idle."""
        return self._attribution.current().session_id or self._default_session

    def new_session(self) -> str:
        """Start a new session in the current context. Returns its id (a UUID string)."""
        return self._attribution.new_session()

    def set_session(self, session_id: str) -> str:
        """Continue (or start) the session ``session_id`` for the current entity.

        Raises:
            ConfigurationError: for an invalid id.
        """
        return self._attribution.set_session(session_id)

    def _require_entity(self, what: str) -> Attribution:
        self._attribution.pending.set(None)  # a later ``with mem:`` closes again
        att = self._attribution.current()
        if att.entity_id is None:
            raise ConfigurationError(
                f"{what} needs an attribution: call mem.attribution(entity_id=\"...\") first",
                argument="entity_id")
        return att

    # ---- capture & recall ---------------------------------------------------------------------
    def capture(self, messages: list[dict[str, Any]]) -> list[int]:
        """Store one turn and queue its augmentation, in one transaction.

        Args:
            messages: ``[{"role": "user"|"assistant"|"system"|"tool", "content": str | parts,
                "name": optional str}, ...]``; parts are OpenAI / Anthropic content parts, e.g.
                ``[{"type": "text", "text": "..."}, {"type": "image_url", ...}]`` (their text
                is indexed, the parts are stored as given). Each user message becomes an
                episodic memory once its augmentation job is done.

        Returns:
            the stored message ids (``memori_conversation_message.id``), in order.

        Raises:
            ConfigurationError: no attribution set, malformed messages, or a message over
                ``Config.capture_max_message_chars`` (nothing is written).
            StorageError: the database failed; nothing of the turn was kept.
        """
        att = self._require_entity("capture")
        normalized = self._normalized(messages)
        self._ensure_ready()
        session = att.session_id or self._default_session
        ids, _job = self._store.capture(
            entity_id=att.entity_id or "", process_id=att.process_id, session_id=session,
            messages=normalized,
            session_timeout=timedelta(minutes=self.config.session_timeout_minutes))
        self.augmentation.notify()
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("captured messages %s for entity %r process %r session %r: %s", ids,
                       att.entity_id, att.process_id, session,
                       [self._preview(m.content) for m in normalized])
        return ids

    def _normalized(self, messages: object) -> list[CapturedMessage]:
        """``capture``'s messages checked and normalized.

        Raises:
            ConfigurationError: malformed, too deeply nested, or a message over
                ``Config.capture_max_message_chars``.
        """
        try:
            normalized = normalize_messages(messages)
        except RecursionError:
            raise ConfigurationError(
                "messages nest content parts, tool calls or metadata too deeply to store "
                f"(over about {sys.getrecursionlimit()} levels): flatten them",
                argument="messages") from None
        bound = self.config.capture_max_message_chars
        for i, m in enumerate(normalized):
            size = max(len(m.content), len(m.content_json or ""))
            if size > bound:
                raise ConfigurationError(
                    f"messages[{i}] holds {size:,} characters, over capture_max_message_chars "
                    f"({bound:,}): cut it first, or raise the setting "
                    "(Memori(capture_max_message_chars=...))", argument="messages")
        return normalized

    # ---- what the LLM registry asks of the storage (a remote Memori answers over HTTP) ------
    def _reachable(self) -> bool:
        """Whether the database answers ``SELECT 1`` now."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:  # noqa: BLE001 - unreachable is the answer
            return False
        return True

    def _set_aside_path(self) -> Path | None:
        """The set-aside file of this database (``Config.llm_set_aside_path``), or None."""
        return set_aside_path(self.engine.url, self.config.llm_set_aside_path)

    def _turn_stored(self, messages: list[dict[str, Any]]) -> bool:
        """Whether a turn (each message with its ``created_at``) is stored already in the
        current attribution's session: a capture that failed may have committed."""
        try:
            normalized = normalize_messages(messages)
        except ConfigurationError:
            return False
        return self._store.turn_stored(self.entity_id or "", self.session_id, normalized)

    def _refusal_hint(self, chars: int, reason: str) -> str:
        """What to add to the reason the database refused a turn of ``chars`` characters."""
        if self._store.dialect in ("mysql", "mariadb") and (
                "gone away" in reason or "max_allowed_packet" in reason or "2006" in reason):
            return (f" (a turn of {chars:,} characters may exceed the server's "
                    "max_allowed_packet: raise it, or lower capture_max_message_chars)")
        return ""

    def _preview(self, text: str) -> str:
        """Memory or message text for log lines, cut to 80 characters when
        ``Config.debug_truncate`` (default True)."""
        if not self.config.log_content:
            return f"<{len(text)} characters>"
        if self.config.debug_truncate and len(text) > 80:
            return text[:77] + "..."
        return text

    def recall(self, query: str, limit: int | None = None, *, scope: Scope = "process",
               kinds: Sequence[str] | None = None, include_superseded: bool = False
               ) -> list[RecallHit]:
        """Memories of the current entity most relevant to ``query``.

        Hybrid and exact over every memory of the entity (no cap): cosine similarity of the
        embeddings (FAISS, exact inner product) and BM25 over the memory text, fused by
        reciprocal rank, plus small recency and mention bonuses (formula and weights:
        ``memori_core.recall.rank`` and ``Config.recall_*``). With ``scope="process"``
        (default) and a process set, only that process's memories and those captured without a
        process are searched; ``scope="entity"`` searches all of the entity's.

        Args:
            query: the text to match, usually the last user message.
            limit: at most this many hits (default ``Config.recall_facts_limit``, 5).
            scope: ``"process"`` or ``"entity"``.
            kinds: only these memory kinds, e.g. ``["fact", "preference"]`` (default all).
            include_superseded: also memories replaced by a newer one on the same slot
                (history, e.g. where the user lived before).

        Returns:
            at most ``limit`` hits, best first by ``score``, each with cosine similarity >=
            ``Config.recall_relevance_threshold`` (0.1); ``[]`` for an entity with no memories
            (turns whose augmentation is still pending are not recallable yet: see
            ``augmentation.pending()``).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            RecallError: embedding or search failed.
            StorageError: the database failed.
        """
        att = self._require_entity("recall")
        kinds = check_kinds(kinds)
        self._ensure_ready()
        hits = self._recaller.recall(
            query, self.config.recall_facts_limit if limit is None else limit,
            entity_id=att.entity_id or "", process_id=att.process_id, scope=scope,
            kinds=kinds, include_superseded=bool(include_superseded))
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("recall %r for entity %r process %r scope %s: %s",
                       self._preview(query), att.entity_id, att.process_id, scope,
                       [(round(h.similarity, 3), self._preview(h.content)) for h in hits])
        return hits

    def context(self, query: str, *, history: Sequence[Mapping[str, Any]] | None = None,
                limit: int | None = None, scope: Scope = "process") -> MemoryContext:
        """What the model should be shown for ``query``: the context pipeline
        (``memori_core.context``), the one every registered client, plugin and
        ``memori recall`` uses.

        Recall (``Config.auto_ingest``) -> one line per source turn -> relevance cut
        (``Config.context_relative_threshold``, ``context_semantic_threshold``) -> no
        questions or small talk -> nothing ``history`` already shows -> the essential
        memories first (``Config.conscious_ingest``) -> the token budget
        (``Config.context_tokens``; each memory cut past ``context_memory_tokens``) -> one
        framed block of dated, quoted lines.

        Args:
            query: the text to recall for, usually the last user message.
            history: the messages the model is given with it (``{"role", "content"}`` dicts,
                optionally with their stored ``id``); memories they hold are not repeated.
            limit: at most this many recalled memories (default
                ``Config.recall_facts_limit``, 5); essential ones come on top, at most
                ``Config.context_essential_limit``.
            scope: ``"process"`` or ``"entity"``, as for ``recall``.

        Returns:
            a ``MemoryContext``: ``lines`` (``ContextLine``), ``block`` (str, or None when
            nothing is worth showing), ``tokens`` (estimated, at most ``budget``).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            RecallError: embedding or search failed.
            StorageError: the database failed.
        """
        att = self._require_entity("context")
        check_scope(scope)
        self._ensure_ready()
        cfg = self.config
        entity = att.entity_id or ""
        hits = self.recall(query, limit, scope=scope) if cfg.auto_ingest else []
        essentials = self._recaller.essential(
            cfg.context_essential_limit, entity_id=entity, process_id=att.process_id,
            scope=scope) if cfg.conscious_ingest else []
        settings = ContextSettings(
            tokens=cfg.context_tokens, memory_tokens=cfg.context_memory_tokens,
            essential_share=cfg.context_essential_share,
            relative=cfg.context_relative_threshold, semantic=cfg.context_semantic_threshold)
        return build_context(hits, essentials, settings, history=history,
                             source_texts=lambda ids: self._store.message_texts(entity, ids))

    def session_messages(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Messages of a session of the current entity, oldest first.

        Returns:
            dicts with ``id``, ``role``, ``content`` (as captured: str or parts),
            ``created_at`` (UTC, naive), and ``name``, ``tool_calls``, ``tool_call_id``,
            ``metadata`` when they were captured. Empty for an unknown session.
        """
        att = self._require_entity("session_messages")
        sid = (att.session_id or self._default_session) if session_id is None else session_id
        check_id(sid, "session_id")
        self._ensure_ready()
        return self._store.session_messages(att.entity_id or "", sid)

    # ---- memories managed directly ---------------------------------------------------------------
    def remember(self, content: str, *, kind: str = "fact", slot: str | None = None,
                 importance: float | None = None) -> int:
        """Store a memory for the current entity (and process) directly, without a turn: what a
        "remember this" tool or an import calls. Embedded at once, so it is recallable when
        this returns; the same text again only bumps its ``mention_count`` (and keeps the
        higher importance).

        Args:
            content: the memory text, e.g. "The user is allergic to peanuts".
            kind: ``fact`` (default), ``preference``, ``skill``, ``attribute``, ``event`` or
                ``episodic``.
            slot: a key such as ``lives_in``: a newer memory on the same slot supersedes this.
            importance: in [0, 1], 0 = ordinary (``Memory.importance``); None (default): as
                ``RuleExtractor`` rates the text (``rules.rate_importance``), e.g. 1.0 for
                "The user is allergic to peanuts".

        Returns:
            the memory's row id (``Memory.id`` / ``RecallHit.id``).

        Raises:
            ConfigurationError: no attribution, empty content, unknown kind, an importance
                that is not a number in [0, 1].
            StorageError: the database failed.
        """
        att = self._require_entity("remember")
        if not isinstance(content, str) or not content.strip():
            raise ConfigurationError("content must be a non-empty str", argument="content")
        if kind not in MEMORY_KINDS:
            raise ConfigurationError(f"kind is {kind!r}; use one of {', '.join(MEMORY_KINDS)}",
                                     argument="kind")
        if slot is not None and (not isinstance(slot, str) or not slot.strip()):
            raise ConfigurationError("slot must be a non-empty str or None", argument="slot")
        if slot is not None:
            check_id(slot, "slot")  # at most 255 characters (a VARCHAR(255)), no NUL
        if "\x00" in content:
            raise ConfigurationError("content contains NUL bytes, which SQL text columns cannot "
                                     "hold; strip them first", argument="content")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError("content is not valid Unicode (a lone surrogate); it "
                                     "cannot be stored as UTF-8", argument="content") from exc
        if importance is None:
            importance = rate_importance(content, kind)
        elif isinstance(importance, bool) or not isinstance(importance, (int, float)) or \
                not 0.0 <= importance <= 1.0:
            raise ConfigurationError(f"importance must be a number in [0, 1] or None, got "
                                     f"{importance!r}", argument="importance")
        self._ensure_ready()
        vector = self.embedder.embed([content.strip()])[0]
        self._store.check_embedding_model(self.embedder.name, self.embedder.dim)
        return self._store.add_memories(att.entity_id or "", att.process_id,
                                        [(content.strip(), kind, slot, vector,
                                          float(importance))],
                                        self.embedder.name)[0]

    def memories(self, *, kinds: Sequence[str] | None = None, include_superseded: bool = False,
                 scope: Scope = "process", limit: int | None = None) -> list[Memory]:
        """The current entity's stored memories, newest first (no ranking: see ``recall``).

        Args:
            kinds: only these kinds (default all), e.g. ``["fact", "preference"]``.
            include_superseded: also memories replaced by a newer one on the same slot.
            scope: ``"process"`` (default: the current process's memories and those without
                one) or ``"entity"`` (all of the entity's).
            limit: at most this many (default all).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            StorageError: the database failed.
        """
        att = self._require_entity("memories")
        check_scope(scope)
        kinds = check_kinds(kinds)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigurationError(f"limit must be a positive int or None, got {limit!r}",
                                     argument="limit")
        self._ensure_ready()
        processes = scope_processes(self._store, att.process_id, scope)
        none: list[dict[str, Any]] = []
        rows = self._store.for_entity(att.entity_id or "", lambda pk: self._store.list_memories(
            pk, processes, kinds, include_superseded,
            None if limit is None else min(limit, _MAX_ROW_ID)), none)
        return [Memory(**r) for r in rows]

    def forget_memories(self, memory_ids: Sequence[int]) -> int:
        """Delete memories of the current entity by id, with their provenance and triples.
        Ids of other entities' memories, and ids no memory has, are ignored (never deleted).

        Returns:
            how many were deleted.

        Raises:
            ConfigurationError: no attribution, or ids that are not ints.
            StorageError: the database failed (nothing was deleted).
        """
        att = self._require_entity("forget_memories")
        ids = memory_id_list(memory_ids)
        self._ensure_ready()
        ids = [i for i in ids if _MIN_ROW_ID <= i <= _MAX_ROW_ID]  # no row has any other id
        if not ids:
            return 0
        return self._store.for_entity(att.entity_id or "",
                                      lambda pk: self._store.delete_memories(pk, ids), 0)

    def clear_session(self, session_id: str | None = None) -> int:
        """Delete the messages of a session of the current entity (default: the current
        session), with their queued augmentation. Memories already extracted from them stay:
        they are the entity's long-term memory (``forget_memories`` removes those).

        Returns:
            how many messages were deleted.

        Raises:
            ConfigurationError: no attribution, or an invalid session id.
            StorageError: the database failed (nothing was deleted).
        """
        att = self._require_entity("clear_session")
        sid = (att.session_id or self._default_session) if session_id is None else session_id
        check_id(sid, "session_id")
        self._ensure_ready()
        return self._store.for_entity(
            att.entity_id or "", lambda pk: self._store.delete_session_messages(pk, sid), 0)

    # ---- export, import, forget ------------------------------------------------------------------
    def export(self, entity_id: str | None = None, process_id: str | None = None
               ) -> dict[str, Any]:
        """Everything stored for an entity, as versioned JSON-ready data: sessions with their
        conversations and messages, memories (with history, provenance and embeddings),
        triples, process attributes and unfinished augmentation jobs. The format is
        documented in ``memori_core.storage.portability`` (``"format": "memori.export"``,
        ``"version": 1``); ``json.dumps`` writes it as is.

        Args:
            entity_id: whose data (default: the current attribution's entity).
            process_id: only this process's (persona's) rows of the entity; default all of
                the entity's (whatever the current attribution's process).

        Returns:
            the export; for an entity (or process) with no rows, one with empty lists.

        Raises:
            ConfigurationError: no entity_id and no attribution, or an invalid id.
            StorageError: the database failed.
        """
        if entity_id is None:
            entity_id = self._require_entity("export").entity_id
        check_id(entity_id, "entity_id")
        if process_id is not None:
            check_id(process_id, "process_id")
        self._ensure_ready()
        return portability.export_rows(self._store, entity_id or "", process_id)

    def import_(self, data: Mapping[str, Any], *, entity_id: str | None = None
                ) -> dict[str, int]:
        """Restore an export (``export()``, or ``memori export`` read back with ``json.load``)
        into this database, in one transaction, with new row ids and every link kept, so
        recall gives what it gave in the source. Memories embedded with another model than
        this instance's embedder are embedded again with it. Unfinished augmentation jobs are
        queued again.

        Args:
            data: the export.
            entity_id: import under this entity id instead of the export's.

        Returns:
            rows written per table name (``memori_entity_fact``: memories, ...).

        Raises:
            ConfigurationError: the data is not a valid export (the message names the field),
                its ``version`` is not one this memori reads, the database holds another
                embedding model than this instance's, or the entity (for a ``process_id``
                export: entity and process) already has rows here: an import never merges,
                so the same export imported twice fails the second time and changes nothing.
            StorageError: the database failed (nothing was written).
        """
        try:
            parsed = portability.parse_export(data)
        except RecursionError:
            raise ConfigurationError(
                "the export nests values too deeply to be one memori made (over about "
                f"{sys.getrecursionlimit()} levels)", argument="data") from None
        if entity_id is not None:
            check_id(entity_id, "entity_id")
        self._ensure_ready()
        counts = portability.import_rows(self._store, self.embedder, parsed, entity_id)
        if counts["memori_augmentation_job"]:
            self.augmentation.notify()
        _log.info("imported entity %r process %r: %s", entity_id or parsed.entity_id,
                  parsed.process_id, counts)
        return counts

    def forget(self, entity_id: str, process_id: str | None = None, *,
               vacuum: bool = False) -> dict[str, int]:
        """Erase an entity: every row of it in every table (messages, sessions,
        conversations, memories, provenance, triples, process attributes, augmentation jobs
        queued, running or failed, and the entity row), in one transaction; its recall index
        is dropped here, and other processes see it gone through their version check. A job
        being processed while this runs writes nothing afterwards, and turns of it waiting in
        this instance's LLM spill buffer (database outage) are dropped, never written.

        Args:
            entity_id: whose data; named explicitly, never taken from the attribution.
            process_id: only this process's (persona's) rows of the entity, plus the sessions
                and conversations left empty; the entity and its other processes stay.
            vacuum: also make PostgreSQL (``VACUUM FULL``) and MariaDB (``OPTIMIZE TABLE``)
                rewrite memori's tables without the deleted rows' bytes; each table is locked
                while it is rewritten, so run it when memori is quiet. SQLite needs none: memori sets ``secure_delete`` (deleted content
                is zeroed) and checkpoints the WAL after every forget. What no database
                removes: its write-ahead log archive and backups (README "Privacy").

        Returns:
            rows deleted per table name (every table holding entity rows, zeros included); all
            zeros for an unknown entity or process.

        Raises:
            ConfigurationError: an invalid id.
            StorageError: the database failed (nothing was deleted).
        """
        check_id(entity_id, "entity_id")
        if process_id is not None:
            check_id(process_id, "process_id")
        self._ensure_ready()
        # turns waiting in the LLM spill buffer first: written later, they would bring it back
        self.llm.forget_spilled(entity_id, process_id)
        counts, entity_pk = portability.forget_rows(self._store, entity_id, process_id)
        if entity_pk is not None:
            self._recaller.cache.discard(entity_pk)
        if process_id is None:
            self._store.drop_cached_ids()  # its entity and session rows are gone
        self._store.purge(vacuum)
        _log.info("forgot entity %r process %r: %s", entity_id, process_id, counts)
        return counts

    def reembed(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every memory in the database (all entities) with this instance's embedder
        and record it as the database's model: how a database written with another model is
        moved to this one (``memori reembed``). Run it with the apps stopped: until it
        finishes, the database holds vectors of both models.

        Args:
            progress: called as ``progress(done, total)`` after each batch.

        Returns:
            how many memories were re-embedded.

        Raises:
            StorageError: the database failed (batches already written stay re-embedded;
                running it again finishes the job).
        """
        self._ensure_ready()
        total = int(self._store.stats()["memori_entity_fact"])
        done, last = 0, 0
        while True:
            rows = self._store.memories_to_reembed(last, 500)
            if not rows:
                break
            texts = [dated_text(r["message"]) if r["kind"] == "episodic" and r["message"]
                     else r["content"] for r in rows]
            vectors = self.embedder.embed(texts)
            self._store.set_embeddings([(r["id"], r["entity_id"], v)
                                        for r, v in zip(rows, vectors, strict=True)],
                                       self.embedder.name)
            done += len(rows)
            last = rows[-1]["id"]
            if progress is not None:
                progress(done, total)
        self._store.set_embedding_model(self.embedder.name, self.embedder.dim)
        self._recaller.reset_model_check()
        self.augmentation.reset_model_check()
        return done

    def stats(self) -> dict[str, Any]:
        """Row counts per table, augmentation counters and recall-cache size (bytes)."""
        self._ensure_ready()
        return {"tables": self._store.stats(), "augmentation": dict(self.augmentation.counters),
                "recall_cache": {"entities": len(self._recaller.cache),
                                 "bytes": self._recaller.cache.nbytes},
                "llm": self.llm.stats()}

    # ---- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers after their current batch (queued jobs stay in the database for
        the next start), wait for the recall index builds that cold recalls started in the
        background (``Config.recall_pushdown``), and release the database. Idempotent."""
        if self._closed:
            return
        self.llm.close()  # writes spilled turns while the database is still open
        self._closed = True
        self.augmentation.stop()
        self._recaller.close()  # a build still reading would hold a connection
        self._store.close()

    def __enter__(self) -> Memori:
        state = self._attribution
        pending = state.pending.get()
        state.pending.set(None)
        # ``with mem.attribution(...):`` scopes the attribution just set (pending); any other
        # ``with mem:`` / ``with Memori(...) as mem:`` closes the instance on exit
        state.scopes.set((*state.scopes.get(), pending))
        return self

    def __exit__(self, *exc: object) -> None:
        state = self._attribution
        scopes = state.scopes.get()
        token = scopes[-1] if scopes else None
        state.scopes.set(scopes[:-1])
        if token is not None:
            state.reset(token)
        else:
            self.close()

    def __repr__(self) -> str:
        return f"Memori(dialect={self._store.dialect!r}, closed={self._closed})"
