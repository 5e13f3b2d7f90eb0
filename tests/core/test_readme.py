"""The README's quickstart runs and prints what the README says it prints."""

from __future__ import annotations

import contextlib
import io
import re
from datetime import datetime
from pathlib import Path

import pytest

from memori_core.storage import store

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_starts_with_the_two_commands() -> None:
    first = _blocks("bash")[0]
    assert first.splitlines()[0].startswith("make demo")
    assert first.splitlines()[1].startswith("make test")


@pytest.mark.parametrize("today", [
    pytest.param(None, id="today", marks=pytest.mark.real_clock),  # the day the tests run
    pytest.param(datetime(2023, 5, 8, 13, 56), id="2023-05-08"),
    pytest.param(datetime(2031, 2, 28, 23, 59), id="2031-02-28")])
def test_quickstart_runs_and_prints_the_documented_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, today: datetime | None) -> None:
    """The documented output holds on any date (episodic memories are embedded with the day
    they were said, so nothing printed may depend on it)."""
    if today is not None:
        monkeypatch.setattr(store, "utcnow", lambda: today)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    code = _blocks("python")[0]
    assert len(code.strip().splitlines()) <= 10
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    documented = re.search(r"prints\n\n```\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert documented is not None
    assert out.getvalue() == documented.group(1)
    assert (tmp_path / "memori.db").exists()


def test_context_section_runs_and_prints_the_documented_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## What the model is shown"):text.index("## LLM providers")]
    found = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", section, re.S)
    assert found is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(found.group(1), str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue() == found.group(2)
