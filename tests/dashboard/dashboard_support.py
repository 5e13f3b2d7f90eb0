"""Support of the dashboard's browser tests (and ``benchmarks/dashboard_browser.py``): headless
Debian Chromium driven by Playwright for Python, against a real ``memori serve``.

- ``chromium()``: the browser's path (``/usr/bin/chromium``, or ``MEMORI_CHROMIUM``); a missing
  browser FAILS the test with the command that installs it (tests never skip).
- ``launch(playwright)``: Chromium headless with the flags of a clean, offline run; Playwright's
  launch gives it a fresh user-data-dir. Never ``playwright install``: Debian's build is used.
- ``Tab``: one page of a fresh browser context (its own cookies) that records every console
  error and warning, page error, CSP violation and dialog, and waits for the dashboard's
  renders (``window.__memoriRendered``) instead of sleeping.
- ``artifacts(tmp_path_factory)``: where screenshots go (``MEMORI_ARTIFACTS`` or pytest's tmp).
- ``big_export(entity, triples, memories)``: an export (``POST /v1/import``) of one entity with
  that many memories and triples, for the performance figures.
- ``measure_graph(tab, route)``: the graph page's figures, measured in the browser;
  ``timed_render(tab, action)``: how long a route took to render.
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright

__all__ = ["ARGS", "LOW_CONTRAST", "Tab", "artifacts", "big_export", "chromium", "launch",
           "measure_graph", "sign_in", "timed_render"]

#: Chromium's flags: headless, no sandbox (root in CI containers), nothing fetched in the
#: background, no QUIC
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: records Content-Security-Policy violations (besides the console error Chromium logs)
_CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


#: in the page: every visible text whose colour has a contrast ratio under 4.5:1 against the
#: background it is drawn on (WCAG 2 relative luminance), as [tag, class, text, ratio]
LOW_CONTRAST = """
() => {
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const rgba = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    return m ? m[1].split(',').map(parseFloat) : null;
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && (c.length < 4 || c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    if (el.getClientRects().length === 0 || style.visibility === 'hidden') continue;
    const a = lum(rgba(style.color).slice(0, 3));
    const b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) {
      low.push([el.tagName, el.className, walker.currentNode.textContent.trim().slice(0, 40),
        ratio.toFixed(2)]);
    }
  }
  return low;
}
"""


def chromium() -> str:
    """The path of Debian's Chromium (``MEMORI_CHROMIUM`` overrides ``/usr/bin/chromium``).

    Raises:
        pytest.fail.Exception: it is missing; the message names the apt-get command.
    """
    path = os.environ.get("MEMORI_CHROMIUM", "/usr/bin/chromium")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"Chromium is missing at {path}: install Debian's build with `apt-get "
                    "install -y --no-install-recommends chromium` (.ci/run does), or point "
                    "MEMORI_CHROMIUM at one; the dashboard tests never skip", pytrace=False)
    return path


def launch(playwright: Playwright) -> Browser:
    """Headless Chromium (``chromium()``) with ``ARGS`` and a fresh user-data-dir."""
    return playwright.chromium.launch(executable_path=chromium(), headless=True, args=ARGS)


def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory screenshots are written to: ``$MEMORI_ARTIFACTS/dashboard`` or a pytest
    tmp directory (its path is printed)."""
    root = os.environ.get("MEMORI_ARTIFACTS")
    path = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("dashboard-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {path}")
    return path


