"""Resident memory of recall across many entities: E entities x M memories each, recalled in
random order by one process with the local embedding model, on SQLite.

Prints the process's peak resident set size (``ru_maxrss``) after loading the model, after the
fill, and after every entity was recalled at least once (in random order, with repeats), with
the recall cache's own byte count and entry count, against the target of 1 GiB for 10,000 x 100.

Memory texts are LoCoMo turns (so BM25 postings are realistic); vectors are random unit
vectors (embedding a million texts would take hours on 2 cores; index size does not depend on
them).

    python benchmarks/recall_memory.py [--entities 10000] [--memories 100] [--recalls 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert

from memori_core import Memori
from memori_core.storage import schema
from memori_core.storage.store import sha, utcnow

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"


def rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def texts() -> list[str]:
    if LOCOMO.is_file():
        data = json.loads(LOCOMO.read_text())
        return [t["text"] for s in data for k, v in s["conversation"].items()
                if k.startswith("session_") and isinstance(v, list) for t in v]
    return [f"synthetic memory about topic {i}" for i in range(5000)]


def fill(mem: Memori, entities: int, memories: int) -> None:
    """Bulk rows straight into the tables (the benchmark measures recall, not ingest)."""
    rng = np.random.default_rng(0)
    corpus = texts()
    store = mem._store
    dim = mem.embedder.dim
    store.check_embedding_model(mem.embedder.name, dim)
    now = utcnow()
    for start in range(0, entities, 200):
        chunk = range(start, min(start + 200, entities))

        def tx(conn: Connection, state: Any, chunk: range = chunk) -> None:
            rows = []
            for e in chunk:
                pk = store.entity_pk(conn, state, f"user-{e}")
                vecs = rng.standard_normal((memories, dim)).astype("<f4")
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                for i in range(memories):
                    content = f"{corpus[(e * memories + i) % len(corpus)]} ({e}.{i})"
                    rows.append(dict(entity_id=pk, process_id=None, kind="episodic",
                                     content=content, dedup_key=sha("bench", e, i), slot=None,
                                     search_text=None, embedding=vecs[i].tobytes(),
                                     embedding_model=mem.embedder.name, embedding_dim=dim,
                                     mention_count=1, created_at=now, last_seen_at=now))
            conn.execute(insert(schema.entity_fact), rows)

        store.write(tx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--memories", type=int, default=100)
    ap.add_argument("--recalls", type=int, default=20_000)
    args = ap.parse_args()
    questions = texts()[:500]
    with tempfile.TemporaryDirectory(prefix="memori-bench-") as d, \
            Memori(conn=f"sqlite:///{Path(d) / 'memory.db'}", augmentation_workers=0) as mem:
        mem.config.storage.build()
        mem.embedder.embed(["load the model"])
        base = rss_mib()
        print(f"model loaded: peak RSS {base:7.1f} MiB")
        t0 = time.perf_counter()
        fill(mem, args.entities, args.memories)
        print(f"filled {args.entities} entities x {args.memories} memories in "
              f"{time.perf_counter() - t0:.0f} s: peak RSS {rss_mib():7.1f} MiB")
        order = list(range(args.entities))
        random.Random(0).shuffle(order)
        order += [random.Random(1).randrange(args.entities)
                  for _ in range(max(0, args.recalls - args.entities))]
        ms = []
        t0 = time.perf_counter()
        for n, e in enumerate(order):
            mem.attribution(entity_id=f"user-{e}")
            t = time.perf_counter()
            hits = mem.recall(questions[n % len(questions)], limit=5)
            ms.append((time.perf_counter() - t) * 1000)
            assert len(hits) <= 5
        cache = mem._recaller.cache
        peak = rss_mib()
        print(f"recalled {len(order)} times over {args.entities} entities in random order in "
              f"{time.perf_counter() - t0:.0f} s: p50 {statistics.median(ms):.2f} ms, "
              f"p95 {sorted(ms)[int(0.95 * len(ms))]:.2f} ms")
        print(f"recall cache: {len(cache)} entities, {cache.nbytes / 2**20:.1f} MiB "
              f"(bound recall_cache_bytes = {mem.config.recall_cache_bytes / 2**20:.0f} MiB)")
        print(f"peak RSS {peak:.1f} MiB (target < 1024 MiB for 10,000 x 100): "
              + ("ok" if peak < 1024 else "MISSED"))


if __name__ == "__main__":
    main()
