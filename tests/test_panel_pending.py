"""The panel's pending queue (scan, import, conflict dialog) and the v1 migration form."""

from __future__ import annotations

import io
import json
import sqlite3

from PIL import Image

from panel_support import (  # noqa: F401  (fixtures)
    MARK_VISIBLE_CARD,
    browser,
    card_names,
    open_panel,
    page,
    page_errors,
    panel,
    parent_site,
    scroll_items,
)


def _enter_pending(page):
    page.click("#pending-toggle")
    page.wait_for_selector("body.is-pending")
    page.wait_for_function("() => !document.querySelector('.lib-status.loading')")


def test_scan_shows_progress_and_report_then_items(panel, page):
    panel.write_model("checkpoints", "known.safetensors")
    panel.promote_all()
    panel.write_model("checkpoints", "fresh_a.safetensors")
    panel.write_model("checkpoints", "sub/fresh_b.ckpt")
    panel.write_model("loras", "fresh_lora.safetensors")
    (panel.root / "loras" / "readme.txt").write_text("not a model")
    open_panel(page, panel)
    assert page.is_hidden("#pending-badge")
    _enter_pending(page)
    assert page.inner_text("#pending-pill") == "PENDING MODE"
    assert card_names(page) == []

    page.click("#scan")
    page.wait_for_selector("dialog.job-dialog[data-state='succeeded']")
    assert page.eval_on_selector("dialog.job-dialog progress", "e => e.value") == 1
    report = page.eval_on_selector_all(
        "dialog.job-dialog dd", "els => Object.fromEntries(els.map(e => [e.dataset.key, e.textContent]))")
    assert report == {"scanned": "4", "added": "3", "skipped": "1", "relinked": "0", "errors": "0"}
    assert page.inner_text("dialog.job-dialog .dialog-title") == "Scan finished"
    page.click("dialog.job-dialog [data-action='close']")
    assert page.query_selector("dialog") is None

    page.wait_for_selector("#items [data-name='fresh_a.safetensors']")
    assert card_names(page) == ["fresh_a.safetensors", "fresh_b.ckpt"]
    assert page.inner_text("#pending-badge") == "3"
    assert page.inner_text(".tab[data-tab='loras'] .tab-count") == "1"
    # a pending row of a type that is not configured (a v1 "lora") shows under Others
    db = sqlite3.connect(panel.app.config["DATABASE"])
    try:
        with db:
            db.execute("INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at) "
                       "VALUES ('/old/x.safetensors', '', 'legacy_typed', 'lora', 1, 1)")
    finally:
        db.close()
    page.click("#refresh")
    page.wait_for_function("() => document.querySelector('#pending-badge').textContent === '4'")
    assert page.inner_text(".tab[data-tab='others'] .tab-count") == "1"
    page.click(".tab[data-tab='others']")
    assert card_names(page) == ["legacy_typed"]
    page.click(".tab[data-tab='checkpoints']")
    # read-only details of a pending model; clicking also ticks it for import
    page.click("#items [data-name='fresh_b.ckpt']")
    page.wait_for_selector("#p-path")
    assert page.input_value("#p-path").endswith("sub/fresh_b.ckpt")
    assert page.eval_on_selector("#p-name", "e => e.readOnly")
    assert page.inner_text(".pending-details .gallery-frame") == "No image"
    assert page.is_checked("#items [data-name='fresh_b.ckpt'] .item-check")
    assert page.text_content("#import-selected") == "Import Selected (1)"
    # leaving pending mode brings the library back
    page.click("#pending-toggle")
    page.wait_for_selector("#items [data-name='known.safetensors']")
    assert page.is_hidden("#import-selected")


def test_scan_without_model_folders_shows_the_503_message(tmp_path, browser, page_errors):
    from panel_support import Panel
    server = Panel(tmp_path, MODEL_TYPES={})
    context = browser.new_context()
    try:
        pg = context.new_page()
        page_errors.attach(pg)
        pg.goto(server.url + "/")
        pg.wait_for_selector(".tab.active")
        pg.click("#scan")
        pg.wait_for_selector(".notice.error")
        assert "Model type cache is empty" in pg.inner_text(".notice.error")
        assert pg.query_selector("dialog") is None
    finally:
        context.close()
        server.stop()
    # the failed POST is logged by Chromium as a console error; nothing else may be
    assert all("503" in e for e in page_errors), page_errors
    page_errors.clear()


