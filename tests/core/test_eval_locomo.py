"""``memori eval locomo`` as a tuning instrument: conversation ranges, session-level recall,
per-split figures, reuse of an ingested database, ``--set``, the context-pipeline counters, and
the ablation benchmark. Figures are checked exactly on a tiny hand-made LoCoMo-shaped file."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from memori_core import Memori
from memori_core.cli import main
from memori_core.errors import ConfigurationError
from memori_core.evals import locomo
from memori_core.testing import HashEmbedder
from memori_core.types import RecallHit

ROOT = Path(__file__).resolve().parents[2]
DATE = "1:56 pm on 8 May, 2023"


def _session(n: int, turns: int, topic: str) -> list[dict[str, str]]:
    return [{"speaker": ("Ann", "Bo")[t % 2], "dia_id": f"D{n}:{t}",
             "text": f"{topic} {n} part {t} zq{n}x{t}"} for t in range(1, turns + 1)]


def _conversation(sample_id: str, sessions: int, turns: int, topic: str,
                  qa: list[dict[str, Any]]) -> dict[str, Any]:
    conv: dict[str, Any] = {"speaker_a": "Ann", "speaker_b": "Bo"}
    for n in range(1, sessions + 1):
        conv[f"session_{n}"] = _session(n, turns, topic)
        conv[f"session_{n}_date_time"] = DATE
    return {"sample_id": sample_id, "conversation": conv, "qa": qa}


#: question -> the hits recall returns, best first, each the dia_ids of its source messages
SCRIPT: dict[str, list[list[str]]] = {
    # conversation 1 (3 sessions x 4 turns)
    "qa1": [["D1:2"]],                                       # turn 1, session 1
    "qa2": [["D1:1"], ["D3:1"], ["D1:3"], ["D3:2"], ["D1:4"], ["D2:1"], ["D2:3"]],
    #                                                          session rank 6, turn rank 7
    "qa3": [["D1:1"], ["D3:1", "D1:2"], ["D1:2"]],           # session 3 at rank 2; no turn
    "qa5": [["D1:1"]],                                       # malformed evidence: nothing
    # conversation 2 (2 sessions x 3 turns)
    "qb1": [["D1:1"], ["D1:2"], ["D2:2"]],                   # turn and session at rank 3
    "qb2": [],                                               # nothing recalled
}
QA_1 = [
    {"question": "qa1", "evidence": ["D1:2"], "category": 4},
    {"question": "qa2", "evidence": ["D2:3"], "category": 1},
    {"question": "qa3", "evidence": ["D3:4", "D1:9"], "category": 2},
    {"question": "qa4", "adversarial_answer": "x", "evidence": ["D1:1"], "category": 5},
    {"question": "qa5", "evidence": ["D8:6; D9:17"], "category": 3},
    {"question": "no evidence", "evidence": [], "category": 4},
]
QA_2 = [
    {"question": "qb1", "evidence": ["D2:2"], "category": 4},
    {"question": "qb2", "evidence": ["D1:3"], "category": 1},
]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Two conversations: 3 sessions of 4 turns, 2 sessions of 3 turns."""
    path = tmp_path / "tiny_locomo.json"
    path.write_text(json.dumps([_conversation("conv-a", 3, 4, "gardening", QA_1),
                                _conversation("conv-b", 2, 3, "sailing", QA_2)]))
    return path


class Scripted(Memori):
    """recall returns SCRIPT's hits (found through the dia_id stored with each message);
    context shows the top 3 of them as lines."""

    def _by_dia(self) -> dict[str, int]:
        return {m["metadata"]["dia_id"]: m["id"] for n in (1, 2, 3)
                for m in self.session_messages(f"session_{n}")}

    def recall(self, query: str, limit: int | None = None, **_kw: Any) -> list[RecallHit]:
        by_dia = self._by_dia()
        return [RecallHit(id=1000 + i, content=query, kind="episodic", score=1.0,
                          similarity=1.0, created_at=datetime(2023, 5, 8),
                          source_message_ids=tuple(by_dia[d] for d in dias))
                for i, dias in enumerate(SCRIPT[query][:limit])]

    def context(self, query: str) -> SimpleNamespace:
        lines = [SimpleNamespace(memory_id=h.id, source_message_ids=h.source_message_ids)
                 for h in self.recall(query, limit=3)]
        return SimpleNamespace(lines=lines, block="\n".join(map(str, lines)) or None)