class Tab:
    """A page in a fresh browser context (its own cookies and storage) on ``base_url``.

    ``errors`` holds console errors and warnings, uncaught page errors and CSP violations;
    ``dialogs`` every alert/confirm/prompt the page opened (each is dismissed).
    """

    def __init__(self, browser: Browser, base_url: str, shots: Path | None = None) -> None:
        self.base_url = base_url
        self.shots = shots
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1280,
                                                                         "height": 900})
        self.context.add_init_script(_CSP_PROBE)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("dialog", self._dialog)
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def renders(self) -> int:
        """How many times the dashboard has finished rendering a route in this page."""
        return int(self.page.evaluate("() => window.__memoriRendered || 0"))

    def after_render(self, action: Callable[[], object], timeout_ms: float = 30_000) -> None:
        """Do ``action`` (a click, a hash change) and wait until the dashboard has rendered
        the route it leads to."""
        before = self.renders()
        action()
        self.page.wait_for_function("n => (window.__memoriRendered || 0) > n", arg=before,
                                    timeout=timeout_ms)

    def open(self, route: str = "/") -> None:
        """Load the dashboard at hash ``route`` (e.g. ``/e/ann/memories``), rendered."""
        self.page.goto(f"{self.base_url}/#{route}")
        self.page.wait_for_function("() => (window.__memoriRendered || 0) > 0")

    def reload(self) -> None:
        """Reload the page (its render count starts again), rendered."""
        self.page.reload()
        self.page.wait_for_function("() => (window.__memoriRendered || 0) > 0")

    def go(self, route: str) -> None:
        """Move to hash ``route`` within the loaded page, rendered (nothing when it is
        there already: the same hash renders nothing again)."""
        if self.page.evaluate("() => window.location.hash") == f"#{route}":
            return
        self.after_render(lambda: self.page.evaluate("r => { window.location.hash = r; }",
                                                     route))

    def shot(self, name: str) -> Path | None:
        """A full-page screenshot ``<name>.png`` into the artifacts directory."""
        if self.shots is None:
            return None
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        return list(self.page.evaluate("() => window.__cspViolations || []"))

    def assert_clean(self, allowed: Callable[[str], bool] = lambda _: False) -> None:
        """No console error or warning (but those ``allowed`` accepts), no page error, no
        CSP violation, no dialog, and no request but to this server's page, its built files,
        its sign-in and its ``/v1`` API (nothing from a CDN)."""
        elsewhere = [u for u in self.requests if not u.startswith(("blob:", "data:")) and not (
            u == f"{self.base_url}/" or u.startswith(f"{self.base_url}/#") or any(
                u.startswith(f"{self.base_url}{p}") for p in ("/static/", "/ui/", "/v1/")))]
        assert elsewhere == [], elsewhere
        errors = [e for e in self.errors if not allowed(e)]
        assert errors == [], errors
        assert self.csp_violations() == []
        assert self.dialogs == []

    def close(self) -> None:
        self.context.close()


def sign_in(tab: Tab, key: str) -> None:
    """Load the dashboard and sign in with ``key`` through its form (the entities page
    renders)."""
    tab.open("/")
    tab.page.get_by_label("API key").fill(key)
    tab.after_render(lambda: tab.page.get_by_role("button", name="Sign in").click())
    tab.page.wait_for_selector("#sign-out")


