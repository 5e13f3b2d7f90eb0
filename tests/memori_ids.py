"""``stable_id``: a test parameter's repr without memory addresses, for ``ids=``.

``ids=repr`` names ``object()`` as ``<object object at 0x7f...>``, which differs between
processes; pytest-xdist's workers must collect the same test ids.
"""

from __future__ import annotations

import re

__all__ = ["stable_id"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stable_id(value: object) -> str:
    """``repr(value)`` with every `` at 0x...`` address left out."""
    return _ADDRESS.sub("", repr(value))
