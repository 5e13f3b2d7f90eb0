"""How many of ``RuleExtractor``'s memories are fragments, on every LoCoMo turn.

Each turn of ../shared/datasets/locomo/locomo10.json (or the file ``MEMORI_LOCOMO`` names) is
extracted on its own, as a ``Conversation`` of one user message named by its speaker: no
database, no model, offline. Prints the number of turns and memories, the share of memories of
at most ``--short`` words (a restated statement needs a subject, a predicate and what it is
about: "Dave will" or "John believes in them" is a piece of a turn, not a memory), the importance
the extractor gave them, and a random sample of the short ones to read.

    python benchmarks/rule_fragments.py [--short 5] [--sample 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from pathlib import Path

from memori_core.augmentation.base import Conversation
from memori_core.augmentation.rules import RuleExtractor
from memori_core.evals.locomo import load

LOCOMO = Path(os.environ.get("MEMORI_LOCOMO") or Path(__file__).resolve().parents[2] / "shared"
              / "datasets" / "locomo" / "locomo10.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--short", type=int, default=5, help="short: at most this many words")
    parser.add_argument("--sample", type=int, default=30, help="short memories to print")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    extractor = RuleExtractor()
    turns = 0
    contents: list[str] = []
    importance: Counter[float] = Counter()
    for sample in load(LOCOMO):
        conv = sample["conversation"]
        for key in sorted(k for k in conv if k.startswith("session_") and k.count("_") == 1):
            for turn in conv[key]:
                turns += 1
                message = {"id": turns, "role": "user", "content": str(turn["text"]),
                           "name": str(turn["speaker"])}
                for m in extractor.extract(Conversation("locomo", None, [message])).memories:
                    contents.append(m.content)
                    importance[m.importance] += 1
    short = [c for c in contents if len(c.split()) <= args.short]
    share = len(short) / len(contents) if contents else 0.0
    print(f"turns {turns}  memories {len(contents)}  "
          f"short (<= {args.short} words) {len(short)} = {share:.1%}")
    print("importance " + "  ".join(f"{k:g}: {n}" for k, n in sorted(importance.items())))
    for content in random.Random(args.seed).sample(short, min(args.sample, len(short))):
        print(f"  {content}")


if __name__ == "__main__":
    main()
