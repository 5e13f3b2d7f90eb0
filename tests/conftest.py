"""Shared fixtures: a fresh database per test on real SQLite, PostgreSQL and MariaDB servers.

PostgreSQL (127.0.0.1:5432, user postgres, trust) and MariaDB (127.0.0.1:3306, root, empty
password) must be running; ``.ci/run`` starts them when they are down. A missing server fails the
test, it never skips. Override with MEMORI_TEST_PG_URL / MEMORI_TEST_MYSQL_URL (server URLs
without a database).

memori's clock starts every test at ``TEST_CLOCK_START`` (2026-01-01 09:00 UTC) and runs on in
real time (``memori_clock``), so the day printed on each memory of the injected block, and so
the cassettes, never depend on the day the tests run. ``@pytest.mark.real_clock`` opts a test
out: one whose child processes (which run on the real clock) share its database needs it.

The long forms (marked ``reliability``) record what they measure with the ``figures`` fixture
(``memori_figures``: kills, lease, hung database, fuzz, isolation); when any was recorded,
the run ends by printing one table of them against their targets, with a pass or fail per row
and "not run" for a row none of the run's tests measured. So ``make test-reliability`` prints
it; ``make test`` (``-m "not reliability"``: the fast forms, which record nothing) does not.

``--memori-remote`` (or ``MEMORI_TEST_REMOTE=1``; ``make test-remote``) is remote mode:
``mem`` and ``smem`` (and ``tests/llm``'s ``new_memori``) hand out ``RemoteMemori`` clients of
a real ``memori serve`` over the test's database (``memori_remote_mode``), and the tests it
lists as local-only are deselected, counted per reason at the end of the run.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import memori_remote_mode
import pytest
from memori_databases import create_database
from memori_figures import FIGURES, Figures, Recorder
from memori_loops import close_left_loop
from memori_remote_mode import OPTION, memori

from memori_core import Memori
from memori_core.llm import _engine
from memori_core.storage import store

BACKENDS = ["sqlite", "postgresql", "mariadb"]

# the set-aside files of server databases go under $XDG_STATE_HOME/memori: a directory of this
# run, never the home directory of whoever runs the tests (child processes inherit it)
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="memori-test-state-")

# no test may reach the network beyond loopback (providers are replayed from cassettes)
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and not (host.startswith("127.") or host in ("localhost", "::1")):
        # an OSError, as a real unreachable network gives, so clients fail the way they would
        raise OSError(errno.ENETUNREACH, f"tests must not reach the network: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, action="store_true", default=False,
                     help="remote mode: the fixtures hand out RemoteMemori clients of a real "
                          "memori serve (tests/memori_remote_mode.py; make test-remote)")


def pytest_configure(config: pytest.Config) -> None:
    if memori_remote_mode.enabled(config):  # seen by memori_remote_mode.memori() too
        os.environ[memori_remote_mode.ENV] = "1"
    config.addinivalue_line("markers", "real_clock: memori's clock is the real one (not "
                                       "shifted to TEST_CLOCK_START)")
    config.stash[FIGURES] = Figures()


# ---- the figures of the reliability run ------------------------------------------------------
def _figures(config: pytest.Config) -> Figures:
    return config.stash[FIGURES]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Recorder:
    """Records this test's measured figures for the end-of-run table (only when the test is
    marked ``reliability``; see ``memori_figures``)."""
    return _figures(request.config).recorder(request.node)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[pytest.TestReport]:
    report = yield
    if report.failed:  # a row this test recorded is failed, whatever its figures
        _figures(item.config).failed.add(item.nodeid)
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    memori_remote_mode.deselect_local_only(config, items)


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    if memori_remote_mode.enabled(config):  # the memori serve on 127.0.0.1 is no provider
        vcr.ignore_hosts = (*vcr.ignore_hosts, memori_remote_mode.HOST)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    memori_remote_mode.stop_servers()  # before the test's fixtures drop its databases


def pytest_sessionfinish(session: pytest.Session) -> None:
    memori_remote_mode.stop_spare()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    if memori_remote_mode.enabled(config):
        terminalreporter.write_sep("=", "remote mode (tests/memori_remote_mode.py)")
        for line in memori_remote_mode.summary():
            terminalreporter.write_line(line)
    figures = config.stash.get(FIGURES, None)
    if figures is None or not figures.recorded():  # no test marked reliability recorded
        return
    terminalreporter.write_sep("=", "reliability figures")
    for line in figures.table():
        terminalreporter.write_line(line)


# ---- memori's clock -------------------------------------------------------------------------
#: when memori's clock starts in every test (naive UTC; the authored cassettes carry its day)
TEST_CLOCK_START = datetime(2026, 1, 1, 9, 0, 0)
#: memori's clocks, by attribute name: the real function and whether it is timezone-aware.
#: ``utcnow`` (naive UTC) stamps what is stored: messages, memories, jobs, leases, sessions, and
#: recall's recency; ``_utcnow`` (aware UTC) when a wrapped LLM call and its reply were made. A
#: module that imported one by name (``from memori_core.storage.store import utcnow``: recall,
#: portability) holds its own reference, which is replaced too.
_REAL_CLOCKS: dict[str, tuple[Callable[[], datetime], bool]] = {
    "utcnow": (store.utcnow, False), "_utcnow": (_engine._utcnow, True)}


class TestClock:
    """memori's clock in the tests: ``start`` plus the (monotonic) time elapsed since it was
    (re)started. It runs on, so backoffs, leases and session timeouts still pass; it reads no
    wall clock, so a test that also moves the wall clock (``time_machine``) does not shift it
    twice."""

    __test__ = False  # not a test class

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        """Naive UTC, as memori stores timestamps."""
        return self.start + timedelta(seconds=time.monotonic() - self._t0)

    def aware(self) -> datetime:
        """The same instant, timezone-aware."""
        return self.now().replace(tzinfo=timezone.utc)

    def travel(self, when: datetime) -> None:
        """Go to ``when`` (aware, or naive UTC) and run on from there: what a fixture that
        moves the wall clock (``time_machine.travel``) calls to move memori's with it."""
        if when.tzinfo is not None:
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        self.start, self._t0 = when, time.monotonic()


