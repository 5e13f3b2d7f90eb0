"""The ``memori`` command: demo, stats, recall, eval locomo, errors, every --help's example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memori_core import Memori
from memori_core.cli import main
from memori_core.evals import locomo
from memori_core.testing import HashEmbedder

# the workplace's copy, next to the project (never copied in); MEMORI_LOCOMO names another
LOCOMO = Path(os.environ.get("MEMORI_LOCOMO") or Path(__file__).resolve().parents[3] / "shared"
              / "datasets" / "locomo" / "locomo10.json")


def _sections(out: str) -> dict[str, str]:
    """The demo's output per question: "[alice / meal-planner, ...] question" -> its lines."""
    parts = re.split(r"\n(?=\[)", out[out.index("\n[alice /"):])
    return {p.split("\n", 1)[0]: p for p in parts if p.startswith("[")}


def test_demo_shows_each_memory_once_the_essential_allergy_and_no_leak(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
    out = capsys.readouterr().out
    assert "LEAK" not in out
    assert "nothing shown crossed a user or persona boundary" in out
    sections = _sections(out)
    lines = {k: [ln for ln in v.splitlines()[1:] if re.match(r"\s+(essential|\d\.\d\d)\s", ln)]
             for k, v in sections.items()}
    for key, shown in lines.items():  # each memory once: no text shown twice in one block
        texts = [ln.split(": ", 1)[1] for ln in shown]
        assert len(texts) == len(set(texts)), key
        assert all(re.search(r" \d{4}-\d\d-\d\d \w+: \"", ln) for ln in shown), key
    def section(start: str) -> list[str]:
        [key] = [k for k in lines if k.startswith(start)]
        return lines[key]
    dinner = section("[alice / meal-planner, new session, scope=process] What should I cook")
    assert "essential" in dinner[0] and "allergic to peanuts" in dinner[0]
    assert any("low-carb" in ln for ln in dinner)
    running = section("[alice / fitness-coach, new session, scope=process] What is my running")
    recalled = [ln for ln in running if "essential" not in ln]
    assert "30 minutes flat" in recalled[0] and not any("Tuesday" in ln for ln in recalled)
    # bob's peanut question: nothing recalled for it (alice's allergy is hers; his own
    # memories are not about it); his essential profile may still lead
    peanuts = section("[bob / meal-planner, new session, scope=entity] Am I allergic")
    assert all("essential" in ln for ln in peanuts)
    assert "nothing recalled for this question" in sections[next(
        k for k in sections if "Am I allergic" in k)]
    bob = [ln for k, v in lines.items() if k.startswith("[bob") for ln in v]
    alice = [ln for k, v in lines.items() if k.startswith("[alice") for ln in v]
    assert bob and alice
    assert not any("vegetarian" in ln or "marathon" in ln for ln in alice)
    assert not any(w in ln for ln in bob for w in ("peanuts", "sub-25", "low-carb", "Tuesday"))
    stored = re.search(r"memories stored for alice and bob: (\d+)", out)
    assert stored is not None
    # a second run adds no new memories: the same ones are mentioned again
    assert main(["demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
    again = re.search(r"memories stored for alice and bob: (\d+)", capsys.readouterr().out)
    assert again is not None and again.group(1) == stored.group(1)


def test_stats_and_recall_commands(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Memori(conn=sqlite_url) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="u1", process_id="p1")
        mem.capture([{"role": "user", "content": "I keep bees on the roof"}])
        assert mem.augmentation.wait(60)
    assert main(["stats", "--db", sqlite_url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["memori_conversation_message"] == 1
    assert stats["memori_entity_fact"] == 2  # the message as said, and "The user keeps bees ..."
    assert main(["recall", "bees", "--entity", "u1", "--process", "p1", "--db", sqlite_url,
                 "--json"]) == 0
    lines = json.loads(capsys.readouterr().out)
    # the turn and the fact drawn from it are one line, shown as the fact
    assert [ln["content"] for ln in lines] == ["The user keeps bees on the roof"]
    assert len(lines[0]["memory_ids"]) == 2 and lines[0]["created_at"] is not None
    assert main(["recall", "bees", "--entity", "u1", "--process", "p1", "--db", sqlite_url,
                 "--block"]) == 0
    block = capsys.readouterr().out.strip().splitlines()
    assert block[0] == "<memori_context>" and block[-1] == "</memori_context>"
    assert re.fullmatch(r'- \d{4}-\d\d-\d\d fact: "The user keeps bees on the roof"', block[2])
    assert main(["recall", "volcanoes", "--entity", "u1", "--process", "p1", "--db",
                 sqlite_url]) == 0
    assert "no memory above the relevance threshold" in capsys.readouterr().out
    assert main(["recall", "bees", "--entity", "someone-else", "--db", sqlite_url]) == 1
    assert "entity 'someone-else' not found" in capsys.readouterr().err


def test_stats_and_recall_never_create_a_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    assert main(["stats"]) == 2
    assert "no memori database at memori.db" in capsys.readouterr().err
    assert main(["recall", "x", "--entity", "a", "--db", "sqlite:///other.db"]) == 2
    assert main(["stats", "--db", "memori.db"]) == 2
    assert "write sqlite:///memori.db" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_errors_are_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert main(["eval", "locomo", "--data", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "memori: error:" in err and "locomo10.json" in err
    assert main(["stats", "--db", "not a url"]) == 2


def test_locomo_scoring_on_one_conversation(tmp_path: Path) -> None:
    result = locomo.run(LOCOMO, db=f"sqlite:///{tmp_path / 'l.db'}", conversations=1,
                        memori_factory=lambda url: Memori(conn=url, embedder=HashEmbedder(256)))
    d = result.as_dict()
    data = json.loads(LOCOMO.read_text())[0]
    expected = sum(1 for q in data["qa"] if q["category"] in (1, 2, 3, 4) and q.get("evidence"))
    turns = sum(len(v) for k, v in data["conversation"].items()
                if k.startswith("session_") and isinstance(v, list))
    assert d["questions"] == expected
    assert d["turns"] == turns
    assert 0 < d["hit_at_1"] <= d["hit_at_5"] <= d["hit_at_10"] <= 1
    assert sum(v["questions"] for v in d["per_category"].values()) == expected
    assert d["ingest_turns_per_s"] > 0 and d["recall_p95_ms"] >= d["recall_p50_ms"] > 0


@pytest.mark.reliability  # the long form (~1-2 min): its fast form is the scoring test above
def test_eval_locomo_command_json_with_the_local_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "memori_core.cli", "eval", "locomo", "--data", str(LOCOMO),
         "--conversations", "1", "--json", "--no-progress", "--db",
         f"sqlite:///{tmp_path / 'e.db'}"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert set(d) >= {"questions", "hit_at_1", "hit_at_5", "hit_at_10", "per_category",
                      "ingest_turns_per_s", "recall_p50_ms", "recall_p95_ms"}
    # the real model on real data does far better than chance (1 conversation, ~420 turns)
    assert d["hit_at_10"] > 0.3


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_worker_process_augments_jobs_queued_by_the_app(db_url: str) -> None:
    import signal

    with Memori(conn=db_url, augmentation_workers=0) as app:
        app.config.storage.build()
        app.attribution(entity_id="u1")
        ids = [app.capture([{"role": "user", "content": f"my locker number is {n}07"}])[0]
               for n in range(5)]
        assert not app.augmentation.wait(timeout=0.5)  # nobody is working yet
        worker = subprocess.Popen([sys.executable, "-m", "memori_core.cli", "worker", "--db",
                                   db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            assert app.augmentation.wait(timeout=120)
            hits = app.recall("what is my locker number", limit=10, kinds=["episodic"])
            assert sorted(m for h in hits for m in h.source_message_ids) == ids
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert "memori worker: 1 thread(s)" in out


def test_ingest_captures_a_file_and_refuses_what_would_touch_a_foreign_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    turns = tmp_path / "turns.jsonl"
    turns.write_text(json.dumps({"entity_id": "ana", "session_id": "s1", "messages": [
        {"role": "user", "content": "I live in Porto"},
        {"role": "assistant", "content": "Noted."}]}) + "\n\n"
        + json.dumps({"entity_id": "ana", "role": "user", "content": "I keep bees"}) + "\n",
        encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")

    def tables() -> list[str]:
        with sqlite3.connect(other) as conn:
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                               "WHERE type = 'table'")]

    # a file without turns is refused before the database is opened
    assert main(["ingest", str(empty), "--db", f"sqlite:///{tmp_path / 'new.db'}"]) == 2
    assert "holds no turns; nothing was ingested" in capsys.readouterr().err
    assert not (tmp_path / "new.db").exists()
    # a database holding other tables and no memori table is not written without --init
    export = tmp_path / "export.json"
    export.write_text("{}", encoding="utf-8")
    assert main(["import", str(export), "--db", f"sqlite:///{other}"]) == 2
    assert "is not a memori database" in capsys.readouterr().err
    assert main(["ingest", str(turns), "--db", f"sqlite:///{other}", "--no-progress"]) == 2
    assert "holds 1 other table(s): invoices); pass --init" in capsys.readouterr().err
    assert tables() == ["invoices"]
    # with --init memori's tables join the app's, and the turns are there once
    assert main(["ingest", str(turns), "--db", f"sqlite:///{other}", "--no-progress",
                 "--no-wait", "--init"]) == 0
    assert "ingested 2 turn(s), 3 message(s)" in capsys.readouterr().out
    assert "invoices" in tables() and "memori_conversation_message" in tables()
    # a memori database needs no --init the next time
    assert main(["ingest", str(turns), "--db", f"sqlite:///{other}", "--no-progress",
                 "--no-wait"]) == 0
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM memori_conversation_message").fetchone()[0] == 6


def test_every_command_help_ends_with_an_example() -> None:
    from memori_core.cli import _parser, _subcommands

    parser = _parser()
    commands = {" ".join(path): sp for path, sp in _subcommands(parser)}
    # the walk reaches nested commands and those other modules add
    assert {"init", "migrate", "search", "memories list", "memories update", "eval locomo",
            "mcp", "serve", "keys revoke"} <= set(commands)
    for name, sp in [("", parser), *commands.items()]:
        text = sp.format_help()
        found = re.search(r"^examples?( \([^)]*\))?:\n((  memori \S.*\n?)+)", text, re.M)
        assert found, f"memori {name} --help has no example:\n{text}"
        assert all(ln.startswith(f"  memori {name}") for ln in found.group(2).splitlines()
                   ), (name, found.group(2))  # an example of this command, not another's


def test_search_is_recall_under_another_name() -> None:
    from memori_core.cli import _parser

    parser = _parser()
    argv = ["what do I cook?", "--entity", "ann", "--scope", "entity", "--json"]
    recall, search = (vars(parser.parse_args([name, *argv])) for name in ("recall", "search"))
    assert recall.pop("command") == "recall" and search.pop("command") == "search"
    assert search == recall  # the same options, defaults and implementation (fn)
