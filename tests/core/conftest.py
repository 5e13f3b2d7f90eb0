"""Fixtures for the core suite.

Attribution lives in context variables, and every test runs in the main thread's context, so an
attribution set by one test would still be current in the next. Each test here starts with none.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memori_core import _attribution, _memori


@pytest.fixture(autouse=True)
def _no_attribution() -> Iterator[None]:
    current = _attribution._current.set(_attribution.Attribution())
    pending = _memori._pending.set(None)
    scopes = _memori._scopes.set(())
    yield
    _memori._scopes.reset(scopes)
    _memori._pending.reset(pending)
    _attribution._current.reset(current)
