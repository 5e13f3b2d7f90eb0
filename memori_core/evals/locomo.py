"""``memori eval locomo``: capture and recall over LoCoMo's ten real long conversations.

Each conversation becomes its own entity; each session a memori session; every turn goes through
``capture`` (role ``user``, ``name`` = the speaker, ``created_at`` = the session's date, the
caption of a shared photo appended to the text) -> augmentation -> storage. Every question of
categories 1-4 that has evidence (1,536) is answered by ``recall(question, limit=10,
scope="entity")``; a question is a hit at k when any of its evidence ``dia_id`` is among the
source messages of the top-k hits.

Data: Maharana et al., "Evaluating Very Long-Term Conversational Memory of LLM Agents" (ACL 2024),
``locomo10.json`` (CC BY-NC 4.0), read from where it lies, never copied.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memori_core._memori import Memori
from memori_core.errors import ConfigurationError

__all__ = ["CATEGORIES", "LocomoResult", "load", "run"]

#: LoCoMo question categories scored here (5, adversarial, has no evidence to retrieve).
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (1, 5, 10)


@dataclass
class LocomoResult:
    """Figures of one run; ``as_dict`` gives the ``--json`` object."""

    questions: int = 0
    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    per_category: dict[int, dict[Any, int]] = field(default_factory=dict)
    turns: int = 0
    ingest_seconds: float = 0.0
    recall_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        q = max(self.questions, 1)
        ms = sorted(self.recall_ms) or [0.0]
        return {
            "questions": self.questions,
            "hit_at_1": round(self.hits[1] / q, 4),
            "hit_at_5": round(self.hits[5] / q, 4),
            "hit_at_10": round(self.hits[10] / q, 4),
            "per_category": {
                CATEGORIES[c]: {"questions": v["questions"],
                                **{f"hit_at_{k}": round(v[k] / max(v["questions"], 1), 4)
                                   for k in KS}}
                for c, v in sorted(self.per_category.items())},
            "ingest_turns_per_s": round(self.turns / self.ingest_seconds, 1)
            if self.ingest_seconds else 0.0,
            "recall_p50_ms": round(statistics.median(ms), 2),
            "recall_p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
            "turns": self.turns,
        }


def load(path: str | Path) -> list[dict[str, Any]]:
    """Read locomo10.json.

    Raises:
        ConfigurationError: when the file is missing or not LoCoMo-shaped.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigurationError(f"--data {p} does not exist; pass the path of locomo10.json "
                                 "(e.g. ../shared/datasets/locomo/locomo10.json)", argument="data")
    bad = ConfigurationError(f"--data {p} is not LoCoMo JSON (a list of samples with "
                             "'conversation' and 'qa')", argument="data")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise bad from exc
    if not isinstance(data, list) or not all(
            isinstance(c, dict) and "conversation" in c and "qa" in c for c in data):
        raise bad
    return data


def _sessions(conv: dict[str, Any]) -> Iterable[tuple[int, datetime | None,
                                                     list[dict[str, Any]]]]:
    numbers = sorted(int(k.split("_")[1]) for k in conv
                     if k.startswith("session_") and k.count("_") == 1)
    for n in numbers:
        yield n, _when(conv.get(f"session_{n}_date_time")), conv[f"session_{n}"]


def _when(text: object) -> datetime | None:
    """LoCoMo's session time, e.g. "1:56 pm on 8 May, 2023"."""
    try:
        return datetime.strptime(str(text).strip(), "%I:%M %p on %d %B, %Y")
    except ValueError:
        return None


def _turn_text(turn: dict[str, Any]) -> str:
    """The turn as said: its text, plus the caption of a photo it shared (LoCoMo's
    ``blip_caption``), which is part of what the speaker told."""
    text = str(turn["text"])
    if turn.get("blip_caption"):
        text += f" [shares {turn['blip_caption']}]"
    return text


