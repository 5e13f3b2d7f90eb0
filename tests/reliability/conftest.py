"""Fixtures of the fault-injection tests: a seeded random generator whose seed is printed (set
``MEMORI_RELIABILITY_SEED`` to replay a failure), a private PostgreSQL cluster a test may stop
and start, and a local OpenAI-compatible server.

Each scenario runs in two sizes: a fast one in ``make test`` and the issue's full one, marked
``reliability`` (``make test-reliability``): ``memori_reliability_support.sizes``. The full
forms record their figures (``figures`` fixture, ``tests/memori_figures.py``) and the run ends
with one table of them (``tests/conftest.py``); the fast forms record nothing.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from memori_reliability_support import PrivateCluster, kill_live

# helpers of the provider tests (the local OpenAI-compatible server) are imported by module
# name, as tests/llm does itself
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))

from memori_llm_support import serve_echo


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test() -> Iterator[None]:
    """Children a failed test left running (``memori_reliability_support.child``) are killed."""
    yield
    kill_live()


@pytest.fixture
def seed() -> int:
    """Seed of the test's random kill points and delays: ``MEMORI_RELIABILITY_SEED`` when set,
    else random; printed, so a failure shows how to replay it."""
    value = int(os.environ.get("MEMORI_RELIABILITY_SEED")
                or random.SystemRandom().randrange(2**32))
    print(f"replay with MEMORI_RELIABILITY_SEED={value}")
    return value


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test session (own port and data directory, started) that
    tests may stop and start; removed at the end."""
    try:
        cluster = PrivateCluster()
        cluster.start()
    except (RuntimeError, OSError, KeyError) as exc:
        pytest.fail(f"cannot start a private PostgreSQL cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def local_openai() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/v1``) of a local OpenAI-compatible server that
    answers at once with the system message and the last user message (``EchoHandler``)."""
    with serve_echo() as url:
        yield url