class NoContext(Memori):
    context = None  # as before the context pipeline


def hash_memori(url: str, **settings: Any) -> Memori:
    return NoContext(conn=url, embedder=HashEmbedder(256), **settings)


@pytest.mark.parametrize(("text", "numbers"), [
    ("1-5", (1, 2, 3, 4, 5)), ("6-10", (6, 7, 8, 9, 10)), ("3", (3,)),
    ("1,4,7-8", (1, 4, 7, 8)), (" 2 , 3 - 4,2", (2, 3, 4)), ("10", (10,))])
def test_conversation_ranges(text: str, numbers: tuple[int, ...]) -> None:
    assert locomo.parse_conversations(text, 10) == numbers


@pytest.mark.parametrize("text", ["", "0", "5-3", "a", "1-", "-2", "1,,2", "1;2", "2.5", "11",
                                  "9-12"])
def test_bad_conversation_values_name_the_option_and_the_form(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--conversations") as err:
        locomo.parse_conversations(text, 10)
    assert "1,4,7-8" in str(err.value)


def test_run_takes_the_first_n_or_a_list_of_numbers(tiny: Path, tmp_path: Path) -> None:
    assert locomo._select(10, 3) == (1, 2, 3)
    assert locomo._select(2, 5) == (1, 2)  # first N, as before
    assert locomo._select(10, [7, 2, 2]) == (2, 7)
    assert locomo._select(10, None) == tuple(range(1, 11))
    for bad in (0, [0], [11], [], [True]):
        with pytest.raises(ConfigurationError, match="conversations"):
            locomo._select(10, bad)
    r = locomo.run(tiny, db=f"sqlite:///{tmp_path / 'one.db'}", conversations=[2],
                   memori_factory=hash_memori)
    assert r.conversations == (2,) and r.questions == 2 and r.turns == 6


def test_cli_rejects_bad_conversations_and_settings(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "locomo", "--data", str(tiny), "--conversations", "5-3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--conversations" in err and "1,4,7-8" in err
    assert main(["eval", "locomo", "--data", str(tiny), "--conversations", "1-3"]) == 2
    assert "the data has 2 conversations" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "locomo", "--data", str(tiny), "--set", "recall_rrf_k"])
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["eval", "locomo", "--data", str(tiny), "--db",
                 f"sqlite:///{tmp_path / 's.db'}", "--set", "recall_no_such=1"]) == 2
    assert "unknown setting 'recall_no_such'" in capsys.readouterr().err


