"""The set-aside file: turns memori could not write, kept on disk so none is lost.

Two kinds of turn land here, each with its reason: a spilled turn the database refused for a
reason of its own while it answered other statements (too large for MariaDB's
``max_allowed_packet``, say), and a turn still in the spill buffer when ``Memori.close()``
found the database unreachable. The file outlives the process, so ``memori set-aside`` (the
CLI) lists them and ``--retry`` writes them once the cause is fixed; ``mem.llm.set_aside()``
lists them in the app.

One JSON object per line: ``entity_id``, ``process_id``, ``session_id``, ``messages`` (as
``Memori.capture`` takes them, ``created_at`` in ISO 8601), ``chars``, ``error``, ``at``
(UTC, ISO 8601) and ``id``. The file holds conversation text like the database does: ``forget`` removes
an entity's lines, and it is created readable by its owner only (mode 0600).

Where (``Config.llm_set_aside_path``): ``"auto"`` (default) puts it beside a SQLite file
(``memori.db.set-aside.jsonl``) and, for a server database, under
``$XDG_STATE_HOME/memori/`` (default ``~/.local/state/memori/``) named after the server and
database; an in-memory SQLite database, or ``"off"``, keeps set-aside turns in memory only
(lost at exit); any other value is the file's path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy.engine import URL

__all__ = ["SetAsideFile", "set_aside_path"]

_log = logging.getLogger("memori_core.llm")


def set_aside_path(url: URL, setting: str) -> Path | None:
    """The set-aside file of the database at ``url`` for ``Config.llm_set_aside_path``
    (``"auto"``, ``"off"`` or a path); None keeps set-aside turns in memory only."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        if not db or db == ":memory:" or db.startswith("file:") or "mode=memory" in str(url):
            return None
        return Path(f"{db}.set-aside.jsonl")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    name = "-".join(str(p) for p in (url.get_backend_name(), url.host or "local", url.port,
                                     url.database) if p)
    return state / "memori" / f"set-aside-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.jsonl"


def _json(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class SetAsideFile:
    """The set-aside turns of one database: appended to the file (when there is one), read
    back from it, rewritten by ``retain``. Safe across threads and processes (a lock file
    beside it, ``filelock``).

    Args:
        path: the JSON-lines file, or None to keep at most ``max_turns`` in memory.
        max_turns: bound of the in-memory form (``Config.llm_spill_turns``).
    """

    def __init__(self, path: Path | None, max_turns: int) -> None:
        self.path = path
        self._memory: deque[dict[str, Any]] = deque(maxlen=max_turns)
        self._lock = threading.Lock()
        self._file_lock = FileLock(f"{path}.lock") if path is not None else None

    def add(self, entry: dict[str, Any]) -> bool:
        """Keep ``entry`` (a turn with its ``error``); ``at`` is added. Returns False when
        the file could not be written (logged at ERROR; the entry is kept in memory)."""
        entry = {**entry, "at": datetime.now(timezone.utc).isoformat(),
                 "id": uuid.uuid4().hex}
        if self.path is not None and self._file_lock is not None:
            try:
                line = json.dumps(entry, ensure_ascii=False, default=_json) + "\n"
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self._lock, self._file_lock:
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "a", encoding="utf-8") as fh:
                        fh.write(line)
                        fh.flush()
                        os.fsync(fh.fileno())
                return True
            except (OSError, TypeError, ValueError) as exc:
                _log.error("memori: cannot write the set-aside file %s (%s); the turn is kept "
                           "in memory only", self.path, exc)
        with self._lock:
            self._memory.append(entry)
        return self.path is None

    def entries(self) -> list[dict[str, Any]]:
        """Every set-aside turn, oldest first (the file's, then those kept in memory).
        A line that is not JSON is skipped with a warning naming it."""
        out: list[dict[str, Any]] = []
        if self.path is not None and self._file_lock is not None and self.path.exists():
            with self._lock, self._file_lock:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            for n, line in enumerate(lines, start=1):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    _log.warning("memori: %s:%d is not JSON and is skipped", self.path, n)
        with self._lock:
            return out + list(self._memory)

    def retain(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Remove the entries ``keep`` rejects (written by a retry, or of a forgotten
        entity). Returns how many were removed."""
        removed = 0
        with self._lock:
            before = len(self._memory)
            self._memory = deque((e for e in self._memory if keep(e)),
                                 maxlen=self._memory.maxlen)
            removed += before - len(self._memory)
        if self.path is None or self._file_lock is None or not self.path.exists():
            return removed
        with self._lock, self._file_lock:
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = []
            for line in lines:
                try:
                    if not keep(json.loads(line)):
                        continue
                except ValueError:
                    pass  # an unreadable line is kept for a person to look at
                kept.append(line)
            removed += len(lines) - len(kept)
            if not kept:
                self.path.unlink()
            elif len(kept) != len(lines):
                tmp = self.path.with_name(self.path.name + ".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write("".join(f"{line}\n" for line in kept))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
        return removed
