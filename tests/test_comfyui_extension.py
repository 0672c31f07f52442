"""The ComfyUI-side extension (static/comfyui/hikaze_nodes.js) in a real headless Chromium.

A fake ComfyUI page (tests/comfyui_harness: ComfyUI's app/api shims and a few lines of LiteGraph,
which is ComfyUI's, not ours) loads the real extension file from a tiny HTTP server on one loopback
port; the real Hikaze server runs on another, so the overlay's iframe is cross-origin exactly as
inside ComfyUI. Node definitions come from the real comfy_node classes.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, parse_qs

import pytest

import comfy_node
from panel_support import CHROMIUM_ARGS, browser_unavailable, chromium_executable
from hikaze_manager import create_app
from hikaze_manager.db import connection
from hikaze_manager.server import start_server

PROJECT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "comfyui_harness"
WEB_DIR = (PROJECT / comfy_node.WEB_DIRECTORY).resolve()
CKPT_BUTTON = "Select checkpoint…"
LORA_BUTTON = "Select LoRAs…"
FRAME = "iframe.hikaze-select-frame"
BACKDROP = ".hikaze-select-backdrop"
STATUS = ".hikaze-select-status"
DEFAULT_CKPT = '{"ckpt_path": ""}'

CKPT_SHA = "a" * 64
LORA_A_SHA = "b" * 64
LORA_B_SHA = "c" * 64


# ------------------------------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="module")
def browser():
    executable = chromium_executable()
    if not executable:
        browser_unavailable("Chromium not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        browser_unavailable("playwright not installed")
    with sync_playwright() as p:
        # A non-loopback name for the ComfyUI page (still served from loopback).
        args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP comfy.test 127.0.0.1"]
        browser = p.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            browser.close()


# ------------------------------------------------------------------------------------------------
# The real Hikaze server


@pytest.fixture(scope="module")
def comfy():
    """The fake ComfyUI origin (started first: the Hikaze server must know its origin)."""
    server = FakeComfyUI()
    yield server
    server.close()


@pytest.fixture(scope="module")
def comfy6():
    """The same fake ComfyUI, opened at its IPv6 loopback origin ``http://[::1]:PORT``."""
    server = FakeComfyUI("::1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def hikaze(tmp_path_factory, comfy, comfy6):
    root = tmp_path_factory.mktemp("hikaze")
    models = root / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "loras").mkdir(parents=True)
    app = create_app({
        "TESTING": True,
        "DATA_DIR": str(root / "data"),
        "MODEL_TYPES": {"checkpoints": {"roots": [str(models / "checkpoints")]},
                        "loras": {"roots": [str(models / "loras")]}},
        "ALLOWED_ORIGINS": [comfy.origin, f"http://localhost:{comfy.port}", comfy6.origin],
    })
    seeded = {
        "ckpt": (CKPT_SHA, models / "checkpoints" / "dream_v1.safetensors", "Dream Shaper Test",
                 "checkpoints"),
        "lora_a": (LORA_A_SHA, models / "loras" / "ink_style.safetensors", "Ink Style Test", "loras"),
        "lora_b": (LORA_B_SHA, models / "loras" / "sub" / "glow.safetensors", "Glow Test", "loras"),
    }
    with connection(app.config["DATABASE"]) as conn:
        for sha, path, name, type_ in seeded.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not really a model " + sha.encode())
            conn.execute(
                "INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sha, str(path), name, type_, path.stat().st_size, 1700000000000, None))
    handle = start_server(app, "127.0.0.1", 0)
    handle.seeded = {key: (sha, str(path), name) for key, (sha, path, name, _) in seeded.items()}
    handle.origin = f"http://127.0.0.1:{handle.port}"
    comfy.hikaze_port = comfy6.hikaze_port = handle.port
    yield handle
    handle.stop()


# ------------------------------------------------------------------------------------------------
# The fake ComfyUI server


def _object_info() -> dict:
    """Node definitions as ComfyUI's /object_info gives them, from the real node classes."""
    info = {}
    for name, cls in comfy_node.NODE_CLASS_MAPPINGS.items():
        info[name] = {"name": name, "display_name": comfy_node.NODE_DISPLAY_NAME_MAPPINGS[name],
                      "input": json.loads(json.dumps(cls.INPUT_TYPES())),
                      "output": list(cls.RETURN_TYPES), "category": cls.CATEGORY}
    # A node of somebody else, with a multiline STRING too: it must get no button.
    info["OtherNode"] = {"name": "OtherNode", "display_name": "Other",
                         "input": {"required": {"text": ["STRING", {"multiline": True, "default": ""}]}},
                         "output": [], "category": "other"}
    return info


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class FakeComfyUI:
    """ComfyUI's page, its frontend shims, its /extensions listing and the Hikaze sniffer route."""

    def __init__(self, host="127.0.0.1"):
        self.hikaze_port = 0
        self.sniffer = None  # callable(n) -> (status, body) for the n-th request; None = real port
        self.sniffer_requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.handle(self)

        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def reset(self):
        with self._lock:
            self.sniffer = None
            self.sniffer_requests = 0

    def handle(self, request: BaseHTTPRequestHandler):
        path = urlsplit(request.path).path
        if path == "/api/hikaze/sniffer_port":
            with self._lock:
                self.sniffer_requests += 1
                count = self.sniffer_requests
                sniffer = self.sniffer
            status, body = sniffer(count) if sniffer else (200, {"port": self.hikaze_port})
            return self.send(request, status, json.dumps(body).encode(), "application/json")
        if path == "/api/object_info":
            return self.send(request, 200, json.dumps(_object_info()).encode(), "application/json")
        if path == "/api/extensions":
            # ComfyUI lists every .js under WEB_DIRECTORY, at /extensions/<package folder>/...
            listed = sorted(f"/extensions/hikaze/{p.relative_to(WEB_DIR).as_posix()}"
                            for p in WEB_DIR.rglob("*.js"))
            return self.send(request, 200, json.dumps(listed).encode(), "application/json")
        if path.startswith("/extensions/hikaze/"):
            file = (WEB_DIR / path[len("/extensions/hikaze/"):]).resolve()
            if WEB_DIR in file.parents and file.is_file():
                return self.send(request, 200, file.read_bytes(), "text/javascript")
            return self.send(request, 404, b"not found", "text/plain")
        files = {"/": "index.html", "/harness.js": "harness.js", "/other.html": "other.html",
                 "/scripts/app.js": "scripts/app.js", "/scripts/api.js": "scripts/api.js"}
        if path in files:
            name = files[path]
            kind = "text/html" if name.endswith(".html") else "text/javascript"
            return self.send(request, 200, (HARNESS / name).read_bytes(), kind)
        return self.send(request, 404, b"not found", "text/plain")

    @staticmethod
    def send(request, status, body, content_type):
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(body)


# ------------------------------------------------------------------------------------------------
# Page helpers


@pytest.fixture
def page(browser, comfy, hikaze):
    comfy.reset()
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    yield page
    context.close()
    comfy.reset()


def open_harness(page, origin, path="/"):
    # Record every message the page receives, to see what the panel said (harness-side only).
    page.add_init_script(
        "window.__messages = [];"
        "addEventListener('message', e => window.__messages.push({origin: e.origin, data: e.data}));")
    page.goto(origin + path)
    page.wait_for_function("window.harness && (window.harness.ready || window.harness.error)")
    assert page.evaluate("window.harness.error || null") is None
    return page


def payload_of(page, node_type):
    return page.evaluate(
        "t => window.harness.nodes[t].widgets.find(w => w.name === 'hikaze_payload').value", node_type)


def set_payload(page, node_type, value):
    page.evaluate(
        "([t, v]) => { window.harness.nodes[t].widgets.find(w => w.name === 'hikaze_payload').value = v }",
        [node_type, value])


def panel_frame(page):
    iframe = page.wait_for_selector(FRAME)
    frame = iframe.content_frame()
    frame.wait_for_load_state("load")
    return frame


def run_clock_until_frame(page):
    """Advance the fake clock through the port retries until the overlay shows its iframe."""
    for _ in range(100):
        if page.locator(FRAME).count():
            return panel_frame(page)
        page.clock.run_for(600)
        time.sleep(0.05)  # let the real sniffer requests of each retry complete
    raise AssertionError("the overlay never showed the panel")


def run_clock_until(page, locator, tries=400):
    """Advance the fake clock a second at a time (real requests complete in between) until
    `locator` matches; return it."""
    for _ in range(tries):
        if locator.count():
            return locator
        page.clock.run_for(1000)
        time.sleep(0.02)
    raise AssertionError(f"{locator} never appeared")


def post_from(frame, message):
    """Post `message` to the ComfyUI page from inside `frame` (i.e. from the frame's origin)."""
    frame.evaluate("m => window.parent.postMessage(m, '*')", message)


def open_selector(page, hikaze, button=CKPT_BUTTON):
    page.get_by_role("button", name=button).click()
    frame = panel_frame(page)
    assert frame.url.startswith(hikaze.origin + "/?")
    return frame


def wait_closed(page):
    page.wait_for_selector(BACKDROP, state="detached", timeout=5000)


def status_text(page):
    return page.locator(STATUS).inner_text()


# ------------------------------------------------------------------------------------------------
# Tests


def test_buttons_on_both_hikaze_nodes_only_and_never_serialized(page, comfy):
    open_harness(page, comfy.origin)
    widgets = page.evaluate("""() => Object.fromEntries(Object.entries(window.harness.nodes).map(
        ([t, n]) => [t, n.widgets.map(w => [w.type, w.name, w.value,
                                            w.serialize ?? null, w.options?.serialize ?? null])]))""")
    assert widgets == {
        "HikazeCheckpointLoader": [["customtext", "hikaze_payload", DEFAULT_CKPT, None, None],
                                   ["button", CKPT_BUTTON, None, False, False],
                                   ["hikaze-summary", "hikaze_summary", None, False, False]],
        "HikazeLoraPowerLoader": [["customtext", "hikaze_payload", '{"version": 2, "loras": []}',
                                   None, None],
                                  ["button", LORA_BUTTON, None, False, False],
                                  ["hikaze-summary", "hikaze_summary", None, False, False]],
        "OtherNode": [["customtext", "text", "", None, None]],
    }
    assert page.evaluate("window.harness.app.extensions.map(e => e.name)") == ["Hikaze.Manager.Select"]
    # The payload textbox stays: users can still edit the JSON.
    assert page.locator("section[data-type=HikazeCheckpointLoader] textarea").count() == 1
    assert page.errors == []


def test_button_opens_overlay_on_panel_in_selection_mode(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    dialog = page.get_by_role("dialog", name="Select checkpoint")
    dialog.wait_for()
    assert dialog.get_by_text("Select checkpoint", exact=True).is_visible()
    assert dialog.get_by_role("button", name="Close").is_visible()
    src = page.locator(FRAME).get_attribute("src")
    parts = urlsplit(src)
    assert f"{parts.scheme}://{parts.netloc}" == hikaze.origin
    assert parts.path == "/"
    assert parse_qs(parts.query) == {"mode": ["select"], "kind": ["checkpoint"],
                                     "parent": [comfy.origin]}
    assert f"parent={comfy.origin.replace(':', '%3A').replace('/', '%2F')}" in src
    # 90vw x 90vh frame over a fixed full-window backdrop.
    box = page.locator(".hikaze-select-dialog").bounding_box()
    assert abs(box["width"] - 1080) <= 2 and abs(box["height"] - 810) <= 2
    assert page.locator(BACKDROP).evaluate("e => getComputedStyle(e).position") == "fixed"
    assert comfy.sniffer_requests == 1
    # The panel page really loads inside the overlay (its CSP lets this origin frame it).
    frame = panel_frame(page)
    assert frame.evaluate("location.origin") == hikaze.origin


def test_lora_button_asks_for_kind_lora(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=LORA_BUTTON).click()
    page.get_by_role("dialog", name="Select LoRAs").wait_for()
    query = parse_qs(urlsplit(page.locator(FRAME).get_attribute("src")).query)
    assert query["kind"] == ["lora"] and query["mode"] == ["select"]


def test_ready_gets_init_with_current_payload_at_the_panel_origin(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    set_payload(page, "HikazeLoraPowerLoader", '{"version": 2, "loras": ["as typed"]}')
    frame = open_selector(page, hikaze, LORA_BUTTON)
    frame.evaluate("""() => { window.__got = [];
        addEventListener('message', e => window.__got.push({origin: e.origin, data: e.data})) }""")
    post_from(frame, {"source": "hikaze-panel", "type": "ready"})
    frame.wait_for_function("window.__got.some(m => m.data && m.data.type === 'init')")
    got = [m for m in frame.evaluate("window.__got") if m["data"].get("type") == "init"]
    # One init per "ready": ours, plus the real panel's own if it greeted after the listener.
    assert 1 <= len(got) <= 2
    assert all(m == {"origin": comfy.origin, "data": {
        "source": "hikaze-comfyui", "type": "init", "kind": "lora",
        "payload": '{"version": 2, "loras": ["as typed"]}'}} for m in got)


def test_checkpoint_select_writes_compact_json_marks_dirty_and_closes(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    frame = open_selector(page, hikaze)
    post_from(frame, {"source": "hikaze-panel", "type": "select", "kind": "checkpoint",
                      "payload": {"ckpt_path": "/models/checkpoints/dream v1 \"q\".safetensors",
                                  "sha256": CKPT_SHA, "name": "Dream"}})
    wait_closed(page)
    expected = ('{"ckpt_path":"/models/checkpoints/dream v1 \\"q\\".safetensors",'
                f'"sha256":"{CKPT_SHA}","name":"Dream"}}')
    assert payload_of(page, "HikazeCheckpointLoader") == expected
    state = page.evaluate("""() => { const n = window.harness.nodes.HikazeCheckpointLoader;
        const w = n.widgets.find(w => w.name === 'hikaze_payload');
        return {callback: w.callbackValues, changes: n.widgetChanges, nodeDirty: n.dirtyCalls,
                graphDirty: window.harness.app.dirtyCalls,
                checks: window.harness.app.extensionManager.workflow.activeWorkflow.changeTracker.checks}}""")
    assert state == {"callback": [expected],
                     "changes": [{"name": "hikaze_payload", "value": expected,
                                  "oldValue": DEFAULT_CKPT, "same": True}],
                     # the summary's redraw, then the commit's
                     "nodeDirty": [[True, False], [True, True]], "graphDirty": [[True, True]],
                     "checks": 1}
    # The other node is untouched.
    assert payload_of(page, "HikazeLoraPowerLoader") == '{"version": 2, "loras": []}'
    assert page.errors == []


def test_lora_select_writes_pretty_json_in_canonical_key_order(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    frame = open_selector(page, hikaze, LORA_BUTTON)
    loras = [
        # keys deliberately out of order, plus one the node does not know
        {"enabled": False, "sha256": LORA_A_SHA, "strength_clip": 0.5, "strength_model": 0.75,
         "full_path": "/m/loras/ink_style.safetensors", "name": "Ink", "extra": 1},
        {"name": "Glow", "full_path": "/m/loras/sub/glow.safetensors", "strength_model": 1,
         "strength_clip": 1, "sha256": LORA_B_SHA, "enabled": True},
    ]
    post_from(frame, {"source": "hikaze-panel", "type": "select", "kind": "lora",
                      "payload": {"loras": loras, "version": 2}})
    wait_closed(page)
    value = payload_of(page, "HikazeLoraPowerLoader")
    assert value == (
        '{\n  "version": 2,\n  "loras": [\n    {\n      "name": "Ink",\n'
        '      "full_path": "/m/loras/ink_style.safetensors",\n      "strength_model": 0.75,\n'
        '      "strength_clip": 0.5,\n      "sha256": "' + LORA_A_SHA + '",\n'
        '      "enabled": false\n    },\n    {\n      "name": "Glow",\n'
        '      "full_path": "/m/loras/sub/glow.safetensors",\n      "strength_model": 1,\n'
        '      "strength_clip": 1,\n      "sha256": "' + LORA_B_SHA + '",\n'
        '      "enabled": true\n    }\n  ]\n}')
    # What the extension writes is what the node accepts.
    from hikaze_manager.services.payloads import lora_entries
    assert [(e.name, e.strength_model, e.enabled) for e in lora_entries(value)] == [
        ("Ink", 0.75, False), ("Glow", 1.0, True)]
    assert page.evaluate("window.harness.nodes.HikazeLoraPowerLoader.dirtyCalls") == [
        [True, False], [True, True]]


def test_messages_from_another_window_or_origin_are_ignored(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    frame = open_selector(page, hikaze)

    def evil(n):
        return {"source": "hikaze-panel", "type": "select", "kind": "checkpoint",
                "payload": {"ckpt_path": "/evil.safetensors"}, "n": n}

    # 1. The ComfyUI page itself (wrong window, wrong origin).
    page.evaluate("m => window.postMessage(m, '*')", evil(1))
    # 2. Another window on the panel's own origin (right origin, wrong window).
    with page.expect_popup() as popup_info:
        page.evaluate("u => { window.__popup = window.open(u) }", hikaze.origin + "/")
    popup = popup_info.value
    popup.wait_for_load_state("load")
    popup.evaluate("m => window.opener.postMessage(m, '*')", evil(2))
    # 3. Another iframe on a foreign origin.
    page.evaluate("""u => { const f = document.createElement('iframe'); f.id = 'other';
        f.src = u; document.body.append(f) }""", f"http://localhost:{comfy.port}/other.html")
    other = page.wait_for_selector("#other").content_frame()
    other.wait_for_load_state("load")
    post_from(other, evil(3))
    # 4. Messages that are not the protocol's, from the right frame.
    post_from(frame, {"type": "select", "kind": "checkpoint", "payload": {"ckpt_path": "/x"}, "n": 4})
    post_from(frame, {**evil(5), "source": "someone-else"})
    # 5. The overlay's own iframe, navigated to another origin (right window, wrong origin).
    frame.evaluate("u => { location.href = u }", f"http://localhost:{comfy.port}/other.html")
    moved = page.wait_for_selector(FRAME).content_frame()
    moved.wait_for_url(re.compile(r".*/other\.html$"))
    moved.wait_for_load_state("load")
    post_from(moved, evil(6))
    # Every message above has reached the page (both listeners run in the same dispatch).
    page.wait_for_function("""() => [1, 2, 3, 4, 5, 6].every(
        n => window.__messages.some(m => m.data && m.data.n === n))""")
    time.sleep(0.2)
    assert page.locator(BACKDROP).count() == 1
    assert payload_of(page, "HikazeCheckpointLoader") == DEFAULT_CKPT
    assert page.evaluate("window.harness.nodes.HikazeCheckpointLoader.dirtyCalls") == []
    popup.close()


def test_cancel_closes_without_changes(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    frame = open_selector(page, hikaze, LORA_BUTTON)
    post_from(frame, {"source": "hikaze-panel", "type": "cancel"})
    wait_closed(page)
    assert payload_of(page, "HikazeLoraPowerLoader") == '{"version": 2, "loras": []}'
    assert page.evaluate("window.harness.nodes.HikazeLoraPowerLoader.widgetChanges") == []


def test_escape_and_close_button_close_the_overlay_a_backdrop_click_does_not(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    # ComfyUI's keybindings listen on window; the canvas must not see keys meant for the overlay.
    page.evaluate("window.__keys = []; addEventListener('keydown', e => __keys.push(e.key))")
    open_selector(page, hikaze)
    page.keyboard.press("Delete")
    page.keyboard.press("Escape")
    wait_closed(page)
    open_selector(page, hikaze)
    page.locator(".hikaze-select-dialog").click(position={"x": 200, "y": 10})  # title bar: stays
    time.sleep(0.2)
    assert page.locator(BACKDROP).count() == 1
    # the backdrop, outside the 90vw x 90vh frame: a stray click must not drop the panel's work
    page.mouse.click(10, 10)
    time.sleep(0.2)
    assert page.locator(BACKDROP).count() == 1
    assert page.locator(".hikaze-select-dialog iframe").count() == 1
    page.get_by_role("button", name="Close").click()
    wait_closed(page)
    assert page.evaluate("window.__keys") == []
    page.keyboard.press("Delete")  # with the overlay closed, keys reach ComfyUI again
    assert page.evaluate("window.__keys") == ["Delete"]
    # A closed overlay no longer listens: a late "select" from the old panel changes nothing.
    assert payload_of(page, "HikazeCheckpointLoader") == DEFAULT_CKPT


def test_opening_again_replaces_the_open_overlay(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    old = open_selector(page, hikaze)
    # The overlay covers the canvas; a second open (e.g. from another node by keyboard) replaces it.
    page.evaluate("""() => window.harness.nodes.HikazeLoraPowerLoader.widgets
        .find(w => w.type === 'button').callback()""")
    page.get_by_role("dialog", name="Select LoRAs").wait_for()
    assert page.locator(BACKDROP).count() == 1
    assert page.locator(BACKDROP).get_attribute("data-hikaze-kind") == "lora"
    # The replaced overlay's panel window is gone; nothing from it can land.
    assert old.is_detached()
    assert payload_of(page, "HikazeCheckpointLoader") == DEFAULT_CKPT


def test_invalid_or_mismatched_selection_is_refused_with_a_message(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    frame = open_selector(page, hikaze, LORA_BUTTON)
    post_from(frame, {"source": "hikaze-panel", "type": "select", "kind": "lora",
                      "payload": {"version": 2, "loras": [
                          {"name": "x", "full_path": "/x", "strength_model": "strong",
                           "strength_clip": 1, "sha256": "", "enabled": True}]}})
    page.locator(STATUS).get_by_text("strength_model").wait_for()
    assert "not applied" in status_text(page)
    post_from(frame, {"source": "hikaze-panel", "type": "ready"})  # a late greeting (a reload)
    page.evaluate("() => new Promise(done => setTimeout(done, 200))")  # let the message land
    assert "not applied" in status_text(page)  # an error stays until something replaces it
    post_from(frame, {"source": "hikaze-panel", "type": "select", "kind": "checkpoint",
                      "payload": {"ckpt_path": "/c.safetensors"}})
    page.locator(STATUS).get_by_text("checkpoint selection").wait_for()
    assert page.locator(BACKDROP).count() == 1
    assert payload_of(page, "HikazeLoraPowerLoader") == '{"version": 2, "loras": []}'
    assert page.evaluate("window.harness.nodes.HikazeLoraPowerLoader.widgetChanges") == []


def test_serialize_selection_rules(page, comfy):
    open_harness(page, comfy.origin)
    results = page.evaluate("""async () => {
        const m = await import('/extensions/hikaze/hikaze_nodes.js');
        const run = (kind, p) => { try { return m.serializeSelection(kind, p) }
                                   catch (e) { return 'ERROR ' + e.message } };
        return [
          run('checkpoint', {ckpt_path: ''}),
          run('checkpoint', {ckpt_path: 5}),
          run('checkpoint', null),
          run('checkpoint', {ckpt_path: '/a', sha256: 'x', name: 'n'}),
          run('checkpoint', {ckpt_path: '/a', sha256: ' ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB ', name: ''}),
          run('lora', {loras: []}),
          run('lora', {version: 3, loras: []}),
          run('lora', {version: 2, loras: {}}),
          run('lora', {version: 2, loras: [{name: '', full_path: '', strength_model: 1,
                                             strength_clip: 1, enabled: true}]}),
          run('lora', {version: 2, loras: [{full_path: '/a', enabled: 'yes'}]}),
          run('lora', {version: 2, loras: [{full_path: '/a', strength_model: Infinity}]}),
          run('lora', {version: 1, loras: [{full_path: '/a', strength_model: '0.5'}]}),
          run('other', {}),
        ]; }""")
    assert results == [
        "ERROR the selected checkpoint has no ckpt_path",
        "ERROR the selected checkpoint has no ckpt_path",
        "ERROR the selection is not an object",
        '{"ckpt_path":"/a","name":"n"}',
        '{"ckpt_path":"/a","sha256":"abababababababababababababababababababababababababababababababab"}',
        '{\n  "version": 2,\n  "loras": []\n}',
        "ERROR unsupported LoRA list version 3",
        "ERROR 'loras' must be a list",
        "ERROR LoRA #1 has no full_path",
        "ERROR LoRA #1: enabled must be true or false",
        "ERROR LoRA #1 has an invalid strength_model",
        '{\n  "version": 1,\n  "loras": [\n    {\n      "name": "",\n      "full_path": "/a",\n'
        '      "strength_model": 0.5,\n      "strength_clip": 1,\n      "sha256": "",\n'
        '      "enabled": true\n    }\n  ]\n}',
        'ERROR unknown selection kind "other"',
    ]
    hosts = page.evaluate("""async () => {
        const m = await import('/extensions/hikaze/hikaze_nodes.js');
        return ['localhost', '127.0.0.1', '127.1.2.3', '[::1]', '::1', 'LOCALHOST.',
                '192.168.1.5', 'comfy.test', 'localhost.evil.com', '127.0.0.1.nip.io', '']
               .map(h => m.panelHostFor(h)); }""")
    assert hosts == ["127.0.0.1"] * 6 + [None] * 5


def test_port_zero_retries_then_opens(page, comfy, hikaze):
    comfy.sniffer = lambda n: (200, {"port": 0 if n <= 2 else hikaze.port})
    page.clock.install()
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    page.locator(STATUS).get_by_text("Hikaze Manager is starting…").wait_for()
    assert page.locator(FRAME).count() == 0
    run_clock_until_frame(page)
    assert comfy.sniffer_requests == 3
    assert page.locator(STATUS).is_hidden()


def test_port_never_ready_gives_a_clear_error_and_stops_polling(page, comfy, hikaze):
    comfy.sniffer = lambda n: (200, {"port": 0})
    page.clock.install()
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    page.locator(STATUS).get_by_text("Hikaze Manager is starting…").wait_for()
    error = run_clock_until(page, page.locator(STATUS + "[data-state=error]"))
    assert "did not start within 30 s" in error.inner_text()
    assert "[Hikaze]" in error.inner_text()
    asked = comfy.sniffer_requests
    assert 5 <= asked <= 25
    page.clock.run_for(120_000)
    time.sleep(0.5)
    assert comfy.sniffer_requests == asked
    assert page.locator(FRAME).count() == 0
    page.keyboard.press("Escape")
    wait_closed(page)


def test_closing_while_waiting_stops_polling(page, comfy, hikaze):
    comfy.sniffer = lambda n: (200, {"port": 0})
    page.clock.install()
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    page.locator(STATUS).get_by_text("Hikaze Manager is starting…").wait_for()
    page.keyboard.press("Escape")
    wait_closed(page)
    asked = comfy.sniffer_requests
    page.clock.run_for(60_000)
    time.sleep(0.5)
    assert comfy.sniffer_requests == asked


def test_port_of_another_program_is_named(page, comfy, hikaze):
    # A port where something answers but it is not Hikaze (here: the ComfyUI page itself).
    comfy.sniffer = lambda n: (200, {"port": comfy.port})
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    error = page.locator(STATUS + "[data-state=error]")
    error.wait_for()
    assert f"{comfy.origin} answered 404 where Hikaze Manager should be" in error.inner_text()
    assert page.locator(FRAME).count() == 0


class RefusingPanel:
    """A panel server that answers this page but refuses to be framed by it: what the previous
    Hikaze build sent an ``[::1]`` page (the IPv6 literal in frame-ancestors, dropped by Chromium).
    Its page greets at once, so only the browser's refusal can keep it silent. With ``hang`` its
    page never comes at all (a server that accepts the connection and then stalls)."""

    def __init__(self, framer: str, hang: threading.Event | None = None):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/api/panel/config"):
                    body, kind = json.dumps({"allowed_origins": [framer]}).encode(), "application/json"
                elif hang is not None:
                    hang.wait(30)  # the page never comes (until the test ends)
                    return
                else:
                    body = (b"<!doctype html><script>parent.postMessage("
                            b"{source: 'hikaze-panel', type: 'ready'}, '*')</script>")
                    kind = "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Access-Control-Allow-Origin", framer)
                self.send_header("Content-Security-Policy", f"frame-ancestors 'self' {framer}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_refused_framing_is_named_not_called_slow(page, comfy6, hikaze):
    refusing = RefusingPanel(comfy6.origin)
    try:
        comfy6.sniffer = lambda n: (200, {"port": refusing.port})
        page.clock.install()
        open_harness(page, comfy6.origin)
        page.get_by_role("button", name=CKPT_BUTTON).click()
        page.wait_for_selector(FRAME)
        # the frame's (refused) load comes in real time; then the fake clock runs out the wait
        error = run_clock_until(page, page.locator(STATUS + "[data-state=error]"))
        assert page.evaluate("window.__messages.filter(m => m.data?.type === 'ready').length") == 0
        text = error.inner_text()
        assert "The browser refused to show Hikaze Manager" in text
        assert comfy6.origin in text and "frame-ancestors" in text
        assert "has not answered yet" not in text
    finally:
        comfy6.reset()
        refusing.close()


def test_a_panel_page_that_never_comes_gets_a_hint(page, comfy, hikaze):
    release = threading.Event()
    hanging = RefusingPanel(comfy.origin, hang=release)
    try:
        comfy.sniffer = lambda n: (200, {"port": hanging.port})
        page.clock.install()
        open_harness(page, comfy.origin)
        page.get_by_role("button", name=CKPT_BUTTON).click()
        page.wait_for_selector(FRAME)
        assert page.locator(STATUS).is_hidden()
        page.clock.run_for(21_000)
        page.locator(STATUS).get_by_text("has not answered yet").wait_for()
        assert f"http://127.0.0.1:{hanging.port}" in page.locator(STATUS).inner_text()
        assert page.locator(STATUS + "[data-state=error]").count() == 0  # a hint, not a verdict
    finally:
        release.set()
        hanging.close()


def test_untrusted_page_origin_is_named(browser, comfy, hikaze):
    other = FakeComfyUI("127.0.0.2")  # loopback, but not an origin the Hikaze server was told
    other.hikaze_port = hikaze.port
    context = browser.new_context()
    try:
        page = open_harness(context.new_page(), other.origin)
        page.get_by_role("button", name=CKPT_BUTTON).click()
        error = page.locator(STATUS + "[data-state=error]")
        error.wait_for()
        assert f"does not answer this page ({other.origin})" in error.inner_text()
        assert "does not trust this origin" in error.inner_text()
        assert page.locator(FRAME).count() == 0
    finally:
        context.close()
        other.close()


def test_ipv6_loopback_comfyui_page_uses_the_real_panel(page, comfy6, hikaze):
    """ComfyUI opened at http://[::1]:PORT: the panel is framed, greets, and the pick lands."""
    console = []
    page.on("console", lambda message: console.append(message.text))
    open_harness(page, comfy6.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    frame = panel_frame(page)
    assert parse_qs(urlsplit(frame.url).query)["parent"] == [comfy6.origin]
    panel = page.frame_locator(FRAME)
    sha, path, name = hikaze.seeded["ckpt"]
    panel.get_by_text(name, exact=True).first.click(timeout=15000)
    panel.get_by_role("button", name=re.compile(r"^\s*(Confirm|确认)")).click()
    wait_closed(page)
    assert json.loads(payload_of(page, "HikazeCheckpointLoader"))["ckpt_path"] == path
    # No "does not support the source expression" and no refused framing on the way.
    assert not [m for m in console if "frame-ancestors" in m or "source expression" in m], console


def test_comfyui_errors_are_retried_then_named(page, comfy, hikaze):
    comfy.sniffer = lambda n: (500, {"error": "boom"}) if n <= 2 else (200, {"port": hikaze.port})
    page.clock.install()
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    page.locator(STATUS).get_by_text("again (ComfyUI answered 500").wait_for()
    run_clock_until_frame(page)
    assert comfy.sniffer_requests == 3
    page.keyboard.press("Escape")
    wait_closed(page)
    # ComfyUI failing for the whole wait: the error says what it answered.
    comfy.reset()
    comfy.sniffer = lambda n: (502, {})
    page.get_by_role("button", name=CKPT_BUTTON).click()
    error = run_clock_until(page, page.locator(STATUS + "[data-state=error]"))
    assert "within 30 s (ComfyUI answered 502" in error.inner_text()


def test_missing_sniffer_route_fails_at_once(page, comfy, hikaze):
    comfy.sniffer = lambda n: (404, {"error": "Not Found"})
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    error = page.locator(STATUS + "[data-state=error]")
    error.wait_for()
    assert "not loaded" in error.inner_text()
    time.sleep(0.5)
    assert comfy.sniffer_requests == 1


def test_non_loopback_comfyui_page_explains_instead_of_guessing(page, comfy, hikaze):
    open_harness(page, f"http://comfy.test:{comfy.port}")
    page.get_by_role("button", name=LORA_BUTTON).click()
    error = page.locator(STATUS + "[data-state=error]")
    error.wait_for()
    assert "127.0.0.1" in error.inner_text() and "by hand" in error.inner_text()
    assert page.locator(FRAME).count() == 0
    assert comfy.sniffer_requests == 0


def test_localhost_page_is_told_its_own_origin(page, comfy, hikaze):
    open_harness(page, f"http://localhost:{comfy.port}")
    frame = open_selector(page, hikaze)
    assert parse_qs(urlsplit(frame.url).query)["parent"] == [f"http://localhost:{comfy.port}"]
    post_from(frame, {"source": "hikaze-panel", "type": "select", "kind": "checkpoint",
                      "payload": {"ckpt_path": "/c.safetensors"}})
    wait_closed(page)
    assert payload_of(page, "HikazeCheckpointLoader") == '{"ckpt_path":"/c.safetensors"}'


# ------------------------------------------------------------------------------------------------
# End to end through the real panel (static/index.html in selection mode)


def test_end_to_end_checkpoint_through_the_real_panel(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    panel = page.frame_locator(FRAME)
    sha, path, name = hikaze.seeded["ckpt"]
    panel.get_by_text(name, exact=True).first.click(timeout=15000)
    panel.get_by_role("button", name=re.compile(r"^\s*(Confirm|确认)")).click()
    wait_closed(page)
    assert payload_of(page, "HikazeCheckpointLoader") == json.dumps(
        {"ckpt_path": path, "sha256": sha, "name": name}, separators=(",", ":"))


def test_end_to_end_lora_list_through_the_real_panel(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    sha_a, path_a, name_a = hikaze.seeded["lora_a"]
    sha_b, path_b, name_b = hikaze.seeded["lora_b"]
    # The node already holds a list: a library LoRA with its own strengths (switched off) and a
    # hand-typed entry without sha256. Both must come back unchanged, in order.
    set_payload(page, "HikazeLoraPowerLoader", json.dumps({"version": 2, "loras": [
        {"name": name_b, "full_path": path_b, "strength_model": 0.6, "strength_clip": 0.4,
         "sha256": sha_b, "enabled": False},
        {"full_path": "/by/hand.safetensors", "strength_model": 1.5, "strength_clip": 1,
         "enabled": True}]}))
    page.get_by_role("button", name=LORA_BUTTON).click()
    panel = page.frame_locator(FRAME)
    panel.get_by_text("/by/hand.safetensors").first.wait_for(timeout=15000)
    panel.get_by_text(name_a, exact=True).first.click()
    strength = panel.get_by_role("spinbutton", name=f"Model strength of {name_a}")
    strength.fill("0.8")
    strength.press("Tab")
    panel.get_by_role("button", name=re.compile(r"^\s*(Confirm|确认)")).click()
    wait_closed(page)
    expected = {"version": 2, "loras": [
        {"name": name_b, "full_path": path_b, "strength_model": 0.6, "strength_clip": 0.4,
         "sha256": sha_b, "enabled": False},
        {"name": "", "full_path": "/by/hand.safetensors", "strength_model": 1.5,
         "strength_clip": 1, "sha256": "", "enabled": True},
        {"name": name_a, "full_path": path_a, "strength_model": 0.8, "strength_clip": 1,
         "sha256": sha_a, "enabled": True}]}
    assert payload_of(page, "HikazeLoraPowerLoader") == json.dumps(expected, indent=2)


def test_end_to_end_escape_inside_the_panel_cancels(page, comfy, hikaze):
    open_harness(page, comfy.origin)
    page.get_by_role("button", name=CKPT_BUTTON).click()
    panel = page.frame_locator(FRAME)
    sha, path, name = hikaze.seeded["ckpt"]
    panel.get_by_text(name, exact=True).first.click(timeout=15000)  # focus is in the panel now
    page.keyboard.press("Escape")
    wait_closed(page)
    assert payload_of(page, "HikazeCheckpointLoader") == DEFAULT_CKPT


# ------------------------------------------------------------------------------------------------
# The readable summary on the node, in both canvas modes


@pytest.mark.parametrize("vue", [False, True], ids=["classic-canvas", "vue-nodes"])
def test_nodes_show_the_choice_readably_and_the_json_stays_editable(page, comfy, hikaze, vue):
    open_harness(page, comfy.origin, "/?vue=1" if vue else "/")
    assert page.evaluate("window.LiteGraph.vueNodesMode") is vue
    lora_node = "section[data-type=HikazeLoraPowerLoader]"
    holder = (f"{lora_node} .dom-widget" if vue
              else "#dom-widgets .dom-widget[data-node=HikazeLoraPowerLoader]")
    summary = page.locator(holder + " .hikaze-summary")
    assert summary.inner_text() == "No LoRAs selected."
    # Typed by hand into the JSON (a missing strength means 1, as on the node).
    page.locator(f"{lora_node} textarea").fill(json.dumps({"version": 2, "loras": [
        {"name": "Ink Style", "full_path": "/m/ink.safetensors", "strength_model": 0.75,
         "strength_clip": 0.5, "enabled": True},
        {"full_path": "/m/sub/glow.safetensors", "enabled": False},
    ]}))
    rows = summary.locator(".hikaze-summary-lora")
    rows.nth(1).wait_for()
    assert rows.all_inner_texts() == ["● 1. Ink Style · model 0.75 · clip 0.5",
                                      "○ 2. glow.safetensors · model 1 · clip 1 (off)"]
    assert [r.get_attribute("data-state") for r in rows.all()] == ["on", "off"]
    opacities = rows.evaluate_all("rs => rs.map(r => getComputedStyle(r).opacity)")
    assert opacities == ["1", "0.45"]  # the off one is dimmed
    assert rows.nth(1).get_attribute("title") == "/m/sub/glow.safetensors"
    assert summary.is_visible()
    page.locator(f"{lora_node} textarea").fill("{broken")
    summary.locator(".hikaze-summary-error").get_by_text("not valid JSON").wait_for()
    # A pick from the panel updates the checkpoint's summary (name, with the path as tooltip).
    ckpt = page.locator(("section[data-type=HikazeCheckpointLoader] .dom-widget" if vue else
                         "#dom-widgets .dom-widget[data-node=HikazeCheckpointLoader]")
                        + " .hikaze-summary")
    assert ckpt.inner_text() == "No checkpoint selected."
    frame = open_selector(page, hikaze)
    post_from(frame, {"source": "hikaze-panel", "type": "select", "kind": "checkpoint",
                      "payload": {"ckpt_path": "/m/dream_v1.safetensors", "sha256": CKPT_SHA,
                                  "name": "Dream Shaper"}})
    wait_closed(page)
    assert ckpt.inner_text() == "Checkpoint: Dream Shaper"
    assert ckpt.locator(".hikaze-summary-checkpoint").get_attribute("title") == "/m/dream_v1.safetensors"
    # A workflow loaded later (values set, then onConfigure) is shown too.
    page.evaluate("""() => { const n = window.harness.nodes.HikazeCheckpointLoader;
        n.widgets.find(w => w.name === 'hikaze_payload').value = '{"ckpt_path": "/x/other.ckpt"}';
        n.onConfigure?.({}); }""")
    assert ckpt.inner_text() == "Checkpoint: other.ckpt"
    assert page.errors == []


def test_summary_rules(page, comfy):
    open_harness(page, comfy.origin)
    results = page.evaluate("""async (windowsPath) => {
        const m = await import('/extensions/hikaze/hikaze_summary.js');
        return [
          m.summarize('checkpoint', ''),
          m.summarize('checkpoint', windowsPath),
          m.summarize('checkpoint', '[1]'),
          m.summarize('lora', '[{"path": "b.pt", "MStrength": "0.5", "toggleOn": false}]'),
          m.summarize('lora', '{"LoRAs": [{"name": "n", "strength_model": "x"}]}'),
          m.summarize('lora', '{"loras": 5}'),
          m.summarize('lora', '[{"full_path": "a", "strength_model": null, "MStrength": 0.5}]'),
          m.summarize('lora', '{"loras": null, "LoRAs": []}'),
        ]; }""", json.dumps({"ckpt_path": "C:\\m\\a.safetensors"}))
    assert results == [
        {"checkpoint": None},
        {"checkpoint": {"name": "a.safetensors", "path": "C:\\m\\a.safetensors"}},
        {"error": "The payload must be a JSON object."},
        {"loras": [{"name": "b.pt", "path": "b.pt", "model": "0.5", "clip": "1", "enabled": False}]},
        {"loras": [{"name": "n", "path": "", "model": "?", "clip": "1", "enabled": True}]},
        {"error": "The payload has no list of LoRAs."},
        # The node takes the first key present, even when it is null (then 1): so does the summary.
        {"loras": [{"name": "a", "path": "a", "model": "1", "clip": "1", "enabled": True}]},
        {"error": "The payload has no list of LoRAs."},  # the node: 'loras' must be a list
    ]


def test_summary_shows_hostile_names_as_text(page, comfy):
    open_harness(page, comfy.origin)
    result = page.evaluate("""async () => {
        const m = await import('/extensions/hikaze/hikaze_summary.js');
        const name = '<img src=x onerror="window.__xss=1"><b>bold</b>';
        const box = document.createElement('div');
        document.body.append(box);
        m.renderSummary(box, 'lora', JSON.stringify([{full_path: '/m/"><script>x</script>', name}]));
        const ckpt = document.createElement('div');
        m.renderSummary(ckpt, 'checkpoint', JSON.stringify({ckpt_path: '/m/a', name}));
        await new Promise((r) => setTimeout(r, 50));
        return [box.querySelectorAll('img, b, script').length, ckpt.querySelectorAll('img, b').length,
                box.textContent, ckpt.textContent, window.__xss ?? null]; }""")
    name = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    assert result == [0, 0, f"● 1. {name} · model 1 · clip 1", f"Checkpoint: {name}", None]