def test_hit_at_k_and_session_recall_exactly_per_category_and_split(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # conversation 1 stands for the 1-5 half, conversation 2 for 6-10
    monkeypatch.setattr(locomo, "SPLITS", {"1-5": (1,), "6-10": (2,)})
    result = locomo.run(tiny, db=f"sqlite:///{tmp_path / 'x.db'}", memori_factory=lambda url:
                        Scripted(conn=url, embedder=HashEmbedder(256)))
    d = result.as_dict()
    # 6 questions: qa1, qa2, qa3, qa5, qb1, qb2 (category 5 and evidence-less ones left out)
    # turn ranks 1, 7, -, -, 3, -; session ranks 1, 6, 2, -, 3, -
    assert {k: d[k] for k in ("questions", "hit_at_1", "hit_at_5", "hit_at_10",
                              "session_r_at_5", "session_r_at_10")} == {
        "questions": 6, "hit_at_1": round(1 / 6, 4), "hit_at_5": round(2 / 6, 4),
        "hit_at_10": 0.5, "session_r_at_5": 0.5, "session_r_at_10": round(4 / 6, 4)}
    assert d["per_category"]["single-hop"] == {
        "questions": 2, "hit_at_1": 0.5, "hit_at_5": 1.0, "hit_at_10": 1.0,
        "session_r_at_5": 1.0, "session_r_at_10": 1.0}
    assert d["per_category"]["multi-hop"] == {
        "questions": 2, "hit_at_1": 0.0, "hit_at_5": 0.0, "hit_at_10": 0.5,
        "session_r_at_5": 0.0, "session_r_at_10": 0.5}
    assert d["per_category"]["temporal"]["session_r_at_5"] == 1.0
    assert d["per_category"]["open-domain"]["session_r_at_10"] == 0.0
    split = d["per_split"]
    assert list(split) == ["1-5", "6-10", "all"]
    assert split["1-5"] == {"questions": 4, "hit_at_1": 0.25, "hit_at_5": 0.25,
                            "hit_at_10": 0.5, "session_r_at_5": 0.5, "session_r_at_10": 0.75,
                            "conversations": [1]}
    assert split["6-10"] == {"questions": 2, "hit_at_1": 0.0, "hit_at_5": 0.5,
                             "hit_at_10": 0.5, "session_r_at_5": 0.5, "session_r_at_10": 0.5,
                             "conversations": [2]}
    assert split["all"]["hit_at_10"] == d["hit_at_10"]
    # context: lines 1, 3, 3, 1, 3, 0; qb2's block is empty; qa3's third line repeats D1:2
    # a block (the top 3 hits) holds an evidence turn exactly when recall ranked one in 3
    in_top_3 = sum(1 for o in result.outcomes if o.turn_rank is not None and o.turn_rank <= 3)
    assert 0 < in_top_3 < 6
    assert d["context"] == {"available": True, "mean_lines": round(11 / 6, 3),
                            "empty_share": round(1 / 6, 4), "duplicate_lines": 1,
                            "answered_share": round(in_top_3 / 6, 4), "over_budget": 0}
    assert d["ingest"] == "ingested" and d["turns"] == 18 and d["ingest_turns_per_s"] > 0
    text = locomo.report(result)
    assert "conversations 1-2" in text
    assert "R@5" in text and "R@10" in text
    assert "       1-5      6-10       all" in text
    assert "duplicate lines: 1" in text


def test_duplicate_lines_by_memory_id_source_message_or_text() -> None:
    line = SimpleNamespace
    assert locomo._duplicate_lines([line(memory_id=1, source_message_ids=(5,)),
                                    line(memory_id=1, source_message_ids=(6,)),
                                    line(memory_id=2, source_message_ids=(6, 7)),
                                    line(memory_id=3, source_message_ids=(8,))]) == 2
    assert locomo._duplicate_lines(["a fact", "another", " a fact"]) == 1
    # context lines stand for several memories (one per source turn)
    assert locomo._duplicate_lines([line(memory_ids=(1, 2), source_message_ids=(5,)),
                                    line(memory_ids=(3,), source_message_ids=(6,)),
                                    line(memory_ids=(2,), source_message_ids=(9,))]) == 1


def test_the_core_context_pipeline_is_measured(tiny: Path, tmp_path: Path) -> None:
    data = json.loads(tiny.read_text())
    for sample in data:  # questions in the words of their evidence turn
        for q in sample["qa"]:
            session, _, turn = (q["evidence"] or ["D1:1"])[0].partition(":")
            q["question"] = f"When was gardening or sailing part {turn} zq{session[1:]}x{turn}?"
    worded = tmp_path / "worded.json"
    worded.write_text(json.dumps(data))
    result = locomo.run(worded, db=f"sqlite:///{tmp_path / 'ctx.db'}",
                        memori_factory=lambda url: Memori(conn=url, embedder=HashEmbedder(256)))
    c = result.as_dict()["context"]
    assert c["available"] and c["duplicate_lines"] == 0
    assert 0 < c["mean_lines"] <= 5 and 0 <= c["empty_share"] < 1
    assert "context pipeline: not available" not in locomo.report(result)
    off = locomo.run(worded, db=f"sqlite:///{tmp_path / 'ctx.db'}", context=False,
                     memori_factory=lambda url: Memori(conn=url, embedder=HashEmbedder(256)))
    assert off.as_dict()["context"] == {"available": False}


def test_a_second_run_on_the_same_db_reuses_it_and_gives_the_same_figures(
        tiny: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reuse.db'}"
    first = locomo.run(tiny, db=url, memori_factory=hash_memori)
    with Memori(conn=url, embedder=HashEmbedder(256)) as mem:
        turns = mem.stats()["tables"]["memori_conversation_message"]
    second = locomo.run(tiny, db=url, memori_factory=hash_memori)
    with Memori(conn=url, embedder=HashEmbedder(256)) as mem:
        assert mem.stats()["tables"]["memori_conversation_message"] == turns == 18
        mem.attribution(entity_id="conv-a")
        assert mem.session_messages("session_2")[2]["metadata"] == {"dia_id": "D2:3"}
    a, b = first.as_dict(), second.as_dict()
    assert first.ingested_turns == 18 and second.ingested_turns == 0
    assert b["ingest"] == b["ingest_turns_per_s"] == "reused" and b["reused_turns"] == 18
    assert first.outcomes == second.outcomes
    volatile = {"ingest", "ingest_turns_per_s", "reused_turns", "recall_p50_ms", "recall_p95_ms"}
    assert {k: v for k, v in a.items() if k not in volatile} == \
        {k: v for k, v in b.items() if k not in volatile}
    assert a["hit_at_10"] > 0  # real (hash-embedded) recall finds some evidence
    report = locomo.report(second)
    assert "ingest: reused (18 turns already in the database)" in report
    assert "context pipeline: not available" in report
    # a third run over 1-2 where only conversation 1 is stored ingests conversation 2 only
    other = f"sqlite:///{tmp_path / 'half.db'}"
    locomo.run(tiny, db=other, conversations="1", memori_factory=hash_memori)
    mixed = locomo.run(tiny, db=other, conversations="1-2", memori_factory=hash_memori)
    assert (mixed.ingested_turns, mixed.as_dict()["ingest"]) == (6, "partly reused")


def test_reuse_without_stored_dia_ids_matches_turns_by_text(tiny: Path, tmp_path: Path) -> None:
    class Bare(NoContext):  # captures as an earlier memori did: no metadata
        def capture(self, messages: list[dict[str, Any]]) -> list[int]:
            return super().capture([{k: v for k, v in m.items() if k != "metadata"}
                                    for m in messages])

    url = f"sqlite:///{tmp_path / 'bare.db'}"
    first = locomo.run(tiny, db=url, memori_factory=lambda u, **s: Bare(
        conn=u, embedder=HashEmbedder(256), **s))
    second = locomo.run(tiny, db=url, memori_factory=hash_memori)
    assert second.ingested_turns == 0 and first.outcomes == second.outcomes


def test_a_db_holding_another_copy_is_refused(tiny: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    locomo.run(tiny, db=url, memori_factory=hash_memori)
    data = json.loads(tiny.read_text())
    data[1]["conversation"]["session_2"].append(
        {"speaker": "Ann", "dia_id": "D2:4", "text": "one more"})
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match="already holds conversation 'conv-b'.*session 2"):
        locomo.run(changed, db=url, memori_factory=hash_memori)


def test_set_reaches_the_config(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    seen = []

    def factory(url: str, **settings: Any) -> Memori:
        mem = hash_memori(url, **settings)
        seen.append(mem.config)
        return mem

    monkeypatch.setattr(locomo, "_default_memori", factory)
    assert main(["eval", "locomo", "--data", str(tiny), "--db", f"sqlite:///{tmp_path / 'c.db'}",
                 "--set", "recall_rrf_k=20", "--set", "recall_lexical_weight = 0",
                 "--set", "debug_truncate=false", "--json", "--no-progress"]) == 0
    (config,) = seen
    assert (config.recall_rrf_k, config.recall_lexical_weight, config.debug_truncate) == (
        20.0, 0.0, False)
    d = json.loads(capsys.readouterr().out)
    assert d["questions"] == 6 and d["context"] == {"available": False}


def test_ablation_runs_each_variant_on_one_ingest_and_skips_unknown_settings(
        tiny: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("locomo_ablation",
                                                  ROOT / "benchmarks" / "locomo_ablation.py")
    assert spec is not None and spec.loader is not None
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    assert next(iter(ablation.VARIANTS)) == "defaults"
    notes: list[str] = []
    results = ablation.ablate(
        tiny, db=f"sqlite:///{tmp_path / 'ab.db'}", memori_factory=hash_memori,
        note=notes.append, variants={"defaults": {}, "no lexical": {"recall_lexical_weight": 0},
                                     "not yet": {"recall_not_landed": 1}})
    assert list(results) == ["defaults", "no lexical"]
    assert notes == ["note: variant 'not yet' skipped: unknown setting 'recall_not_landed'"]
    assert results["defaults"].ingested_turns == 18
    assert results["no lexical"].as_dict()["ingest"] == "reused"
    table = ablation.table(results).splitlines()
    assert table[0].split() == ["variant", "split", "hit@1", "hit@5", "hit@10", "R@5", "R@10",
                                "p50", "ms"]
    assert [line[:28].split() for line in table[1:]] == [
        ["defaults", "1-5"], ["defaults", "all"], ["no", "lexical", "1-5"],
        ["no", "lexical", "all"]]
