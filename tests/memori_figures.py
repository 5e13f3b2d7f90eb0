"""The figures of ``make test-reliability``: what the long (``reliability``) forms measured, and
the one table ``tests/conftest.py`` prints at the end of the run (``pytest_terminal_summary``).

A test asks for the ``figures`` fixture (a ``Recorder``) and records the counts it measured,
before it asserts on them, so a failing run shows its figures too. Only tests marked
``reliability`` record (in a fast form the recorder does nothing): the table's targets are the
long forms', and the fast forms of ``make test`` print no table. A row no test recorded says
"not run" (and a line under the table names any test that failed before recording); a row
some recording test failed in says "fail" whatever its figures.

(A module of its own beside ``tests/conftest.py``, which puts this folder on ``sys.path``: the
recorder is in one place for tests/core, tests/llm and tests/reliability alike.)
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from memori_core import MemoriError

F = TypeVar("F", bound=Callable[..., Any])

#: the bound on a wrapped call's wait beyond ``database_timeout_seconds``, in seconds
HANG_SLACK_S = 0.1
#: the fewest fuzz cases a fuzz row must have run
FUZZ_CASES = 5000


@dataclass
class Row:
    """One line of the table: its counts (summed over the tests that recorded it, except
    ``worst_s``: the largest), and the tests that recorded it."""

    name: str
    target: str
    counts: dict[str, float] = field(default_factory=dict)
    notes: set[str] = field(default_factory=set)
    tests: set[str] = field(default_factory=set)

    #: counts that are the largest of the tests' values, not their sum
    LARGEST = frozenset({"worst_s", "median_s", "bound_s", "instances"})

    def add(self, nodeid: str, note: str | None = None, **counts: float) -> None:
        self.tests.add(nodeid)
        if note:
            self.notes.add(note)
        for key, value in counts.items():
            if key in self.LARGEST:
                self.counts[key] = max(self.counts.get(key, value), value)
            else:
                self.counts[key] = self.counts.get(key, 0) + value


def _n(value: float) -> str:
    return f"{int(value):,}"


class Figures:
    """Every row of one test session, in the table's order, and the tests that failed."""

    KILLS = [(scenario, backend) for scenario in ("capture", "worker")
             for backend in ("sqlite", "postgresql")]

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        for scenario, backend in self.KILLS:
            key = f"kill {scenario} {backend}"
            self.rows[key] = Row(f"SIGKILL in {scenario}, {backend}", "0 lost, 0 duplicated")
        self.rows["lease"] = Row("lease: each job takes 3x the lease",
                                 "0 re-processed")
        self.rows["hang"] = Row("hung database: worst wrapped call",
                                f"<= bound + {HANG_SLACK_S * 1000:.0f} ms")
        self.rows["fuzz hypothesis"] = Row("fuzz: public API, extractors (hypothesis)",
                                           f">= {FUZZ_CASES:,} cases, 0 crashes")
        self.rows["fuzz atheris"] = Row("fuzz: extractor parsers (atheris)",
                                        f">= {FUZZ_CASES:,} cases, 0 crashes")
        self.rows["isolation"] = Row("isolation: reads checked for others' data",
                                     "0 leaks")
        self.failed: set[str] = set()
        self.asked: set[str] = set()  # tests marked reliability that asked for a recorder

    def recorder(self, node: pytest.Item) -> Recorder:
        active = node.get_closest_marker("reliability") is not None
        if active:
            self.asked.add(node.nodeid)
        return Recorder(self, node.nodeid, active)

    def recorded(self) -> bool:
        return any(row.tests for row in self.rows.values())

    # ---- the table ---------------------------------------------------------------------------
    def _measured(self, key: str, row: Row) -> tuple[str, bool]:
        """(what was measured, whether it meets the target)."""
        c = row.counts
        if key.startswith("kill"):
            text = (f"{_n(c['runs'])} kills: {_n(c['acknowledged'])} acknowledged, "
                    f"{_n(c['lost'])} lost, {_n(c['duplicated'])} duplicated")
            return text, c["lost"] == 0 and c["duplicated"] == 0
        if key == "lease":
            text = (f"{_n(c['jobs'])} jobs, {_n(c['instances'])} competing instances: "
                    f"{_n(c['reprocessed'])} re-processed, {_n(c['leases_lost'])} leases lost")
            return text, c["reprocessed"] == 0 and c["leases_lost"] == 0
        if key == "hang":
            text = (f"{c['worst_s'] * 1000:,.0f} ms worst, {c['median_s'] * 1000:,.0f} ms "
                    f"median of {_n(c['calls'])} calls (bound {c['bound_s'] * 1000:,.0f} ms)")
            return text, c["worst_s"] <= c["bound_s"] + HANG_SLACK_S
        if key.startswith("fuzz"):
            text = f"{_n(c['cases'])} cases, {_n(c['crashes'])} non-MemoriError crashes"
            return text, c["cases"] >= FUZZ_CASES and c["crashes"] == 0
        text = f"{_n(c['checks'])} reads checked, {_n(c['leaks'])} leaks"
        return text, c["leaks"] == 0

    def table(self) -> list[str]:
        """The table as Markdown lines: row, measured, target, result."""
        lines = [("figure", "measured", "target", "result")]
        for key, row in self.rows.items():
            if not row.tests:
                lines.append((row.name, "not run", row.target, "not run"))
                continue
            measured, ok = self._measured(key, row)
            if row.notes:
                measured += f" ({', '.join(sorted(row.notes))})"
            failed = row.tests & self.failed
            result = "pass" if ok and not failed else "fail"
            if failed:
                result += f" ({len(failed)} test{'s' if len(failed) > 1 else ''} failed)"
            lines.append((row.name, measured, row.target, result))
        widths = [max(len(line[i]) for line in lines) for i in range(4)]

        def render(cells: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        recorded = set().union(*(row.tests for row in self.rows.values()))
        silent = sorted((self.asked & self.failed) - recorded)
        return [render(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                *map(render, lines[1:]),
                *([f"failed before recording a figure (their rows say \"not run\"): "
                   f"{', '.join(silent)}"] if silent else [])]


class Recorder:
    """What one test records (the ``figures`` fixture). Does nothing in a test not marked
    ``reliability``."""

    def __init__(self, figures: Figures, nodeid: str, active: bool) -> None:
        self._figures = figures
        self._nodeid = nodeid
        self.active = active

    def _add(self, key: str, note: str | None = None, **counts: float) -> None:
        if self.active:
            self._figures.rows[key].add(self._nodeid, note, **counts)

    def kill(self, scenario: str, backend: str, runs: int, acknowledged: int, lost: int,
             duplicated: int) -> None:
        """``runs`` SIGKILLs of ``scenario`` ("capture" or "worker") on ``backend``: turns
        acknowledged (``capture`` returned), acknowledged turns lost (not stored, or not
        augmented once augmentation finished), turns stored or augmented more than once."""
        self._add(f"kill {scenario} {backend}", runs=runs, acknowledged=acknowledged, lost=lost,
                  duplicated=duplicated)

    def lease(self, backend: str, jobs: int, instances: int, reprocessed: int,
              leases_lost: int) -> None:
        """``jobs`` jobs, each taking 3x the lease, on ``instances`` competing instances:
        jobs processed more than once, leases a live worker lost."""
        self._add("lease", backend, jobs=jobs, instances=instances, reprocessed=reprocessed,
                  leases_lost=leases_lost)

    def hang(self, took_s: Sequence[float], bound_s: float) -> None:
        """Wrapped LLM calls made while the database hung: how long each took, in seconds,
        and ``database_timeout_seconds``."""
        self._add("hang", calls=len(took_s), worst_s=max(took_s),
                  median_s=statistics.median(took_s), bound_s=bound_s)

    def fuzz(self, engine: str, cases: int, crashes: int) -> None:
        """``cases`` fuzz inputs run by ``engine`` ("hypothesis" or "atheris"), ``crashes`` of
        them raising something other than a ``MemoriError`` (or crashing the harness)."""
        self._add(f"fuzz {engine}", cases=cases, crashes=crashes)

    def fuzz_case(self, fn: F) -> F:
        """Decorate a hypothesis test body (under ``@given``): each call is one case; one that
        raises an exception other than a ``MemoriError``, an ``AssertionError`` (the property,
        not a crash) or hypothesis's own is a crash (counted, then raised as before; shrinking
        one crash calls the body again, so one bug counts several times)."""
        from hypothesis.errors import HypothesisException

        @functools.wraps(fn)
        def case(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
            except (MemoriError, AssertionError, HypothesisException):
                self.fuzz("hypothesis", cases=1, crashes=0)
                raise
            except Exception:
                self.fuzz("hypothesis", cases=1, crashes=1)
                raise
            self.fuzz("hypothesis", cases=1, crashes=0)
            return result

        return case  # type: ignore[return-value]

    def isolation(self, backend: str, checks: int, leaks: int) -> None:
        """``checks`` reads checked for data of another entity, persona or a forgotten one;
        ``leaks``: those that returned some."""
        self._add("isolation", backend, checks=checks, leaks=leaks)


FIGURES = pytest.StashKey[Figures]()
