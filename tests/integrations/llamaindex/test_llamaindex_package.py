"""memori-llamaindex installs on its own next to memori-core: its public names, its imports and
its declared dependencies are pinned."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import memori_llamaindex
import tomllib

import memori_core
import memori_core.integration

PLUGIN = Path(__file__).resolve().parents[3] / "integrations" / "llamaindex"
PACKAGE = PLUGIN / "memori_llamaindex"


def test_public_names() -> None:
    assert sorted(memori_llamaindex.__all__) == sorted([
        "DEFAULT_TOKEN_LIMIT", "MemoriChatStore", "MemoriMemory", "MemoriMemoryBlock",
        "__version__"])
    assert memori_llamaindex.__version__ == memori_core.__version__
    for name in memori_llamaindex.__all__:
        assert getattr(memori_llamaindex, name) is not None


def test_modules_are_private_typed_and_declare_all() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "_block.py", "_capture.py", "_convert.py", "_memory.py"]
    assert (PACKAGE / "py.typed").exists()
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), path.name
        assert any(isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in tree.body), f"{path.name} has no __all__"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.add(node.module or "")
    return names


def test_imports_only_the_cores_public_api_and_its_framework() -> None:
    for path in PACKAGE.glob("*.py"):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top == "memori_core":  # the public API and the integration kit only
                assert module in ("memori_core", "memori_core.integration"), \
                    f"{path.name} imports {module}"
            elif top.startswith("memori"):
                assert top == "memori_llamaindex", f"{path.name} imports another plugin: {module}"
            else:
                assert top in {"__future__", "asyncio", "collections", "hashlib", "json",
                               "threading", "typing", "llama_index"}, \
                    f"{path.name} imports {module}"
    for module, public in (("memori_core", memori_core.__all__),
                           ("memori_core.integration", memori_core.integration.__all__)):
        names: set[str] = set()
        for path in PACKAGE.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == module:
                    names.update(alias.name for alias in node.names)
        assert names <= {*public, "integration"}, names - set(public)  # the kit as a module


def test_under_600_lines_of_source() -> None:
    assert sum(len(p.read_text(encoding="utf-8").splitlines())
               for p in PACKAGE.glob("*.py")) < 600


def test_declared_dependencies() -> None:
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "memori-llamaindex"
    assert project["dynamic"] == ["version"]  # the package's __version__ (one version)
    assert project["dependencies"] == ["memori-core>=0.1.0,<0.2", "llama-index-core>=0.14,<0.15"]
    assert project["optional-dependencies"] == {"test": []}  # the fakes ship with llama-index-core


def test_public_api_is_documented() -> None:
    doc = inspect.getdoc(memori_llamaindex.MemoriMemoryBlock) or ""
    assert "Args:" in doc and "Raises:" in doc
    for name in ("from_defaults", "to_dict"):
        doc = inspect.getdoc(getattr(memori_llamaindex.MemoriMemory, name)) or ""
        assert "Raises:" in doc, name
    for name in ("_aget", "_aput"):  # a memori failure is logged and counted, never raised
        assert "Never raises" in (inspect.getdoc(getattr(memori_llamaindex.MemoriMemoryBlock,
                                                         name)) or ""), name
