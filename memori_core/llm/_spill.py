"""The spill buffer: turns whose capture failed, kept in memory until the database is back.

Bounded by ``Config.llm_spill_turns``: when full, the oldest turn goes to the set-aside file
(``memori_core.llm._set_aside``), or, without one, is dropped; logged at ERROR and counted
(``spill_set_aside`` / ``spill_dropped`` in ``mem.stats()["llm"]``), never silently. Turns are written
back in the order they were spilled, by ``drain``: from the retry thread the registry runs
while the buffer is not empty (woken by every newly spilled turn), by ``mem.llm.flush()``, at
``mem.close()``, and by the caller only when the buffer is full.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SpilledTurn", "SpillBuffer"]

_log = logging.getLogger("memori_core.llm")


@dataclass(frozen=True)
class SpilledTurn:
    """One turn to capture later, with the attribution it was made under.

    Attributes:
        entity_id: external entity id.
        process_id: external process id or None.
        session_id: the session the turn belongs to.
        messages: the ``Memori.capture`` messages, each with its ``created_at``.
    """

    entity_id: str
    process_id: str | None
    session_id: str
    messages: list[dict[str, Any]]
    #: the capture that ran past ``Config.database_timeout_seconds`` and may still commit:
    #: the turn is written again only once it is known to have failed
    pending: Future[None] | None = field(default=None, compare=False)


class SpillBuffer:
    """A FIFO of ``SpilledTurn`` bounded to ``max_turns``.

    Args:
        max_turns: capacity in turns (``Config.llm_spill_turns``).
        on_drop: called with each turn dropped because the buffer was full.
    """

    def __init__(self, max_turns: int, on_drop: Callable[[SpilledTurn], None]) -> None:
        self._max = max_turns
        self._turns: deque[SpilledTurn] = deque()
        self._on_drop = on_drop
        self._lock = threading.Lock()  # guards the deque
        self._drain_lock = threading.Lock()  # one drain at a time keeps the order

    def __len__(self) -> int:
        return len(self._turns)

    def add(self, turn: SpilledTurn) -> None:
        """Append ``turn``; drop (and report) the oldest when the buffer is full."""
        dropped = None
        with self._lock:
            if len(self._turns) >= self._max:
                dropped = self._turns.popleft()
            self._turns.append(turn)
        if dropped is not None:
            self._on_drop(dropped)

    def discard(self, keep: Callable[[SpilledTurn], bool]) -> int:
        """Remove the turns ``keep`` rejects (``forget``: they must never be written). Waits
        for a drain in progress, so no removed turn is being written meanwhile. Returns how
        many were removed."""
        with self._drain_lock, self._lock:
            before = len(self._turns)
            self._turns = deque(t for t in self._turns if keep(t))
            return before - len(self._turns)

    def take_all(self) -> list[SpilledTurn]:
        """Remove and return every buffered turn, oldest first (``close``: they go to the
        set-aside file). Waits for a drain in progress."""
        with self._drain_lock, self._lock:
            turns, self._turns = list(self._turns), deque()
            return turns

    def head(self) -> SpilledTurn | None:
        """The oldest turn, or None."""
        with self._lock:
            return self._turns[0] if self._turns else None

    def remove(self, turn: SpilledTurn) -> bool:
        """Take ``turn`` out (a turn set aside); False when it is no longer buffered."""
        with self._drain_lock, self._lock:
            for i, t in enumerate(self._turns):
                if t is turn:
                    del self._turns[i]
                    return True
            return False

    def drain(self, write: Callable[[SpilledTurn], None]) -> tuple[int, Exception | None]:
        """Write the spilled turns, oldest first, until one fails.

        Args:
            write: captures one turn; raises when the database is still unreachable.

        Returns:
            (turns written, the exception of the first turn that could not be written or
            None); that turn and the ones after it stay buffered, in order.
        """
        written = 0
        with self._drain_lock:
            while True:
                with self._lock:
                    if not self._turns:
                        return written, None
                    turn = self._turns[0]
                try:
                    write(turn)
                except Exception as exc:  # noqa: BLE001 - returned: the caller logs and counts it
                    return written, exc
                with self._lock:
                    # ``add`` may have dropped it meanwhile (buffer full): only pop our turn
                    if self._turns and self._turns[0] is turn:
                        self._turns.popleft()
                written += 1
