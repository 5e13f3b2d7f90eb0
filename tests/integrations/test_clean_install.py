"""The plugins as a new user installs them: a clean virtual environment, no workspace.

Without ``memori-core[local]`` (and no ``embedder=``) ``Memori()`` must fail at once naming the
extra, instead of building a database whose captured turns wait forever for an embedder; with
it, a turn captured in that environment is augmented and recalled.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ["langchain", "pydantic_ai", "agno", "llamaindex"]
MODULES = ["memori_langchain", "memori_pydantic_ai", "memori_agno", "memori_llamaindex"]

WITHOUT_LOCAL = """
import {modules}
from memori_core import ConfigurationError, Memori
try:
    Memori(conn="sqlite:///{db}")
except ConfigurationError as e:
    print("refused", e.argument, e)
else:
    print("built without an embedder")
"""

WITH_LOCAL = """
from memori_core import Memori
with Memori(conn="sqlite:///{db}") as mem:
    mem.config.storage.build()
    mem.attribution(entity_id="new_user", process_id="app")
    mem.capture([{{"role": "user", "content": "I live in Lisbon"}}])
    assert mem.augmentation.wait(timeout=120)
    print([h.content for h in mem.recall("Where do I live?")])
"""


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True,
                   timeout=900, capture_output=True)


def _run(python: Path, code: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True,
                          text=True, timeout=600, env=env, cwd=python.parent).stdout


@pytest.mark.timeout(1200)
@pytest.mark.slow
def test_a_clean_install_refuses_without_an_embedder_and_learns_with_local(
        tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # what each plugin README's workspace line installs: the core and the plugin, no extras
    _pip(python, str(ROOT), *(str(ROOT / "integrations" / p) for p in PLUGINS))
    out = _run(python, WITHOUT_LOCAL.format(modules=", ".join(MODULES), db=tmp_path / "a.db"))
    assert out.startswith("refused embedder ")
    assert 'pip install "memori-core[local]"' in out
    # with the extra (the CPU build of torch first, as the Makefile does)
    _pip(python, "torch==2.13.0")
    _pip(python, f"{ROOT}[local]")
    out = _run(python, WITH_LOCAL.format(db=tmp_path / "b.db"))
    assert "The user lives in Lisbon" in out
