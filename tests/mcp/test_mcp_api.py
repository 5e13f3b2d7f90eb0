"""``memori_core.mcp``'s public surface is pinned, and the entity comes only from the
environment."""

from __future__ import annotations

import pytest

from memori_core import mcp
from memori_core.errors import ConfigurationError


def test_public_names() -> None:
    assert sorted(mcp.__all__) == sorted([
        "ENTITY_ENV", "PROCESS_ENV", "TOOL_NAMES", "DeleteResult", "ForgetResult", "MemoryItem",
        "MemoryList", "MemoryTools", "RememberResult", "SearchHit", "SearchResult",
        "ToolArgumentError", "Transport", "build_server", "identity_from_env", "run_server"])
    for name in mcp.__all__:
        assert getattr(mcp, name) is not None
    with pytest.raises(AttributeError):
        _ = mcp.nothing_here  # type: ignore[attr-defined]


def test_identity_from_env() -> None:
    assert mcp.identity_from_env({"MEMORI_ENTITY_ID": "u1"}) == ("u1", None)
    assert mcp.identity_from_env({"MEMORI_ENTITY_ID": "u1", "MEMORI_PROCESS_ID": "p"}) == (
        "u1", "p")
    for env, variable in [({}, "MEMORI_ENTITY_ID"), ({"MEMORI_ENTITY_ID": "  "}, "MEMORI_ENTITY_ID"),
                          ({"MEMORI_ENTITY_ID": "u\x00"}, "MEMORI_ENTITY_ID"),
                          ({"MEMORI_ENTITY_ID": "u", "MEMORI_PROCESS_ID": "p" * 300},
                           "MEMORI_PROCESS_ID")]:
        with pytest.raises(ConfigurationError, match=variable) as info:
            mcp.identity_from_env(env)
        assert info.value.argument == variable
