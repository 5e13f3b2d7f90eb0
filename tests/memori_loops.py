"""``close_left_loop``: close the event loop a sync call left set on this thread.

Pydantic AI's ``Agent.run_sync`` and LlamaIndex's ``asyncio_run`` make the thread's event loop
with ``asyncio.get_event_loop()`` and keep it. Left open, a later ``asyncio.run`` unsets it and
the collector reports its self-pipe sockets as unclosed inside whichever test runs then.
A module of its own, imported by name (``from memori_loops import close_left_loop``).
"""

from __future__ import annotations

import asyncio
import warnings

__all__ = ["close_left_loop"]


def close_left_loop() -> None:
    """Close this thread's event loop, if one is set and not running, and unset it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # none set (asyncio.run() leaves none)
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)
