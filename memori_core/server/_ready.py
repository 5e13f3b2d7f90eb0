"""Waiting under a deadline: for a condition (``wait_until``), for a server started as a
process to answer (``wait_serving``), and for it to end (``stop``). What the tests and
``benchmarks/server_load.py`` use around the ``memori serve`` and ``memori mcp`` processes they
start; ``wait_serving`` needs httpx (the ``remote`` extra)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import httpx

__all__ = ["stop", "wait_serving", "wait_until"]

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Call ``condition`` until it gives a true value, every ``interval`` seconds, for at most
    ``timeout`` seconds (it is called once more at the deadline).

    Returns:
        the first true value ``condition`` gave.

    Raises:
        TimeoutError: it gave none within ``timeout`` seconds; the message names ``what`` was
            awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))


def _output(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    return "; its output ends: " + log.read_text(encoding="utf-8", errors="replace")[-4000:]


def wait_serving(proc: subprocess.Popen[str] | subprocess.Popen[bytes], url: str, *,
                 timeout: float = 60.0, log: Path | None = None,
                 ready: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200
                 ) -> None:
    """Wait until the server process ``proc`` answers ``GET url`` as ``ready`` wants (by
    default 200: ``/readyz`` of ``memori serve``; ``lambda r: True`` for any answer).

    Args:
        proc: the server's process.
        url: what to ask, e.g. ``http://127.0.0.1:8765/readyz``.
        timeout: seconds to wait at most.
        log: the file the process writes its output to, quoted in the errors.
        ready: whether an answer means the server is ready.

    Raises:
        RuntimeError: the process exited.
        TimeoutError: it was not ready within ``timeout`` seconds (it is left running).
    """
    import httpx

    def answered() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}{_output(log)}")
        try:
            return ready(httpx.get(url, timeout=2))
        except httpx.TransportError:
            return False

    try:
        wait_until(answered, timeout, f"{url} answering", interval=0.1)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}{_output(log)}") from None


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """End ``proc``: SIGTERM, SIGKILL after ``grace`` seconds, then reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
