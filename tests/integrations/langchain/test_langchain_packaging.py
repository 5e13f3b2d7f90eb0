"""memori-langchain installs on its own next to memori-core: its declared dependencies are
memori-core (same version) and bounded framework ranges, it imports nothing from the other
plugins, only memori_core's public API, and only packages it declares (or that langchain-core,
which it declares, requires); its public names are pinned."""

from __future__ import annotations

import ast
import importlib
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import memori_langchain
import tomllib

import memori_core

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "integrations" / "langchain"
PACKAGE = PLUGIN / "memori_langchain"
META = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def imports() -> list[tuple[str, str, list[str]]]:
    """(file, module, names) of every import in the package; relative imports resolved."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    module = "memori_langchain" + ("." + module if module else "")
                found.append((path.name, module, [a.name for a in node.names]))
    return found


def _distribution(requirement: str) -> str:
    name = requirement.split(";")[0]
    for sep in "<>=!~[ ":
        name = name.split(sep)[0]
    return name.strip().lower().replace("_", "-")


def test_declared_dependencies_are_the_core_and_bounded_framework_ranges() -> None:
    assert META["name"] == "memori-langchain"
    assert META["dynamic"] == ["version"]  # the package's __version__ (one version)
    assert importlib.metadata.version("memori-langchain") == memori_core.__version__ == \
        memori_langchain.__version__
    assert META["dependencies"] == ["memori-core>=0.1.0,<0.2", "langchain-core>=1.7,<2"]
    extras = META["optional-dependencies"]
    assert extras["agents"] == ["langchain>=1.0,<2"]
    assert extras["aws"] == ["langchain-aws>=1.0,<2"]
    assert extras["langgraph"] == ["langgraph>=1.0,<2"]
    assert set(extras["test"]) == {"memori-langchain[agents,aws,langgraph]",
                                   "langchain-tests>=1.1,<2", "langmem>=0.0.30,<0.1"}
    for requirement in extras["agents"] + extras["aws"] + extras["langgraph"] + extras["test"][1:]:
        assert "<" in requirement, f"unbounded framework range: {requirement}"
    others = {_distribution(r) for r in META["dependencies"] + sum(extras.values(), [])
              if _distribution(r).startswith("memori-")}
    assert others == {"memori-core", "memori-langchain"}  # the core, and test's own extras
    assert (PACKAGE / "py.typed").exists()


def test_imports_only_the_cores_public_api_and_no_other_plugin() -> None:
    seen_core = set()
    for file, module, names in imports():
        top = module.split(".")[0]
        if top.startswith("memori_") and top not in ("memori_core", "memori_langchain"):
            raise AssertionError(f"{file} imports another plugin: {module}")
        if top == "memori_core":
            assert not any(part.startswith("_") for part in module.split(".")), (
                f"{file} imports memori_core internals: {module}")
            public = set(importlib.import_module(module).__all__)
            assert set(names) <= public, f"{file} imports non-public names {set(names) - public}"
            seen_core.add(module)
    assert seen_core == {"memori_core", "memori_core.integration"}


def test_every_third_party_import_is_declared_or_required_by_langchain_core() -> None:
    # langchain: the agents extra; langgraph: the langgraph extra
    declared = {"memori-core", "langchain-core", "langchain", "langgraph"}
    core_requires = {_distribution(r) for r in requires("langchain-core") or []}
    dists = packages_distributions()
    for file, module, _ in imports():
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in ("memori_langchain", "__future__"):
            continue
        providers = {d.lower().replace("_", "-") for d in dists.get(top, [])}
        assert providers & (declared | core_requires), (
            f"{file} imports {module} from {providers}, which memori-langchain does not declare")
    # the agents extra is only needed by the middleware module, langgraph by the store
    for top, only in (("langchain", "_middleware.py"), ("langgraph", "_store.py")):
        assert {file for file, module, _ in imports() if module.split(".")[0] == top} == {only}


def test_public_names_are_pinned() -> None:
    assert sorted(memori_langchain.__all__) == [
        "MemoriChatMessageHistory", "MemoriChatModel", "MemoriMiddleware", "MemoriRetriever",
        "MemoriStore", "__version__", "with_memori"]
    for name in memori_langchain.__all__:
        assert getattr(memori_langchain, name) is not None
    assert all(p.name.startswith("_") for p in PACKAGE.glob("*.py"))
