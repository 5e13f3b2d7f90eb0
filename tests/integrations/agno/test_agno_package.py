"""memori-agno installs on its own next to memori-core: its exports, its imports (memori_core's
public API and integration kit only, no other plugin) and its declared dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import memori_agno
import tomllib

import memori_core
from memori_core import integration as kit

PACKAGE = Path(memori_agno.__file__).resolve().parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def test_exports_are_pinned() -> None:
    assert memori_agno.__all__ == ["MemoriLearningStore", "MemoriMemoryManager", "__version__"]
    assert memori_agno.__version__ == memori_core.__version__
    for name in memori_agno.__all__:
        assert getattr(memori_agno, name) is not None
    assert (PACKAGE / "py.typed").exists()


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement in a file."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def test_imports_only_memori_cores_public_api_and_no_other_plugin() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "_manager.py", "_store.py"}
    for path in modules:
        for module, names in _imports(path):
            top = module.split(".")[0]
            if module == "memori_core.integration":  # the integration kit
                assert set(names) <= set(kit.__all__), f"{path.name}: {names}"
            elif top == "memori_core":
                assert module == "memori_core", f"{path.name} imports {module} (not public)"
                assert set(names) <= {*memori_core.__all__, "integration"}, f"{path.name}: {names}"
            elif top.startswith("memori"):
                assert top == "memori_agno", f"{path.name} imports another plugin: {module}"


def test_declared_dependencies_are_memori_core_and_agno_only() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert project["name"] == "memori-agno"
    assert project["dynamic"] == ["version"]  # the package's __version__ (one version)
    assert project["dependencies"] == ["memori-core>=0.1.0,<0.2", "agno>=3,<4"]
    # the only extra is what the tests need: agno's own openai extra (for the README test)
    assert project["optional-dependencies"] == {"test": ["agno[openai]>=3,<4"]}
    # what is installed is what is declared
    installed = importlib.metadata.requires("memori-agno") or []
    runtime = sorted(r for r in installed if "extra ==" not in r)
    assert any(r.startswith("agno[openai]") and 'extra == "test"' in r for r in installed)
    assert [r.replace(" ", "") for r in runtime] == ["agno<4,>=3", "memori-core<0.2,>=0.1.0"]
    agno_version = importlib.metadata.version("agno")
    assert agno_version.split(".")[0] == "3"
