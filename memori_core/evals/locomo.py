"""``memori eval locomo``: capture and recall over LoCoMo's ten real long conversations.

Each conversation becomes its own entity (id = its ``sample_id``); each session a memori session
(``session_<n>``); every turn goes through ``capture`` (role ``user``, ``name`` = the speaker,
``created_at`` = the session's date, the caption of a shared photo appended to the text,
``metadata`` = ``{"dia_id": ...}``) -> augmentation -> storage. Every question of categories 1-4
that has evidence (1,536) is answered by ``recall(question, limit=10, scope="entity")``.

Metrics, overall, per category and per split (conversations 1-5, 6-10, all):

- hit@k (turn level): any evidence ``dia_id`` is among the source messages of the top-k hits;
- session R@k: any evidence turn's session ("D3:12" -> session 3 of that conversation) is among
  the sessions of the source messages of the top-k hits (the figure MemPalace, engram-search and
  hebb publish). An evidence id that is not one ``D<session>:<turn>`` (a defect of the data, e.g.
  ``"D8:6; D9:17"``) counts at neither level.

A database that already holds the run's conversations (same entity ids, same turns per session)
is reused: nothing is ingested, the message -> ``dia_id`` mapping is read back from the stored
messages, and only recall runs, so a tuning loop ingests once and recalls many times. When the
instance has the context pipeline (``Memori.context``), the lines it would inject per question
are counted too.

Data: Maharana et al., "Evaluating Very Long-Term Conversational Memory of LLM Agents" (ACL 2024),
``locomo10.json`` (CC BY-NC 4.0), read from where it lies, never copied.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memori_core._memori import Memori
from memori_core.errors import ConfigurationError

__all__ = ["CATEGORIES", "CONVERSATIONS_FORM", "KS", "SPLITS", "LocomoResult", "Outcome",
           "load", "parse_conversations", "report", "run"]

#: LoCoMo question categories scored here (5, adversarial, has no evidence to retrieve).
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
#: Cut-offs of hit@k (turn level); session R@k is reported for the last two.
KS = (1, 5, 10)
SESSION_KS = (5, 10)
#: The halves of LoCoMo (1-based conversation numbers): tune on one, check on the other.
SPLITS: dict[str, tuple[int, ...]] = {"1-5": (1, 2, 3, 4, 5), "6-10": (6, 7, 8, 9, 10)}
#: What ``--conversations`` accepts.
CONVERSATIONS_FORM = ("1-based conversation numbers: one (3), a range (1-5) or a comma-separated "
                      "list of them (1,4,7-8)")

_PART = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")
_DIA = re.compile(r"D(\d+):\d+")


def conversation_ranges(text: str) -> list[tuple[int, int]]:
    """The ranges of a ``--conversations`` value, checked for form only.

    Args:
        text: e.g. ``"3"``, ``"1-5"`` or ``"1,4,7-8"``.

    Returns:
        ``(first, last)`` pairs, 1-based and inclusive, in the order given.

    Raises:
        ConfigurationError: naming ``--conversations`` and the accepted form.
    """
    out = []
    for part in str(text).split(","):
        m = _PART.fullmatch(part)
        first, last = (int(m[1]), int(m[2] or m[1])) if m else (0, 0)
        if first < 1 or last < first:
            raise ConfigurationError(f"--conversations {text!r}: expected {CONVERSATIONS_FORM}",
                                     argument="conversations")
        out.append((first, last))
    return out


def parse_conversations(text: str, count: int) -> tuple[int, ...]:
    """The conversation numbers a ``--conversations`` value selects.

    Args:
        text: e.g. ``"1,4,7-8"``.
        count: how many conversations the data holds (10 for locomo10.json).

    Returns:
        the 1-based numbers, sorted, each once: ``(1, 4, 7, 8)``.

    Raises:
        ConfigurationError: for a malformed value or a number above ``count``.
    """
    ranges = conversation_ranges(text)
    top = max(last for _first, last in ranges)
    if top > count:
        raise ConfigurationError(f"--conversations {text!r}: the data has {count} conversations "
                                 f"(1-{count}); expected {CONVERSATIONS_FORM}",
                                 argument="conversations")
    return tuple(sorted({n for first, last in ranges for n in range(first, last + 1)}))


def _numbers_text(numbers: Sequence[int]) -> str:
    """``(1, 2, 3, 5)`` -> ``"1-3,5"``."""
    parts: list[str] = []
    for n in sorted(numbers):
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ",".join(parts)


def _select(count: int, conversations: int | str | Sequence[int] | None) -> tuple[int, ...]:
    """The 1-based numbers of the conversations to run: None for all, an int N for the first
    N, a ``--conversations`` string, or a sequence of numbers."""
    if conversations is None:
        return tuple(range(1, count + 1))
    if isinstance(conversations, str):
        return parse_conversations(conversations, count)
    if isinstance(conversations, bool):
        raise ConfigurationError(f"conversations={conversations!r}: expected "
                                 f"{CONVERSATIONS_FORM}", argument="conversations")
    if isinstance(conversations, int):
        if conversations < 1:
            raise ConfigurationError(f"conversations={conversations}: the first N needs N >= 1",
                                     argument="conversations")
        return tuple(range(1, min(conversations, count) + 1))
    numbers = tuple(sorted(set(conversations)))
    if not numbers or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= count
                          for n in numbers):
        raise ConfigurationError(f"conversations={conversations!r}: expected {CONVERSATIONS_FORM}"
                                 f", within 1-{count}", argument="conversations")
    return numbers


@dataclass(frozen=True)
class Outcome:
    """How recall did on one question.

    Attributes:
        conversation: 1-based number of the conversation in the data.
        category: LoCoMo category (1-4).
        turn_rank: rank (1-based) of the first hit whose sources hold an evidence turn, or None.
        session_rank: rank (1-based) of the first hit whose sources lie in an evidence session,
            or None.
        context_lines: lines the context pipeline injected, or None when not measured.
        context_empty: the context block was empty (None or ""), or None when not measured.
        duplicate_lines: lines repeating a memory (same memory id or same source message) of an
            earlier line of the same block.
        context_answered: an evidence turn is among the sources of the block's lines, or None
            when not measured.
        over_budget: the block's estimated tokens exceed its budget.
    """

    conversation: int
    category: int
    turn_rank: int | None
    session_rank: int | None
    context_lines: int | None = None
    context_empty: bool | None = None
    duplicate_lines: int = 0
    context_answered: bool | None = None
    over_budget: bool = False


def _metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """questions, hit_at_k (turn level) and session_r_at_k, as shares in [0, 1]."""
    q = max(len(outcomes), 1)
    out: dict[str, Any] = {"questions": len(outcomes)}
    for k in KS:
        out[f"hit_at_{k}"] = round(sum(1 for o in outcomes if o.turn_rank is not None
                                       and o.turn_rank <= k) / q, 4)
    for k in SESSION_KS:
        out[f"session_r_at_{k}"] = round(sum(1 for o in outcomes if o.session_rank is not None
                                             and o.session_rank <= k) / q, 4)
    return out


@dataclass
class LocomoResult:
    """Figures of one run; ``as_dict`` gives the ``--json`` object.

    Attributes:
        outcomes: one per question scored.
        conversations: the 1-based numbers of the conversations run.
        turns: turns of those conversations (ingested or reused).
        ingested_turns: turns captured by this run (0: the database was reused).
        ingest_seconds: capture + augmentation time of those turns, in seconds.
        recall_ms: latency of each ``recall``, in milliseconds (query embedding included).
        context_available: the instance had ``Memori.context`` and it was measured.
    """

    outcomes: list[Outcome] = field(default_factory=list)
    conversations: tuple[int, ...] = ()
    turns: int = 0
    ingested_turns: int = 0
    ingest_seconds: float = 0.0
    recall_ms: list[float] = field(default_factory=list)
    context_available: bool = False

    @property
    def questions(self) -> int:
        """Questions scored."""
        return len(self.outcomes)

    def splits(self) -> dict[str, dict[str, Any]]:
        """Metrics of each split holding a question of this run (``"1-5"``, ``"6-10"``), then
        of ``"all"``; each also lists its ``conversations``."""
        out = {}
        for name, numbers in SPLITS.items():
            part = [o for o in self.outcomes if o.conversation in numbers]
            if part:
                out[name] = {**_metrics(part), "conversations": sorted(
                    {o.conversation for o in part})}
        out["all"] = {**_metrics(self.outcomes), "conversations": list(self.conversations)}
        return out

    def context_stats(self) -> dict[str, Any]:
        """``available``, and when it is: ``mean_lines`` (lines injected per question),
        ``empty_share`` (share of questions with an empty block, in [0, 1]) and
        ``duplicate_lines`` (lines repeating a memory already in their block, summed),
        ``answered_share`` (share of questions whose block holds an evidence turn) and
        ``over_budget`` (blocks over their token budget, counted)."""
        if not self.context_available:
            return {"available": False}
        measured = [o for o in self.outcomes if o.context_lines is not None]
        n = max(len(measured), 1)
        return {"available": True,
                "mean_lines": round(sum(o.context_lines or 0 for o in measured) / n, 3),
                "empty_share": round(sum(1 for o in measured if o.context_empty) / n, 4),
                "duplicate_lines": sum(o.duplicate_lines for o in measured),
                "answered_share": round(sum(1 for o in measured if o.context_answered) / n, 4),
                "over_budget": sum(1 for o in measured if o.over_budget)}

    def as_dict(self) -> dict[str, Any]:
        ms = sorted(self.recall_ms) or [0.0]
        reused = self.turns - self.ingested_turns
        ingest: dict[str, Any] = {
            "ingest": "reused" if not self.ingested_turns else
            "partly reused" if reused else "ingested",
            "ingest_turns_per_s": "reused" if not self.ingested_turns else
            round(self.ingested_turns / self.ingest_seconds, 1) if self.ingest_seconds else 0.0,
            "reused_turns": reused}
        return {
            **_metrics(self.outcomes),
            "per_category": {
                CATEGORIES[c]: _metrics([o for o in self.outcomes if o.category == c])
                for c in sorted({o.category for o in self.outcomes})},
            "per_split": self.splits(),
            "conversations": list(self.conversations),
            **ingest,
            "recall_p50_ms": round(statistics.median(ms), 2),
            "recall_p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
            "context": self.context_stats(),
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


def _evidence_session(dia_id: str) -> int | None:
    """``"D3:12"`` -> 3; None for an id that is not one ``D<session>:<turn>``."""
    m = _DIA.fullmatch(dia_id)
    return int(m[1]) if m else None


#: message id -> (dia_id, session number) of the turn it holds
TurnMap = dict[int, tuple[str, int]]


def _stored(mem: Memori, sample: dict[str, Any]) -> TurnMap | None:
    """The stored turns of one conversation, read back through ``session_messages``.

    Returns:
        the mapping when the database holds every turn of every session (matched by the
        ``dia_id`` in each message's metadata, or by its text for messages captured without
        one), None when it holds none of the conversation.

    Raises:
        ConfigurationError: when it holds a different or partial copy (ingesting again would
            store turns twice).
    """
    mem.attribution(entity_id=str(sample["sample_id"]))
    found: TurnMap = {}
    seen = 0
    problem = None
    for n, _date, session in _sessions(sample["conversation"]):
        stored = mem.session_messages(f"session_{n}")
        seen += len(stored)
        if len(stored) != len(session):
            problem = problem or f"session {n} holds {len(stored)} turns, the data {len(session)}"
            continue
        for message, turn in zip(stored, session, strict=True):
            dia = (message.get("metadata") or {}).get("dia_id")
            same = dia == turn["dia_id"] if dia is not None else (
                message.get("content") == _turn_text(turn))
            if not same:
                problem = problem or f"session {n} holds other turns ({turn['dia_id']})"
            found[int(message["id"])] = (str(turn["dia_id"]), n)
    if not seen:
        return None
    if problem:
        raise ConfigurationError(
            f"--db already holds conversation {sample['sample_id']!r} but not this one: "
            f"{problem}; pass a fresh database (or none)", argument="db")
    return found


def _line_keys(line: object) -> set[tuple[str, object]]:
    """What identifies the memory a context line shows: its memory id and source message ids
    when the line carries them, else its text."""
    ids = getattr(line, "memory_ids", None) or ()  # a ContextLine: every memory it stands for
    if not ids:
        one = getattr(line, "memory_id", None)
        ids = (one if one is not None else getattr(line, "id", None),)
    keys: set[tuple[str, object]] = {("memory", i) for i in ids if i is not None}
    keys |= {("message", m) for m in getattr(line, "source_message_ids", None) or ()}
    if not keys:
        text = line if isinstance(line, str) else getattr(line, "content", None) or str(line)
        keys.add(("text", str(text).strip()))
    return keys


def _duplicate_lines(lines: Sequence[object]) -> int:
    """Lines sharing a memory id or a source message with an earlier line."""
    seen: set[tuple[str, object]] = set()
    duplicates = 0
    for line in lines:
        keys = _line_keys(line)
        duplicates += bool(keys & seen)
        seen |= keys
    return duplicates


def _default_memori(url: str, **settings: Any) -> Memori:
    return Memori(conn=url, **settings)


def run(data_path: str | Path, *, db: str | None = None,
        conversations: int | str | Sequence[int] | None = None,
        settings: Mapping[str, Any] | None = None,
        progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None,
        memori_factory: Callable[..., Memori] | None = None,
        context: bool = True) -> LocomoResult:
    """Ingest (unless ``db`` already holds the conversations) and evaluate.

    Args:
        data_path: path of locomo10.json.
        db: database URL; default a fresh SQLite file in a temporary directory. One that holds
            every turn of a selected conversation (entity = its ``sample_id``) is reused for
            it: nothing is captured, only recall runs.
        conversations: None for all; an int N for the first N; a ``--conversations`` string
            (``"1-5"``, ``"1,4,7-8"``); or a sequence of 1-based numbers.
        settings: ``Config`` settings of the instance, e.g. ``{"recall_rrf_k": 20}`` (strings
            are converted to the setting's type).
        progress: wraps iterables for a progress bar: ``progress(iterable, label, total)``.
        memori_factory: builds the ``Memori``, called as ``memori_factory(url, **settings)``
            (tests pass one with a fast embedder).
        context: also measure the context pipeline (``Memori.context``) when it exists.

    Raises:
        ConfigurationError: bad ``conversations`` or ``settings``, missing data, or a ``db``
            holding a different copy of a conversation.
        RuntimeError: augmentation did not finish, or some of its jobs failed.
    """
    data = load(data_path)
    numbers = _select(len(data), conversations)
    samples = [(n, data[n - 1]) for n in numbers]
    wrap = progress or (lambda it, _label, _total: it)
    tmp = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="memori-locomo-")
        db = f"sqlite:///{tmp.name}/locomo.db"
    mem = (memori_factory or _default_memori)(db, **dict(settings or {}))
    result = LocomoResult(conversations=numbers)
    try:
        mem.config.storage.build()
        turn_of: TurnMap = {}
        fresh = []
        for _n, sample in samples:
            stored = _stored(mem, sample)
            if stored is None:
                fresh.append(sample)
            else:
                turn_of.update(stored)
        turns = [(s["sample_id"], n, when, t) for s in fresh
                 for n, when, session in _sessions(s["conversation"]) for t in session]
        start = time.perf_counter()
        for sample_id, n, when, turn in wrap(turns, "ingest", len(turns)):
            mem.attribution(entity_id=str(sample_id))
            mem.set_session(f"session_{n}")
            message = {"role": "user", "name": str(turn["speaker"]), "content": _turn_text(turn),
                       "metadata": {"dia_id": str(turn["dia_id"])}}
            if when is not None:
                message["created_at"] = when
            ids = mem.capture([message])
            turn_of[ids[0]] = (str(turn["dia_id"]), n)
        if not mem.augmentation.wait(timeout=None):
            raise RuntimeError("augmentation did not finish")
        if turns:
            result.ingest_seconds = time.perf_counter() - start
        result.ingested_turns = len(turns)
        result.turns = sum(len(session) for _n, s in samples
                           for _k, _w, session in _sessions(s["conversation"]))
        if mem.augmentation.failed():
            raise RuntimeError(f"augmentation jobs failed: {mem.augmentation.failed()[:3]}")
        result.context_available = context and callable(getattr(mem, "context", None))
        questions = [(n, s["sample_id"], q) for n, s in samples for q in s["qa"]
                     if q.get("category") in CATEGORIES and q.get("evidence")]
        for n, sample_id, q in wrap(questions, "recall", len(questions)):
            mem.attribution(entity_id=str(sample_id))
            t0 = time.perf_counter()
            hits = mem.recall(str(q["question"]), limit=max(KS), scope="entity")
            result.recall_ms.append((time.perf_counter() - t0) * 1000)
            evidence = {str(e).strip() for e in q["evidence"]}
            sessions = {s for s in map(_evidence_session, evidence) if s is not None}
            sources = [[turn_of[m] for m in h.source_message_ids if m in turn_of] for h in hits]
            turn_rank = next((i for i, src in enumerate(sources, 1)
                              if {dia for dia, _s in src} & evidence), None)
            session_rank = next((i for i, src in enumerate(sources, 1)
                                 if {s for _dia, s in src} & sessions), None)
            lines = empty = answered = None
            duplicates = 0
            over = False
            if result.context_available:
                ctx = mem.context(str(q["question"]))
                lines = len(ctx.lines)
                empty = not ctx.block
                duplicates = _duplicate_lines(ctx.lines)
                answered = any(turn_of[m][0] in evidence for ln in ctx.lines
                               for m in getattr(ln, "source_message_ids", ()) if m in turn_of)
                over = getattr(ctx, "tokens", 0) > getattr(ctx, "budget", float("inf"))
            result.outcomes.append(Outcome(n, int(q["category"]), turn_rank, session_rank,
                                           lines, empty, duplicates, answered, over))
    finally:
        mem.close()
        if tmp is not None:
            tmp.cleanup()
    return result


_METRIC_ROWS = (("hit@1", "hit_at_1"), ("hit@5", "hit_at_5"), ("hit@10", "hit_at_10"),
                ("R@5", "session_r_at_5"), ("R@10", "session_r_at_10"))


def _metric_cells(m: Mapping[str, Any]) -> str:
    return "".join(f"{m[key]:>8.3f}" for _label, key in _METRIC_ROWS)


def report(result: LocomoResult) -> str:
    """The human-readable tables printed by ``memori eval locomo``."""
    d = result.as_dict()
    lines = [f"LoCoMo retrieval: {d['questions']} questions (categories 1-4 with evidence), "
             f"{d['turns']} turns, conversations {_numbers_text(result.conversations)}",
             "hit@k: an evidence turn among the sources of the top k memories; "
             "R@k: an evidence session among their sessions",
             f"{'category':<14}{'questions':>10}"
             + "".join(f"{label:>8}" for label, _key in _METRIC_ROWS),
             f"{'overall':<14}{d['questions']:>10}{_metric_cells(d)}"]
    for name, v in d["per_category"].items():
        lines.append(f"{name:<14}{v['questions']:>10}{_metric_cells(v)}")
    splits = d["per_split"]
    if all(name in splits for name in SPLITS):
        lines.append(f"{'split':<14}" + "".join(f"{name:>10}" for name in splits))
        lines.append(f"{'questions':<14}" + "".join(f"{v['questions']:>10}"
                                                    for v in splits.values()))
        for label, key in _METRIC_ROWS:
            lines.append(f"{label:<14}" + "".join(f"{v[key]:>10.3f}" for v in splits.values()))
    if d["ingest"] == "reused":
        lines.append(f"ingest: reused ({d['turns']} turns already in the database)")
    else:
        lines.append(f"ingest: {d['ingest_turns_per_s']} turns/s (capture + augmentation)"
                     + (f", {d['reused_turns']} turns reused" if d["reused_turns"] else ""))
    lines.append(f"recall: p50 {d['recall_p50_ms']} ms, p95 {d['recall_p95_ms']} ms "
                 "(query embedding included)")
    c = d["context"]
    if c["available"]:
        lines.append(f"context pipeline: {c['mean_lines']:.2f} lines per question, "
                     f"{c['empty_share']:.1%} empty blocks, duplicate lines: "
                     f"{c['duplicate_lines']}, blocks over budget: {c['over_budget']}, "
                     f"{c['answered_share']:.1%} hold an evidence turn")
    else:
        lines.append("context pipeline: not available")
    return "\n".join(lines)
