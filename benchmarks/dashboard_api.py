"""The dashboard's reads (issue 20) on a real ``memori serve`` on 127.0.0.1: an entity with
10,000 memories and 2,000 triples, the API pages the dashboard asks for, timed over HTTP.

For each backend (SQLite file; PostgreSQL at 127.0.0.1:5432 when it answers, in a database this
run creates and drops), the benchmark writes one entity's ``--memories`` memories through the
store (LoCoMo turns when ../shared/datasets holds them, else synthetic text; six kinds; created
over the year 2024; every 100th holds the word "quokka", so a search for it hits 1%), 2,000
triples drawn from them, and ``--entities`` other entities with a few memories each; starts
``memori serve --embedder hash`` as a subprocess (these reads embed nothing) and sends each
request ``--requests`` times, one at a time after a warm-up, on one keep-alive connection:

  - first page: ``GET /v1/memories?limit=50`` (what the entity's page opens on);
  - search: ``q=quokka`` (1% of the memories) and ``q=zyzzyva`` (none: every row read);
  - filtered: ``kind=fact&since=2024-04-01&until=2024-07-01`` (a kind over one quarter);
  - ``GET /v1/entities`` (with counts), ``GET /v1/triples?limit=1000`` (both pages: 2,000).

On PostgreSQL the run first runs ``ANALYZE``, as autovacuum soon would (``--no-analyze``:
measure the fresh load, which the planner still takes for a near-empty table).

Targets (issue 20): first page <= 300 ms, search <= 300 ms (p99 here).

    python benchmarks/dashboard_api.py [--memories 10000] [--triples 2000] [--requests 100]
                                       [--entities 50] [--backends sqlite,postgresql]
                                       [--no-analyze]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
from server_load import each_backend, pct, serve, texts
from sqlalchemy import Connection, create_engine, text

from memori_core import Memori
from memori_core.storage.store import NewMemory, NewTriple
from memori_core.testing import HashEmbedder

ENTITY = "dash-user"
KINDS = ("episodic", "fact", "preference", "skill", "attribute", "event")
#: the word every 100th memory holds (not a word of LoCoMo), and one no memory holds
HIT, MISS = "quokka", "zyzzyva"
BATCH = 2000


def fill(url: str, memories: int, triples: int, entities: int) -> None:
    """The entity's memories and triples, and the other entities, through the store."""
    rng = np.random.default_rng(0)
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        mem.config.storage.build()
        store, embedder = mem._store, mem.embedder
        store.check_embedding_model(embedder.name, embedder.dim)
        lines = texts(memories)
        start = datetime(2024, 1, 1)
        ids: list[int] = []

        def vectors(n: int) -> np.ndarray:
            v = rng.standard_normal((n, embedder.dim)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        for first in range(0, memories, BATCH):
            vecs = vectors(min(BATCH, memories - first))

            def tx(conn: Connection, state: Any, first: int = first,
                   vecs: np.ndarray = vecs) -> list[int]:
                e = store.entity_pk(conn, state, ENTITY)
                return store.upsert_memories(conn, [NewMemory(
                    e, None, KINDS[i % len(KINDS)],
                    f"{lines[i % len(lines)]} ({i}{', saw a ' + HIT if i % 100 == 7 else ''})",
                    vecs[i - first], (),
                    observed_at=start + timedelta(minutes=i * 366 * 24 * 60 // memories))
                    for i in range(first, first + len(vecs))], embedder.name)

            ids += store.write(tx)
        nodes = [f"node {n}" for n in range(max(triples // 6, 2))]

        def graph(conn: Connection, state: Any) -> None:
            e = store.entity_pk(conn, state, ENTITY)
            store.upsert_triples(conn, [NewTriple(
                e, None, nodes[t % len(nodes)], f"relates to {t % 7}",
                nodes[(t * 31 + 1) % len(nodes)] + f" #{t}", ids[t % len(ids)])
                for t in range(triples)])

        store.write(graph)
        for n in range(entities):
            def other(conn: Connection, state: Any, n: int = n) -> None:
                e = store.entity_pk(conn, state, f"other-{n:04d}")
                store.upsert_memories(conn, [NewMemory(e, None, "fact", f"other {n} memory {i}",
                                                       v, ()) for i, v in enumerate(vectors(5))],
                                      embedder.name)

            store.write(other)


def analyze(url: str) -> None:
    """PostgreSQL's planner statistics of the new rows (without them, a fresh bulk load is
    planned as a near-empty table: ``--no-analyze`` measures that state)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    finally:
        engine.dispose()


def admin_key(url: str) -> str:
    out = subprocess.run([sys.executable, "-m", "memori_core.cli", "keys", "create", "--db", url,
                          "--scope", "admin", "--name", "bench"], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[-1]


def timed(send: Callable[[], list[httpx.Response]], requests: int) -> tuple[list[float], int]:
    """Latencies (ms) of ``requests`` sends after 5 warm-up ones, and the items the last
    answered (every response checked 200)."""
    items = 0
    took: list[float] = []
    for i in range(requests + 5):
        t0 = time.perf_counter()
        answers = send()
        elapsed = (time.perf_counter() - t0) * 1000
        for r in answers:
            if r.status_code != 200:
                raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:300]}")
        items = sum(len(r.json()["items"]) for r in answers)
        if i >= 5:
            took.append(elapsed)
    return took, items


def bench(name: str, url: str, args: argparse.Namespace) -> None:
    print(f"{name}: {args.memories} memories and {args.triples} triples of one entity, "
          f"{args.entities} other entities, {args.requests} requests per row")
    t0 = time.perf_counter()
    fill(url, args.memories, args.triples, args.entities)
    print(f"  filled in {time.perf_counter() - t0:.1f} s")
    if args.analyze and url.startswith("postgresql"):
        analyze(url)
        print("  ANALYZE run (what autovacuum does within about a minute of a bulk load)")
    key = admin_key(url)
    with serve(url, "--embedder", "hash") as base, httpx.Client(base_url=base, timeout=60, headers={
            "Authorization": f"Bearer {key}"}) as c:
        def memories(**params: Any) -> Callable[[], list[httpx.Response]]:
            return lambda: [c.get("/v1/memories", params={
                "entity_id": ENTITY, "limit": 50, **params})]

        def triples() -> list[httpx.Response]:
            first = c.get("/v1/triples", params={"entity_id": ENTITY, "limit": 1000})
            out = [first]
            while out[-1].status_code == 200 and out[-1].json()["next_cursor"] is not None:
                out.append(c.get("/v1/triples", params={
                    "entity_id": ENTITY, "limit": 1000, "cursor": out[-1].json()["next_cursor"]}))
            return out

        rows = [
            ("first page (limit 50)", memories()),
            (f"search q={HIT} (1%)", memories(q=HIT)),
            (f"search q={MISS} (none)", memories(q=MISS)),
            ("kind=fact, one quarter", memories(kind="fact", since="2024-04-01",
                                                until="2024-07-01")),
            ("entities (with counts)", lambda: [c.get("/v1/entities", params={"limit": 100})]),
            (f"triples ({args.triples}, pages of 1000)", triples),
        ]
        p99: dict[str, float] = {}
        print(f"  {'request':<34}{'items':>6}{'p50 ms':>10}{'p99 ms':>10}")
        for label, send in rows:
            took, items = timed(send, args.requests)
            p99[label] = pct(took, 0.99)
            print(f"  {label:<34}{items:>6}{statistics.median(took):>10.2f}{p99[label]:>10.2f}")
    search = max(v for k, v in p99.items() if k.startswith("search"))
    print(f"  targets: first page {p99['first page (limit 50)']:.1f} ms (<= 300) | search "
          f"{search:.1f} ms (<= 300) (p99)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memories", type=int, default=10_000)
    p.add_argument("--triples", type=int, default=2000)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--entities", type=int, default=50)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--no-analyze", dest="analyze", action="store_false",
                   help="PostgreSQL: measure right after the bulk load, before any ANALYZE")
    args = p.parse_args()
    for name, url in each_backend(args.backends, "dashboard.db"):
        bench(name, url, args)


if __name__ == "__main__":
    main()
