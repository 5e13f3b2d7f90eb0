"""The five distributions of the workspace as packaging tools see them: one version for all,
each plugin accepting the core of its own minor version, complete metadata.

The version lives in one place per package, its ``__version__``, which each pyproject.toml
reads (``dynamic = ["version"]``); these tests hold the five to one value. Bumping it means
editing the five ``__version__`` lines and adding its CHANGELOG.md section. What the built
wheels and sdists hold is checked by ``make dist`` (``twine check --strict``) and by
tests/integrations/test_clean_install.py, which installs them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# distribution -> (folder, import package)
DISTRIBUTIONS = {
    "memori-core": (ROOT, "memori_core"),
    "memori-langchain": (ROOT / "integrations" / "langchain", "memori_langchain"),
    "memori-pydantic-ai": (ROOT / "integrations" / "pydantic_ai", "memori_pydantic_ai"),
    "memori-agno": (ROOT / "integrations" / "agno", "memori_agno"),
    "memori-llamaindex": (ROOT / "integrations" / "llamaindex", "memori_llamaindex"),
}
PLUGINS = [name for name in DISTRIBUTIONS if name != "memori-core"]


def _project(name: str) -> dict[str, Any]:
    folder, _ = DISTRIBUTIONS[name]
    return tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))


def _source_version(name: str) -> str:
    """The ``__version__`` literal of the package's ``__init__.py``, read as setuptools reads
    it (statically, without importing the package)."""
    folder, package = DISTRIBUTIONS[name]
    tree = ast.parse((folder / package / "__init__.py").read_text(encoding="utf-8"))
    found = [node.value.value for node in tree.body
             if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
             and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)]
    assert len(found) == 1 and isinstance(found[0], str), f"{name}: one __version__ literal"
    return found[0]


def _workspace_version() -> Version:
    return Version(_source_version("memori-core"))


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_the_version_is_read_from_the_package(name: str) -> None:
    meta = _project(name)
    _, package = DISTRIBUTIONS[name]
    assert "version" not in meta["project"], f"{name}: a static version besides __version__"
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": f"{package}.__version__"}


def test_one_version_for_the_workspace() -> None:
    versions = {name: _source_version(name) for name in DISTRIBUTIONS}
    assert len(set(versions.values())) == 1, versions
    assert str(Version(versions["memori-core"])) == versions["memori-core"]  # normalized form


@pytest.mark.parametrize("name", PLUGINS)
def test_each_plugin_accepts_the_core_of_its_minor_version(name: str) -> None:
    """``memori-core>=X.Y.Z,<X.Y+1``: this release and its patch releases, not the next minor
    (before 1.0 a minor release may change the API the plugins use)."""
    version = _workspace_version()
    pins = [Requirement(d) for d in _project(name)["project"]["dependencies"]
            if Requirement(d).name == "memori-core"]
    assert len(pins) == 1, f"{name} names memori-core once"
    specifier: SpecifierSet = pins[0].specifier
    assert version in specifier
    assert Version(f"{version.major}.{version.minor}.{version.micro + 1}") in specifier
    assert Version(f"{version.major}.{version.minor + 1}.0") not in specifier


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_the_installed_distribution_is_the_source_version(name: str) -> None:
    """What ``pip`` installed (``make install``) carries the package's ``__version__``: a bump
    without reinstalling fails here, not in a user's bug report."""
    _, package = DISTRIBUTIONS[name]
    module = importlib.import_module(package)
    assert module.__version__ == _source_version(name)
    assert importlib.metadata.version(name) == module.__version__


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_the_metadata_is_complete(name: str) -> None:
    folder, package = DISTRIBUTIONS[name]
    meta = _project(name)
    project = meta["project"]
    assert project["name"] == name
    assert project["description"] and len(project["description"]) <= 200
    assert project["license"] == "Apache-2.0"  # SPDX, so no License :: classifier
    assert (folder / project["readme"]).is_file()
    assert project["authors"] and all(a.get("name") for a in project["authors"])
    assert project["keywords"]
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(project["urls"])
    assert all(url.startswith("https://") for url in project["urls"].values())
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers), "SPDX license given"
    assert classifiers == sorted(classifiers)
    # the Python versions named are the ones requires-python admits, from its lowest on
    requires = SpecifierSet(project["requires-python"])
    named = [c.rsplit(" ", 1)[1] for c in classifiers
             if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert named, f"{name}: no Python version classifiers"
    assert all(Version(v) in requires for v in named)
    lowest = min(named, key=Version)
    assert Version(f"3.{Version(lowest).minor - 1}") not in requires
    # typed: the marker ships in the package
    assert (folder / package / "py.typed").is_file()
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"][package]


def test_the_build_tools_are_in_the_dev_extra() -> None:
    dev = {Requirement(d).name for d in _project("memori-core")["project"]
           ["optional-dependencies"]["dev"]}
    assert {"build", "twine"} <= dev


def test_the_changelog_has_a_section_for_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert re.search(rf"^## \[{re.escape(str(_workspace_version()))}\] - ", text, re.M)
    assert "Keep a Changelog" in text


def test_make_dist_builds_every_distribution() -> None:
    """The Makefile's dist target builds the root and every plugin folder and checks them;
    the same target builds the wheels the clean-install test installs."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    plugins = re.search(r"^PLUGINS :=(.*)$", makefile, re.M)
    assert plugins is not None
    folders = {ROOT / f for f in plugins[1].split()} | {ROOT}
    assert folders == {folder for folder, _ in DISTRIBUTIONS.values()}
    target = re.search(r"^dist:.*?## .*?\n((?:\t.*\n)+)", makefile, re.M)
    assert target is not None
    recipe = target[1]
    assert "-m build" in recipe and ". $(PLUGINS)" in recipe
    assert "twine check --strict" in recipe
    assert re.search(r"^\.PHONY:.*\bdist\b", makefile, re.M)


def test_the_license_text_ships_with_the_core() -> None:
    """The SPDX expression names the license; the text itself is the file every wheel of the
    core carries (``license-files``, PEP 639)."""
    core = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert core["license"] == "Apache-2.0" and core["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
