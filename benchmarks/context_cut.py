"""Calibrate the context pipeline's relevance cut on LoCoMo: for each pair of
``context_relative_threshold`` x ``context_semantic_threshold``, how many lines a block holds per
question and how many questions it still answers (an evidence turn among the sources of its
lines), so the cost in injected lines per question answered can be read off.

Recall runs once per question (``limit=5``, the default); the cut and the question / small-talk
filter are then applied to the same hits for every pair, exactly as ``Memori.context`` does.

    python benchmarks/context_cut.py --db sqlite:///locomo.db   # a DB `memori eval locomo --db` filled
"""

from __future__ import annotations

import argparse
from pathlib import Path

from memori_core import Memori
from memori_core.context import informative, relevance_cut
from memori_core.evals import locomo

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"
RELATIVE = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8)
SEMANTIC = (-1.0, 0.2, 0.3, 0.4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--db", required=True, help="a database `memori eval locomo --db` ingested")
    args = ap.parse_args()
    samples = locomo.load(args.data)
    with Memori(conn=args.db) as mem:
        runs = []
        for sample in samples:
            turn_of = locomo._stored(mem, sample)
            if turn_of is None:
                raise SystemExit(f"{args.db} does not hold conversation {sample['sample_id']}: "
                                 "run `memori eval locomo --db` on it first")
            mem.attribution(entity_id=str(sample["sample_id"]))
            for q in sample["qa"]:
                if q.get("category") not in locomo.CATEGORIES or not q.get("evidence"):
                    continue
                hits = mem.recall(str(q["question"]), scope="entity")
                evidence = {e.strip() for e in q["evidence"]}
                runs.append((hits, {m for m, (dia, _) in turn_of.items() if dia in evidence}))
    n = len(runs)
    print(f"{n} questions; recall limit 5; a question is answered when an evidence turn is "
          "among the sources of the block's lines")
    print(f"{'relative':>8} {'semantic':>8} {'q filter':>8} {'lines/q':>8} {'answered':>9} "
          f"{'empty':>6} {'lines per answered':>19}")
    for rel, sem, only_informative in [(r, s, True) for r in RELATIVE for s in SEMANTIC] + [
            (r, 0.3, False) for r in RELATIVE]:
        lines = answered = empty = 0
        for hits, evidence in runs:
            shown = relevance_cut(hits, relative=rel, semantic=sem)
            shown = informative(shown) if only_informative else shown
            lines += len(shown)
            empty += not shown
            answered += any(set(h.source_message_ids) & evidence for h in shown)
        print(f"{rel:>8.2f} {sem:>8.2f} {'on' if only_informative else 'off':>8} "
              f"{lines / n:>8.2f} {answered / n:>9.3f} "
              f"{empty / n:>6.3f} {lines / max(answered, 1):>19.2f}")


if __name__ == "__main__":
    main()
