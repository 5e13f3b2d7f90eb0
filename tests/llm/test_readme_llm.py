"""Every block of the README's "LLM providers" section runs, against a cassette, and prints the
provider's reply (the HashEmbedder stands in for the local model, as the README says)."""

from __future__ import annotations

import contextlib
import functools
import io
import re
from pathlib import Path
from typing import Any

import pytest
from memori_cassettes import CASSETTES

import memori_core
from memori_core.testing import HashEmbedder

README = Path(__file__).resolve().parents[2] / "README.md"
#: provider of each README block -> cassette folder (xAI goes through the OpenAI client)
FOLDERS = {"openai": "openai", "anthropic": "anthropic", "google": "google", "xai": "openai"}
QUESTION = "Which snack is safe for someone allergic to peanuts like me?"


def blocks() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- provider: (\w+) -->\n```python\n(.*?)```", text, re.S)
    return dict(found)


def test_the_section_has_one_block_per_provider() -> None:
    assert sorted(blocks()) == sorted(FOLDERS)


@pytest.fixture
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    callspec = getattr(request.node, "callspec", None)
    example = callspec.params["example"] if callspec else "openai"
    return str(CASSETTES / FOLDERS[example] / "test_readme_llm")


@pytest.mark.vcr
@pytest.mark.parametrize("example", sorted(FOLDERS))
def test_readme_example_runs(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             vcr: Any) -> None:
    monkeypatch.chdir(tmp_path)  # Memori() makes ./memori.db here
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY"):
        monkeypatch.setenv(key, f"test-{key.lower()}")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setattr(memori_core, "Memori", functools.partial(
        memori_core.Memori, embedder=HashEmbedder(), augmentation_workers=0))
    out = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(blocks()[example], str(README), "exec"), namespace)
        captured = namespace["mem"].session_messages()
    finally:
        namespace["mem"].close()
    printed = out.getvalue().splitlines()
    assert printed[0] and [m["content"] for m in captured] == [QUESTION, printed[0]]
    if example == "xai":
        assert printed[1] == "1 True"
    assert vcr.all_played  # the request carried the block the cassette holds
    assert (tmp_path / "memori.db").exists()
