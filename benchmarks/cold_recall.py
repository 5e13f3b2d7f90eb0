"""Cold and warm recall of one entity, before and after issue 22, side by side in one run.

For one entity holding N memories (LoCoMo turns, numbered so each is its own memory), on
SQLite, PostgreSQL (the machine's server, no pgvector) and PostgreSQL with pgvector (a server
of the run's own, ``tests/memori_pgvector.py``, with ``recall_pgvector`` on), with the real
local model embedding every query:

  - read: the entity's rows read and decoded for its index, row by row in batches of
    ``recall_embeddings_limit`` (``Store.memory_embeddings``, the read before issue 22) vs one
    read decoded as columns (``Store.memory_block``, what the index is filled from now);
  - before: ``recall_pushdown`` off: a cold recall (the entity's index not in the process:
    dropped from the cache before each) builds the in-process index (FAISS + BM25) first;
    warm p50 once it is built;
  - packed: the entity's vectors as 8-bit codes (``Store.packed_vectors``, migration 7),
    read and checked, vs one read of every float32 vector (``Store.memory_vectors``);
  - after: ``recall_pushdown`` on: a cold recall takes its lexical ranking from the BM25
    postings packed with the blocks (migration 8: the buckets of the query's terms, scored as
    the in-process index scores, ``Recaller._from_postings``, on a thread of its own) and its
    exact dense top-k from the packed codes, re-scoring exactly from the
    stored vectors only the memories whose margin reaches it (``recall/dense.py``; how many per
    recall is printed); pgvector: from its HNSW index, re-scored exactly, where its measured
    agreement is >= 0.99; while the index is built in the background; warm p50 once it is
    built; and how many cold top-5s equal the in-process path's top-5 for the same query.

Memory vectors: LoCoMo's 5,882 turns embedded once with the local model; memory i is turn
i mod 5,882 with its vector plus Gaussian noise (norm 0.5 before re-normalising), so copies of
one turn are near, not equal, and queries (LoCoMo's questions, embedded) find real neighbours:
an HNSW index's agreement depends on that structure, which random vectors do not have.

Cold figures include the query embedding (a new query each time, so it is not cached). The
last lines print every cold and warm p50 side by side with the targets.

With ``--locomo``: LoCoMo conversations (``--conversations``, default 1-2) captured through
``Memori`` (rule extraction, real model), then every question recalled cold (the entity's
index dropped before each) with ``recall_pushdown`` on, and with the in-process index:
hit@1/5/10 of each, per backend (SQLite, PostgreSQL, pgvector), and of push-down without the
reply field read backwards (``Store.replied_by``), to show what it adds.

    python benchmarks/cold_recall.py [--sizes 10000,100000] [--backends sqlite,postgresql,pgvector]
                                     [--cold 15] [--warm 100] [--locomo [--conversations 1-2]]

PostgreSQL: MEMORI_BENCH_PG_URL (a server URL, default postgresql+psycopg://postgres@127.0.0.1:5432/);
a database is created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, create_engine, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from memori_pgvector import PgvectorServer, start

from memori_core import Memori
from memori_core.config import Config
from memori_core.embeddings.base import Embedder
from memori_core.embeddings.local import LocalEmbedder
from memori_core.evals import locomo as locomo_eval
from memori_core.storage import schema as s
from memori_core.storage.packed import Packed
from memori_core.storage.store import PGVECTOR_META, NewMemory

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"
PG_SERVER = os.environ.get("MEMORI_BENCH_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/")
ENTITY = "bench-cold"
#: norm of the noise added to a turn's vector for each of its copies
NOISE = 0.5


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
def database(backend: str, tmp: Path, name: str, pgv: PgvectorServer | None
             ) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / (name + '.db')}"
        return
    if backend == "pgvector":
        assert pgv is not None
        yield pgv.create_database()  # dropped with the server at the end of the run
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


def fill(mem: Memori, n: int, turns: list[str], turn_vectors: np.ndarray) -> None:
    """n memories of one entity through the store, 5,000 a transaction: memory i is turn
    i mod len(turns), its vector that turn's plus noise (``NOISE``), unit length."""
    rng = np.random.default_rng(0)
    store, dim = mem._store, mem.embedder.dim
    store.check_embedding_model(mem.embedder.name, dim)
    for start_at in range(0, n, 5000):
        count = min(5000, n - start_at)
        base = turn_vectors[np.arange(start_at, start_at + count) % len(turn_vectors)]
        noise = rng.standard_normal((count, dim)).astype(np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        vecs = base + noise
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

        def tx(conn: Connection, state: Any, vecs: np.ndarray = vecs,
               start_at: int = start_at) -> None:
            e = store.entity_pk(conn, state, ENTITY)
            store.upsert_memories(conn, [
                NewMemory(e, None, "episodic",
                          f"{turns[(start_at + i) % len(turns)]} ({start_at + i})", v, ())
                for i, v in enumerate(vecs)], mem.embedder.name)

        store.write(tx)
    if store.dialect == "postgresql":  # statistics, as autovacuum keeps them after a bulk load
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


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
        assert mem._recaller.wait_filled(300)
        mem._recaller.cache.discard(pk)
        t0 = time.perf_counter()
        hits = mem.recall(q, limit=5)
        cold.append((time.perf_counter() - t0) * 1000)
        tops[q] = [h.id for h in hits]
    assert mem._recaller.wait_filled(300)
    mem.recall(warm_qs[0])  # the index is in the cache (built in the background after pushdown)
    warm = []
    for q in warm_qs:
        t0 = time.perf_counter()
        mem.recall(q, limit=5)
        warm.append((time.perf_counter() - t0) * 1000)
    return cold, warm, tops


#: (backend, n) -> (cold before, cold after, warm after) p50 in ms
Results = dict[tuple[str, int], tuple[float, float, float]]


def bench(backend: str, n: int, tmp: Path, embedder: Embedder, turns: list[str],
          turn_vectors: np.ndarray, questions: list[str], cold_n: int, warm_n: int,
          pgv: PgvectorServer | None, results: Results) -> None:
    with database(backend, tmp, f"cold{n}", pgv) as url:
        plain = Memori(conn=url, embedder=embedder, augmentation_workers=0,
                       recall_pushdown=False)
        pushed = Memori(conn=url, embedder=embedder, augmentation_workers=0, recall_pushdown=True,
                        recall_pgvector=backend == "pgvector")
        try:
            plain.config.storage.build()
            t_fill, _ = ms(lambda: fill(plain, n, turns, turn_vectors))
            for m in (plain, pushed):
                m.attribution(entity_id=ENTITY)
            pk = plain._store.find_pk("entity", ENTITY)
            assert pk is not None
            print(f"{backend:<10} N={n:>6} filled in {t_fill / 1000:6.1f} s (through the store, "
                  "5,000 a transaction)", flush=True)
            if backend == "pgvector":  # memori migrate: installs push-down, measures it
                t_install, _ = ms(pushed.config.storage.build)
                with pushed._store.read() as conn:
                    measured = json.loads(conn.execute(select(s.meta.c.value).where(
                        s.meta.c.key == PGVECTOR_META)).scalar_one())
                gate = pushed._store.pgvector_missing(embedder.dim)
                print(f"{backend:<10} N={n:>6} pgvector installed by build {t_install / 1000:6.1f} s"
                      f" | measured top-{measured['k']} agreement {measured['agreement']:.4f} "
                      f"-> {'used' if gate is None else 'not used: ' + gate}", flush=True)
            # SQLite makes its FTS5 index on first use of the candidate path (once per database)
            t_fts, missing = ms(pushed._store.fulltext_missing)
            assert missing is None, missing
            if backend == "sqlite":
                print(f"{backend:<10} N={n:>6} FTS5 index made on first use {t_fts:7.1f} ms "
                      "(once per database)")
            store = plain._store
            rows = [ms(lambda: [r for b in store.memory_embeddings(pk, 0, 1000) for r in b])[0]
                    for _ in range(3)]
            block = [ms(lambda: store.memory_block(pk, 0))[0] for _ in range(3)]
            vectors = [ms(lambda: store.memory_vectors(pk, None, None, False))[0]
                       for _ in range(3)]
            packs = [ms(lambda: store.packed_vectors(pk, embedder.dim)) for _ in range(3)]
            found = packs[0][1]
            print(f"{backend:<10} N={n:>6} read+decode  row by row {statistics.median(rows):7.1f} ms"
                  f" | one read {statistics.median(block):7.1f} ms | every vector "
                  f"{statistics.median(vectors):7.1f} ms | packed 8-bit codes "
                  f"{statistics.median(t for t, _ in packs):7.1f} ms ("
                  + (f"{len(found)} memories" if isinstance(found, Packed) else str(found))
                  + ")", flush=True)
            rescored: list[int] = []
            real_similarities = pushed._store.memory_similarities

            def similarities(*args: Any, **kwargs: Any) -> Any:
                rescored.append(len(args[2]))
                return real_similarities(*args, **kwargs)

            pushed._store.memory_similarities = similarities  # type: ignore[method-assign]
            # each mode its own new queries: the query vector cache never answers a cold one
            before_q = questions[:cold_n]
            after_q = [q + " " for q in before_q]  # same text for BM25, new for the cache
            warm_q = questions[cold_n:cold_n + warm_n]
            b_cold, b_warm, b_tops = cold_and_warm(plain, before_q, warm_q)
            a_cold, a_warm, a_tops = cold_and_warm(pushed, after_q, warm_q)
            pushed._store.memory_similarities = real_similarities  # type: ignore[method-assign]
            per_recall = sum(rescored) / max(len(after_q), 1)
            print(f"{backend:<10} N={n:>6} cold recall re-scored exactly {per_recall:7.0f} vectors "
                  f"per recall on average (dense top-k from the packed codes, and the lexical "
                  f"candidates' similarities)", flush=True)
            same = sum(b_tops[q] == a_tops[q + " "] for q in before_q)
            print(f"{backend:<10} N={n:>6} before (in-process index)  cold p50 "
                  f"{statistics.median(b_cold):7.1f} ms max {max(b_cold):7.1f} | warm p50 "
                  f"{statistics.median(b_warm):6.2f} ms")
            print(f"{backend:<10} N={n:>6} after  (candidate path)    cold p50 "
                  f"{statistics.median(a_cold):7.1f} ms max {max(a_cold):7.1f} | warm p50 "
                  f"{statistics.median(a_warm):6.2f} ms | cold top-5 equal to before "
                  f"{same}/{len(before_q)} | cold before/after "
                  f"{statistics.median(b_cold) / statistics.median(a_cold):4.1f}x", flush=True)
            results[(backend, n)] = (statistics.median(b_cold), statistics.median(a_cold),
                                     statistics.median(a_warm))
        finally:
            pushed._recaller.wait_filled(300)
            pushed.close()
            plain.close()


def side_by_side(results: Results, backends: list[str], sizes: list[int]) -> None:
    print("cold recall p50 before -> after (ms, query embedding included) | warm p50 after")
    print(f"{'':<10} " + " ".join(f"{'N=' + str(n):>26}" for n in sizes))
    for b in backends:
        cells = []
        for n in sizes:
            r = results.get((b, n))
            cells.append(f"{'-':>26}" if r is None else
                         f"{r[0]:8.1f} -> {r[1]:6.1f} | {r[2]:5.2f}".rjust(26))
        print(f"{b:<10} " + " ".join(cells))
    print("targets: cold <= 50 ms at 10k, <= 150 ms at 100k; warm p50 <= 10 ms at 10k")


def locomo_hits(backends: list[str], conversations: str, tmp: Path, embedder: Embedder,
                pgv: PgvectorServer | None) -> None:
    """hit@1/5/10 on LoCoMo with every recall cold: candidate path vs in-process index."""
    for backend in backends:
        with database(backend, tmp, "locomo", pgv) as url:
            rows = []
            for label, pushdown, replies in (("in-process", False, True),
                                             ("push-down", True, True),
                                             ("no replies", True, False)):
                def factory(db: str, pushdown: bool = pushdown, backend: str = backend,
                            replies: bool = replies, **settings: Any) -> Memori:
                    mem = Memori(conn=db, embedder=embedder, recall_pushdown=pushdown,
                                 recall_pushdown_above=0,  # every entity (LoCoMo's < 1,000)
                                 recall_pgvector=pushdown and backend == "pgvector", **settings)
                    store: Any = mem._store
                    if not replies:  # push-down without the reply field read backwards
                        store.replied_by = lambda *_args, **_kwargs: []
                    real = mem._recaller.recall

                    def cold(*args: Any, **kwargs: Any) -> Any:
                        assert mem._recaller.wait_filled(300)
                        pk = mem._store.find_pk("entity", kwargs["entity_id"])
                        if pk is not None:
                            mem._recaller.cache.discard(pk)  # every recall cold
                        return real(*args, **kwargs)

                    mem._recaller.recall = cold  # type: ignore[method-assign]
                    close = mem.close

                    def closed() -> None:  # the background index builds end first
                        mem._recaller.wait_filled(300)
                        close()

                    mem.close = closed  # type: ignore[method-assign]
                    return mem

                t0 = time.perf_counter()
                result = locomo_eval.run(LOCOMO, db=url, conversations=conversations,
                                         memori_factory=factory, context=False)
                m = result.as_dict()
                rows.append((label, m))
                print(f"{backend:<10} LoCoMo conversations {conversations} every recall cold "
                      f"{label:<10}: hit@1 {m['hit_at_1']:.3f} hit@5 {m['hit_at_5']:.3f} "
                      f"hit@10 {m['hit_at_10']:.3f} ({result.questions} questions, "
                      f"{time.perf_counter() - t0:.0f} s)", flush=True)
            gap = max(abs(rows[0][1][k] - rows[1][1][k])  # push-down as shipped
                      for k in ("hit_at_1", "hit_at_5", "hit_at_10"))
            print(f"{backend:<10} LoCoMo largest hit@k gap push-down vs in-process {gap:.3f} "
                  f"(target <= 0.01): {'PASS' if gap <= 0.01 else 'FAIL'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--backends", default="sqlite,postgresql,pgvector")
    ap.add_argument("--cold", type=int, default=15)
    ap.add_argument("--warm", type=int, default=100)
    ap.add_argument("--locomo", action="store_true",
                    help="hit@1/5/10 with every recall cold, push-down vs in-process")
    ap.add_argument("--conversations", default="1-2")
    args = ap.parse_args()
    backends = args.backends.split(",")
    sizes = [int(x) for x in args.sizes.split(",")]
    turns, questions = locomo()
    cfg = Config()
    embedder = LocalEmbedder(cfg.embeddings.model, batch_size=cfg.embeddings.batch_size,
                             backend=cfg.embeddings.backend)
    embedder.embed(["warm up the model"])  # loading the model is not recall
    pgv = start() if "pgvector" in backends else None
    try:
        with tempfile.TemporaryDirectory(prefix="memori-bench-") as d:
            if args.locomo:
                locomo_hits(backends, args.conversations, Path(d), embedder, pgv)
                return
            # embedded once per model and kept in the temporary directory of the system
            cache = Path(tempfile.gettempdir()) / (
                f"memori-bench-locomo-{embedder.name.replace('/', '_')}-{len(turns)}.npy")
            if cache.is_file():
                turn_vectors = np.load(cache)
            else:
                t_embed, turn_vectors = ms(lambda: embedder.embed(turns))
                np.save(cache, turn_vectors)
                print(f"{len(turns)} LoCoMo turns embedded in {t_embed / 1000:.1f} s",
                      flush=True)
            results: Results = {}
            for backend in backends:
                for n in sizes:
                    bench(backend, n, Path(d), embedder, turns, turn_vectors, questions,
                          args.cold, args.warm, pgv, results)
            side_by_side(results, backends, sizes)
    finally:
        if pgv is not None:
            pgv.stop()


if __name__ == "__main__":
    main()
