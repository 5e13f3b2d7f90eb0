"""The examples of a plugin README: each ```python block and the output the README says it
prints (the ``` block after a line starting "prints"), for the per-plugin README tests and the
clean-install test; and how those tests run them.

Every block must run on its own: alone in a fresh folder, and with all the other blocks of its
README in one folder, in README order and in reverse, printing what the README shows each
time. A block runs in-process (``exec``) in a fresh namespace; ``memori_core.Memori`` is
swapped for a subclass whose default embedder is one local embedding model shared by every
block of the test session (the real model, as a user's copy runs, loaded once).
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import memori_core
from memori_core import Memori
from memori_core.embeddings.local import LocalEmbedder

INTEGRATIONS = Path(__file__).resolve().parents[2] / "integrations"

_EXAMPLE = re.compile(r"```python\n(.*?)```(?:\n\nprints[^\n]*\n\n```\n(.*?)```)?", re.S)
#: the database each block opens: ``Memori(conn="sqlite:///<file>")``
_DATABASE = re.compile(r'Memori\(conn="sqlite:///([^"/]+\.db)"\)')
#: orders the blocks of one README run in, all in one folder
ORDERS = ["readme-order", "reverse"]


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


def databases(code: str) -> list[str]:
    """The SQLite files a block opens with ``Memori(conn="sqlite:///<file>")``."""
    return _DATABASE.findall(code)


def check_own_databases(blocks: list[Example]) -> None:
    """Each block opens exactly one memori database, a file of its own, and none uses the
    shared default (``Memori()``: ``./memori.db``)."""
    seen: dict[str, int] = {}
    for i, block in enumerate(blocks):
        assert "Memori()" not in block.code, f"block {i} uses the default ./memori.db"
        files = databases(block.code)
        assert len(files) == 1, f"block {i} opens {files}"
        assert files[0] not in seen, f"blocks {seen.get(files[0])} and {i} share {files[0]}"
        seen[files[0]] = i


@functools.cache
def shared_embedder() -> LocalEmbedder:
    """The local embedding model every README block of the test session uses."""
    return LocalEmbedder()


class SharedModelMemori(Memori):
    """``Memori`` whose default embedder is ``shared_embedder()``."""

    def __init__(self, conn: object = None, **kwargs: Any) -> None:
        kwargs.setdefault("embedder", shared_embedder())
        super().__init__(conn, **kwargs)


def use_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in ``folder`` (made if missing), without ``MEMORI_DATABASE_URL``, with ``Memori``
    sharing one embedding model."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.setattr(memori_core, "Memori", SharedModelMemori)
    return folder


def execute(code: str, label: str) -> tuple[str, dict[str, Any]]:
    """Run ``code`` in a fresh namespace: what it printed, and the namespace."""
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, label, "exec"), namespace)
    return out.getvalue(), namespace


def order(blocks: list[Example], name: str) -> list[int]:
    """The indexes of ``blocks`` in the order ``name`` (one of ``ORDERS``)."""
    indexes = list(range(len(blocks)))
    return indexes[::-1] if name == "reverse" else indexes


@contextlib.contextmanager
def nothing(_index: int) -> Iterator[None]:
    yield


def run_block(path: Path, blocks: list[Example], index: int,
              around: Callable[[int], contextlib.AbstractContextManager[Any]] = nothing
              ) -> dict[str, Any]:
    """Run block ``index`` (inside ``around(index)``) in the current folder and check it
    printed what the README shows (nothing, when it shows no output); its namespace."""
    with around(index):
        printed, namespace = execute(blocks[index].code, f"{path}:python-block-{index}")
    assert printed == (blocks[index].prints or ""), f"block {index}"
    return namespace


def _check_files(folder: Path, blocks: list[Example]) -> None:
    made = {p.name for p in folder.glob("*.db")}
    assert "memori.db" not in made
    for block in blocks:
        assert set(databases(block.code)) <= made, made


def check_alone(path: Path, blocks: list[Example], index: int, folder: Path,
                around: Callable[[int], contextlib.AbstractContextManager[Any]] = nothing
                ) -> dict[str, Any]:
    """Block ``index`` alone in ``folder`` (the current folder, empty): it prints what the README
    shows and writes its own database; its namespace."""
    namespace = run_block(path, blocks, index, around)
    _check_files(folder, [blocks[index]])
    return namespace


def check_one_folder(path: Path, blocks: list[Example], name: str, folder: Path,
                     around: Callable[[int], contextlib.AbstractContextManager[Any]] = nothing,
                     after: Callable[[], None] = lambda: None) -> None:
    """Every block, one after another in the order ``name``, in ``folder`` (the current folder):
    each prints what the README shows; ``after()`` runs after each block."""
    for index in order(blocks, name):
        run_block(path, blocks, index, around)
        after()
    _check_files(folder, blocks)
