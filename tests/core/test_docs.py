"""The documentation site builds with ``mkdocs build --strict`` (what ``make docs`` runs): a
broken link, anchor or API cross-reference, or a docstring griffe cannot parse, fails here,
and the built site loads nothing from the network."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    if "No module named mkdocs" in proc.stderr:
        pytest.fail('mkdocs is not installed: pip install -e ".[docs]" (make install does)')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_api_reference_documents_memori_and_recall(site: Path) -> None:
    page = (site / "reference" / "memori" / "index.html").read_text(encoding="utf-8")
    assert 'id="memori_core.Memori"' in page
    assert 'id="memori_core.Memori.recall"' in page
    assert "Memori" in page and "recall" in page
    for plugin in ("langchain", "pydantic-ai", "agno", "llamaindex"):
        assert (site / "reference" / plugin / "index.html").is_file(), plugin


def test_site_fetches_nothing(site: Path) -> None:
    """No web fonts, CDN scripts or stylesheets: the site works offline."""
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in text, page
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?:[^"]+)"', text)
        assert not remote, (page, remote)


def test_home_page_quickstart_prints_what_the_page_says(tmp_path: Path) -> None:
    """The quickstart on the home page runs as written (offline, its own database file and
    entity) and prints the output shown under it."""
    page = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    match = re.search(r"## Quickstart.*?```python\n(.*?)```\s*prints\s*```text\n(.*?)```",
                      page, re.S)
    assert match, "docs/index.md: no quickstart block followed by its output"
    code, expected = match.groups()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MEMORI_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