def test_import_with_conflict_dialog_and_merge(panel, page):
    content = b"same weights" * 500
    _, sha = panel.write_model("checkpoints", "original.safetensors", content)
    panel.promote_all()
    panel.set_model(sha, name=None, meta_json={"description": ""})
    panel.write_model("checkpoints", "renamed_copy.safetensors", content)
    _, fresh_sha = panel.write_model("checkpoints", "brand_new.safetensors")
    panel.scan()
    pending = {p["name"]: p["id"] for p in panel.get("/api/migration/pending_models")["models"]}
    db = sqlite3.connect(panel.app.config["DATABASE"])
    try:
        with db:
            db.execute("UPDATE pending_import SET meta_json = ? WHERE id = ?", (json.dumps(
                {"description": "from the copy", "images": []}), pending["renamed_copy.safetensors"]))
    finally:
        db.close()

    open_panel(page, panel)
    _enter_pending(page)
    assert page.is_disabled("#import-selected")
    page.check("#select-all")
    assert page.text_content("#import-selected") == "Import Selected (2)"
    page.click("#import-selected")

    page.wait_for_selector("dialog.conflict-dialog[open]")
    assert page.inner_text("dialog.conflict-dialog .dialog-title") == "1 conflicts"
    row = f"dialog.conflict-dialog tr[data-id='{pending['renamed_copy.safetensors']}']"
    text = page.inner_text(row)
    assert "renamed_copy.safetensors" in text and "original.safetensors" in text
    assert sha[:16] in text
    # "Apply to all" starts at the rows' safe default: applying it untouched changes nothing
    assert page.input_value(f"{row} select") == "ignore"
    assert page.input_value("#conflict-all") == "ignore"
    page.click("#conflict-apply-all")
    assert page.input_value(f"{row} select") == "ignore"
    page.select_option("#conflict-all", "delete")
    page.click("#conflict-apply-all")
    assert page.input_value(f"{row} select") == "delete"
    page.select_option(f"{row} select", "merge")
    page.click("dialog.conflict-dialog [data-action='resolve']")

    page.wait_for_selector("dialog.results-dialog[open]")
    results = page.eval_on_selector_all(
        "dialog.results-dialog dd", "els => Object.fromEntries(els.map(e => [e.dataset.key, e.textContent]))")
    assert results == {"success": "2", "ignored": "0", "deleted": "0", "failed": "0", "warnings": "0",
                       "unresolved": "0"}
    page.keyboard.press("Escape")
    assert page.query_selector("dialog") is None

    merged = panel.model(sha)
    assert merged["name"] == "renamed_copy.safetensors"  # the empty name was filled
    assert merged["meta_json"]["description"] == "from the copy"
    assert merged["path"].endswith("original.safetensors")  # merge keeps the entry's path
    assert panel.model(fresh_sha)["path"].endswith("brand_new.safetensors")
    assert panel.get("/api/migration/pending_models")["models"] == []
    page.wait_for_function("() => document.querySelector('#pending-badge').hidden")
    assert card_names(page) == []
    page.click("#pending-toggle")
    page.wait_for_selector("#items [data-name='brand_new.safetensors']")
    assert card_names(page) == ["brand_new.safetensors", "renamed_copy.safetensors"]


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return buf.getvalue()


