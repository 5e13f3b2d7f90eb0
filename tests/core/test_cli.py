"""The ``memori`` command: demo, stats, recall, eval locomo, errors."""

from __future__ import annotations

import json
import re
import os
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


def test_demo_shows_recall_and_no_leak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
    out = capsys.readouterr().out
    assert "Goal: sub-25-minute 5K by June" in out
    assert "LEAK" not in out
    assert "no recall crossed a user or persona boundary" in out
    # the vegetarian (bob) never shows up in alice's recalls and vice versa
    recalls = out[out.index("\n[alice /"):]  # after the list of captured turns
    alice, bob = recalls.split("[bob /", 1)
    assert "vegetarian" not in alice
    assert "peanuts." not in bob and "sub-25-minute 5K by June." not in bob.replace(
        "Is my goal a sub-25-minute 5K by June?", "")
    # a second run adds no new memories: the same ones are mentioned again
    assert main(["demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
    assert "mentioned 2x" in capsys.readouterr().out


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


@pytest.mark.slow
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
