"""The provider wrappers' public surface, and a core that imports no provider SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import memori_core.llm
from memori_core.llm import anthropic, context, google, openai, registry


def test_public_names_are_pinned() -> None:
    assert sorted(memori_core.llm.__all__) == ["BLOCK_END", "BLOCK_START", "LLMRegistry",
                                               "SUPPORTED_CLIENTS", "render_block",
                                               "strip_block"]
    assert registry.__all__ == ["SUPPORTED_CLIENTS", "LLMRegistry"]
    assert sorted(context.__all__) == ["BLOCK_END", "BLOCK_HEADER", "BLOCK_START", "quote",
                                       "render_block", "strip_block"]
    assert openai.__all__ == ["ChatCompletions", "Responses", "targets"]
    assert anthropic.__all__ == ["Messages", "targets"]
    assert google.__all__ == ["GenerateContent", "targets"]


def test_importing_memori_imports_no_provider_sdk(tmp_path: Path) -> None:
    code = ("import sys, memori_core\n"
            "from memori_core.testing import HashEmbedder\n"
            "m = memori_core.Memori(conn='sqlite:///' + sys.argv[1], embedder=HashEmbedder())\n"
            "m.close()\n"
            "print(sorted(n for n in ('openai', 'anthropic', 'google.genai') "
            "if n in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "layout.db")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
