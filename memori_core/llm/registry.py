"""``mem.llm``: register provider clients so every call through them is memory-aware.

``mem.llm.register(client)`` replaces the generating methods on that one client instance
(never on its class, never on other clients) with wrappers that recall before the call and
capture after it; ``mem.llm.unregister(client)`` puts the originals back.

Supported clients and methods (each sync and async, streamed and not):

============================  ================================================================
client                        methods
============================  ================================================================
``openai.OpenAI``,            ``chat.completions.create``, ``chat.completions.parse``,
``AsyncOpenAI``,              ``responses.create`` (``chat.completions.stream`` and
``AzureOpenAI``, and          ``responses.stream`` go through ``create``, so they are covered);
``OpenAI(base_url=...)`` for  OpenAI-compatible servers: Nebius, DeepSeek, NVIDIA NIM, Ollama,
any OpenAI-compatible server  vLLM, xAI (``https://api.x.ai/v1``)
``anthropic.Anthropic``,      ``messages.create`` (also ``stream=True``), ``messages.stream``
``AsyncAnthropic`` (and the
Bedrock / Vertex clients)
``google.genai.Client``       ``models.generate_content``, ``models.generate_content_stream``,
                              and the same on ``client.aio.models`` (chats use them too)
============================  ================================================================

A memory failure never breaks a call: recall and history errors are logged and counted and
the request goes out without them; a failed capture is logged, counted and kept in a bounded
spill buffer (``Config.llm_spill_turns``) that is written, in order, when the database is back.
"""

from __future__ import annotations

import contextvars
import dataclasses
import importlib
import logging
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from memori_core.errors import AuthenticationError, ConfigurationError, MemoriError
from memori_core.llm._engine import Call, Target, wrap
from memori_core.llm._messages import cut_messages, select_history
from memori_core.llm._set_aside import SetAsideFile
from memori_core.llm._spill import SpillBuffer, SpilledTurn

if TYPE_CHECKING:
    from memori_core._memori import Memori

__all__ = ["SUPPORTED_CLIENTS", "LLMRegistry"]

_log = logging.getLogger("memori_core.llm")
T = TypeVar("T")

#: What ``register`` accepts, as its error message lists it.
SUPPORTED_CLIENTS = (
    "openai.OpenAI / AsyncOpenAI / AzureOpenAI / AsyncAzureOpenAI (also OpenAI(base_url=...) "
    "for OpenAI-compatible servers: Nebius, DeepSeek, NVIDIA NIM, Ollama, vLLM, xAI)",
    "anthropic.Anthropic / AsyncAnthropic (and AnthropicBedrock / AnthropicVertex)",
    "google.genai.Client (client.models and client.aio.models)",
)
#: (module the SDK loads, memori adapter module) tried in order; an SDK that is not imported
#: cannot have made the client, so nothing is imported to look
_PROVIDERS = (
    ("openai", "memori_core.llm.openai"),
    ("anthropic", "memori_core.llm.anthropic"),
    ("google.genai", "memori_core.llm.google"),
)
#: longest wait between two attempts to write spilled turns, in seconds
SPILL_RETRY_MAX_S = 30.0
#: most idle threads kept for the memory steps of calls (more start when all are busy)
CALL_THREADS_IDLE = 8
#: first wait when ``Config.request_backoff_factor`` is 0, in seconds
SPILL_RETRY_MIN_S = 0.05

_COUNTERS = ("calls", "injected", "recall_errors", "history_errors", "capture_errors",
             "turns_captured", "turns_spilled", "spill_written", "spill_dropped",
             "spill_forgotten", "spill_set_aside", "text_cleaned")


@dataclass
class _Patch:
    owner: Callable[[], Any]  # weak (or strong) reference to the SDK resource object
    attr: str
    previous: Any  # the instance attribute that was there, or _MISSING


_MISSING = object()


