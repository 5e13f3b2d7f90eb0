"""One conversation's capture: each message once, grouped into turns the kit's ``Turn``
stores in every outcome."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from memori_core import Memori
from memori_core.integration import Turn, attributed
from memori_llamaindex._convert import key, key_of_row, to_memori

__all__ = ["Conversation"]


class Conversation:
    """The messages of one memori session of one user, each captured once.

    A user message opens a turn; the messages after it join it; an assistant message
    without tool calls completes it, and it is stored (one ``capture``, one augmentation
    job). A turn that got no such answer (model error, abandoned stream) is stored, marked
    ``stopped``, when the next user message comes or when it is collected. Messages before
    any user message are stored at once. ``seen`` counts the fingerprints captured (the
    stored ones loaded once), so that a history sent again captures only what is new.
    """

    def __init__(self, memori: Memori, entity_id: str, process_id: str | None,
                 session_id: str) -> None:
        self.memori, self.entity_id, self.process_id = memori, entity_id, process_id
        self.session_id = session_id
        self.seen: Counter[str] = Counter()
        self.turn: Turn | None = None
        self.window: list[str] | None = None  # keys of the Memory queue seen last
        self.lock = threading.RLock()
        self.messages: list[ChatMessage] = []  # the short-term queue of a MemoriChatStore
        self.archived = 0  # how many of ``messages`` are out of the queue

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count stored messages (``Memori.session_messages`` rows) as seen."""
        with self.lock:
            self.seen.update(k for k in map(key_of_row, rows) if k)

    def unseen(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Of the messages with one fingerprint, those past the number captured."""
        counts: Counter[str] = Counter()
        with self.lock:
            return [m for m, k in ((m, key(m)) for m in messages)
                    if counts.update([k]) or counts[k] > self.seen[k]]

    def in_window(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """What is new in ``Memory``'s queue: what follows the queue seen last (its oldest
        may have been flushed since, see ``flushed``), else the unseen messages."""
        keys = [key(m) for m in messages]
        with self.lock:
            w, self.window = self.window, keys
            if w is not None and keys[:len(w)] == w:
                return list(messages[len(w):])
            return self.unseen(messages)

    def flushed(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """What is new in the oldest messages of the queue, flushed by ``Memory``."""
        keys = [key(m) for m in messages]
        with self.lock:
            w, self.window = self.window, None
            if w is not None and w[:len(keys)] == keys:
                self.window = w[len(keys):]
                return []
            if w is not None and keys[:len(w)] == w:
                self.window = []
                return list(messages[len(w):])
            return self.unseen(messages)

    def add(self, messages: Sequence[ChatMessage]) -> None:
        """Capture ``messages``, new ones in order, into the turns. A database failure is
        logged, counted and spilled (``Turn``), never raised.

        Raises:
            ConfigurationError: an item is not a ``ChatMessage`` (argument ``messages``).
        """
        converted = [to_memori(m) for m in messages]  # refuses a bad item before anything
        with self.lock:
            for m, d in zip(messages, converted, strict=True):
                self.seen[d["metadata"]["llama_index"]["key"]] += 1
                if m.role == MessageRole.USER:
                    self.close()
                    self.turn = self._turn(d)
                elif self.turn is None:
                    self._turn(d).finish()
                else:
                    self.turn.reply([d])
                    if d["role"] == "assistant" and not d.get("tool_calls"):
                        self.turn.finish()
                        self.turn = None

    def close(self) -> None:
        """Store the open turn, if any, marked ``stopped`` (it got no answer)."""
        with self.lock:
            if self.turn is not None:
                self.turn.finish("stopped")
                self.turn = None

    def clear(self) -> None:
        """Store the open turn, then delete the session's messages (``clear_session``)."""
        self.close()
        with attributed(self.memori, self.entity_id, self.process_id, self.session_id) as m:
            m.clear_session(self.session_id)

    def _turn(self, message: dict[str, Any]) -> Turn:
        with attributed(self.memori, self.entity_id, self.process_id, self.session_id):
            return Turn(self.memori, [message], framework="llamaindex")
