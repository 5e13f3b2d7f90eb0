"""The capture of one conversation: every message once, grouped into turns that the
integration kit's ``Turn`` stores in every outcome."""

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

    A user message opens a turn; assistant, tool and system messages after it join it; an
    assistant message without tool calls completes it and it is stored (``Turn``: one
    ``capture``, one augmentation job). A turn left without that answer (model error, stream
    abandoned) is stored, marked ``stopped``, when the next user message arrives or when the
    conversation is collected. Messages before any user message are stored at once.

    ``seen`` counts the fingerprints of the messages captured so far (loaded from the
    session's stored rows once), so that a history sent again captures only what is new.
    """

    def __init__(self, memori: Memori, entity_id: str, process_id: str | None,
                 session_id: str) -> None:
        self.memori, self.entity_id, self.process_id = memori, entity_id, process_id
        self.session_id = session_id
        self.seen: Counter[str] = Counter()
        self.turn: Turn | None = None
        self.window: list[str] | None = None  # keys of the Memory queue seen last
        self.lock = threading.RLock()

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count the stored messages (``Memori.session_messages`` rows) as seen."""
        with self.lock:
            self.seen.update(k for k in map(key_of_row, rows) if k)

    def unseen(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The messages of ``messages`` not captured yet: of messages with the same
        fingerprint, those past the number already captured."""
        counts: Counter[str] = Counter()
        out = []
        with self.lock:
            for m in messages:
                k = key(m)
                counts[k] += 1
                if counts[k] > self.seen[k]:
                    out.append(m)
        return out

    def in_window(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """What is new in ``messages``, the short-term queue of a ``Memory``: what follows
        the queue seen last (its oldest messages may have been flushed since, see
        ``flushed``), else the unseen ones."""
        keys = [key(m) for m in messages]
        with self.lock:
            w = self.window
            new = (list(messages[len(w):]) if w is not None and keys[:len(w)] == w
                   else self.unseen(messages))
            self.window = keys
        return new

    def flushed(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """What is new in ``messages``, the oldest of the queue, flushed by ``Memory``."""
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
        """Capture ``messages`` (new ones, in order) into the conversation's turns. Never
        raises once converted; a database failure is logged, counted and spilled (``Turn``).

        Raises:
            ConfigurationError: an item is not a ``ChatMessage`` (argument ``messages``).
        """
        converted = [to_memori(m) for m in messages]  # refuses a bad item before anything
        with self.lock:
            for m, d in zip(messages, converted, strict=True):
                self.seen[d["metadata"]["llama_index"]["key"]] += 1
                if m.role == MessageRole.USER:
                    self.close()
                    self.turn = self._turn([d])
                    continue
                if self.turn is None:
                    self._turn([d]).finish()
                    continue
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

    def _turn(self, messages: list[dict[str, Any]]) -> Turn:
        with attributed(self.memori, self.entity_id, self.process_id, self.session_id):
            return Turn(self.memori, messages, framework="llamaindex")
