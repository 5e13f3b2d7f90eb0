"""Sustained load: N threads of one app process share one ``Memori`` on PostgreSQL, each for its
own entity, alternating a capture (one user + one assistant message) and a recall, paced open
loop at a target rate for a fixed time, one target rate after the other.

Prints, per target rate (requests/s over all threads; a capture and a recall are one request
each): the rate achieved, p50/p95/p99 latency of capture and of recall in ms (measured from
the request's scheduled time, so a thread falling behind shows as latency, not as a lower
rate), errors, lost turns (captures that returned but whose turn is not in the database) and
the augmentation backlog when the window closed; then the highest rate sustained: 0 errors,
0 lost turns, >= 95 % of the target achieved and recall p99 < 100 ms.

    python benchmarks/load.py [--db URL] [--threads 8] [--seconds 20] [--rates 10,25,50,100]
        [--memories 200] [--hash]

``--db`` defaults to a fresh PostgreSQL database created on 127.0.0.1:5432 and dropped at the
end. The embedder is memori's default (the local all-MiniLM-L6-v2 model: what users run, so
recall includes embedding the query and a background worker embeds every captured turn);
``--hash`` switches to the deterministic HashEmbedder for a quick run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from capture_overhead import postgres
from recall_latency import pct
from sqlalchemy import bindparam, text

from memori_core import Memori
from memori_core.testing import HashEmbedder

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: what "sustained" asks of a rate
MIN_ACHIEVED = 0.95
MAX_RECALL_P99_MS = 100.0


@dataclass
class Window:
    """What the threads measured at one target rate."""

    capture_ms: list[float] = field(default_factory=list)
    recall_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # session -> turns captured
    lock: threading.Lock = field(default_factory=threading.Lock)


def fill(mem: Memori, threads: int, memories: int) -> None:
    """``memories`` turns per entity, augmented: what recall searches."""
    for t in range(threads):
        mem.attribution(entity_id=f"load-{t}", process_id="load")
        mem.set_session(f"fill-{t}")
        for i in range(memories):
            mem.capture([{"role": "user", "content": f"I like topic {i} with flavour {t}-{i}"},
                         {"role": "assistant", "content": f"Noted: topic {i}."}])
    assert mem.augmentation.wait(timeout=None)


def worker(mem: Memori, t: int, rate: float, threads: int, start: float, seconds: float,
           window: Window) -> None:
    """Thread ``t``: requests at ``rate / threads`` per second, alternately capture and recall,
    each at its scheduled time (or at once when behind)."""
    interval = threads / rate
    session = f"rate-{rate:g}-{t}"
    mem.attribution(entity_id=f"load-{t}", process_id="load")
    mem.set_session(session)
    acked = 0
    for k in range(int(seconds / interval)):
        due = start + (t / threads + k) * interval  # threads evenly staggered
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing: the open-loop schedule
        try:
            if k % 2 == 0:
                mem.capture([{"role": "user", "content": f"I like topic {k} at rate {rate:g}"},
                             {"role": "assistant", "content": f"Noted: topic {k}."}])
                acked += 1
                samples = window.capture_ms
            else:
                mem.recall(f"what does the user like about topic {k % 50}?")
                samples = window.recall_ms
            elapsed = (time.perf_counter() - due) * 1000
            with window.lock:
                samples.append(elapsed)
        except Exception as exc:  # noqa: BLE001 - counted and reported: what the benchmark measures
            with window.lock:
                window.errors.append(f"{type(exc).__name__}: {exc}")
    with window.lock:
        window.acked[session] = acked


def stored_turns(mem: Memori, sessions: list[str]) -> int:
    """Turns (user messages) stored in these sessions."""
    if not sessions:
        return 0
    query = text("SELECT COUNT(*) FROM memori_conversation_message m JOIN memori_session s "
                 "ON s.id = m.session_id WHERE m.role = 'user' AND s.external_id IN :names"
                 ).bindparams(bindparam("names", expanding=True))
    with mem.engine.connect() as c:
        return int(c.execute(query, {"names": sessions}).scalar_one())


def run_rate(mem: Memori, rate: float, threads: int, seconds: float) -> dict[str, float]:
    window = Window()
    start = time.perf_counter() + 0.2
    pool = [threading.Thread(target=worker, args=(mem, t, rate, threads, start, seconds, window))
            for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    took = time.perf_counter() - start
    backlog = mem.augmentation.pending()
    done = len(window.capture_ms) + len(window.recall_ms)
    lost = sum(window.acked.values()) - stored_turns(mem, list(window.acked))
    for error in window.errors[:3]:
        print(f"  error: {error}", file=sys.stderr)
    mem.augmentation.wait(timeout=None)  # the next rate starts without this one's backlog

    def p(samples: list[float], q: float) -> float:
        return pct(samples, q) if samples else float("nan")

    return {"rate": rate, "achieved": done / took, "errors": len(window.errors), "lost": lost,
            "backlog": backlog, "capture_p50": p(window.capture_ms, 0.5),
            "capture_p95": p(window.capture_ms, 0.95), "capture_p99": p(window.capture_ms, 0.99),
            "recall_p50": p(window.recall_ms, 0.5), "recall_p95": p(window.recall_ms, 0.95),
            "recall_p99": p(window.recall_ms, 0.99)}


def sustained(r: dict[str, float]) -> bool:
    return (r["errors"] == 0 and r["lost"] == 0 and r["achieved"] >= MIN_ACHIEVED * r["rate"]
            and r["recall_p99"] < MAX_RECALL_P99_MS)


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with postgres(PG_SERVER) as fresh:
        yield fresh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=None, help="database URL (default: a fresh PostgreSQL "
                    "database on 127.0.0.1:5432, dropped at the end)")
    ap.add_argument("--threads", type=int, default=8, help="threads, one entity each")
    ap.add_argument("--seconds", type=float, default=20, help="seconds per target rate")
    ap.add_argument("--rates", default="10,25,50,100", help="target requests/s, in order")
    ap.add_argument("--memories", type=int, default=200,
                    help="turns captured (and augmented) per entity before the first rate")
    ap.add_argument("--hash", action="store_true",
                    help="the HashEmbedder instead of the local model (a quick run)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with database(args.db) as url:
        mem = Memori(conn=url, embedder=HashEmbedder() if args.hash else None)
        try:
            mem.config.storage.build()
            t0 = time.perf_counter()
            fill(mem, args.threads, args.memories)
            print(f"{mem.engine.url.render_as_string()}: {args.threads} threads, "
                  f"{args.seconds:g} s per rate, embedder {mem.embedder.name}, "
                  f"{args.memories} memories per entity (filled in "
                  f"{time.perf_counter() - t0:.1f} s); latency in ms from the scheduled time")
            print(f"{'target/s':>8}{'achieved/s':>12}{'capture p50/p95/p99':>24}"
                  f"{'recall p50/p95/p99':>24}{'errors':>8}{'lost':>6}{'backlog':>9}")
            results = []
            for rate in rates:
                r = run_rate(mem, rate, args.threads, args.seconds)
                results.append(r)
                cap = f"{r['capture_p50']:.1f}/{r['capture_p95']:.1f}/{r['capture_p99']:.1f}"
                rec = f"{r['recall_p50']:.1f}/{r['recall_p95']:.1f}/{r['recall_p99']:.1f}"
                print(f"{rate:>8g}{r['achieved']:>12.1f}{cap:>24}{rec:>24}"
                      f"{r['errors']:>8}{r['lost']:>6}{r['backlog']:>9}", flush=True)
            best = max((r["rate"] for r in results if sustained(r)), default=None)
            print(f"highest rate sustained (0 errors, 0 lost turns, >= {MIN_ACHIEVED:.0%} of the "
                  f"target, recall p99 < {MAX_RECALL_P99_MS:g} ms): "
                  + (f"{best:g} requests/s" if best is not None else "none"))
        finally:
            mem.close()


if __name__ == "__main__":
    main()
