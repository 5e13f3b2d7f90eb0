"""Load on a real ``memori serve`` on 127.0.0.1: recall and capture over HTTP, side by side
with in-process ``mem.recall`` on the same database, in one run.

For each backend (SQLite file; PostgreSQL at 127.0.0.1:5432 when it answers, in a database this
run creates and drops), the benchmark fills one entity with ``--memories`` memories (LoCoMo
turns with the default local model's embeddings, so recall does the real work: query
embedding, vector and BM25 search, fusion, the context block), starts ``memori serve`` as a
subprocess with a write key, and sends a fixed number of requests (it always stops):

  - closed loop at concurrency 1, 8 and 32 (``--requests`` each): req/s, p50, p99;
  - open loop at ``--rate`` req/s (recall p99 at a steady 50 req/s, the issue's target);
  - capture: ``POST /v1/turns``, acknowledged when the turn is committed;
  - in-process: ``mem.recall`` on the same database in this process, the floor HTTP adds to.

Targets on a 2-core machine (issue "memori server"): recall >= 300 req/s, recall p99 <= 50 ms
at 50 req/s, capture acknowledged p99 <= 20 ms.

    python benchmarks/server_load.py [--memories 1000] [--requests 400] [--rate 50]
                                     [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from memori_core import Memori
from memori_core.server._ready import stop, wait_serving

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "locomo" / "locomo10.json"
ENTITY = "bench-user"


def questions() -> list[str]:
    """Distinct queries (LoCoMo's questions), so no request reuses another's query vector."""
    if LOCOMO.is_file():
        data = json.loads(LOCOMO.read_text())
        return list(dict.fromkeys(q["question"] for s in data for q in s["qa"]))
    return [f"what about topic {i}?" for i in range(5000)]


QUERIES = questions()


def texts(n: int) -> list[str]:
    if LOCOMO.is_file():
        data = json.loads(LOCOMO.read_text())
        out = [f"{t['speaker']}: {t['text']}" for s in data for k, v in s["conversation"].items()
               if k.startswith("session_") and isinstance(v, list) for t in v]
        return out[:n]
    return [f"synthetic memory {i} about topic {i % 97}" for i in range(n)]


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database URL for this run (dropped after), or None when the server
    at 127.0.0.1:5432 does not answer."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"memori_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"postgresql: skipped here, the server does not answer ({exc})")
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(url: str, n: int) -> list[float]:
    """Fill ENTITY with ``n`` memories; returns in-process ``mem.recall`` latencies (ms)."""
    with Memori(conn=url, augmentation_workers=0) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id=ENTITY)
        for text in texts(n):
            mem.remember(text)
        for q in QUERIES[-20:]:  # warm: model, index
            mem.recall(q)
        took = []
        for i in range(200):
            start = time.perf_counter()
            mem.recall(QUERIES[i % len(QUERIES)])
            took.append((time.perf_counter() - start) * 1000)
        return took


def write_key(url: str) -> str:
    out = subprocess.run([sys.executable, "-m", "memori_core.cli", "keys", "create", "--db", url,
                          "--scope", "write", "--name", "bench"], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[-1]


@contextmanager
def serve(url: str, *extra: str) -> Iterator[str]:
    """``memori serve --db url`` (plus ``extra`` arguments) on a free port, until the block
    ends: its base URL."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    base = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile("w", prefix="memori-serve-", suffix=".log") as log:
        # its output to a file, never a pipe nobody reads (it would fill up)
        proc = subprocess.Popen([sys.executable, "-m", "memori_core.cli", "serve", "--db", url,
                                 "--port", str(port), "--rate-limit", "100000",
                                 "--rate-burst", "100000", *extra],
                                env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_serving(proc, f"{base}/readyz", timeout=120, log=Path(log.name))
            yield base
        finally:
            stop(proc, grace=30)


Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def closed_loop(client: httpx.AsyncClient, send: Request, total: int,
                      concurrency: int) -> tuple[float, list[float]]:
    """``total`` requests by ``concurrency`` workers back to back: (req/s, latencies ms)."""
    took: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            r = await send(client, i)
            took.append((time.perf_counter() - start) * 1000)
            if r.status_code >= 300:
                raise RuntimeError(f"{r.status_code}: {r.text[:300]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start), took


async def open_loop(client: httpx.AsyncClient, send: Request, total: int,
                    rate: float) -> list[float]:
    """``total`` requests started at a steady ``rate`` per second, whatever the answers take:
    latencies (ms) from each request's scheduled start."""
    took: list[float] = []
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        at = t0 + i / rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        r = await send(client, i)
        took.append((time.perf_counter() - at) * 1000)
        if r.status_code >= 300:
            raise RuntimeError(f"{r.status_code}: {r.text[:300]}")

    await asyncio.gather(*(one(i) for i in range(total)))
    return took


def line(label: str, rps: float | None, took: list[float]) -> str:
    per = f"{rps:7.1f} req/s" if rps is not None else " " * 13
    return (f"  {label:<28}{per}   p50 {statistics.median(took):6.2f} ms"
            f"   p99 {pct(took, 0.99):6.2f} ms")


async def drive(base: str, key: str, requests: int, rate: float) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    results: dict[str, float] = {}

    asked = itertools.count()  # every request of the run asks a query of its own

    async def recall(client: httpx.AsyncClient, i: int) -> httpx.Response:
        query = QUERIES[next(asked) % len(QUERIES)]
        return await client.post("/v1/recall", json={"entity_id": ENTITY, "query": query})

    async def capture(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post("/v1/turns", json={
            "entity_id": ENTITY, "session_id": "bench-session", "messages": [
                {"role": "user", "content": f"benchmark turn {i}: I tried a new recipe"},
                {"role": "assistant", "content": "How did it turn out?"}]})

    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=60) as client:
        await closed_loop(client, recall, 20, 4)  # warm the connections and the index
        for c in (1, 8, 32):
            rps, took = await closed_loop(client, recall, requests, c)
            print(line(f"recall, concurrency {c}", rps, took))
            results[f"recall_rps_c{c}"] = rps
        took = await open_loop(client, recall, max(requests // 2, 100), rate)
        print(line(f"recall at {rate:g} req/s", None, took))
        results["recall_p99_at_rate"] = pct(took, 0.99)
        for c in (1, 8, 32):
            rps, took = await closed_loop(client, capture, requests, c)
            print(line(f"capture, concurrency {c}", rps, took))
            results[f"capture_p99_c{c}"] = pct(took, 0.99)
    return results


def bench(name: str, url: str, args: argparse.Namespace) -> None:
    print(f"{name}: {args.memories} memories of one entity, {args.requests} requests per row")
    inproc = fill(url, args.memories)
    print(line("in-process mem.recall", None, inproc))
    key = write_key(url)
    with serve(url) as base:
        r = asyncio.run(drive(base, key, args.requests, args.rate))
    best = max(r["recall_rps_c8"], r["recall_rps_c32"])
    print(f"  targets: recall {best:.0f} req/s (>= 300) | recall p99 at {args.rate:g} req/s "
          f"{r['recall_p99_at_rate']:.1f} ms (<= 50) | capture p99 at concurrency 1 "
          f"{r['capture_p99_c1']:.1f} ms (<= 20) | HTTP recall p50 at concurrency 1 is "
          f"in-process p50 + the server's overhead")


def each_backend(backends: str, filename: str) -> Iterator[tuple[str, str]]:
    """(name, database URL) of each backend of ``backends`` ("sqlite,postgresql"): a SQLite
    file ``filename`` in a temporary folder; a PostgreSQL database made for the step, dropped
    after it (left out when the server at 127.0.0.1:5432 does not answer)."""
    names = backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in names:
            yield "sqlite", f"sqlite:///{Path(tmp) / filename}"
        if "postgresql" in names:
            with postgres_database() as url:
                if url is not None:
                    yield "postgresql", url


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memories", type=int, default=1000)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--backends", default="sqlite,postgresql")
    args = p.parse_args()
    for name, url in each_backend(args.backends, "server.db"):
        bench(name, url, args)


if __name__ == "__main__":
    main()
