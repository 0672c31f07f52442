"""The panel in Chromium on the 100k library (50k LoRAs): first cards, a search keystroke, scrolling.

* first cards: a fresh browser context opens ``/?tab=loras``; time from navigation start until
  the first card is in the DOM and a frame has been painted (list request, JSON parse, sort, draw);
* search keystroke: one character typed into the search box (a second after the first cards)
  until the next painted frame; the worst of six keystrokes (narrowing, then widening) per round;
* scroll to the end: 150 frames of half-a-screen jumps (a very fast drag), then a jump to the end;
  the 95th percentile of frame times and the main-thread long tasks (over 50 ms, a stutter);
* the largest number of cards in the DOM seen at any frame of that scroll.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys

from bench.common import Context, Row, Server, library

SLOW = True
LIBRARY = 100_000
LORAS = LIBRARY // 2
# same flags as tests/panel_support.py: headless on a machine without a GPU or a sandbox
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

FIRST_CARD = """() => {
  window.__firstCards = null;
  const seen = () => {
    if (window.__firstCards === null && document.querySelector('#items [data-key]')) {
      window.__firstCards = 0;
      requestAnimationFrame(() => { window.__firstCards = performance.now(); });
    }
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
}"""

KEYSTROKE = """async (text) => {
  const input = document.getElementById('search');
  const start = performance.now();
  input.value = text;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  return performance.now() - start;
}"""

SCROLL = """async () => {
  const box = document.getElementById('items');
  box.scrollTop = 0;
  const frames = [];
  let most = 0;
  let last = await new Promise((done) => requestAnimationFrame(done));
  const long = [];
  const watch = new PerformanceObserver((list) => long.push(...list.getEntries()));
  watch.observe({ type: 'longtask' });
  for (let i = 0; i <= 150; i += 1) {
    box.scrollTop = i === 150 ? box.scrollHeight : box.scrollTop + box.clientHeight / 2;
    const now = await new Promise((done) => requestAnimationFrame(done));
    frames.push(now - last);
    last = now;
    most = Math.max(most, box.querySelectorAll('[data-key]').length);
  }
  await new Promise((done) => requestAnimationFrame(done));
  long.push(...watch.takeRecords());
  watch.disconnect();
  const cards = [...box.querySelectorAll('[data-key]')].map((e) => e.dataset.name);
  return { frames, most, long: long.length, last: cards[cards.length - 1] };
}"""


def _chromium():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, None
    return executable, sync_playwright


def _round(browser, url: str, last_name: str) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.add_init_script(f"({FIRST_CARD})()")
        page.goto(f"{url}/?tab=loras")
        page.wait_for_function("() => window.__firstCards > 0")
        first = page.evaluate("window.__firstCards") / 1000
        page.wait_for_function("() => !document.querySelector('.lib-status.loading')")
        page.wait_for_timeout(1000)  # a user's move to the search box (the panel prepares meanwhile)
        keys = [page.evaluate(KEYSTROKE, text) / 1000 for text in ("1", "12", "123", "12", "1", "")]
        scroll = page.evaluate(SCROLL)
        assert scroll["last"] == last_name, scroll["last"]
        frames = sorted(scroll["frames"])
        return {"first": first, "key": max(keys),
                "p95": frames[int(len(frames) * 0.95) - 1] / 1000,
                "long": scroll["long"], "most": scroll["most"]}
    finally:
        context.close()


def run(ctx: Context) -> list[Row]:
    executable, sync_playwright = _chromium()
    if not executable or not sync_playwright:
        print("[bench] case_panel: skipped (no chromium or playwright)", file=sys.stderr)
        return []
    data = library(ctx, LIBRARY)
    results = []
    with Server(data) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            models = json.loads(server.get("/api/models?type=loras")[1])["models"]
            assert len(models) == LORAS
            url = f"http://127.0.0.1:{server.port}"
            # sorted by name (ASCII names: the panel's collator agrees): the card seen at the end
            last = max(models, key=lambda m: m["name"].lower())["name"]
            for _ in range(ctx.rounds):
                results.append(_round(browser, url, last))
        finally:
            browser.close()
    pick = lambda key: [r[key] for r in results]  # noqa: E731
    note = f"{LORAS // 1000}k cards, median frame p95 {statistics.median(pick('p95')) * 1000:.0f} ms"
    return [
        Row("panel, 50k LoRA tab: first cards shown", pick("first"), "ms", "<=", 1.5),
        Row("panel, 50k LoRA tab: search keystroke to painted frame (worst of 6)", pick("key"), "ms",
            "<=", 0.100),
        Row("panel, 50k LoRA tab: scroll to end, frame time p95", pick("p95"), "ms", "<=", 0.050,
            note=note),
        Row("panel, 50k LoRA tab: scroll to end, main-thread tasks over 50 ms", pick("long"), "tasks",
            "<=", 0),
        Row("panel, 50k LoRA tab: most cards in the DOM while scrolling", pick("most"), "cards", "<=",
            300),
    ]
