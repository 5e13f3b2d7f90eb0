"""Latency memori adds to an LLM call: the official ``openai`` client against a local
OpenAI-compatible server on 127.0.0.1 (a process of its own) that answers at once, raw and registered with
``mem.llm.register``, on SQLite and PostgreSQL.

Prints, per database, the p50 of a raw call, of a wrapped call with recall off (capture only)
and on (recall + injection + capture), the p50 of ``mem.recall`` alone, and the differences,
next to the targets: <= 2 ms added with recall off; with recall on, <= the recall p50 + 2 ms.
Raw calls, wrapped calls and plain recalls alternate in one loop, so drift on a shared machine
hits them alike, and a plain recall runs where the wrapper's does: right after an HTTP call.
(Measured here, a recall timed in a tight loop of its own ran up to 2x faster than the same
recall right after a socket wait, which would charge that difference to the wrapper.)

    python benchmarks/capture_overhead.py [--calls 300] [--memories 500]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres | --pg none]

The embedder is memori's deterministic HashEmbedder (no model load, so the figures are memori's
own work; with the local model, recall p50 grows by the query embedding and so does the
"recall on" row) and no augmentation workers run (the queued jobs wait in the database), so
the timings are the call path alone.
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openai import OpenAI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from memori_core import Memori
from memori_core.testing import HashEmbedder

QUESTION = "What does the user like to eat for breakfast on topic 7?"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint
    disable_nagle_algorithm = True  # headers and body leave at once: no delayed-ACK stall

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        data = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                           "model": body["model"], "choices": [{
                               "index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "Porridge."}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                     "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def local_server() -> Iterator[str]:
    """The server in a process of its own, as a real endpoint is: in this process its thread
    would compete with the timed client for the GIL after every response."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def serve() -> None:
    """Answer on a free port of 127.0.0.1 until terminated; print the port first."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    print(server.server_port, flush=True)
    server.serve_forever()


@contextmanager
def postgres(server_url: str) -> Iterator[str]:
    name = f"memori_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(url: str, base_url: str, calls: int, memories: int) -> dict[str, float]:
    mem = Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0)
    mem.config.storage.build()
    try:
        mem.attribution(entity_id="bench-user", process_id="bench")
        for i in range(memories):
            mem.remember(f"The user likes item {i} for breakfast on topic {i % 50}")
        raw = OpenAI(base_url=base_url, api_key="local", max_retries=0)
        wrapped = OpenAI(base_url=base_url, api_key="local", max_retries=0)
        messages: Any = [{"role": "user", "content": QUESTION}]

        def ask(client: OpenAI) -> Callable[[], Any]:
            return lambda: client.chat.completions.create(model="local", messages=messages)

        out: dict[str, float] = {}
        for recall in (False, True):
            mem.llm.register(wrapped, recall=recall)
            for _ in range(30):  # warm-up: connections, caches, the recall index
                ask(raw)()
                ask(wrapped)()
            raw_t, wrapped_t, recall_t = [], [], []
            for _ in range(calls):
                raw_t.append(timed(ask(raw)))
                if recall:
                    recall_t.append(timed(lambda: mem.recall(QUESTION)))
                wrapped_t.append(timed(ask(wrapped)))
            key = "on" if recall else "off"
            out[f"raw_{key}"] = p50_ms(raw_t)
            out[f"wrapped_{key}"] = p50_ms(wrapped_t)
            if recall:
                out["recall"] = p50_ms(recall_t)
            mem.llm.unregister(wrapped)
        out["hits"] = float(len(mem.recall(QUESTION)))
        stats = mem.llm.stats()
        assert stats["recall_errors"] == stats["capture_errors"] == 0, stats
        assert stats["injected"] == calls + 30, stats  # recall on: every call carried memories
        return out
    finally:
        mem.close()


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per variant")
    parser.add_argument("--memories", type=int, default=500, help="memories of the entity")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server URL (a scratch database is made), or 'none'")
    args = parser.parse_args()
    print(f"{args.calls} calls per variant, {args.memories} memories, HashEmbedder, "
          "no augmentation workers; times are p50 in ms")
    print(f"{'database':<11}{'raw':>7}{'recall off':>12}{'added':>8}{'target':>8}   "
          f"{'recall':>7}{'recall on':>11}{'added':>8}{'target':>8}")
    with local_server() as base_url, tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", lambda: _const(f"sqlite:///{Path(tmp) / 'bench.db'}"))]
        if args.pg != "none":
            targets.append(("postgresql", lambda: postgres(args.pg)))
        for name, database in targets:
            with database() as url:
                r = bench(url, base_url, args.calls, args.memories)
            added_off = r["wrapped_off"] - r["raw_off"]
            added_on = r["wrapped_on"] - r["raw_on"]
            ok_off = "ok" if added_off <= 2.0 else "MISSED"
            ok_on = "ok" if added_on <= r["recall"] + 2.0 else "MISSED"
            print(f"{name:<11}{r['raw_off']:>7.2f}{r['wrapped_off']:>12.2f}{added_off:>8.2f}"
                  f"{'<=2.00':>8} {ok_off:<2}{r['recall']:>7.2f}{r['wrapped_on']:>11.2f}"
                  f"{added_on:>8.2f}{'<=' + format(r['recall'] + 2, '.2f'):>8} {ok_on}")


@contextmanager
def _const(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
