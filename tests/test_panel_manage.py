"""Library management in the panel: sort, multi-select batch edits, tag view, duplicates, trash."""

from __future__ import annotations

import os
import sqlite3

from panel_support import (  # noqa: F401  (fixtures)
    browser,
    card_names,
    open_panel,
    page,
    page_errors,
    panel,
    parent_site,
)


def _names(page):
    return [n.removesuffix(".safetensors") for n in card_names(page)]


def _db(panel):
    return sqlite3.connect(panel.app.config["DATABASE"])


MTIME_ORDER = [2, 0, 3, 1]  # model1 is the newest file, model2 the oldest


def _seed(panel, n=6):
    shas = {}
    for i in range(n):
        name = f"model{i}"
        # sizes grow in the reverse of the name order
        path, shas[name] = panel.write_model("checkpoints", f"{name}.safetensors",
                                             os.urandom(1000 * (n - i)))
        stamp = 1_600_000_000 + 1000 * (MTIME_ORDER.index(i) if i < 4 else i)
        os.utime(path, (stamp, stamp))
    panel.promote_all()
    return shas


def _tags_in_db(panel, sha):
    with _db(panel) as conn:
        return sorted(r[0] for r in conn.execute(
            "SELECT t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.model_hash = ?",
            (sha,)))


def test_sort_by_size_and_name_is_remembered(panel, page):
    _seed(panel, 4)
    open_panel(page, panel)
    assert _names(page) == ["model0", "model1", "model2", "model3"]
    page.select_option("#sort-key", "size")
    assert _names(page) == ["model3", "model2", "model1", "model0"]
    page.click("#sort-dir")
    assert _names(page) == ["model0", "model1", "model2", "model3"]
    page.select_option("#sort-key", "name")  # name, descending (the direction stays)
    assert _names(page) == ["model3", "model2", "model1", "model0"]
    page.reload()
    page.wait_for_function("() => !document.querySelector('.lib-status.loading')")
    page.wait_for_selector("#items [data-key]")
    assert page.input_value("#sort-key") == "name"
    assert _names(page) == ["model3", "model2", "model1", "model0"]
    page.select_option("#sort-key", "mtime")  # file times come from the server when needed
    page.wait_for_function("() => document.querySelector('#items [data-key]').dataset.name"
                           " === 'model1.safetensors'")
    assert _names(page) == ["model1", "model3", "model0", "model2"]  # newest first (descending)


def test_pending_list_sorts_by_size(panel, page):
    for i in range(3):
        panel.write_model("checkpoints", f"p{i}.safetensors", b"x" * (100 * (3 - i)))
    panel.scan()
    open_panel(page, panel)
    page.click("#pending-toggle")
    page.wait_for_selector("#select-all")
    page.wait_for_selector("#items [data-key]")
    assert [n.removesuffix(".safetensors") for n in card_names(page)] == ["p0", "p1", "p2"]
    page.select_option("#sort-key", "size")
    page.wait_for_function("() => document.querySelector('#items [data-key]').dataset.name"
                           " === 'p2.safetensors'")
    assert [n.removesuffix(".safetensors") for n in card_names(page)] == ["p2", "p1", "p0"]


def _card(page, sha):
    return page.locator(f"#items [data-key='{sha}']")


def test_multi_select_range_batch_tags_type_and_removal(panel, page):
    shas = _seed(panel)
    open_panel(page, panel)
    _card(page, shas["model1"]).locator(".item-check").click()
    _card(page, shas["model4"]).locator(".item-check").click(modifiers=["Shift"])
    assert page.inner_text(".multi-count") == "4 selected"
    page.click("[data-action='add-tags']")
    page.fill("#multi-tags-input", "batch, Style")
    page.click("dialog [data-action='confirm']")
    page.wait_for_selector(".multi-result:has-text('Added')")
    for i in range(1, 5):
        assert _tags_in_db(panel, shas[f"model{i}"]) == ["Style", "batch"]
    assert _tags_in_db(panel, shas["model0"]) == []
    assert page.inner_text(".multi-count") == "4 selected"  # the selection is kept
    page.wait_for_function(
        "() => document.querySelectorAll('#items .card.checked').length === 4")
    # Ctrl-click removes one from the selection, then set the type of the other three
    _card(page, shas["model4"]).click(modifiers=["Control"])
    assert page.inner_text(".multi-count") == "3 selected"
    page.click("[data-action='set-type']")
    page.fill("#multi-type-input", "loras")
    page.click("dialog [data-action='confirm']")
    page.wait_for_selector(".multi-result:has-text('Type set')")
    with _db(panel) as conn:
        types = dict(conn.execute("SELECT sha256, type FROM models"))
    assert [types[shas[f"model{i}"]] for i in range(6)] == [
        "checkpoints", "loras", "loras", "loras", "checkpoints", "checkpoints"]
    # remove tags from the three, then remove two models from the library
    page.click("[data-action='remove-tags']")
    page.select_option("#multi-remove-select", label="batch")
    page.click("dialog [data-action='confirm']")
    page.wait_for_selector(".multi-result:has-text('Removed batch')")
    assert _tags_in_db(panel, shas["model1"]) == ["Style"]
    assert _tags_in_db(panel, shas["model4"]) == ["Style", "batch"]
    page.click("[data-action='clear']")
    page.click("#items")  # keyboard: Ctrl+A selects everything shown, Escape clears
    page.focus("#items [data-key]")
    page.keyboard.press("Control+a")
    assert page.inner_text(".multi-count") == "3 selected"  # the checkpoints tab shows 3 now
    page.keyboard.press("Escape")
    assert page.inner_text(".multi-count") == "0 selected"
    _card(page, shas["model0"]).locator(".item-check").click()
    _card(page, shas["model5"]).locator(".item-check").click()
    page.click("[data-action='remove']")
    page.click("dialog [data-action='confirm']")
    page.wait_for_selector(".multi-result:has-text('Removed 2')")
    with _db(panel) as conn:
        left = {r[0] for r in conn.execute("SELECT sha256 FROM models")}
    assert shas["model0"] not in left and shas["model5"] not in left and len(left) == 4
    assert (panel.root / "checkpoints" / "model0.safetensors").is_file()
    assert _names(page) == ["model4"]