def big_export(entity: str, triples: int, memories: int) -> dict[str, Any]:
    """An export (``GET /v1/export``'s format) of ``entity`` with ``memories`` fact memories
    (one per day back from today, embedded on import) and ``triples`` distinct triples over
    about ``triples // 3`` nodes, each pointing at one of the memories."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    mems = [{"id": i + 1, "process_id": "bench", "kind": "fact",
             "content": f"Fact number {i} about topic {i % 97} of the user",
             "created_at": (now - timedelta(minutes=i)).isoformat(),
             "source_message_ids": []} for i in range(memories)]
    nodes = max(3, triples // 3)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    i = 0
    while len(rows) < triples:
        s, o = f"thing {i % nodes}", f"thing {(i * 7 + 1 + i // nodes) % nodes}"
        p = f"rel_{i % 11}"
        if s != o and (s, p, o) not in seen:
            seen.add((s, p, o))
            rows.append({"process_id": "bench", "subject": s, "predicate": p, "object": o,
                         "memory_id": (i % memories) + 1 if memories else None,
                         "created_at": now.isoformat()})
        i += 1
    return {"format": "memori.export", "version": 1, "exported_at": now.isoformat(),
            "entity_id": entity, "process_id": None, "embedding_model": None,
            "dimension": None, "sessions": [], "memories": mems, "triples": rows,
            "process_attributes": [], "jobs": []}


#: in the page: input-to-frame latencies of real pointer and wheel input on the graph, and the
#: longest gap between animation frames while it lasts
_INPUT_PROBE = """
() => {
  const cy = window.__memoriGraph;
  const box = cy.container();
  const probe = { inputs: [], latencies: [], frames: [] };
  const onInput = (e) => { probe.pending = performance.now(); };
  for (const type of ['wheel', 'mousedown', 'mousemove', 'mouseup']) {
    box.addEventListener(type, onInput, { capture: true, passive: true });
  }
  cy.on('render', () => {
    if (probe.pending !== undefined) {
      probe.latencies.push(performance.now() - probe.pending);
      probe.pending = undefined;
    }
  });
  const tick = (t) => { probe.frames.push(t); if (!probe.stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.__memoriProbe = probe;
  return true;
}
"""


def measure_graph(tab: Tab, route: str) -> dict[str, float]:
    """Open the graph page at hash ``route`` and measure it in the browser (milliseconds):
    ``draw_ms`` (route start to the first frame cytoscape rendered: fetching every triple,
    building the graph, the layout, the first paint), then real mouse input (drags to pan,
    wheel turns to zoom): ``input_p50_ms`` / ``input_max_ms`` (an input event to the next
    frame cytoscape drew), ``frame_gap_max_ms`` (longest time between animation frames
    while it lasts), and ``click_ms`` (a click on the busiest node until its triples and
    source memories are listed in the side panel, timed from cytoscape's tap event)."""
    page = tab.page
    tab.go(route)
    page.wait_for_function("() => window.__memoriGraphTimings && "
                           "window.__memoriGraphTimings.first_render_ms !== undefined")
    timings = page.evaluate("() => window.__memoriGraphTimings")
    page.evaluate(_INPUT_PROBE)
    box = page.locator("#graph").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for k in range(6):  # pan: drag from near a corner (empty canvas pans the view)
        page.mouse.move(box["x"] + 12, box["y"] + 12 + k)
        page.mouse.down()
        for step in range(1, 11):
            page.mouse.move(box["x"] + 12 + step * 15, box["y"] + 12 + k + step * 6)
        page.mouse.up()
    page.mouse.move(cx, cy)
    for k in range(12):  # zoom: wheel turns in and out
        page.mouse.wheel(0, -120 if k % 2 == 0 else 120)
        page.wait_for_function("() => window.__memoriProbe.pending === undefined",
                               timeout=10_000)
    probe = page.evaluate("() => { const p = window.__memoriProbe; p.stop = true; return p; }")
    frames = probe["frames"]
    gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
    # click the node with the most triples, where cytoscape draws it now
    x, y = page.evaluate(
        "() => { const cy = window.__memoriGraph; const n = cy.nodes().max(v => v.degree()).ele;"
        " cy.center(n); const p = n.renderedPosition(); return [p.x, p.y]; }")
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#node-panel[data-loaded='true']")
    click_ms = page.evaluate("() => window.__memoriGraphTimings.click_ms")
    latencies = probe["latencies"] or [0.0]
    return {"nodes": timings["nodes"], "edges": timings["edges"],
            "draw_ms": timings["first_render_ms"], "fetch_ms": timings["fetch_ms"],
            "layout_ms": timings["layout_ms"],
            "input_events": len(probe["latencies"]),
            "input_p50_ms": statistics.median(latencies), "input_max_ms": max(latencies),
            "frame_gap_max_ms": max(gaps) if gaps else 0.0, "click_ms": click_ms}


def timed_render(tab: Tab, action: Callable[[], object]) -> float:
    """Milliseconds (the page's clock) from just before ``action`` (a hash change, a click)
    until the dashboard finished rendering the route it leads to: its API requests and the
    DOM built; the page is painted at the next frame."""
    tab.page.evaluate("() => { window.__memoriT0 = performance.now(); }")
    tab.after_render(action)
    return float(tab.page.evaluate("() => window.__memoriRenderedAt - window.__memoriT0"))


def copy_shot(src: Path | None, dest: Path) -> None:
    """Copy a screenshot into the repository (docs/img) when it exists."""
    if src is not None and src.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