def _tiny_v1_db(folder):
    """A v1 database with the exact v1 schema: one hashed model with a picture, one unhashed."""
    data = folder / "data"
    (data / "images").mkdir(parents=True)
    db = sqlite3.connect(data / "hikaze_mm.sqlite3")
    db.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        CREATE TABLE directories (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE,
            alias TEXT, parent_id INTEGER REFERENCES directories(id));
        CREATE TABLE models (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE,
            name TEXT, type TEXT NOT NULL, size_bytes INTEGER, hash_hex TEXT NOT NULL,
            created_at INTEGER NOT NULL, meta_json TEXT, extra_json TEXT);
        CREATE TABLE tags (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
            color TEXT, created_at INTEGER);
        CREATE TABLE model_tags (model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
            PRIMARY KEY (model_id, tag_id));
        INSERT INTO schema_version VALUES (2);
        INSERT INTO tags(name, created_at) VALUES ('checkpoints', 1699990000000), ('anime', 1699990000000);
    """)
    sha = "c2e68682" + "ab" * 28
    (data / "images" / "model_1_1700000000000_a.png").write_bytes(_png((220, 20, 60)))
    db.execute("INSERT INTO models VALUES (1, '/opt/ComfyUI/models/checkpoints/a.safetensors', "
               "'a.safetensors', 'checkpoints', 6938040682, ?, 1699990001234, NULL, ?)",
               (sha, json.dumps({"description": "desc A",
                                 "images": ["/media/model_1_1700000000000_a.png"]})))
    (data / "images" / "model_2_1700000000001_b.png").write_bytes(_png((20, 160, 60)))
    db.execute("INSERT INTO models VALUES (2, '/opt/ComfyUI/models/loras/b.safetensors', "
               "'b.safetensors', 'loras', 151108832, '', 1699990001240, NULL, ?)",
               (json.dumps({"images": ["/media/model_2_1700000000001_b.png"]}),))
    db.executemany("INSERT INTO model_tags VALUES (?, ?)", [(1, 1), (1, 2)])
    db.commit()
    db.close()
    return data / "hikaze_mm.sqlite3", sha


def test_legacy_migration_dialog(tmp_path, browser, page_errors):
    from panel_support import Panel
    v1_path, sha = _tiny_v1_db(tmp_path / "v1")
    server = Panel(tmp_path, LEGACY_DB_PATHS=[str(v1_path)])
    context = browser.new_context()
    try:
        pg = context.new_page()
        page_errors.attach(pg)
        open_panel(pg, server)
        pg.click("#legacy")
        pg.wait_for_selector("dialog.legacy-dialog .candidate")
        candidate = pg.inner_text("dialog.legacy-dialog .candidate")
        assert str(v1_path) in candidate and "2 models" in candidate
        pg.click("dialog.legacy-dialog [data-action='migrate']")  # nothing chosen yet
        assert pg.inner_text("dialog.legacy-dialog [role='alert']") == "Enter the path of the v1 database."
        pg.fill("#legacy-db", str(tmp_path / "missing.sqlite3"))
        pg.click("dialog.legacy-dialog [data-action='migrate']")
        pg.wait_for_selector("dialog.legacy-dialog [role='alert']:text('not found')")
        pg.check("dialog.legacy-dialog input[type='radio']")
        assert pg.input_value("#legacy-db") == str(v1_path)
        pg.click("dialog.legacy-dialog [data-action='migrate']")
        pg.wait_for_selector("dialog.job-dialog[data-state='succeeded'] .report")
        report = pg.eval_on_selector_all(
            "dialog.job-dialog dd", "els => Object.fromEntries(els.map(e => [e.dataset.key, e.textContent]))")
        assert report["migrated"] == "1" and report["pending"] == "1"
        assert report["errors"] == "0" and report["images_processed"] == "2"
        assert report["image_errors"] == "0"
        assert pg.inner_text("dialog.job-dialog .dialog-title") == "Migration finished"
        assert pg.query_selector("dialog.legacy-dialog") is None
        pg.click("dialog.job-dialog [data-action='close']")
        # the library and the queue show the result
        pg.wait_for_selector("#items [data-name='a.safetensors'] img")
        pg.wait_for_function(
            "() => document.querySelector(\"#items [data-name='a.safetensors'] img\").naturalWidth > 0")
        assert pg.inner_text("#pending-badge") == "1"
        # the pending model's v1 picture is its preview and shows in its read-only details
        pg.click("#pending-toggle")
        pg.click(".tab[data-tab='loras']")
        card_img = "#items [data-name='b.safetensors'] img"
        pg.wait_for_function(f"() => document.querySelector(\"{card_img}\")?.naturalWidth > 0")
        assert pg.get_attribute(card_img, "src").startswith("/api/images/pending/")
        pg.click("#items [data-name='b.safetensors']")
        pg.wait_for_function(
            "() => document.querySelector('.pending-details .gallery-img')?.naturalWidth > 0")
    finally:
        context.close()
        server.stop()
    migrated = server.model(sha)
    assert migrated["meta_json"]["description"] == "desc A"
    assert {t["name"] for t in migrated["tags"]} == {"checkpoints", "anime"}
    assert [p["name"] for p in server.get("/api/migration/pending_models")["models"]] == ["b.safetensors"]
    # "not found" came back as a 404 from the POST, which Chromium logs
    assert all("404" in e for e in page_errors), page_errors
    page_errors.clear()


def test_legacy_migration_cancel_changes_nothing(tmp_path, browser, page_errors):
    from panel_support import Panel
    v1_path, _ = _tiny_v1_db(tmp_path / "v1")
    big = io.BytesIO()
    Image.new("RGB", (2400, 1800), (10, 120, 200)).save(big, "PNG")
    db = sqlite3.connect(v1_path)
    for i in range(3, 15):  # a dozen 4-megapixel pictures: seconds of work to interrupt
        name = f"model_{i}_1700000000000_p.png"
        (v1_path.parent / "images" / name).write_bytes(big.getvalue())
        db.execute("INSERT INTO models VALUES (?, ?, ?, 'loras', 1, ?, 1, NULL, ?)",
                   (i, f"/x/{i}.safetensors", f"{i}.safetensors", f"{i:064x}",
                    json.dumps({"images": [f"/media/{name}"]})))
    db.commit()
    db.close()
    server = Panel(tmp_path)
    context = browser.new_context()
    try:
        pg = context.new_page()
        page_errors.attach(pg)
        open_panel(pg, server)
        pg.click("#legacy")
        pg.fill("#legacy-db", str(v1_path))
        pg.click("dialog.legacy-dialog [data-action='migrate']")
        pg.wait_for_selector("dialog.job-dialog[data-job-id]")
        pg.click("dialog.job-dialog [data-action='cancel-job']")
        pg.wait_for_selector("dialog.job-dialog[data-state='cancelled']", timeout=30_000)
        assert pg.inner_text("dialog.job-dialog .error") == "Cancelled."
        assert pg.eval_on_selector("dialog.job-dialog progress", "e => e.value") < 1
        pg.keyboard.press("Escape")
        assert pg.query_selector("dialog") is None
    finally:
        context.close()
        server.stop()
    assert server.get("/api/models?type=others")["models"] == []
    assert server.get("/api/models?type=loras")["models"] == []
    assert server.get("/api/migration/pending_models")["models"] == []


def test_ticking_far_down_a_big_queue_keeps_the_place(panel, page):
    for i in range(400):
        panel.write_model("checkpoints", f"p{i:03d}.safetensors", b"q" * 64 + str(i).encode())
    panel.scan()
    open_panel(page, panel)
    _enter_pending(page)
    scroll_items(page, 4000)
    card = page.evaluate(MARK_VISIBLE_CARD)
    assert card["scroll"] > 0
    where = """(name) => {
      const box = document.getElementById('items');
      const c = box.querySelector(`[data-name='${name}']`);
      return [Boolean(c && c.__original), c && c.getBoundingClientRect().top, box.scrollTop,
              c && c.querySelector('.item-check').checked];
    }"""
    page.check(f"#items [data-name='{card['name']}'] .item-check")
    assert page.evaluate(where, card["name"]) == [True, card["top"], card["scroll"], True]
    assert page.text_content("#import-selected") == "Import Selected (1)"
    assert page.eval_on_selector("#select-all", "e => e.indeterminate")
    page.uncheck(f"#items [data-name='{card['name']}'] .item-check")
    assert page.evaluate(where, card["name"]) == [True, card["top"], card["scroll"], False]
    page.click(f"#items [data-name='{card['name']}']")  # shows it and ticks it
    page.wait_for_selector("#p-path")
    assert page.evaluate(where, card["name"]) == [True, card["top"], card["scroll"], True]
    assert page.get_attribute(f"#items [data-name='{card['name']}']", "aria-pressed") == "true"


def test_a_failed_import_keeps_the_ticked_items(panel, page, page_errors):
    panel.write_model("checkpoints", "one.safetensors")
    panel.write_model("checkpoints", "two.safetensors")
    panel.scan()
    page.route("**/api/migration/import_models", lambda route: route.fulfill(
        status=500, content_type="application/json", body='{"error": "injected failure"}'))
    open_panel(page, panel)
    _enter_pending(page)
    page.check("#select-all")
    page.click("#import-selected")
    page.locator(".notice.error", has_text="injected failure").wait_for()
    page.wait_for_function("() => !document.querySelector('#import-selected').disabled")
    assert page.text_content("#import-selected") == "Import Selected (2)"
    assert page.is_checked("#items [data-name='one.safetensors'] .item-check")
    assert page.is_checked("#items [data-name='two.safetensors'] .item-check")
    # so trying again needs no re-ticking
    page.unroute("**/api/migration/import_models")
    page.click("#import-selected")
    page.wait_for_selector("dialog.results-dialog[open]")
    assert page.inner_text("dialog.results-dialog dd[data-key='success']") == "2"
    assert all("500" in e for e in page_errors), page_errors  # Chromium logs the injected 500
    page_errors.clear()