def test_tag_view_renames_onto_existing_name_merging(panel, page):
    shas = _seed(panel, 3)
    panel.set_model(shas["model0"], tags=["anime"])
    panel.set_model(shas["model1"], tags=["anim"])
    panel.set_model(shas["model2"], tags=["anim", "anime"])
    open_panel(page, panel)
    page.click("#manage-tags")
    row = page.locator(".tag-admin tr[data-tag='anim']")
    assert row.locator("td.num").first.inner_text() == "2"
    row.locator(".tag-name-input").fill("Anime")
    row.locator("[data-action='rename']").click()
    confirm = page.locator(".confirm-dialog")
    assert "Merge anim: 2 models" in confirm.inner_text()
    assert "anime: 3 models" in confirm.inner_text()  # the count after the merge
    confirm.locator("[data-action='confirm']").click()
    page.wait_for_function("() => !document.querySelector(\".tag-admin tr[data-tag='anim']\")")
    assert page.locator(".tag-admin tr[data-tag='anime'] td.num").first.inner_text() == "3"
    with _db(panel) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM tags")] == ["anime"]
        assert conn.execute("SELECT COUNT(*) FROM model_tags").fetchone()[0] == 3


def test_duplicates_view_trash_and_restore(panel, page):
    data = os.urandom(5000)
    path, sha = panel.write_model("checkpoints", "same.safetensors", data)
    panel.promote_all()
    copy = panel.root / "loras" / "same_copy.safetensors"
    copy.write_bytes(data)
    panel.scan()  # queues the copy as pending; record its hash as a scan that hashed it would
    with _db(panel) as conn:
        conn.execute("INSERT OR REPLACE INTO file_hashes(path, size_bytes, mtime_ns, sha256, hashed_at) VALUES (?, ?, ?, ?, 1)",
                     (str(copy), len(data), copy.stat().st_mtime_ns, sha))
    open_panel(page, panel)
    page.click("#manage-duplicates")
    group = page.locator(f".dup-group[data-sha='{sha}']")
    assert "2 copies × 4.88 KB = 9.77 KB; 4.88 KB reclaimable" in group.inner_text()
    group.locator(f".dup-path[data-path='{copy}'] [data-action='trash']").click()
    dialog = page.locator(".trash-dialog")
    assert "same_copy.safetensors" in dialog.inner_text()
    dialog.locator("[data-action='confirm']").click()
    page.wait_for_function(f"() => !document.querySelector(\".dup-path[data-path='{copy}']\")")
    assert not copy.exists() and path.is_file()
    page.keyboard.press("Escape")
    page.click("#manage-trash")
    page.locator(".trash-view [data-action='restore']").click()
    page.wait_for_selector(".trash-view :text('The trash is empty')")
    assert copy.read_bytes() == data


def test_missing_view_lists_lost_files_and_removes_them(panel, page):
    shas = _seed(panel, 2)
    (panel.root / "checkpoints" / "model1.safetensors").unlink()
    open_panel(page, panel)
    page.click("#manage-missing")
    page.wait_for_selector(f".missing-view tr[data-sha='{shas['model1']}']")
    assert page.locator(".missing-view tbody tr").count() == 1
    page.click("#missing-remove-all")
    page.click(".confirm-dialog [data-action='confirm']")
    page.wait_for_selector(".missing-view :text('Every library model has its file.')")
    with _db(panel) as conn:
        assert [r[0] for r in conn.execute("SELECT sha256 FROM models")] == [shas["model0"]]


def test_batch_reread_runs_as_a_job_and_fills_what_the_sidecars_say(panel, page):
    import json

    shas = _seed(panel, 3)
    for i in (0, 2):  # sidecars left by A1111 after the models were imported
        (panel.root / "checkpoints" / f"model{i}.json").write_text(
            json.dumps({"activation text": f"word{i}, shared"}), encoding="utf-8")
    open_panel(page, panel)
    for i in range(3):
        _card(page, shas[f"model{i}"]).locator(".item-check").click()
    page.click("[data-action='reread']")
    page.wait_for_selector(".multi-result:has-text('3')")
    assert page.inner_text(".multi-count") == "3 selected"
    with _db(panel) as conn:
        words = dict(conn.execute("SELECT sha256, trigger_words FROM model_metadata"))
    assert json.loads(words[shas["model0"]]) == ["word0", "shared"]
    assert json.loads(words[shas["model2"]]) == ["word2", "shared"]
    assert not json.loads(words.get(shas["model1"]) or "[]")
