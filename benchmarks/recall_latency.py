"""Recall latency and ingest speed of memori on the embedded default (SQLite file, local
embeddings).

Prints, for this machine:
  - ingest: turns/s through capture alone and through capture + augmentation (embedding, storage),
    on real LoCoMo turns when ../shared/datasets/locomo/locomo10.json is there;
  - context: p50/p95 of ``mem.context`` (recall + the context pipeline) and what the pipeline
    adds to recall's p50;
  - recall: p50/p95 latency of ``mem.recall`` (hybrid: query embedding, exact FAISS search, BM25,
    fusion, hydration) for one entity holding N memories, side by side with a peer that loads the
    entity's rows and rebuilds a flat index on every query, and the agreement of the vector
    ranker's top-5 with numpy brute force over every memory.

Memory texts are real LoCoMo turns (so BM25 has realistic postings); their vectors are random
unit vectors (embedding 100k texts would dominate the run; search cost does not depend on them).

    python benchmarks/recall_latency.py [--turns 2000] [--sizes 1000,10000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import select

from memori_core import Memori
from memori_core.recall.index import Filter
from memori_core.storage import schema
from memori_core.storage.store import NewMemory

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"


def turns(n: int) -> list[tuple[str, str]]:
    if LOCOMO.is_file():
        data = json.loads(LOCOMO.read_text())
        out = [(t["speaker"], t["text"]) for s in data for k, v in s["conversation"].items()
               if k.startswith("session_") and isinstance(v, list) for t in v]
        return out[:n]
    return [("user", f"synthetic turn {i} about topic {i % 97}") for i in range(n)]


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def bench_ingest(tmp: Path, n: int) -> None:
    data = turns(n)
    with Memori(conn=f"sqlite:///{tmp / 'ingest.db'}") as mem:
        mem.config.storage.build()
        mem.embedder.embed(["warm up"])  # model load is not ingest
        mem.attribution(entity_id="bench-user")
        t0 = time.perf_counter()
        for speaker, text in data:
            mem.capture([{"role": "user", "name": speaker, "content": text}])
        t_capture = time.perf_counter() - t0
        assert mem.augmentation.wait(timeout=None)
        t_total = time.perf_counter() - t0
    print(f"ingest  {len(data)} turns: capture {len(data) / t_capture:8.1f} turns/s   "
          f"capture+augmentation {len(data) / t_total:8.1f} turns/s")


def fill(mem: Memori, n: int, dim: int) -> None:
    """n memories for one entity: LoCoMo texts (numbered, so each is its own memory) with random
    unit embeddings."""
    rng = np.random.default_rng(0)
    texts = [t for _, t in turns(6000)]
    store = mem._store
    store.check_embedding_model(mem.embedder.name, dim)
    for start in range(0, n, 5000):
        vecs = rng.standard_normal((min(5000, n - start), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

        def tx(conn, state, vecs=vecs, start=start):  # type: ignore[no-untyped-def]
            e = store.entity_pk(conn, state, "bench-recall")
            store.upsert_memories(conn, [
                NewMemory(e, None, "episodic",
                          f"{texts[(start + i) % len(texts)]} ({start + i})", v, ())
                for i, v in enumerate(vecs)], mem.embedder.name)

        store.write(tx)


def peer_recall(mem: Memori, entity_pk: int, query: np.ndarray, k: int) -> list[int]:
    """The peer's approach: load every row, build a flat index, search, per query."""
    f = schema.entity_fact.c
    with mem.engine.connect() as conn:
        rows = conn.execute(select(f.id, f.embedding).where(f.entity_id == entity_pk)).all()
    vecs = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4").reshape(len(rows), -1)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    _, idx = index.search(query.reshape(1, -1), k)
    return [int(rows[i].id) for i in idx[0]]


def bench_recall(tmp: Path, sizes: list[int], queries: int) -> None:
    questions = [t for _, t in turns(queries)] or [f"question {i}" for i in range(queries)]
    for n in sizes:
        with Memori(conn=f"sqlite:///{tmp / f'recall-{n}.db'}", augmentation_workers=0,
                    recall_relevance_threshold=-1.0) as mem:
            mem.config.storage.build()
            dim = mem.embedder.dim
            fill(mem, n, dim)
            mem.attribution(entity_id="bench-recall")
            mem.recall("warm up the cache")
            # a cold recall takes the candidate path and builds the index in the background
            # (recall_pushdown): the timed recalls are warm ones
            assert mem._recaller.wait_filled(300)
            entity_pk = mem._store.find_pk("entity", "bench-recall")
            assert entity_pk is not None
            ours, peer, agree = [], [], 0.0
            results = {}
            for q in questions:  # timed loops apart, so neither disturbs the other
                t0 = time.perf_counter()
                results[q] = mem.recall(q, limit=5)
                ours.append((time.perf_counter() - t0) * 1000)
            ctx_ms = []
            for q in questions:  # the whole context pipeline: recall + cut, dedup, budget, render
                t0 = time.perf_counter()
                mem.context(q, limit=5)
                ctx_ms.append((time.perf_counter() - t0) * 1000)
            for q in questions:
                t0 = time.perf_counter()
                peer_recall(mem, entity_pk, mem.embedder.embed([q])[0], 5)
                peer.append((time.perf_counter() - t0) * 1000)
            index = mem._recaller.cache.get(entity_pk, dim)
            all_ids = np.array(sorted(int(i) for i in faiss.vector_to_array(index.index.id_map)),
                               dtype=np.int64)
            all_vecs = np.vstack([index.index.reconstruct(int(i)) for i in all_ids])
            queries_vecs = mem.embedder.embed(questions)
            for q, qv in zip(questions, queries_vecs, strict=True):
                brute = all_ids[np.argsort(-(all_vecs @ qv), kind="stable")[:5]]
                dense, _, _ = index.search(qv, q, 5, Filter())
                agree += len({i for i, _ in dense} & set(brute.tolist())) / 5
            assert len(results[questions[0]]) == 5
            p50, p50_peer = statistics.median(ours), statistics.median(peer)
            print(f"recall  N={n:>6}: p50 {p50:6.2f} ms  p95 {pct(ours, 0.95):6.2f} ms | "
                  f"peer (reload + rebuild per query) p50 {p50_peer:7.2f} ms  "
                  f"p95 {pct(peer, 0.95):7.2f} ms | peer/memori {p50_peer / p50:5.1f}x | "
                  f"vector top-5 agreement with brute force {agree / len(questions):.3f}")
            p50_ctx = statistics.median(ctx_ms)
            print(f"context N={n:>6}: p50 {p50_ctx:6.2f} ms  p95 {pct(ctx_ms, 0.95):6.2f} ms | "
                  f"the pipeline adds {p50_ctx - p50:+.2f} ms p50 to recall")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="memori-bench-") as d:
        bench_ingest(Path(d), args.turns)
        bench_recall(Path(d), [int(s) for s in args.sizes.split(",")], args.queries)


if __name__ == "__main__":
    main()
