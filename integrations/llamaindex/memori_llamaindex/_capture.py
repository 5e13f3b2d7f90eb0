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
    """One memori session of one user, each message captured once: a user message opens a turn,
    the next join it, an assistant message without tool calls completes and stores it (one
    ``capture``); a turn with no such answer (model error, abandoned stream) is stored marked
    ``stopped`` at the next user message or when collected. ``seen`` counts what was captured."""

    def __init__(self, memori: Memori, entity_id: str, process_id: str | None,
                 session_id: str) -> None:
        self.memori, self.entity_id = memori, entity_id
        self.process_id, self.session_id = process_id, session_id
        self.seen: Counter[str] = Counter()
        self.turn: Turn | None = None
        self.window: list[str] | None = None  # keys of the Memory queue seen last
        self.lock = threading.RLock()
        self.messages: list[ChatMessage] = []  # a MemoriChatStore's: all, the oldest
        self.archived = 0  # ``archived`` of them out of the short-term queue

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count stored messages (``Memori.session_messages`` rows) as seen."""
        self.seen.update(k for k in map(key_of_row, rows) if k)  # before it is shared

    def unseen(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Of the messages with one fingerprint, those past the number captured."""
        counts: Counter[str] = Counter()
        with self.lock:
            return [m for m, k in ((m, key(m)) for m in messages)
                    if counts.update([k]) or counts[k] > self.seen[k]]

    def new(self, messages: Sequence[ChatMessage], *, flushed: bool = False
            ) -> list[ChatMessage]:
        """What is new in ``Memory``'s queue ``messages`` (or its oldest, ``flushed``): what
        follows the queue seen last, else the ``unseen`` messages."""
        keys = [key(m) for m in messages]
        with self.lock:
            w, self.window = self.window, (None if flushed else keys)
            if w is not None and flushed and w[:len(keys)] == keys:
                self.window = w[len(keys):]
                return []
            if w is not None and keys[:len(w)] == w:
                self.window = [] if flushed else keys
                return list(messages[len(w):])
            return self.unseen(messages)

    def add(self, messages: Sequence[ChatMessage]) -> None:
        """Capture new ``messages`` into the turns (a database failure is spilled).

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
            turn, self.turn = self.turn, None
            if turn is not None:
                turn.finish("stopped")

    def clear(self) -> None:
        """Store the open turn, then delete the session's messages (``clear_session``)."""
        self.close()
        with attributed(self.memori, self.entity_id, self.process_id, self.session_id) as m:
            m.clear_session(self.session_id)

    def _turn(self, message: dict[str, Any]) -> Turn:
        with attributed(self.memori, self.entity_id, self.process_id, self.session_id):
            return Turn(self.memori, [message], framework="llamaindex")