def run(data_path: str | Path, *, db: str | None = None, conversations: int | None = None,
        progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None,
        memori_factory: Callable[[str], Memori] | None = None) -> LocomoResult:
    """Ingest and evaluate.

    Args:
        data_path: path of locomo10.json.
        db: database URL; default a fresh SQLite file in a temporary directory.
        conversations: evaluate only the first N conversations.
        progress: wraps iterables for a progress bar: ``progress(iterable, label, total)``.
        memori_factory: builds the ``Memori`` from a URL (tests pass a fast embedder).
    """
    samples = load(data_path)[:conversations]
    wrap = progress or (lambda it, _label, _total: it)
    tmp = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="memori-locomo-")
        db = f"sqlite:///{tmp.name}/locomo.db"
    mem = memori_factory(db) if memori_factory else Memori(conn=db)
    result = LocomoResult()
    try:
        mem.config.storage.build()
        dia_of: dict[int, str] = {}
        turns = [(s["sample_id"], n, when, t) for s in samples
                 for n, when, session in _sessions(s["conversation"]) for t in session]
        start = time.perf_counter()
        for sample_id, n, when, turn in wrap(turns, "ingest", len(turns)):
            mem.attribution(entity_id=str(sample_id))
            mem.set_session(f"session_{n}")
            message = {"role": "user", "name": str(turn["speaker"]), "content": _turn_text(turn)}
            if when is not None:
                message["created_at"] = when
            ids = mem.capture([message])
            dia_of[ids[0]] = str(turn["dia_id"])
        if not mem.augmentation.wait(timeout=None):
            raise RuntimeError("augmentation did not finish")
        result.ingest_seconds = time.perf_counter() - start
        result.turns = len(turns)
        if mem.augmentation.failed():
            raise RuntimeError(f"augmentation jobs failed: {mem.augmentation.failed()[:3]}")
        questions = [(s["sample_id"], q) for s in samples for q in s["qa"]
                     if q.get("category") in CATEGORIES and q.get("evidence")]
        for sample_id, q in wrap(questions, "recall", len(questions)):
            mem.attribution(entity_id=str(sample_id))
            t0 = time.perf_counter()
            hits = mem.recall(str(q["question"]), limit=max(KS), scope="entity")
            result.recall_ms.append((time.perf_counter() - t0) * 1000)
            evidence = {e.strip() for e in q["evidence"]}
            cat = result.per_category.setdefault(
                q["category"], {"questions": 0, **dict.fromkeys(KS, 0)})
            cat["questions"] += 1
            result.questions += 1
            for k in KS:
                found = {dia_of.get(m) for h in hits[:k] for m in h.source_message_ids}
                if found & evidence:
                    result.hits[k] += 1
                    cat[k] += 1
    finally:
        mem.close()
        if tmp is not None:
            tmp.cleanup()
    return result


def report(result: LocomoResult) -> str:
    """The human-readable table printed by ``memori eval locomo``."""
    d = result.as_dict()
    lines = [f"LoCoMo retrieval: {d['questions']} questions (categories 1-4 with evidence), "
             f"{d['turns']} turns",
             f"{'category':<14}{'questions':>10}{'hit@1':>8}{'hit@5':>8}{'hit@10':>8}",
             f"{'overall':<14}{d['questions']:>10}{d['hit_at_1']:>8.3f}{d['hit_at_5']:>8.3f}"
             f"{d['hit_at_10']:>8.3f}"]
    for name, v in d["per_category"].items():
        lines.append(f"{name:<14}{v['questions']:>10}{v['hit_at_1']:>8.3f}{v['hit_at_5']:>8.3f}"
                     f"{v['hit_at_10']:>8.3f}")
    lines.append(f"ingest: {d['ingest_turns_per_s']} turns/s (capture + augmentation)")
    lines.append(f"recall: p50 {d['recall_p50_ms']} ms, p95 {d['recall_p95_ms']} ms "
                 "(query embedding included)")
    return "\n".join(lines)
