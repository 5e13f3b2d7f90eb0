"""The set-aside file: turns memori could not write outlive the process, are listed by the CLI
and written by ``memori set-aside --retry`` once their cause is gone; ``forget`` removes an
entity's turns from it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from memori_llm_support import PROCESS, TcpProxy, new_memori
from sqlalchemy import text
from sqlalchemy.engine import make_url

from memori_core import Memori
from memori_core.cli import main
from memori_core.integration import Turn
from memori_core.llm._set_aside import set_aside_path

REFUSE = ("CREATE TRIGGER refuse BEFORE INSERT ON memori_conversation_message "
          "WHEN NEW.content LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'refused by the server'); END")


def test_the_path_follows_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert set_aside_path(make_url(f"sqlite:///{tmp_path}/m.db"), "auto") == \
        tmp_path / "m.db.set-aside.jsonl"
    assert set_aside_path(make_url("sqlite://"), "auto") is None
    assert set_aside_path(make_url("sqlite:///:memory:"), "auto") is None
    assert set_aside_path(make_url("postgresql+psycopg://u:secret@db.example:5433/app"),
                          "auto") == tmp_path / "state/memori/set-aside-postgresql-db.example-5433-app.jsonl"
    assert set_aside_path(make_url(f"sqlite:///{tmp_path}/m.db"), "off") is None
    assert set_aside_path(make_url("sqlite://"), "~/x.jsonl") == Path.home() / "x.jsonl"


def _contents(url: str) -> list[str]:
    """Every stored message's text, in the order written."""
    mem = new_memori(url)
    try:
        with mem.engine.connect() as c:
            return [r[0] for r in c.execute(text(
                "SELECT content FROM memori_conversation_message ORDER BY id"))]
    finally:
        mem.close()


def _poisoned(url: str) -> Memori:
    mem = new_memori(url)
    with mem.engine.begin() as c:  # the real database refuses this one turn
        c.execute(text(REFUSE))
    return mem


def test_a_refused_turn_outlives_the_process_and_retry_writes_it_once(
        sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(f"{make_url(sqlite_url).database}.set-aside.jsonl")
    mem = _poisoned(sqlite_url)
    try:
        mem.attribution(entity_id="gus", process_id=PROCESS)
        Turn(mem, [{"role": "user", "content": "a poison turn"}], framework="test").finish()
        Turn(mem, [{"role": "user", "content": "a fine turn"}], framework="test").finish()
        assert mem.llm.flush() == 0
        assert mem.llm.stats()["set_aside_pending"] == 1
    finally:
        mem.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (line,) = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["messages"][0]["content"] == "a poison turn"

    # another process sees it: the CLI lists it, stats points at it
    assert main(["set-aside", "--db", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"1 set-aside turn(s) in {path}:")
    assert "entity 'gus'" in out and "refused by the server" in out
    assert main(["stats", "--db", sqlite_url]) == 0
    assert "1 turn(s) memori could not write" in capsys.readouterr().err

    # still refused: it stays, with exit 1
    assert main(["set-aside", "--retry", "--db", sqlite_url]) == 1
    assert "wrote 0 set-aside turn(s); 1 still set aside" in capsys.readouterr().out
    mem = new_memori(sqlite_url)
    with mem.engine.begin() as c:  # the cause is fixed
        c.execute(text("DROP TRIGGER refuse"))
    mem.close()
    assert main(["set-aside", "--retry", "--db", sqlite_url]) == 0
    assert "wrote 1 set-aside turn(s); 0 still set aside" in capsys.readouterr().out
    assert not path.exists()
    assert main(["set-aside", "--retry", "--db", sqlite_url]) == 0  # nothing twice
    assert _contents(sqlite_url) == ["a fine turn", "a poison turn"]


def test_forget_removes_the_entitys_set_aside_turns(sqlite_url: str) -> None:
    mem = _poisoned(sqlite_url)
    try:
        for entity in ("leaving", "staying"):
            mem.attribution(entity_id=entity, process_id=PROCESS)
            Turn(mem, [{"role": "user", "content": f"poison of {entity}"}],
                 framework="test").finish()
            assert mem.llm.flush() == 0
        mem.forget("leaving")
        assert [e["entity_id"] for e in mem.llm.set_aside()] == ["staying"]
        assert mem.llm.stats()["spill_forgotten"] == 1
    finally:
        mem.close()
    path = Path(f"{make_url(sqlite_url).database}.set-aside.jsonl")
    assert "leaving" not in path.read_text(encoding="utf-8")


def test_turns_unwritten_at_close_are_kept_and_written_later(
        pg_url: str, pg_proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database is down when the app closes: its spilled turns go to the set-aside file
    instead of being lost, and a later process writes them, in order."""
    path = tmp_path / "aside.jsonl"
    url = make_url(pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    mem = new_memori(url, request_backoff_factor=60, llm_set_aside_path=str(path))
    mem.attribution(entity_id="olga", process_id=PROCESS)
    pg_proxy.cut()
    for n in range(3):
        Turn(mem, [{"role": "user", "content": f"said during the outage {n}"}],
             framework="test").finish()
    assert mem.llm.stats()["spill_pending"] == 3
    mem.close()
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    pg_proxy.restore()

    later = new_memori(pg_url, llm_set_aside_path=str(path))
    assert f"3 turn(s) memori could not write wait in {path}" in caplog.text
    try:
        assert [e["error"] for e in later.llm.set_aside()] == \
            ["not written before close: the database is unreachable"] * 3
        assert later.llm.retry_set_aside() == (3, 0)
        assert _contents(pg_url) == [f"said during the outage {n}" for n in range(3)]
        assert not path.exists()
    finally:
        later.close()
