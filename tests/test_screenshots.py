"""Screenshots of the main views for the README, made by driving the real panel in Chromium.

Every run drives the views and checks each picture (so a view that no longer renders fails);
the PNGs go to a temporary folder, and to ``docs/screenshots/`` (each kept under 300 KB) only when
asked: ``HIKAZE_SCREENSHOTS=1 python3 -m pytest tests/test_screenshots.py`` remakes them whenever
the panel changes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from panel_support import (  # noqa: F401  (fixtures)
    browser,
    open_panel,
    page_errors,
    panel,
    parent_site,
    png_bytes,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture(autouse=True)
def out_folder(tmp_path, monkeypatch):
    """docs/screenshots when remaking them, else a temporary folder."""
    folder = DOCS if os.environ.get("HIKAZE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    monkeypatch.setitem(globals(), "OUT", folder)
    return folder


OUT = DOCS
COLORS = [(196, 78, 82), (70, 130, 180), (95, 158, 110), (218, 165, 32), (147, 112, 219),
          (64, 160, 160), (205, 92, 160), (120, 120, 200), (180, 120, 70), (90, 90, 90)]
NAMES = ["Dreamshaper XL", "Juggernaut", "Realistic Vision", "Anything V5", "Pony Diffusion",
         "SDXL Base", "Counterfeit", "Deliberate", "Photon", "RevAnimated"]


@pytest.fixture
def page(browser, page_errors):
    context = browser.new_context(viewport={"width": 1280, "height": 760}, locale="en-US")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    page_errors.attach(pg)
    yield pg
    context.close()


def _shot(page, name: str, locator=None):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    page.wait_for_timeout(300)
    (locator or page).screenshot(path=str(path))
    # Quantised to a palette: panel screenshots are flat colours, so this stays sharp and small.
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
    assert path.stat().st_size < 300_000, (path, path.stat().st_size)
    with Image.open(path) as shot:  # a real picture of the view, not a blank page
        assert shot.size[0] >= 200 and shot.size[1] >= 100, shot.size
        assert len(shot.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 8, f"{name} is blank"


def _library(panel):
    shas = []
    for i, name in enumerate(NAMES):
        folder = "loras" if i >= 7 else "checkpoints"
        _, sha = panel.write_model(folder, f"{name.lower().replace(' ', '_')}.safetensors",
                                   os.urandom(2048 * (i + 1)))
        shas.append(sha)
    panel.promote_all()
    tags = [["sdxl", "photo"], ["sdxl"], ["photo", "realistic"], ["anime"], ["anime", "pony"],
            ["sdxl", "base"], ["anime"], ["art"], ["photo"], ["anime", "art"]]
    for i, sha in enumerate(shas):
        panel.set_model(sha, name=NAMES[i], tags=tags[i], meta_json={
            "description": f"{NAMES[i]}: a general-purpose model.",
            "prompts": {"positive": "masterpiece, best quality", "negative": "lowres, blurry"}})
        panel.client.post("/api/images/upload", data={
            "sha256": sha, "image": (__import__("io").BytesIO(png_bytes((384, 512), COLORS[i])), "p.png")})
    return shas


def test_make_screenshots(panel, page, parent_site):
    shas = _library(panel)
    open_panel(page, panel)
    page.wait_for_timeout(500)
    _shot(page, "library")

    page.click(f"#items [data-key='{shas[0]}']")
    page.wait_for_selector("#details input, #details textarea")
    _shot(page, "details")

    for sha in shas[1:4]:
        page.locator(f"#items [data-key='{sha}'] .item-check").click()
    page.locator(f"#items [data-key='{shas[5]}'] .item-check").click(modifiers=["Shift"])
    _shot(page, "selection")

    page.click("#manage-tags")
    page.wait_for_selector(".tag-admin tr[data-tag]")
    _shot(page, "tags")
    page.keyboard.press("Escape")

    # pending with a conflict: a copy of a library model under another name, with another description
    data = (panel.root / "checkpoints" / "dreamshaper_xl.safetensors").read_bytes()
    panel.write_model("checkpoints", "dreamshaper_copy.safetensors", data)
    panel.write_model("checkpoints", "new_model.safetensors")
    panel.scan()
    pending = {p["name"]: p["id"] for p in panel.get("/api/migration/pending_models")["models"]}
    with sqlite3.connect(panel.app.config["DATABASE"]) as db:
        db.execute("UPDATE pending_import SET meta_json = ? WHERE id = ?", (json.dumps(
            {"description": "from the copy", "images": []}), pending["dreamshaper_copy.safetensors"]))
    page.reload()
    page.wait_for_selector(".tab.active")
    page.click("#pending-toggle")
    page.wait_for_selector("#select-all")
    page.check("#select-all")
    page.click("#import-selected")
    page.wait_for_selector("dialog.conflict-dialog[open]")
    _shot(page, "pending-conflict")
    page.keyboard.press("Escape")

    # the node's selection mode, framed by a stand-in ComfyUI page
    src = f"{panel.url}/?mode=select&kind=lora&parent={parent_site.origin}"
    parent_site.html = (
        "<!doctype html><html><body style='margin:0;background:#111'>"
        f"<iframe id='panel' src='{src}' style='border:0;width:100vw;height:100vh'></iframe>"
        "<script>window.addEventListener('message', (e) => { if (e.data && e.data.type === 'ready')"
        " document.getElementById('panel').contentWindow.postMessage({source: 'hikaze-comfyui',"
        f" type: 'init', kind: 'lora', payload: '[]'}}, '{panel.origin}'); }});</script></body></html>")
    page.goto(f"{parent_site.origin}/workflow")
    frame = page.frame_locator("#panel")
    frame.locator("#select-confirm").wait_for()
    frame.locator(f"#items [data-key='{shas[7]}']").click()
    page.wait_for_timeout(500)
    _shot(page, "node-selection")
