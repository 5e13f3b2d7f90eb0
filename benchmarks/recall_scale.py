"""Recall at scale on PostgreSQL: E entities x M memories, random-entity recalls from P
processes, each with a recall cache of C MB (``Config.recall_cache_bytes``).

One PostgreSQL database (created for the run, dropped after it) is filled with 10,000
entities x 100 memories (1,000,000 rows) in bulk through the store's write transactions
(``recall_memory.fill``: LoCoMo turns as texts, so BM25 and full-text postings are realistic;
random unit vectors as embeddings: embedding a million texts would take hours on 2 cores, and
neither the cache's size nor a read's cost depends on the values). Then P processes (spawned,
each its own ``Memori`` with the real local model and a 64 MB cache) recall for a random
entity with a random LoCoMo question, R times each, in each mode asked:

  - ``in-process``: the default: an entity not in the cache has its index built from one read;
  - ``pushdown``: ``recall_pushdown`` (candidates from the database, index built after).

Each process prints nothing itself; the run prints, per mode, recall p50 / p99 over all
processes' recalls (query embedding included) and each process's peak RSS (``ru_maxrss``,
model included), then the targets line.

    python benchmarks/recall_scale.py [--entities 10000] [--memories 100] [--processes 4]
                                      [--recalls 1000] [--cache-mb 64]
                                      [--modes in-process,pushdown]

PostgreSQL: MEMORI_BENCH_PG_URL (a server URL, default postgresql+psycopg://postgres@127.0.0.1:5432/).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_memory import fill, texts

from memori_core import Memori

PG_SERVER = os.environ.get("MEMORI_BENCH_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/")


def rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(url: str, entities: int, recalls: int, cache_mb: int, pushdown: bool, seed: int,
           start_at: Any, out: Any) -> None:
    """One app process: its own Memori, ``recalls`` recalls of random entities; puts
    (latencies in ms, peak RSS MiB, cache MiB, cached entities, query embedding ms) on
    ``out``."""
    questions = texts()[:2000]
    rng = random.Random(seed)
    with Memori(conn=url, augmentation_workers=0, recall_cache_bytes=cache_mb * 2**20,
                recall_pushdown=pushdown) as mem:
        # first use: the model loaded, the schema and model checked, a connection opened
        mem.attribution(entity_id=f"user-{rng.randrange(entities)}")
        mem.recall("load the model", limit=5)
        start_at.wait()  # every process recalls at the same time
        embed_ms: list[float] = []
        real = mem.embedder.embed

        def timed(texts: Any) -> Any:  # the recall's query embedding, timed apart
            t = time.perf_counter()
            out = real(texts)
            embed_ms.append((time.perf_counter() - t) * 1000)
            return out

        embedder: Any = mem.embedder
        embedder.embed = timed
        ms = []
        for _ in range(recalls):
            mem.attribution(entity_id=f"user-{rng.randrange(entities)}")
            q = f"{rng.choice(questions)} {rng.randrange(10**9)}"  # never a cached query vector
            t = time.perf_counter()
            mem.recall(q, limit=5)
            ms.append((time.perf_counter() - t) * 1000)
        mem._recaller.wait_filled(60)
        cache = mem._recaller.cache
        out.put((ms, rss_mib(), cache.nbytes / 2**20, len(cache), embed_ms))


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--memories", type=int, default=100)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--recalls", type=int, default=1000)
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--modes", default="in-process,pushdown")
    ap.add_argument("--keep", action="store_true",
                    help="keep the filled database (memori_bench_scale_<E>x<M>) and reuse it "
                         "on the next run with --keep")
    args = ap.parse_args()
    server = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    db = (f"memori_bench_scale_{args.entities}x{args.memories}" if args.keep
          else f"memori_bench_scale_{os.getpid()}")
    url = PG_SERVER.rstrip("/") + "/" + db
    with server.connect() as c:
        exists = c.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                           {"d": db}).first() is not None
        if exists and not args.keep:
            c.execute(text(f"DROP DATABASE {db}"))
        if not exists or not args.keep:
            c.execute(text(f"CREATE DATABASE {db}"))
    try:
        with Memori(conn=url, augmentation_workers=0) as mem:
            mem.config.storage.build()
            rows = mem.stats()["tables"]["memori_entity_fact"] if exists else 0
            if rows != args.entities * args.memories:
                t0 = time.perf_counter()
                fill(mem, args.entities, args.memories)
                with mem.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("VACUUM ANALYZE"))
                print(f"postgresql: filled {args.entities} entities x {args.memories} "
                      f"memories ({args.entities * args.memories:,} rows, random unit vectors)"
                      f" in {time.perf_counter() - t0:.0f} s", flush=True)
            else:
                print(f"postgresql: {db} kept from an earlier run ({rows:,} rows)", flush=True)
        ctx = mp.get_context("spawn")
        for mode in args.modes.split(","):
            start_at = ctx.Barrier(args.processes + 1)
            out = ctx.Queue()
            procs = [ctx.Process(target=worker, args=(
                url, args.entities, args.recalls, args.cache_mb, mode == "pushdown", i,
                start_at, out)) for i in range(args.processes)]
            for p in procs:
                p.start()
            start_at.wait()  # every process has loaded the model: recalls start together
            t0 = time.perf_counter()
            results = [out.get(timeout=3600) for _ in procs]
            wall = time.perf_counter() - t0
            for p in procs:
                p.join(60)
            every = [x for r in results for x in r[0]]
            embeds = [x for r in results for x in r[4]]
            rss = [r[1] for r in results]
            print(f"{mode:<10} {args.processes} processes x {args.recalls} random-entity "
                  f"recalls ({args.cache_mb} MB cache each) in {wall:.0f} s: p50 "
                  f"{statistics.median(every):.1f} ms p95 {pct(every, 0.95):.1f} ms p99 "
                  f"{pct(every, 0.99):.1f} ms max {max(every):.1f} ms", flush=True)
            print(f"{mode:<10} of which query embedding (4 ONNX sessions on the machine's "
                  f"{os.cpu_count()} cores): p50 {statistics.median(embeds):.1f} ms p99 "
                  f"{pct(embeds, 0.99):.1f} ms", flush=True)
            print(f"{mode:<10} peak RSS per process (MiB, model included): "
                  + " ".join(f"{x:.0f}" for x in rss)
                  + " | cache per process (MiB / entities): "
                  + " ".join(f"{r[2]:.1f}/{r[3]}" for r in results), flush=True)
            print(f"{mode:<10} targets: p99 {pct(every, 0.99):.1f} ms (<= 100) | RSS "
                  f"{max(rss):.0f} MB (<= 400): "
                  f"{'PASS' if pct(every, 0.99) <= 100 and max(rss) <= 400 else 'MISSED'}",
                  flush=True)
    finally:
        if not args.keep:
            with server.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        server.dispose()


if __name__ == "__main__":
    main()
