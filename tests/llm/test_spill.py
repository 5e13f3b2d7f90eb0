"""The spill buffer: bounded, ordered, never silent."""

from __future__ import annotations

import pytest

from memori_core.llm._spill import SpillBuffer, SpilledTurn


def turn(i: int) -> SpilledTurn:
    return SpilledTurn("e", None, "s", [{"role": "user", "content": str(i)}])


def test_full_buffer_drops_the_oldest_and_reports_it() -> None:
    dropped: list[SpilledTurn] = []
    buf = SpillBuffer(2, dropped.append)
    for i in range(3):
        buf.add(turn(i))
    assert len(buf) == 2
    assert [t.messages[0]["content"] for t in dropped] == ["0"]


def test_drain_writes_in_order_and_stops_at_the_first_failure() -> None:
    buf = SpillBuffer(10, lambda t: pytest.fail("nothing is dropped"))
    for i in range(4):
        buf.add(turn(i))
    written: list[str] = []

    def write(t: SpilledTurn) -> None:
        if t.messages[0]["content"] == "2":
            raise ConnectionError("database down")
        written.append(t.messages[0]["content"])

    count, error = buf.drain(write)
    assert (count, written, len(buf)) == (2, ["0", "1"], 2)
    assert isinstance(error, ConnectionError)
    count, error = buf.drain(lambda t: written.append(t.messages[0]["content"]))
    assert (count, error, written, len(buf)) == (2, None, ["0", "1", "2", "3"], 0)
