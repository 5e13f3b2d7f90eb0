"""The README's remote-mode example runs against a real ``memori serve`` and prints what the
README says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from memori_remote_support import Server, sqlite_server

__all__ = ["sqlite_server"]

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_remote_mode_example_prints_what_the_readme_says(
        sqlite_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.read_text(encoding="utf-8").split("### Remote mode", 1)[1]
    code, output = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    monkeypatch.setenv("MEMORI_URL", sqlite_server.url)
    monkeypatch.setenv("MEMORI_API_KEY", sqlite_server.admin)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # the README's own code
    assert out.getvalue() == output
