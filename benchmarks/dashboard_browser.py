"""The dashboard's figures in a real browser (headless Debian Chromium, Playwright for Python)
against a real ``memori serve`` on 127.0.0.1 (SQLite file, the test embedder), issue 20:

  - an entity with ``--memories`` memories (10,000): the memories page's first page and a text
    search (``q``), each from the route's start to its table built (API request included);
  - a knowledge graph of ``--triples`` triples (2,000): time to draw (fetch every page of
    triples, build, lay out, first frame), real mouse input while panning (drags) and zooming
    (wheel): input event to the frame cytoscape drew, the longest gap between animation
    frames, and a click on the busiest node until its triples and source memories are listed.

The data goes in through ``POST /v1/import`` (an export built by
``tests/dashboard/dashboard_support.big_export``). Each figure is the median of ``--repeat``
runs (max in brackets). Nothing is asserted: it prints.

    python benchmarks/dashboard_browser.py [--memories 10000] [--triples 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
for folder in (TESTS, TESTS / "server", TESTS / "dashboard"):
    sys.path.insert(0, str(folder))

from dashboard_support import (  # noqa: E402
    Tab,
    big_export,
    launch,
    measure_graph,
    sign_in,
    timed_render,
)
from memori_server_support import NO_LIMIT, start_server  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ms  (max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--triples", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="memori-dashboard-bench-"))
    srv = start_server(f"sqlite:///{folder / 'bench.db'}", *NO_LIMIT)
    try:
        c = srv.client(srv.admin)
        t0 = time.perf_counter()
        r = c.post("/v1/import", json={"data": big_export("big", args.triples,
                                                          args.memories)}, timeout=600)
        r.raise_for_status()
        print(f"imported {args.memories} memories and {args.triples} triples in "
              f"{time.perf_counter() - t0:.1f} s (POST /v1/import)")
        figures: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            figures.setdefault(name, []).append(value)

        with sync_playwright() as pw:
            browser = launch(pw)
            print(f"browser: {browser.browser_type.name} {browser.version} (headless)")
            tab = Tab(browser, srv.url)
            sign_in(tab, srv.admin)
            for _ in range(args.repeat):
                tab.go("/")
                add("memories: first page (50 rows)", timed_render(tab, lambda: tab.go(
                    "/e/big/memories")))
                tab.page.get_by_label("Text contains").fill("topic 42 ")
                add("memories: search q='topic 42 '", timed_render(
                    tab, lambda: tab.page.get_by_role("button", name="Filter").click()))
                tab.go("/")
                g = measure_graph(tab, "/e/big/graph")
                add(f"graph: drawn ({g['nodes']} nodes, {g['edges']} edges)", g["draw_ms"])
                add("graph:   of which fetch (all pages of triples)", g["fetch_ms"])
                add("graph:   of which build + layout", g["layout_ms"])
                add("graph: pan/zoom input -> frame, p50", g["input_p50_ms"])
                add("graph: pan/zoom input -> frame, max", g["input_max_ms"])
                add("graph: longest frame gap while panning/zooming", g["frame_gap_max_ms"])
                add("graph: click a node -> its triples and memories listed", g["click_ms"])
            errors = tab.errors + tab.csp_violations()
            tab.close()
            browser.close()
        width = max(map(len, figures))
        print(f"dashboard in the browser, median of {args.repeat} runs:")
        for name, values in figures.items():
            print(f"  {name:<{width}}  {_fmt(values)}")
        print(f"console errors, CSP violations: {len(errors)}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
