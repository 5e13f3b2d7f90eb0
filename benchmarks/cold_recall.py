"""Cold and warm recall of one entity, before and after issue 22, side by side in one run.

For one entity holding N memories (LoCoMo turns, numbered so each is its own memory; random
unit vectors, as in recall_latency.py: search cost does not depend on them), on SQLite and
PostgreSQL, with the real local model embedding every query:

  - read: the entity's rows read and decoded for its index, row by row in batches of
    ``recall_embeddings_limit`` (``Store.memory_embeddings``, the read before issue 22) vs one
    read decoded as columns (``Store.memory_block``, what the index is filled from now);
  - before: ``recall_pushdown`` off: a cold recall (the entity's index not in the process:
    dropped from the cache before each) builds the in-process index (FAISS + BM25) first;
    warm p50 once it is built;
  - after: ``recall_pushdown`` on: a cold recall takes lexical candidates from the database's
    full-text index and dense ones from one read of every vector, while the index is built in
    the background; warm p50 once it is built; and how many cold top-5s equal the in-process
    path's top-5 for the same query.

Cold figures include the query embedding (a new query each time, so it is not cached).

    python benchmarks/cold_recall.py [--sizes 1000,10000] [--backends sqlite,postgresql]
                                     [--cold 15] [--warm 100]

PostgreSQL: MEMORI_BENCH_PG_URL (a server URL, default postgresql+psycopg://postgres@127.0.0.1:5432/);
a database is created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, create_engine, text

from memori_core import Memori
from memori_core.config import Config
from memori_core.embeddings.base import Embedder
from memori_core.embeddings.local import LocalEmbedder
from memori_core.storage.store import NewMemory

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"
PG_SERVER = os.environ.get("MEMORI_BENCH_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/")
ENTITY = "bench-cold"


def locomo() -> tuple[list[str], list[str]]:
    """(turn texts, questions) of LoCoMo, or synthetic ones when the file is absent."""
    if not LOCOMO.is_file():
        return ([f"synthetic turn {i} about topic {i % 97}" for i in range(6000)],
                [f"what about topic {i}?" for i in range(500)])
    data = json.loads(LOCOMO.read_text())
    turns = [f"{t['speaker']}: {t['text']}" for s in data for k, v in s["conversation"].items()
             if k.startswith("session_") and isinstance(v, list) for t in v]
    questions = [q["question"] for s in data for q in s["qa"] if isinstance(q.get("question"), str)]
    return turns, questions


@contextmanager
def database(backend: str, tmp: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / (name + '.db')}"
        return
    server = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    db = f"memori_bench_{name}_{os.getpid()}"
    with server.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {db}"))
        c.execute(text(f"CREATE DATABASE {db}"))
    try:
        yield PG_SERVER.rstrip("/") + "/" + db
    finally:
        with server.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        server.dispose()


def fill(mem: Memori, n: int, turns: list[str]) -> None:
    rng = np.random.default_rng(0)
    store, dim = mem._store, mem.embedder.dim
    store.check_embedding_model(mem.embedder.name, dim)
    for start in range(0, n, 5000):
        vecs = rng.standard_normal((min(5000, n - start), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

        def tx(conn: Connection, state: Any, vecs: np.ndarray = vecs, start: int = start) -> None:
            e = store.entity_pk(conn, state, ENTITY)
            store.upsert_memories(conn, [
                NewMemory(e, None, "episodic", f"{turns[(start + i) % len(turns)]} ({start + i})",
                          v, ()) for i, v in enumerate(vecs)], mem.embedder.name)

        store.write(tx)


T = TypeVar("T")


def ms(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def cold_and_warm(mem: Memori, cold_qs: list[str], warm_qs: list[str]
                  ) -> tuple[list[float], list[float], dict[str, list[int]]]:
    pk = mem._store.find_pk("entity", ENTITY)
    assert pk is not None
    cold: list[float] = []
    tops: dict[str, list[int]] = {}
    for q in cold_qs:
        assert mem._recaller.wait_filled(120)
        mem._recaller.cache.discard(pk)
        t0 = time.perf_counter()
        hits = mem.recall(q, limit=5)
        cold.append((time.perf_counter() - t0) * 1000)
        tops[q] = [h.id for h in hits]
    assert mem._recaller.wait_filled(120)
    mem.recall(warm_qs[0])  # the index is in the cache (built in the background after pushdown)
    warm = []
    for q in warm_qs:
        t0 = time.perf_counter()
        mem.recall(q, limit=5)
        warm.append((time.perf_counter() - t0) * 1000)
    return cold, warm, tops


def bench(backend: str, n: int, tmp: Path, embedder: Embedder, turns: list[str],
          questions: list[str], cold_n: int, warm_n: int) -> None:
    with database(backend, tmp, f"cold{n}") as url:
        plain = Memori(conn=url, embedder=embedder, augmentation_workers=0)
        pushed = Memori(conn=url, embedder=embedder, augmentation_workers=0, recall_pushdown=True)
        try:
            plain.config.storage.build()
            fill(plain, n, turns)
            for m in (plain, pushed):
                m.attribution(entity_id=ENTITY)
            pk = plain._store.find_pk("entity", ENTITY)
            assert pk is not None
            # SQLite makes its FTS5 index on first use of the candidate path (once per database)
            t_fts, missing = ms(pushed._store.fulltext_missing)
            assert missing is None, missing
            if backend == "sqlite":
                print(f"{backend:<10} N={n:>6} FTS5 index made on first use {t_fts:7.1f} ms "
                      "(once per database)")
            store = plain._store
            rows = [ms(lambda: [r for b in store.memory_embeddings(pk, 0, 1000) for r in b])[0]
                    for _ in range(5)]
            block = [ms(lambda: store.memory_block(pk, 0))[0] for _ in range(5)]
            print(f"{backend:<10} N={n:>6} read+decode  row by row {statistics.median(rows):7.1f} ms"
                  f" | one read {statistics.median(block):7.1f} ms")
            # each mode its own new queries: the query vector cache never answers a cold one
            before_q = questions[:cold_n]
            after_q = [q + " " for q in before_q]  # same text for BM25, new for the cache
            warm_q = questions[cold_n:cold_n + warm_n]
            b_cold, b_warm, b_tops = cold_and_warm(plain, before_q, warm_q)
            a_cold, a_warm, a_tops = cold_and_warm(pushed, after_q, warm_q)
            same = sum(b_tops[q] == a_tops[q + " "] for q in before_q)
            print(f"{backend:<10} N={n:>6} before (in-process index)  cold p50 "
                  f"{statistics.median(b_cold):7.1f} ms max {max(b_cold):7.1f} | warm p50 "
                  f"{statistics.median(b_warm):6.2f} ms")
            print(f"{backend:<10} N={n:>6} after  (candidate path)    cold p50 "
                  f"{statistics.median(a_cold):7.1f} ms max {max(a_cold):7.1f} | warm p50 "
                  f"{statistics.median(a_warm):6.2f} ms | cold top-5 equal to before "
                  f"{same}/{len(before_q)} | cold before/after "
                  f"{statistics.median(b_cold) / statistics.median(a_cold):4.1f}x")
        finally:
            pushed._recaller.wait_filled(120)
            pushed.close()
            plain.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--cold", type=int, default=15)
    ap.add_argument("--warm", type=int, default=100)
    args = ap.parse_args()
    turns, questions = locomo()
    cfg = Config()
    embedder = LocalEmbedder(cfg.embeddings.model, batch_size=cfg.embeddings.batch_size,
                             backend=cfg.embeddings.backend)
    embedder.embed(["warm up the model"])  # loading the model is not recall
    with tempfile.TemporaryDirectory(prefix="memori-bench-") as d:
        for backend in args.backends.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                bench(backend, n, Path(d), embedder, turns, questions, args.cold, args.warm)


if __name__ == "__main__":
    main()
