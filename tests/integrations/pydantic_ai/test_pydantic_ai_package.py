"""The package: its public names, what it imports, what it declares, and clean cassettes."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import memori_pydantic_ai
import tomllib

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "integrations" / "pydantic_ai"
PACKAGE = PLUGIN / "memori_pydantic_ai"
CASSETTES = ROOT / "cassettes" / "pydantic_ai"
# pydantic is pydantic-ai-slim's own dependency and part of its public API (tool argument schemas)
FRAMEWORK = {"pydantic_ai", "pydantic"}


def test_exported_names() -> None:
    assert memori_pydantic_ai.__all__ == [
        "MemoriCapability",
        "MemoriConversationStore",
        "MemoriDeps",
        "__version__",
        "to_memori_messages",
    ]
    for name in memori_pydantic_ai.__all__:
        assert getattr(memori_pydantic_ai, name) is not None
    assert memori_pydantic_ai.__version__ == metadata.version("memori-pydantic-ai")
    assert (PACKAGE / "py.typed").exists()
    assert all(p.name.startswith("_") for p in PACKAGE.glob("*.py"))  # private modules


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.append(node.module or "")
    return names


def test_imports_only_memori_cores_public_api_and_the_framework() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "memori_core":
                assert name in ("memori_core", "memori_core.integration"), (
                    f"{path.name} imports {name}: use memori_core's API and its integration kit")
            elif top == "memori_pydantic_ai":
                continue
            elif top in FRAMEWORK:
                assert not any(part.startswith("_") for part in name.split(".")), (
                    f"{path.name} imports the framework's private {name}")
            else:
                assert top in sys.stdlib_module_names, f"{path.name} imports {name}"


def test_declared_dependencies() -> None:
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "memori-pydantic-ai"
    assert project["dependencies"] == ["memori-core>=0.1.0,<0.2", "pydantic-ai-slim>=2.78,<3"]
    assert set(project["optional-dependencies"]) == {"test"}
    assert "pydantic-ai-slim[openai]>=2.78,<3" in project["optional-dependencies"]["test"]
    installed = [r for r in metadata.requires("memori-pydantic-ai") or [] if "extra ==" not in r]
    assert sorted(installed) == ["memori-core<0.2,>=0.1.0", "pydantic-ai-slim<3,>=2.78"]


def test_importing_loads_no_other_plugin_or_framework() -> None:
    code = ("import json, sys, memori_pydantic_ai; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                           capture_output=True, text=True).stdout))
    assert "memori_core" in loaded and "pydantic_ai" in loaded
    assert not loaded & {"memori_langchain", "memori_agno", "memori_llamaindex", "langchain_core",
                         "agno", "llama_index", "openai", "torch"}


def test_cassettes_hold_no_secrets() -> None:
    cassettes = sorted(CASSETTES.rglob("*.yaml"))
    assert cassettes
    secret = re.compile(r"sk-[A-Za-z0-9_-]{8,}|bearer\s|authorization|openai-organization|"
                        r"openai-project|set-cookie|x-request-id", re.I)
    for path in cassettes:
        found = secret.search(path.read_text(encoding="utf-8"))
        assert found is None, f"{path.relative_to(ROOT)}: {found.group(0)!r}"
