"""``python memori_remote_serve.py``: a ``memori serve`` waiting for its arguments. It imports
the server first, then reads one JSON line on stdin, ``{"start": ..., "argv": [...], "env":
{...}}``, sets ``env`` (``MEMORI_*`` settings) and runs ``memori ARGV`` (``memori serve ...``)
with memori's clock starting at ``start`` (naive UTC ISO 8601) and running on in real time,
as ``tests/conftest.py``'s ``memori_clock`` does in the test process. ``memori_remote_mode``
keeps one started ahead, so a test's server is ready without waiting for the imports; only
the clock differs from ``python -m memori_core.cli ARGV``."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone


def main() -> int:
    import memori_core.cli
    import memori_core.server  # everything ``serve`` imports, before the arguments come
    import memori_core.server.cli
    from memori_core.llm import _engine
    from memori_core.server import create_app, require_extra
    from memori_core.storage import store

    require_extra()
    import fastapi  # noqa: F401 - imported ahead, as the rest
    import uvicorn  # noqa: F401

    line = sys.stdin.readline()
    if not line:  # the tests ended before this one was needed
        return 0
    order = json.loads(line)
    start, t0 = datetime.fromisoformat(order["start"]), time.monotonic()
    os.environ.update(order["env"])

    def utcnow() -> datetime:
        return start + timedelta(seconds=time.monotonic() - t0)

    def aware() -> datetime:
        return utcnow().replace(tzinfo=timezone.utc)

    real = {"utcnow": store.utcnow, "_utcnow": _engine._utcnow}
    stand_in = {"utcnow": utcnow, "_utcnow": aware}
    for name, mod in list(sys.modules.items()):
        if mod is None or not name.startswith("memori"):
            continue
        for attr, fn in real.items():
            if vars(mod).get(attr) is fn:
                setattr(mod, attr, stand_in[attr])
    del create_app
    return memori_core.cli.main(order["argv"])


if __name__ == "__main__":
    sys.exit(main())
