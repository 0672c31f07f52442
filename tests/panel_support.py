"""Browser tests of the web panel: a real waitress server, real files, a real headless Chromium.

Imported by the ``test_panel*.py`` modules (``from panel_support import ...``), which re-export
the fixtures they use. Nothing here mocks project code: data is seeded through the HTTP API (the
app's test client, same app and database as the served one) or real files on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.server import start_server
from hikaze_manager.state import get_state

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_executable() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def browser_unavailable(reason: str):
    """Skip, or fail when the environment demands a browser (CI sets HIKAZE_REQUIRE_BROWSER=1)."""
    if os.environ.get("HIKAZE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (HIKAZE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module."""
    executable = chromium_executable()
    if not executable:
        browser_unavailable("Chromium not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        browser_unavailable("playwright not installed")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def png_bytes(size=(96, 128), color=(200, 60, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


class Panel:
    """The served app with model folders in ``tmp_path`` and seeding helpers."""

    def __init__(self, tmp_path: Path, allowed_origins=(), **config):
        self.root = tmp_path / "models"
        for folder in ("checkpoints", "loras"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.app = create_app({
            "TESTING": True,
            "DATA_DIR": str(tmp_path / "data"),
            "ALLOWED_ORIGINS": list(allowed_origins),
            "MODEL_TYPES": {
                "checkpoints": {"roots": [str(self.root / "checkpoints")]},
                "loras": {"roots": [str(self.root / "loras")]},
            },
            "LEGACY_SEARCH_DIRS": [str(tmp_path / "no-legacy-here")],
            **config,
        })
        self.client = self.app.test_client()
        self.handle = start_server(self.app, "127.0.0.1", 0)
        self.url = self.handle.url.rstrip("/")
        self.origin = self.url

    def stop(self):
        self.handle.stop()
        jobs = get_state(self.app).jobs
        for job in jobs.list():
            jobs.cancel(job.id)
            jobs.wait(job.id, timeout=30)

    # -- HTTP helpers (through the app: same database and files as the served one) --
    def get(self, path):
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.get_data())
        return response.get_json()

    def send(self, method, path, body=None, expect=(200,)):
        response = self.client.open(path, method=method, json=body)
        assert response.status_code in expect, (path, response.status_code, response.get_data())
        return response.get_json()

    # -- seeding --
    def write_model(self, folder: str, name: str, content: bytes | None = None) -> tuple[Path, str]:
        path = self.root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content if content is not None else os.urandom(2048) + name.encode()
        path.write_bytes(data)
        return path, hashlib.sha256(data).hexdigest()

    def scan(self) -> dict:
        return self.send("POST", "/api/scan", {})

    def promote_all(self) -> dict:
        """Scan, then import every pending model (the way a user fills the library)."""
        self.scan()
        ids = [p["id"] for p in self.get("/api/migration/pending_models")["models"]]
        if not ids:
            return {}
        return self.send("POST", "/api/migration/import_models", {"id": ids}, expect=(207,))

    def tag_ids(self, *names: str) -> list[int]:
        return [t["id"] for t in self.send("POST", "/api/tags_add", {"newtags": list(names)})["tags"]]

    def set_model(self, sha: str, **changes) -> dict:
        tags = changes.pop("tags", None)
        if tags is not None:
            changes["tags"] = self.tag_ids(*tags) if tags else []
        return self.send("PATCH", f"/api/models/{sha}", changes)

    def upload_image(self, sha: str, color=(200, 60, 40)) -> dict:
        response = self.client.post("/api/images/upload", data={
            "sha256": sha, "image": (io.BytesIO(png_bytes(color=color)), "pic.png")})
        assert response.status_code == 200, response.get_data()
        return response.get_json()

    def model(self, sha: str) -> dict:
        return self.get(f"/api/models/{sha}")


def read_only_panel(tmp_path: Path, seed=None, **kwargs) -> Panel:
    """A panel whose library opens read-only: its database claims a newer schema version.
    ``seed(panel)`` fills the library first, while it is still writable."""
    first = Panel(tmp_path, **kwargs)
    try:
        if seed:
            seed(first)
    finally:
        first.stop()
    db = sqlite3.connect(first.app.config["DATABASE"])
    try:
        db.execute("PRAGMA user_version = 999")
        db.commit()
    finally:
        db.close()
    server = Panel(tmp_path, **kwargs)
    assert server.get("/api/panel/config")["read_only_reason"], "expected a read-only library"
    return server


class ParentSite:
    """A stand-in for the ComfyUI page: a real HTTP server on another loopback port (another
    origin), serving ``self.html`` for every GET. Chromium refuses to let a page whose address it
    cannot place on the local network frame a loopback page, so a routed fake would not do."""

    def __init__(self):
        site = self
        self.html = "<!doctype html><title>parent</title>"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def parent_site():
    site = ParentSite()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
def panel(tmp_path, parent_site):
    """The served app; ``parent_site`` is its allowed ComfyUI origin."""
    server = Panel(tmp_path, allowed_origins=[parent_site.origin])
    try:
        yield server
    finally:
        server.stop()


class PageErrors(list):
    """Console errors and uncaught exceptions of a page."""

    def attach(self, page):
        page.on("console", lambda msg: self.append(f"console: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.append(f"pageerror: {exc}"))


def keep_local(route):
    """Only loopback traffic is allowed: the browser never reaches the internet."""
    host = urlsplit(route.request.url).hostname
    if host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def page_errors():
    return PageErrors()


@pytest.fixture
def page(browser, page_errors):
    """A fresh context and page; fails the test on any console error or page exception."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    context.route("**/*", keep_local)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    page_errors.attach(pg)
    try:
        yield pg
    finally:
        context.close()
    assert list(page_errors) == [], page_errors


def open_panel(page, panel, query: str = ""):
    """Load the panel and wait until the tabs and the first list are there."""
    page.goto(f"{panel.url}/{query}")
    page.wait_for_selector(".tab.active")
    page.wait_for_function("() => !document.querySelector('.lib-status.loading')")
    return page


def card_names(page) -> list[str]:
    return page.eval_on_selector_all("#items [data-key]", "els => els.map(e => e.dataset.name)")


def dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def scroll_items(page, top="end") -> int:
    """Scroll ``#items`` to ``top`` pixels (or to its end) and wait until the rows there are drawn;
    returns the scroll position. Only the rows on screen are in the DOM (static/js/vgrid.js)."""
    where = page.evaluate("""(top) => {
      const box = document.getElementById('items');
      box.scrollTop = top === 'end' ? box.scrollHeight : top;
      return box.scrollTop;
    }""", top)
    # the window follows on the next animation frame; two frames and it is drawn
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return where


def drawn_count(page) -> int:
    return page.locator("#items [data-key]").count()


# A card well inside the visible part of #items, tagged so we can tell if it gets rebuilt.
MARK_VISIBLE_CARD = """() => {
  const box = document.getElementById('items');
  const view = box.getBoundingClientRect();
  const cards = [...box.querySelectorAll('[data-key]')].filter((c) => {
    const r = c.getBoundingClientRect();
    return r.top > view.top && r.bottom < view.bottom;
  });
  const card = cards[Math.floor(cards.length / 2)];
  card.__original = true;
  return {name: card.dataset.name, top: card.getBoundingClientRect().top, scroll: box.scrollTop};
}"""
