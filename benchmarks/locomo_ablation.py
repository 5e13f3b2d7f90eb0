"""Recall variants side by side on LoCoMo: ingest once, recall once per variant.

Each variant is a name and the ``Config`` settings it overrides (``VARIANTS`` below: add a line
to add one). The first run ingests into ``--db`` (default a temporary SQLite file) unless it
already holds the conversations; every later one reuses it and only recalls. A variant naming a
setting this memori does not have (yet) is skipped with a note, so the list can name settings
that are still landing. Prints one table: per variant and split (conversations 1-5, 6-10, all),
hit@1/5/10 (an evidence turn among the sources of the top k memories), session R@5/R@10 (an
evidence session among their sessions) and the recall p50 in ms.

    python benchmarks/locomo_ablation.py [--data PATH] [--db URL] [--conversations 1-10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from memori_core import Memori
from memori_core.config import Config
from memori_core.errors import ConfigurationError
from memori_core.evals import locomo

#: name -> the Config settings it overrides; "defaults" first (it ingests, with no override)
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no lexical (dense only)": {"recall_lexical_weight": 0},
    "lexical 1:1": {"recall_lexical_weight": 1},
    "lexical 2:1": {"recall_lexical_weight": 2},
    "no reply field": {"recall_reply_weight": 0},
    "no stemming": {"recall_stemming": False},
    "rrf k=60 (Cormack et al.)": {"recall_rrf_k": 60},
    "no conversation prior": {"recall_conversation_weight": 0},
    "conversation diversity 0.05": {"recall_conversation_diversity": 0.05},
    "no named-participant bonus": {"recall_speaker_weight": 0},
    "no named-date bonus": {"recall_date_weight": 0},
    "no recency": {"recall_recency_weight": 0},
    "no mention bonus": {"recall_mention_weight": 0},
    "recall of before (same stored memories)": {
        "recall_stemming": False, "recall_rrf_k": 60, "recall_lexical_weight": 2,
        "recall_reply_weight": 0, "recall_conversation_weight": 0, "recall_speaker_weight": 0,
        "recall_date_weight": 0},
}

LOCOMO = Path(os.environ.get("MEMORI_LOCOMO") or Path(__file__).resolve().parents[2] / "shared"
              / "datasets" / "locomo" / "locomo10.json")
COLUMNS = (("hit@1", "hit_at_1"), ("hit@5", "hit_at_5"), ("hit@10", "hit_at_10"),
           ("R@5", "session_r_at_5"), ("R@10", "session_r_at_10"))


def check(overrides: Mapping[str, Any]) -> str | None:
    """Why a variant's overrides cannot run on this memori (an unknown setting, a bad value),
    or None when they can."""
    try:
        Config.from_env(overrides, environ={})
    except ConfigurationError as exc:
        return str(exc).split(";")[0]
    return None


def ablate(data: str | Path, *, db: str, conversations: str | None = None,
           variants: Mapping[str, Mapping[str, Any]] = VARIANTS,
           progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None,
           memori_factory: Callable[..., Memori] | None = None,
           note: Callable[[str], None] = print) -> dict[str, locomo.LocomoResult]:
    """Run every variant that this memori can run on one database.

    Args:
        data: path of locomo10.json.
        db: database URL, ingested by the first variant unless it holds the conversations.
        conversations: a ``--conversations`` value, e.g. ``"1-5"`` (default all).
        variants: name -> Config overrides.
        progress: progress-bar wrapper passed to ``locomo.run``.
        memori_factory: builds the ``Memori``: ``memori_factory(url, **settings)``.
        note: prints a skipped variant's reason.

    Returns:
        name -> result, in the order of ``variants``, skipped ones left out.
    """
    results = {}
    for name, overrides in variants.items():
        why = check(overrides)
        if why is not None:
            note(f"note: variant {name!r} skipped: {why}")
            continue
        results[name] = locomo.run(data, db=db, conversations=conversations,
                                   settings=overrides, progress=progress,
                                   memori_factory=memori_factory, context=False)
    return results


def table(results: Mapping[str, locomo.LocomoResult]) -> str:
    """One row per variant and split, the metrics as columns."""
    lines = [f"{'variant':<22}{'split':>6}" + "".join(f"{label:>8}" for label, _k in COLUMNS)
             + f"{'p50 ms':>9}"]
    for name, result in results.items():
        p50 = result.as_dict()["recall_p50_ms"]
        for split, m in result.splits().items():
            lines.append(f"{name:<22}{split:>6}" + "".join(f"{m[k]:>8.3f}" for _l, k in COLUMNS)
                         + f"{p50:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(LOCOMO), help="path of locomo10.json")
    p.add_argument("--db", default=None,
                   help="database URL, reused when it holds the conversations (default: a "
                   "temporary SQLite file, ingested once)")
    p.add_argument("--conversations", default=None, help="e.g. 1-5 or 1,4,7-8 (default all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    args = p.parse_args(argv)
    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="memori-ablation-")
        db = f"sqlite:///{tmp.name}/locomo.db"
    try:
        from memori_core.cli import _progress

        results = ablate(args.data, db=db, conversations=args.conversations,
                         progress=_progress(not args.no_progress))
    except ConfigurationError as exc:
        print(f"locomo_ablation: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            tmp.cleanup()
    if results:
        first = next(iter(results.values())).as_dict()
        print(f"{first['questions']} questions, {first['turns']} turns; ingest: "
              f"{first['ingest_turns_per_s']} turns/s" if first["ingest"] != "reused"
              else f"{first['questions']} questions, {first['turns']} turns; ingest: reused")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