def _ref(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # not weak-referenceable: kept alive while registered
        return lambda: obj


class LLMRegistry:
    """``mem.llm``: the provider clients registered on one ``Memori`` instance.

    Args:
        memori: the instance whose attribution, recall and capture the calls use.

    Settings (``Memori(...)`` keywords or ``MEMORI_*`` variables, see ``Config``):
    ``llm_history_messages`` and ``llm_history_tokens`` (history replay, off by default),
    ``llm_spill_turns`` (spill buffer bound, 1000 turns), ``recall_facts_limit`` and
    ``recall_relevance_threshold`` (what is injected).
    """

    def __init__(self, memori: Memori) -> None:
        self.memori = memori
        self._lock = threading.RLock()
        self._clients: dict[int, list[_Patch]] = {}
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._counter_lock = threading.Lock()
        self._spill = SpillBuffer(memori.config.llm_spill_turns, self._dropped)
        self._retry: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new turn was spilled: the retry thread tries now
        self._last_try = 0.0  # time.monotonic() of the last write that failed or drain
        #: the memory steps of calls (``bounded``) run on daemon threads fed by this queue
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._idle_lock = threading.Lock()
        #: turns memori could not write (refused, or unwritten at close), with the error
        self._set_aside = SetAsideFile(memori._set_aside_path(), memori.config.llm_spill_turns)
        waiting = self._set_aside.entries() if self._set_aside.path is not None and \
            self._set_aside.path.exists() else []
        if waiting:
            _log.warning("memori: %d turn(s) memori could not write wait in %s: "
                         "`memori set-aside --retry` (or mem.llm.retry_set_aside()) writes them",
                         len(waiting), self._set_aside.path)
        #: memory steps that ran past the bound and still wait for the database (``overdue``)
        self._overdue: set[Future[Any]] = set()
        self._overdue_lock = threading.Lock()
        self._closed = False

    # ---- registration --------------------------------------------------------------------------
    def register(self, client: Any, *, recall: bool = True) -> Memori:
        """Make every call through ``client`` memory-aware: recall before, capture after.

        Only this client instance changes: its generating methods are replaced by wrappers
        (the originals are kept). Calls need an attribution (``mem.attribution(...)``), read
        in the calling thread or task, so one registered client serves many users at once.
        Registering a client again on this instance only updates ``recall``. With ``recall``
        the local embedding model is loaded now (once per process), not in the first call.

        Args:
            client: an OpenAI, Anthropic or Google genai client (see ``SUPPORTED_CLIENTS``).
            recall: inject recalled memories into the system slot (default True). With
                False, calls are only captured (and history replayed when configured).

        Returns:
            the ``Memori`` instance, for chaining.

        Raises:
            ConfigurationError: for an unsupported client (listing the supported ones), a
                client registered with another ``Memori`` instance, or a closed instance
                (``argument="client"``).
        """
        if not isinstance(recall, bool):
            raise ConfigurationError(f"recall must be True or False, got {recall!r}",
                                     argument="recall")
        targets = _targets(client)
        with self._lock:
            if self._closed:
                raise ConfigurationError("this Memori instance is closed: register the client "
                                         "with an open one", argument="client")
            for target in targets:
                owner = getattr(target.owner, target.attr)
                other = getattr(owner, "__memori_registry__", None)
                if other is not None and other is not self:
                    raise ConfigurationError(
                        f"this {type(client).__name__} is already registered with another "
                        f"Memori instance ({other.memori!r}): call mem.llm.unregister(client) "
                        "on that instance first, or create one client per instance",
                        argument="client")
            if id(client) in self._clients:
                self._restore(self._clients.pop(id(client)))
            patches = []
            for target in targets:
                previous = vars(target.owner).get(target.attr, _MISSING)
                original = getattr(target.owner, target.attr)
                setattr(target.owner, target.attr,
                        wrap(self, target.adapter, original, is_async=target.is_async,
                             shape=target.shape, recall=recall))
                patches.append(_Patch(_ref(target.owner), target.attr, previous))
            self._clients[id(client)] = patches
            try:
                weakref.finalize(client, self._forget, id(client), patches)
            except TypeError:  # not weak-referenceable: forgotten on unregister / close only
                pass
        embedder = vars(self.memori).get("embedder")  # a local instance's (remote: the server's)
        if recall and embedder is not None:
            # loaded here, once per process (about 1 s; 15 s for its first ONNX export), not
            # inside the first call's recall, which database_timeout_seconds bounds
            _ = embedder.dim
        _log.debug("registered %s (%d methods, recall=%s)", type(client).__name__,
                   len(targets), recall)
        return self.memori

    def unregister(self, client: Any) -> Memori:
        """Restore the client's original methods.

        Returns:
            the ``Memori`` instance.

        Raises:
            ConfigurationError: the client is not registered with this instance
                (``argument="client"``).
        """
        with self._lock:
            patches = self._clients.pop(id(client), None)
            if patches is None:
                raise ConfigurationError(
                    f"this {type(client).__name__} is not registered with this Memori "
                    "instance: nothing to unregister", argument="client")
            self._restore(patches)
        return self.memori

    def is_registered(self, client: Any) -> bool:
        """Whether ``client`` is registered with this instance."""
        return id(client) in self._clients

    def _forget(self, key: int, patches: list[_Patch]) -> None:
        with self._lock:
            if self._clients.get(key) is patches:
                del self._clients[key]

    def _restore(self, patches: list[_Patch]) -> None:
        for patch in patches:
            owner = patch.owner()
            if owner is None:
                continue
            if patch.previous is _MISSING:
                vars(owner).pop(patch.attr, None)
            else:
                setattr(owner, patch.attr, patch.previous)

    # ---- spill buffer & lifecycle ------------------------------------------------------------
    def flush(self) -> int:
        """Write the spilled turns now, oldest first, stopping at the first failure (logged).

        Returns:
            how many turns are still waiting (0: all written).
        """
        self._drain()
        return len(self._spill)

    def forget_spilled(self, entity_id: str, process_id: str | None = None) -> int:
        """Drop the spilled and set-aside turns of an entity (or of one of its processes) so
        they are never written: ``Memori.forget`` calls it before erasing the rows. Returns how many, also
        counted as ``spill_forgotten``."""
        n = self._spill.discard(lambda t: t.entity_id != entity_id or (
            process_id is not None and t.process_id != process_id))
        n += self._set_aside.retain(lambda t: t.get("entity_id") != entity_id or (
            process_id is not None and t.get("process_id") != process_id))
        if n:
            self.count("spill_forgotten", n)
            _log.info("memori: %d spilled turns of the forgotten entity were dropped", n)
        return n

    def stats(self) -> dict[str, int]:
        """Counters of the calls made through registered clients, readable while the
        database is down (``mem.stats()["llm"]`` holds the same).

        Returns:
            ``calls``, ``injected`` (calls that carried memories), ``recall_errors``,
            ``history_errors``, ``capture_errors`` (every failed capture, spilled or not),
            ``turns_captured``, ``turns_spilled``, ``spill_written``, ``spill_dropped``
            (lost because the buffer was full and there is no set-aside file), ``spill_forgotten`` (dropped by
            ``forget``), ``spill_set_aside`` (turns set aside), ``spill_pending``
            (waiting now), ``set_aside_pending`` (in the set-aside file now) and
            ``clients`` (registered now).
        """
        with self._counter_lock:
            out = dict(self._counters)
        out["spill_pending"] = len(self._spill)
        out["set_aside_pending"] = len(self._set_aside.entries())
        out["clients"] = len(self._clients)
        return out

    def close(self) -> None:
        """Write what the spill buffer holds (what cannot be written is logged as lost),
        stop the retry thread and restore every registered client. Idempotent; called by
        ``Memori.close()`` before the database is released."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for patches in self._clients.values():
                self._restore(patches)
            self._clients.clear()
            retry = self._retry
        self._stop.set()
        self._wake.set()
        if retry is not None:
            retry.join(timeout=SPILL_RETRY_MAX_S)
        self._drain()
        if len(self._spill):
            why = ("the database is unreachable" if not self._reachable() else
                   "the database refused them")
            taken = self._spill.take_all()
            left = len(taken)
            kept = 0 if self._set_aside.path is None else sum(
                self._set_aside.add(self._entry(t, f"not written before close: {why}"))
                for t in taken)
            self.count("spill_set_aside", kept)
            if kept:
                _log.error("memori: %d captured turns could not be written before close (%s); "
                           "they are kept in %s (`memori set-aside --retry` writes them)",
                           kept, why, self._set_aside.path)
            if left - kept:
                _log.error("%d captured turns could not be written before close (%s) and are "
                           "lost", left - kept, why)

    # ---- used by the engine --------------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self._counters[key] += n

    def failure(self, key: str, what: str) -> None:
        """Log the exception being handled and count it under ``key``. A ``MemoriError``
        (database down, recall failed) or a ``TimeoutError`` (past
        ``database_timeout_seconds``) is logged in one line; anything else is a bug and gets
        its traceback."""
        self.count(key)
        exc = sys.exc_info()[1]
        if isinstance(exc, (MemoriError, TimeoutError)):
            _log.error("memori: %s (%s: %s); the provider call is not affected", what,
                       type(exc).__name__, exc)
        else:
            _log.error("memori: %s; the provider call is not affected", what, exc_info=True)

    def _as(self, entity_id: str, process_id: str | None, session_id: str,
            fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` under an attribution in a fresh context, wherever this runs (a worker
        thread, a stream finalizer): the caller's context is never touched."""

        def run() -> T:
            self.memori.attribution(entity_id=entity_id, process_id=process_id)
            self.memori.set_session(session_id)
            return fn(*args)

        return contextvars.Context().run(run)

    def bounded(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the caller's context, waiting at most
        ``Config.database_timeout_seconds`` (0: no bound) for it: the memory steps of a
        model call (recall before it, capture after it) never hold the call longer, however
        long the database hangs. ``fn`` runs on in a worker thread past the bound.

        Raises:
            TimeoutError: past the bound; else what ``fn`` raises.
        """
        bound = self.memori.config.database_timeout_seconds
        if bound <= 0:
            return fn(*args)
        if self.overdue():
            raise TimeoutError("the database has not yet answered an earlier step that ran "
                               "past database_timeout_seconds")
        future = self._submit(fn, *args)
        try:
            return future.result(timeout=bound)
        except TimeoutError:
            self._mark_overdue(future)
            raise

    def overdue(self) -> bool:
        """Whether a memory step that ran past ``Config.database_timeout_seconds`` is still
        waiting for the database. While one is, the next steps do not wait for it again:
        recall is skipped and capture spills at once, so a hung database costs a model call
        at most one bound (not one for recall and one more for capture), and every call
        after the first costs none, until the database answers."""
        with self._overdue_lock:
            return bool(self._overdue)

    def _mark_overdue(self, future: Future[Any]) -> None:
        with self._overdue_lock:
            self._overdue.add(future)

        def answered(done: Future[Any]) -> None:
            with self._overdue_lock:
                self._overdue.discard(done)

        future.add_done_callback(answered)  # at once when it finished meanwhile

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``fn(*args)`` in the caller's context on one of the registry's daemon threads
        (started when none is idle, so one stuck on a hung database never delays the next
        call; daemon, so it never holds up the process's exit as an executor's would)."""
        future: Future[T] = Future()
        ctx = contextvars.copy_context()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(ctx.run(fn, *args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)

        with self._idle_lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._jobs.put(run)
        if start:
            threading.Thread(target=self._call_worker, daemon=True, name="memori-call").start()
        return future

    def _call_worker(self) -> None:
        while True:
            job = self._jobs.get()
            job()
            # drop it before waiting: its context copy may hold the caller's objects (a
            # framework's memory), which must be collectable once the call is over
            del job
            with self._idle_lock:
                if self._idle >= CALL_THREADS_IDLE:
                    return  # enough are waiting already
                self._idle += 1

    def recall_block(self, call: Call, query: str, visible: list[dict[str, Any]]
                     ) -> str | None:
        """The context pipeline's block for ``query`` (``Memori.context``), leaving out what
        the request's own messages (``visible``) already show. Never raises."""
        def context() -> str | None:
            return self.memori.context(query, history=visible).block

        try:
            return self.bounded(self._as, call.entity_id, call.process_id, call.session_id,
                                context)
        except TimeoutError:
            self.failure("recall_errors", "recall did not answer within "
                         f"database_timeout_seconds ({self.memori.config.database_timeout_seconds}"
                         " s); the call goes out without memories")
            return None
        except Exception:  # noqa: BLE001 - logged and counted; the call goes out without memories
            self.failure("recall_errors", "recall failed")
            return None

    def history_enabled(self) -> bool:
        return self.memori.config.llm_history_messages > 0

    def history(self, call: Call) -> list[dict[str, Any]]:
        cfg = self.memori.config
        try:
            messages = self.bounded(self._as, call.entity_id, call.process_id,
                                    call.session_id, self.memori.session_messages)
        except TimeoutError:
            self.failure("history_errors", "the session history did not answer within "
                         f"database_timeout_seconds ({cfg.database_timeout_seconds} s); the "
                         "call goes out without history")
            return []
        except Exception:  # noqa: BLE001 - logged and counted; the call goes out without history
            self.failure("history_errors", "reading the session history failed")
            return []
        return select_history(messages, cfg.llm_history_messages, cfg.llm_history_tokens)

    def capture_turn(self, call: Call, messages: list[dict[str, Any]]) -> None:
        """Capture a call's turn, or spill it when the database fails. Never raises."""
        self.keep(call.entity_id, call.process_id, call.session_id, messages)

    def keep(self, entity_id: str, process_id: str | None, session_id: str,
             messages: list[dict[str, Any]]) -> None:
        """Capture a turn under the given attribution, or spill it when the database fails
        (written in order once it is back). Used by the wrappers and by the integration kit
        (``memori_core.integration.Turn``). Never raises."""
        turn = SpilledTurn(entity_id, process_id, session_id,
                           cut_messages(messages, self.memori.config.capture_max_message_chars))
        if len(self._spill) >= self.memori.config.llm_spill_turns:
            self._drain()  # full: write back here rather than drop the oldest turn
        if len(self._spill):
            # earlier turns are waiting: this one goes after them, written back by the retry
            # thread, not in the caller's (a long write-back would stall every call)
            self._spill_turn(turn)
            self._wake.set()
            return
        bound = self.memori.config.database_timeout_seconds
        try:
            if bound <= 0:
                self._write(turn)
            elif self.overdue():
                raise TimeoutError("an earlier step still waits for the database")
            else:
                future = self._submit(self._write, turn)
                try:
                    future.result(timeout=bound)
                except TimeoutError:
                    self._mark_overdue(future)
                    # it may still commit: the spilled turn waits for it, never written twice
                    turn = dataclasses.replace(turn, pending=future)
                    raise
        except TimeoutError:
            self._last_try = time.monotonic()
            self.failure("capture_errors", f"capture did not finish within "
                         f"database_timeout_seconds ({bound} s); the turn is kept in the spill "
                         "buffer")
            self._spill_turn(turn)
        except Exception:  # noqa: BLE001 - logged, counted and spilled; the call is not affected
            self._last_try = time.monotonic()
            self.failure("capture_errors", "capture failed, the turn is kept in the spill buffer")
            self._spill_turn(turn)

    def _write(self, turn: SpilledTurn) -> None:
        """Capture one turn. Raises when the database fails (the turn stays to be retried);
        a turn that can never be stored (malformed messages) is logged, counted and dropped."""
        try:
            self._as(turn.entity_id, turn.process_id, turn.session_id, self.memori.capture,
                     turn.messages)
        except AuthenticationError:
            raise  # a memori server refused the key: kept (spilled, then set aside) for a fix
        except ConfigurationError:
            self.failure("capture_errors", "the turn cannot be captured and is dropped")
            return
        self.count("turns_captured")

    def _write_spilled(self, turn: SpilledTurn) -> None:
        """``_write`` a spilled turn unless it is stored already: the capture that failed may
        have committed before the database went away (its reply lost), and writing the turn
        again would store it twice. A capture still running past the bound is waited for
        (raising TimeoutError while it runs: the turn stays buffered)."""
        if turn.pending is not None:
            done, _ = wait([turn.pending],
                           timeout=self.memori.config.database_timeout_seconds or None)
            if not done:
                raise TimeoutError("the capture that ran past the bound is still running")
            if turn.pending.exception() is None:
                return  # the late capture went through (``_write`` counted it)
        if self._as(turn.entity_id, turn.process_id, turn.session_id, self._stored,
                    turn.messages):
            self.count("turns_captured")
            return
        self._write(turn)

    def _stored(self, messages: list[dict[str, Any]]) -> bool:
        return self.memori._turn_stored(messages)  # False for malformed ones: ``_write`` drops

    def _spill_turn(self, turn: SpilledTurn) -> None:
        self._spill.add(turn)
        self.count("turns_spilled")
        with self._lock:
            if self._retry is None and not self._closed:
                self._stop.clear()
                self._retry = threading.Thread(target=self._retry_loop,
                                               name="memori-llm-spill", daemon=True)
                self._retry.start()

    def set_aside(self) -> list[dict[str, Any]]:
        """The turns memori could not write, oldest first: spilled turns the database refused
        for a reason of their own (it answered other statements meanwhile; they are not
        retried, so the turns after them are written) and turns still spilled at ``close()``
        with the database unreachable. Each: ``entity_id``, ``process_id``, ``session_id``,
        ``messages``, ``chars``, ``error``, ``at`` (ISO 8601, UTC) and ``id``. Kept in the set-aside
        file (``Config.llm_set_aside_path``; in memory only, at most ``llm_spill_turns``,
        for an in-memory database), so another process and ``memori set-aside`` see them too.
        Counted as ``spill_set_aside``."""
        return self._set_aside.entries()

    def retry_set_aside(self) -> tuple[int, int]:
        """Write the set-aside turns now (once their cause is fixed: the database is back, or
        ``max_allowed_packet`` raised), oldest first; a turn already stored is not written
        again. Each written turn leaves the set-aside file; the others stay with their new
        error. ``memori set-aside --retry`` calls it.

        Returns:
            (turns written, turns still set aside).
        """
        written: list[str] = []
        for entry in self._set_aside.entries():
            turn = SpilledTurn(entry["entity_id"], entry.get("process_id"),
                               entry["session_id"], entry["messages"])
            try:
                self._write_spilled(turn)
            except Exception as exc:  # noqa: BLE001 - reported: the turn stays set aside
                _log.warning("memori: a set-aside turn of entity %r is still refused: %s: %s",
                             turn.entity_id, type(exc).__name__, exc)
                continue
            written.append(entry["id"])
        done = set(written)
        self._set_aside.retain(lambda e: e.get("id") not in done)
        return len(written), len(self._set_aside.entries())

    def _reachable(self) -> bool:
        return self.memori._reachable()

    def _drain(self) -> None:
        self._last_try = time.monotonic()
        written, error = self._spill.drain(self._write_spilled)
        while error is not None:
            # the head turn failed. If the database answers, try it once more (it may just
            # have come back); failing again while it answers, the turn itself is at fault
            # (too large for the server, say): set it aside and write the rest
            head = self._spill.head()
            if head is None or not self._reachable():
                break
            more, error = self._spill.drain(self._write_spilled)
            written += more
            if error is None or self._spill.head() is not head:
                continue  # written now, or progress: go on from the new head
            if not self._reachable() or not self._spill.remove(head):
                break
            self._put_aside(head, error)
            more, error = self._spill.drain(self._write_spilled)
            written += more
        if written:
            self.count("spill_written", written)
            _log.info("memori: wrote %d spilled turns (%d still waiting)", written,
                      len(self._spill))
        if error is not None:
            _log.warning("memori: %d spilled turns still waiting for the database (%s: %s)",
                         len(self._spill), type(error).__name__, error)

    def _retry_loop(self) -> None:
        """Retry the spill buffer with exponential backoff (``Config.request_backoff_factor``
        doubling up to ``SPILL_RETRY_MAX_S``) until it is empty or the registry closes."""
        base = delay = max(self.memori.config.request_backoff_factor, SPILL_RETRY_MIN_S)
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() - self._last_try < base:
                continue  # woken by a new turn right after a failed try: keep the backoff
            self._drain()
            with self._lock:
                if not len(self._spill):
                    self._retry = None
                    return
            delay = min(delay * 2, SPILL_RETRY_MAX_S)
        with self._lock:
            self._retry = None

    def _put_aside(self, turn: SpilledTurn, error: BaseException) -> None:
        chars = sum(len(str(m.get("content") or "")) for m in turn.messages)
        reason = f"{type(error).__name__}: {error}"
        reason += self.memori._refusal_hint(chars, reason)
        self._set_aside.add(self._entry(turn, reason))
        self.count("spill_set_aside")
        _log.error("memori: a spilled turn (entity %r, session %r, %d messages, %d characters) "
                   "was refused by the database, which answers otherwise; it is set aside "
                   "in %s (mem.llm.set_aside(), `memori set-aside`) and the turns after it are "
                   "written: %s", turn.entity_id, turn.session_id, len(turn.messages), chars,
                   self._set_aside.path or "memory", reason)

    @staticmethod
    def _entry(turn: SpilledTurn, error: str) -> dict[str, Any]:
        return {"entity_id": turn.entity_id, "process_id": turn.process_id,
                "session_id": turn.session_id, "messages": turn.messages,
                "chars": sum(len(str(m.get("content") or "")) for m in turn.messages),
                "error": error}

    def _dropped(self, turn: SpilledTurn) -> None:
        """The spill buffer is full: its oldest turn goes to the set-aside file (written by
        ``retry_set_aside``); only without one (an in-memory database, ``"off"``, or a file
        that cannot be written) is it dropped."""
        full = f"the spill buffer is full (llm_spill_turns={self.memori.config.llm_spill_turns})"
        if self._set_aside.path is not None and self._set_aside.add(self._entry(turn, full)):
            self.count("spill_set_aside")
            _log.error("memori: %s: the oldest turn (entity %r, session %r, %d messages) is "
                       "kept in %s (`memori set-aside --retry` writes it)", full,
                       turn.entity_id, turn.session_id, len(turn.messages), self._set_aside.path)
            return
        self.count("spill_dropped")
        _log.error("memori: %s: the oldest turn (entity %r, session %r, %d messages) is "
                   "dropped", full, turn.entity_id, turn.session_id, len(turn.messages))


def _targets(client: Any) -> list[Target]:
    """The methods to wrap on ``client``.

    Raises:
        ConfigurationError: for a client no provider adapter supports.
    """
    module = type(client).__module__ or ""
    if module.split(".")[0] == "xai_sdk":
        raise ConfigurationError(
            "xai_sdk.Client talks gRPC, which memori does not wrap: use xAI's OpenAI-compatible "
            "API instead, OpenAI(base_url=\"https://api.x.ai/v1\", api_key=XAI_API_KEY), and "
            "register that client", argument="client")
    for sdk, adapter_module in _PROVIDERS:
        if sdk in sys.modules:
            found = importlib.import_module(adapter_module).targets(client)
            if found:
                return list(found)
    raise ConfigurationError(
        f"mem.llm.register() does not support {module}.{type(client).__name__}; supported: "
        + "; ".join(SUPPORTED_CLIENTS), argument="client")
