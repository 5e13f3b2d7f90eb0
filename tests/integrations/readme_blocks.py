"""The examples of a plugin README: each ```python block and the output the README says it
prints (the ``` block after a line starting "prints"), for the per-plugin README tests and the
clean-install test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

INTEGRATIONS = Path(__file__).resolve().parents[2] / "integrations"

_EXAMPLE = re.compile(r"```python\n(.*?)```(?:\n\nprints[^\n]*\n\n```\n(.*?)```)?", re.S)


class Example(NamedTuple):
    """One ```python block of a README."""

    code: str
    prints: str | None
    """What the README says it prints, or None when the README shows no output for it."""


def readme(plugin: str) -> Path:
    """integrations/<plugin>/README.md."""
    return INTEGRATIONS / plugin / "README.md"


def examples(path: Path) -> list[Example]:
    """Every ```python block of the README at ``path``, in order, with its documented output."""
    return [Example(m[1], m[2]) for m in _EXAMPLE.finditer(path.read_text(encoding="utf-8"))]
