"""The plugins as a new user installs them: a clean virtual environment, no workspace.

Without ``memori-core[local]`` (and no ``embedder=``) ``Memori()`` must fail at once naming the
extra, instead of building a database whose captured turns wait forever for an embedder. Then
each plugin is installed by its README's install line (the first line of its first ```bash
block; nothing is published, so each package the line names is installed from the wheel of its
workspace folder, built once) and the README's first example that runs offline is run verbatim,
as a script in a fresh working directory, and must print what the README says it prints (the
examples capture turns, and wait for the local embedding model to learn from them).

One venv for all four plugins (installing is the slow part), offline: ``HF_HUB_OFFLINE=1``,
every HTTP proxy pointed at a closed port, and Agno's run telemetry off (``AGNO_TELEMETRY``),
as in the workspace tests.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import subprocess
import venv
from pathlib import Path

import pytest
import tomllib
from integrations.readme_blocks import examples, readme

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ["langchain", "pydantic_ai", "agno", "llamaindex"]
MODULES = ["memori_langchain", "memori_pydantic_ai", "memori_agno", "memori_llamaindex"]
FOLDERS = [ROOT, *(ROOT / "integrations" / plugin for plugin in PLUGINS)]
# the distribution each pyproject names -> its folder: what a README's package names stand for
PACKAGES = {tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
            ["name"]: folder for folder in FOLDERS}

# plugin -> (the python blocks run as one script, a text they must hold): the README's first
# example that runs offline, with the blocks it continues
EXAMPLES = {
    # the first block: with_memori around LangChain's fake chat model (no extra, no AWS)
    "langchain": ([0], "GenericFakeChatModel("),
    "pydantic_ai": ([0], "FunctionModel(stand_in)"),
    # Agno ships no offline model, so the agent's OpenAIChat is the workspace tests' offline
    # model (STAND_IN)
    "agno": ([0], "pre_hooks=[memory.pre_hook]"),
    "llamaindex": ([0], "MockFunctionCallingLLM()"),
}
STAND_IN = {"agno": f"""
import sys, types
sys.path.insert(0, {str(ROOT / "tests" / "integrations" / "agno")!r})
from agno_offline_model import OfflineModel
sys.path.pop(0)
openai = types.ModuleType("agno.models.openai")  # no `openai` package needed
openai.OpenAIChat = OfflineModel
sys.modules["agno.models.openai"] = openai
"""}
DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")

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


def install_line(plugin: str) -> tuple[str, list[tuple[Path, str]]]:
    """The README's install line, and the workspace folder and extras ("[local]" or "") of
    each package it names."""
    block = re.search(r"```bash\n(.*?)\n", readme(plugin).read_text(encoding="utf-8"))
    assert block is not None, f"{plugin}: no ```bash block in the README"
    line = block[1]
    words = shlex.split(line, comments=True)
    assert words[:2] == ["pip", "install"] and len(words) > 2, f"{plugin}: {line!r}"
    packages = []
    for word in words[2:]:
        named = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[A-Za-z0-9_,-]+\])?", word)
        assert named is not None and named[1] in PACKAGES, (
            f"{plugin} README's install line {line!r}: {word!r} is no package of the workspace")
        packages.append((PACKAGES[named[1]], named[2] or ""))
    return line, packages


def _pip(python: Path, *args: str, command: str = "install") -> None:
    subprocess.run([str(python), "-m", "pip", command, "-q", *args], check=True,
                   timeout=900, capture_output=True)


def _wheels(python: Path, into: Path) -> dict[str, Path]:
    """The wheel of each workspace folder (what PyPI would serve), built once: folder -> wheel."""
    _pip(python, "--no-deps", "-w", str(into), *map(str, FOLDERS), command="wheel")
    built = {wheel.name.split("-")[0].replace("_", "-"): wheel for wheel in into.glob("*.whl")}
    return {folder: built[name] for name, folder in PACKAGES.items()}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
           and k != "MEMORI_DATABASE_URL"}
    closed = "http://127.0.0.1:9"  # no network: HTTP clients honour these
    return {**env, "HF_HUB_OFFLINE": "1", "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
            "ALL_PROXY": closed, "AGNO_TELEMETRY": "false"}


def _run(python: Path, code: str) -> str:
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True,
                          text=True, timeout=600, env=_env(), cwd=python.parent).stdout


def _run_example(python: Path, plugin: str, workdir: Path) -> None:
    """The plugin's README example, as a script in ``workdir``: it prints what the README
    says (but the day memories were said: the day it runs)."""
    indexes, marker = EXAMPLES[plugin]
    found = examples(readme(plugin))
    code = "".join(found[i].code for i in indexes)
    documented = "".join(found[i].prints or "" for i in indexes)
    assert marker in code and documented, plugin
    workdir.mkdir()
    (workdir / "readme_example.py").write_text(code, encoding="utf-8")
    command = [str(python), "readme_example.py"]
    if plugin in STAND_IN:
        (workdir / "stand_in.py").write_text(STAND_IN[plugin], encoding="utf-8")
        command = [str(python), "-c", "import stand_in, runpy; "
                   "runpy.run_path('readme_example.py', run_name='__main__')"]
    days = {dt.datetime.now(dt.UTC).date().isoformat()}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env(),
                          cwd=workdir)
    days.add(dt.datetime.now(dt.UTC).date().isoformat())
    assert done.returncode == 0, f"{plugin} README example failed:\n{done.stderr[-4000:]}"
    assert set(DAY.findall(done.stdout)) <= days, done.stdout
    assert DAY.sub("<day>", done.stdout) == DAY.sub("<day>", documented), plugin


def test_every_readme_names_workspace_packages() -> None:
    for plugin in PLUGINS:
        line, packages = install_line(plugin)
        assert (ROOT / "integrations" / plugin, "") in packages, line
        assert (ROOT, "[local]") in packages, line  # the offline default embeddings


@pytest.mark.timeout(1200)
@pytest.mark.slow
def test_a_clean_install_refuses_without_an_embedder_and_runs_each_readme(
        tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    wheels = _wheels(python, tmp_path / "wheels")
    # the core and the plugins, no extras
    _pip(python, *map(str, wheels.values()))
    out = _run(python, WITHOUT_LOCAL.format(modules=", ".join(MODULES), db=tmp_path / "a.db"))
    assert out.startswith("refused embedder ")
    assert 'pip install "memori-core[local]"' in out
    # the CPU build of torch first, as the Makefile does (the README lines' [local] needs torch)
    _pip(python, "torch==2.13.0")
    for plugin in PLUGINS:
        _pip(python, *(f"{wheels[folder]}{extras}" for folder, extras in install_line(plugin)[1]))
        _run_example(python, plugin, tmp_path / f"readme-{plugin}")