def _stand_in(clock: TestClock, aware: bool) -> Callable[[], datetime]:
    def now() -> datetime:
        return clock.aware() if aware else clock.now()

    return now


#: memori's clock in this test session; every test starts it again at ``TEST_CLOCK_START``
CLOCK = TestClock(TEST_CLOCK_START)
#: what stands in for each of memori's clocks, by attribute name
_STAND_INS = {name: _stand_in(CLOCK, aware) for name, (_, aware) in _REAL_CLOCKS.items()}


def _set_clocks(real: bool, setattr_: Callable[[object, str, object], None]) -> None:
    """Point every memori module's reference to one of its clocks at the real function
    (``real``) or at ``CLOCK``'s stand-in."""
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not mod_name.startswith("memori"):
            continue
        names = vars(mod)
        for name, (fn, _) in _REAL_CLOCKS.items():
            if names.get(name) in (fn, _STAND_INS[name]):
                setattr_(mod, name, fn if real else _STAND_INS[name])


# installed for the whole session, so what a module- or session-scoped fixture stores (set up
# before any test's own fixtures) is on the test clock too; a module imported later binds the
# stand-in through ``store.utcnow``
_set_clocks(False, setattr)


@pytest.fixture(autouse=True, scope="module")
def collected_per_file() -> Iterator[None]:
    """Collect garbage after each test file, so what a file leaks (an unclosed socket, event
    loop or connection) is reported in that file's last test, not in whichever test the
    collector happens to run in later (with pytest-xdist, another file's)."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def no_event_loop_left() -> Iterator[None]:
    """Close the main thread's event loop a test left set (``memori_loops``)."""
    yield
    close_left_loop()


@pytest.fixture(autouse=True)
def memori_clock(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> TestClock | None:
    """memori's clock for this test: ``CLOCK``, started again at ``TEST_CLOCK_START``, or None
    (the real clock, put back for this test only) for a test marked ``real_clock``."""
    if request.node.get_closest_marker("real_clock"):
        _set_clocks(True, monkeypatch.setattr)
        return None
    CLOCK.travel(TEST_CLOCK_START)
    _set_clocks(False, monkeypatch.setattr)  # a module imported during a real_clock test
    return CLOCK


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a fresh, empty database on ``backend``, dropped after the test."""
    url, drop = create_database(backend, tmp_path_factory)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url, _ = create_database("sqlite", tmp_path_factory)
    return url


@pytest.fixture
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, drop = create_database("postgresql", tmp_path_factory)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


def _built(url: str) -> Iterator[Memori]:
    m = memori(url)  # a RemoteMemori of a memori serve over url in remote mode
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def mem(db_url: str) -> Iterator[Memori]:
    """A built Memori on a fresh database of every backend, with the deterministic embedder
    (a remote one in remote mode: ``memori_remote_mode``)."""
    yield from _built(db_url)


@pytest.fixture
def smem(sqlite_url: str) -> Iterator[Memori]:
    """A built Memori on a fresh SQLite file, with the deterministic embedder (a remote one in
    remote mode: ``memori_remote_mode``)."""
    yield from _built(sqlite_url)
