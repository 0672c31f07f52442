"""The web panel's library, details and gallery, driven in a real headless Chromium."""

from __future__ import annotations

import re

from panel_support import (  # noqa: F401  (fixtures)
    MARK_VISIBLE_CARD,
    browser,
    card_names,
    drawn_count,
    open_panel,
    page,
    page_errors,
    panel,
    parent_site,
    png_bytes,
    scroll_items,
)


def _seed_library(panel):
    shas = {}
    for name in ("alpha", "beta", "gamma"):
        shas[name] = panel.write_model("checkpoints", f"{name}.safetensors")[1]
    shas["lora_one"] = panel.write_model("loras", "lora_one.safetensors")[1]
    shas["odd"] = panel.write_model("checkpoints", "odd_vae.safetensors")[1]
    panel.promote_all()
    panel.set_model(shas["alpha"], name="Alpha", tags=["anime"])
    panel.set_model(shas["beta"], name="Beta", tags=["NSFW", "anime"])
    panel.set_model(shas["gamma"], name="Gamma", tags=["anime", "style"])
    panel.set_model(shas["odd"], name="Odd VAE", type="vae")  # not a configured type: Others
    return shas


def _toggle_tag(page, name):
    if page.is_hidden(".tag-filter-panel"):
        page.click(".tag-filter-btn")
    page.click(f".tag-filter-item[data-tag='{name}']")


def test_tabs_search_tag_filters_and_nsfw_default(panel, page):
    _seed_library(panel)
    open_panel(page, panel)
    assert page.eval_on_selector_all(".tab", "els => els.map(e => e.textContent)") == [
        "checkpoints", "loras", "Others"]
    # NSFW (spelled "NSFW" here) is excluded by default
    assert card_names(page) == ["Alpha", "Gamma"]
    assert page.inner_text(".tag-filter-btn") == "Tags (1)"

    page.fill("#search", "GAM")
    assert card_names(page) == ["Gamma"]
    page.fill("#search", "checkpoints/alpha.safe")  # the path matches too
    assert card_names(page) == ["Alpha"]
    page.fill("#search", "")

    _toggle_tag(page, "style")  # include
    assert card_names(page) == ["Gamma"]
    _toggle_tag(page, "style")  # exclude
    assert card_names(page) == ["Alpha"]
    assert page.get_attribute(".tag-filter-item[data-tag='style']", "data-mode") == "exclude"
    _toggle_tag(page, "style")  # off again
    assert card_names(page) == ["Alpha", "Gamma"]
    _toggle_tag(page, "anime")
    assert page.inner_text(".tag-filter-item[data-tag='anime'] .tag-count") == "2"
    page.click("[data-action='clear-filters']")
    assert card_names(page) == ["Alpha", "Beta", "Gamma"]
    assert page.inner_text(".count") == "3 / 3"
    page.keyboard.press("Escape")
    assert page.is_hidden(".tag-filter-panel")

    page.click(".tab[data-tab='others']")
    page.wait_for_selector("#items [data-name='Odd VAE']")
    assert card_names(page) == ["Odd VAE"]
    page.click(".tab[data-tab='loras']")
    page.wait_for_selector("#items [data-name='lora_one.safetensors']")
    assert card_names(page) == ["lora_one.safetensors"]

    # a fresh page starts with NSFW excluded again, and ?tab= picks the tab
    open_panel(page, panel, "?tab=checkpoints")
    assert card_names(page) == ["Alpha", "Gamma"]
    open_panel(page, panel, "?tab=LORAS")
    assert page.inner_text(".tab.active") == "loras"


def test_cards_list_and_lazy_previews(panel, page):
    shas = [panel.write_model("checkpoints", f"m{i:02d}.safetensors")[1] for i in range(16)]
    panel.write_model("checkpoints", "zz_no_image.safetensors")
    panel.promote_all()
    for sha in shas:
        panel.upload_image(sha)
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/api/images/" in r.url else None)
    open_panel(page, panel)
    first = "#items [data-name='m00.safetensors'] img"
    page.wait_for_function(f"() => document.querySelector(\"{first}\")?.naturalWidth > 0")
    src = page.get_attribute(first, "src")
    assert re.fullmatch(rf"/api/images/{shas[0]}_0\.webp\?quality=medium&rev=0", src)
    # the last cards are below the fold: not requested until scrolled to
    assert page.eval_on_selector("#items [data-name='m15.safetensors'] img", "e => e.src") == ""
    assert not any(shas[15] in url for url in requests)
    assert not any("get_img_count" in url for url in requests)
    no_image = "#items [data-name='zz_no_image.safetensors']"
    assert page.query_selector(f"{no_image} img") is None  # images_count 0: never probed
    page.eval_on_selector(no_image, "e => e.scrollIntoView()")
    assert page.inner_text(f"{no_image} .placeholder") == "No image"
    last = "#items [data-name='m15.safetensors'] img"
    page.wait_for_function(f"() => document.querySelector(\"{last}\")?.naturalWidth > 0")

    page.fill("#cols", "6")
    page.press("#cols", "Enter")
    assert page.eval_on_selector("#items .vgrid-window", "e => getComputedStyle(e).gridTemplateColumns"
                                 ".split(' ').length") == 6
    page.click("[data-view='list']")
    assert page.query_selector("#items .card") is None
    assert len(page.query_selector_all("#items .row")) == 17
    assert page.inner_text("#items [data-name='zz_no_image.safetensors'] .row-size") == "2.02 KB"  # 2071 bytes
    page.wait_for_function(f"() => document.querySelector(\"{first}\")?.naturalWidth > 0")
    page.click("[data-view='card']")
    assert len(page.query_selector_all("#items .card")) == 17


def test_details_edit_save_new_tag_and_revert(panel, page):
    shas = _seed_library(panel)
    patches = []
    page.on("request", lambda r: patches.append(r.post_data_json) if r.method == "PATCH" else None)
    open_panel(page, panel)
    page.click("#items [data-name='Alpha']")
    page.wait_for_selector("#d-name")
    assert page.get_attribute("#items [data-name='Alpha']", "aria-pressed") == "true"
    assert page.input_value("#d-sha") == shas["alpha"]
    assert page.input_value("#d-type") == "checkpoints"
    assert page.input_value("#d-path").endswith("alpha.safetensors")
    assert page.input_value("#d-size") == "2.02 KB"  # 2065 bytes
    assert re.search(r"\d", page.input_value("#d-created"))
    assert page.eval_on_selector_all(".tags-input .chip", "els => els.map(e => e.dataset.tag)") == [
        "anime"]

    page.fill("#d-name", "Alpha Prime")
    page.fill("#d-description", "A <b>bold</b> model")
    page.fill("#d-tags", "sty")
    page.click(".suggestions li:text('style')")
    page.fill("#d-tags", "brand new, ")  # comma commits
    page.fill("#d-tags", "Second One")
    page.press("#d-tags", "Enter")
    assert page.eval_on_selector_all(".chip.new", "els => els.map(e => e.dataset.tag)") == [
        "brand new", "Second One"]
    page.fill("#d-link", "javascript:alert(1)")
    assert page.get_attribute("#d-link-open", "href") is None
    page.fill("#d-link", "https://civitai.com/models/1")
    assert page.get_attribute("#d-link-open", "href") == "https://civitai.com/models/1"
    assert page.get_attribute("#d-link-open", "rel") == "noopener noreferrer"
    page.click("#d-save")
    page.wait_for_selector("#d-status.ok")
    assert page.inner_text("#d-status") == "Saved."

    saved = panel.model(shas["alpha"])
    assert saved["name"] == "Alpha Prime"
    assert saved["meta_json"]["description"] == "A <b>bold</b> model"
    assert saved["meta_json"]["community_links"] == "https://civitai.com/models/1"
    assert sorted(t["name"] for t in saved["tags"]) == ["Second One", "anime", "brand new", "style"]
    assert {"brand new", "Second One"} <= {t["name"] for t in panel.get("/api/tags")["tags"]}
    # only the changed fields were sent; the prompts were not touched
    assert len(patches) == 1
    assert set(patches[0]) == {"name", "meta_json", "tags"}
    assert set(patches[0]["meta_json"]) == {"description", "community_links"}
    # the list shows the new name and tags; user text is shown as text, never as HTML
    card = "#items [data-name='Alpha Prime']"
    assert sorted(page.eval_on_selector_all(f"{card} .chip", "els => els.map(e => e.textContent)")) == [
        "Second One", "anime", "brand new", "style"]
    assert page.query_selector("#items b, #details b") is None

    page.fill("#d-description", "scribbles")
    page.click(".chip[data-tag='style'] .chip-remove")
    page.click("#d-revert")
    page.wait_for_selector("#d-status.ok")
    assert page.input_value("#d-description") == "A <b>bold</b> model"
    assert page.eval_on_selector_all(".tags-input .chip", "els => els.length") == 4
    page.click("#d-save")
    assert page.inner_text("#d-status") == "Nothing to save: no field changed."
    assert len(patches) == 1

    # unsaved edits are not lost silently when another model is clicked
    page.fill("#d-positive", "masterpiece")
    page.click("#items [data-name='Gamma']")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    page.keyboard.press("Escape")
    assert page.input_value("#d-positive") == "masterpiece"
    page.click("#items [data-name='Gamma']")
    page.click("dialog.confirm-dialog [data-action='confirm']")
    page.wait_for_function(f"() => document.querySelector('#d-sha')?.value === '{shas['gamma']}'")
    assert page.input_value("#d-positive") == ""
    assert panel.model(shas["alpha"])["meta_json"]["prompts"]["positive"] == ""


def test_gallery_upload_navigate_and_delete(panel, page, tmp_path):
    sha = panel.write_model("checkpoints", "pics.safetensors")[1]
    panel.promote_all()
    first = tmp_path / "first.png"
    first.write_bytes(png_bytes(color=(10, 200, 10)))
    second = tmp_path / "second.png"
    second.write_bytes(png_bytes(size=(64, 64), color=(10, 10, 200)))
    open_panel(page, panel)
    card = "#items [data-name='pics.safetensors']"
    assert page.inner_text(f"{card} .placeholder") == "No image"
    page.click(card)
    page.wait_for_selector(".gallery-frame .placeholder")
    assert page.inner_text(".gallery-frame") == "No images"

    page.set_input_files("#gallery-file", str(first))
    page.wait_for_selector(".gallery-counter:text('1 / 1')")
    page.wait_for_function("() => document.querySelector('.gallery-img')?.naturalWidth > 0")
    assert "quality=high" in page.get_attribute(".gallery-img", "src")
    # the library card now shows the picture (images_count updated, rev bumped)
    page.wait_for_function(f"() => document.querySelector(\"{card} img\")?.naturalWidth > 0")
    assert "rev=1" in page.get_attribute(f"{card} img", "src")

    page.set_input_files("#gallery-file", str(second))
    page.wait_for_selector(".gallery-counter:text('2 / 2')")
    assert len(page.query_selector_all(".gallery-dots .dot")) == 2
    page.click(".gallery-arrow.next")
    assert page.inner_text(".gallery-counter") == "1 / 2"
    page.click(".gallery-dots .dot >> nth=1")
    assert page.inner_text(".gallery-counter") == "2 / 2"
    assert page.get_attribute("#gallery-open", "target") == "_blank"
    assert page.get_attribute("#gallery-open", "href").startswith(f"/api/images/{sha}_1.webp")

    page.click("#gallery-delete")  # cancel keeps the image
    page.wait_for_selector("dialog.confirm-dialog[open]")
    page.keyboard.press("Escape")
    assert page.query_selector("dialog.confirm-dialog") is None
    assert panel.get(f"/api/images/get_img_count?sha256={sha}")["count"] == 2

    page.click("#gallery-delete")
    page.click("dialog.confirm-dialog [data-action='confirm']")
    page.wait_for_selector(".gallery-counter:text('1 / 1')")
    assert panel.get(f"/api/images/get_img_count?sha256={sha}")["count"] == 1
    assert panel.model(sha)["meta_json"]["images_count"] == 1
    page.wait_for_function("() => document.querySelector('.gallery-img')?.naturalWidth > 0")


def test_language_switch_to_chinese(panel, page):
    _seed_library(panel)
    open_panel(page, panel)
    assert page.inner_text("#scan") == "Scan"
    page.select_option("#lang", "zh-CN")
    assert page.inner_text(".tab[data-tab='others']") == "其他"
    assert page.inner_text("#scan") == "扫描"
    assert page.inner_text("#refresh") == "刷新"
    assert page.get_attribute("#search", "placeholder") == "搜索模型…"
    assert page.inner_text(".details-empty") == "从模型库中选择一个模型以查看和编辑详情。"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.click("#items [data-name='Alpha']")
    page.wait_for_selector("label[for='d-description']:text('描述')")
    open_panel(page, panel)  # remembered
    assert page.inner_text("#scan") == "扫描"
    open_panel(page, panel, "?lang=en")  # the URL wins
    assert page.inner_text("#scan") == "Scan"


def test_types_error_then_retry_and_clamped_splitter(panel, page, page_errors):
    panel.write_model("checkpoints", "only.safetensors")
    panel.promote_all()
    failures = []

    def busy_once(route):
        if failures:
            route.continue_()
        else:
            failures.append(route.request.url)
            route.fulfill(status=503, content_type="application/json",
                          body='{"error": "Database is busy"}')

    page.route("**/api/models/get_types", busy_once)
    page.goto(f"{panel.url}/")
    page.wait_for_selector("#tabs-retry")
    assert page.inner_text(".tabs-status.error") == "Could not load model types: Database is busy"
    page.click("#tabs-retry")
    page.wait_for_selector("#items [data-name='only.safetensors']")
    assert page.inner_text(".tab.active") == "checkpoints"
    # Chromium logs the 503 it was served; nothing else may be on the console
    assert len(page_errors) == 1 and "503" in page_errors[0], page_errors
    page_errors.clear()

    def details_width():
        return page.eval_on_selector(".details-col", "e => e.getBoundingClientRect().width")

    box = page.query_selector("#splitter").bounding_box()
    page.mouse.move(box["x"] + 2, 400)
    page.mouse.down()
    page.mouse.move(5, 400, steps=4)
    page.mouse.up()
    assert abs(details_width() - 1400 * 0.8) < 2  # clamped to 80 % of the window
    box = page.query_selector("#splitter").bounding_box()
    page.mouse.move(box["x"] + 2, 400)
    page.mouse.down()
    page.mouse.move(1395, 400, steps=4)
    page.mouse.up()
    assert abs(details_width() - 1400 * 0.1) < 2  # and to 10 %
    page.focus("#splitter")
    page.keyboard.press("ArrowLeft")
    assert abs(details_width() - (1400 * 0.1 + 32)) < 2


WHERE_IS = """(name) => {
  const box = document.getElementById('items');
  const card = box.querySelector(`[data-name='${name}']`);
  return {original: Boolean(card && card.__original), top: card ? card.getBoundingClientRect().top : null,
          scroll: box.scrollTop, drawn: box.querySelectorAll('[data-key]').length,
          selected: card ? card.getAttribute('aria-pressed') : null};
}"""


def test_big_library_keeps_its_place_when_selecting_and_saving(panel, page):
    for i in range(400):
        panel.write_model("checkpoints", f"m{i:03d}.safetensors", b"w" * 64 + str(i).encode())
    panel.promote_all()
    open_panel(page, panel)
    assert 0 < drawn_count(page) < 150  # only the rows on screen plus a margin
    scroll_items(page, 4000)
    drawn = drawn_count(page)
    assert 0 < drawn < 150
    card = page.evaluate(MARK_VISIBLE_CARD)
    assert card["scroll"] > 0

    # selecting only moves the highlight: the very same element stays where it was
    page.click(f"#items [data-name='{card['name']}']")
    page.wait_for_function(f"() => document.querySelector('#d-name')?.value === '{card['name']}'")
    after = page.evaluate(WHERE_IS, card["name"])
    assert after == {"original": True, "top": card["top"], "scroll": card["scroll"], "drawn": drawn,
                     "selected": "true"}

    # a save re-draws the list (names and tags may change) but keeps as much of it and the scroll
    page.fill("#d-description", "notes")
    page.click("#d-save")
    page.wait_for_selector("#d-status.ok")
    after = page.evaluate(WHERE_IS, card["name"])
    assert after["top"] == card["top"] and after["scroll"] == card["scroll"]
    assert after["drawn"] == drawn and after["selected"] == "true"


def _library_status(page):
    return page.eval_on_selector(".lib-status", "e => [e.className, e.textContent]")


def test_status_line_describes_the_tab_on_screen(panel, page, page_errors):
    panel.write_model("checkpoints", "c1.safetensors")
    panel.write_model("loras", "l1.safetensors")
    panel.promote_all()
    page.route("**/api/models?type=loras", lambda route: route.fulfill(
        status=500, content_type="application/json", body='{"error": "injected failure"}'))
    open_panel(page, panel)
    # a failed load's error stays with its tab
    page.click(".tab[data-tab='loras']")
    page.wait_for_selector(".lib-status.error")
    assert "injected failure" in page.inner_text(".lib-status")
    page.click(".tab[data-tab='checkpoints']")  # cached
    assert _library_status(page) == ["lib-status", ""]
    assert page.locator("#items [data-name='c1.safetensors']").count() == 1

    # a slow tab, left before it loaded: the cached tab shown instead is not "Loading…"
    held = []
    page.unroute("**/api/models?type=loras")
    page.route("**/api/models?type=loras", lambda route: held.append(route))
    page.click(".tab[data-tab='loras']")
    page.wait_for_selector(".lib-status.loading")
    page.click(".tab[data-tab='checkpoints']")
    assert _library_status(page) == ["lib-status", ""]
    while not held:
        page.wait_for_timeout(20)
    held.pop().continue_()
    page.wait_for_timeout(300)
    assert _library_status(page) == ["lib-status", ""]
    assert page.locator("#items [data-name='c1.safetensors']").count() == 1
    page.click(".tab[data-tab='loras']")  # loaded meanwhile: cached now
    page.wait_for_selector("#items [data-name='l1.safetensors']")
    assert _library_status(page) == ["lib-status", ""]
    page.click(".tab[data-tab='checkpoints']")

    # pending mode switched on and off while its queue is still loading
    held_pending = []
    page.route("**/api/migration/pending_models", lambda route: held_pending.append(route))
    page.click("#pending-toggle")
    page.wait_for_selector(".lib-status.loading")
    page.click("#pending-toggle")
    assert _library_status(page) == ["lib-status", ""]
    assert page.locator("#items [data-name='c1.safetensors']").count() == 1
    while held_pending:
        held_pending.pop().continue_()
    page.wait_for_timeout(300)
    assert _library_status(page) == ["lib-status", ""]
    assert all("500" in e for e in page_errors), page_errors  # Chromium logs the injected 500
    page_errors.clear()


def test_edits_typed_while_saving_are_kept_and_stay_unsaved(panel, page):
    shas = _seed_library(panel)
    held = []
    page.route(f"**/api/models/{shas['alpha']}", lambda route: held.append(route)
               if route.request.method == "PATCH" else route.continue_())
    open_panel(page, panel)
    page.click("#items [data-name='Alpha']")
    page.wait_for_selector("#d-name")
    page.fill("#d-description", "first part")
    page.click("#d-save")
    page.wait_for_selector("#d-status:text('Saving…')")
    # the save is in flight: keep typing
    page.fill("#d-positive", "typed while saving")
    page.press("#d-description", "End")
    page.keyboard.type(" + more")
    page.fill("#d-tags", "half typed")
    while not held:
        page.wait_for_timeout(20)
    held.pop().continue_()
    page.wait_for_selector("#d-status.ok")
    assert page.inner_text("#d-status") == "Saved. Edits made while saving are kept and not saved yet."
    assert page.input_value("#d-description") == "first part + more"
    assert page.input_value("#d-positive") == "typed while saving"
    assert page.input_value("#d-tags") == "half typed"
    saved = panel.model(shas["alpha"])["meta_json"]
    assert saved["description"] == "first part" and saved["prompts"]["positive"] == ""
    # they count as unsaved edits: leaving asks first, and a second Save sends them
    page.click("#items [data-name='Gamma']")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    page.keyboard.press("Escape")
    page.click("#d-save")
    page.wait_for_selector("#d-status:text('Saving…')")
    while not held:
        page.wait_for_timeout(20)
    held.pop().continue_()
    page.wait_for_selector("#d-status:text('Saved.')")
    saved = panel.model(shas["alpha"])
    assert saved["meta_json"]["description"] == "first part + more"
    assert saved["meta_json"]["prompts"]["positive"] == "typed while saving"
    assert "half typed" in {t["name"] for t in saved["tags"]}


def test_stored_values_the_inputs_normalise_are_not_edits(panel, page):
    shas = _seed_library(panel)
    panel.set_model(shas["alpha"], name="two\nlines", meta_json={
        "description": "line1\r\nline2", "community_links": "https://example.com/x  ",
        "prompts": {"positive": "a\rb", "negative": ""}})
    patches = []
    page.on("request", lambda r: patches.append(r.post_data_json) if r.method == "PATCH" else None)
    open_panel(page, panel)
    page.click(f"#items [data-key='{shas['alpha']}']")
    page.wait_for_selector("#d-name")
    assert page.input_value("#d-name") == "twolines"  # what a text input makes of it
    page.click("#items [data-name='Gamma']")  # nothing was edited: no "discard?" question
    page.wait_for_function(f"() => document.querySelector('#d-sha')?.value === '{shas['gamma']}'")
    assert page.query_selector("dialog[open]") is None
    page.click(f"#items [data-key='{shas['alpha']}']")
    page.wait_for_function(f"() => document.querySelector('#d-sha')?.value === '{shas['alpha']}'")
    page.click("#d-save")
    assert page.inner_text("#d-status") == "Nothing to save: no field changed."
    # an edit of one field sends that field only: the others are not rewritten
    page.fill("#d-negative", "blurry")
    page.click("#d-save")
    page.wait_for_selector("#d-status.ok")
    assert patches == [{"meta_json": {"prompts": {"negative": "blurry"}}}]
    stored = panel.model(shas["alpha"])
    assert stored["name"] == "two\nlines"
    assert stored["meta_json"]["description"] == "line1\r\nline2"
    assert stored["meta_json"]["community_links"] == "https://example.com/x  "
    assert stored["meta_json"]["prompts"] == {"positive": "a\rb", "negative": "blurry"}


def test_upload_finishing_after_switching_models(panel, page, tmp_path):
    _, a = panel.write_model("checkpoints", "a.safetensors")
    _, b = panel.write_model("checkpoints", "b.safetensors")
    panel.promote_all()
    pic = tmp_path / "pic.png"
    pic.write_bytes(png_bytes())
    held = []
    page.route("**/api/images/upload", lambda route: held.append(route))
    open_panel(page, panel)
    page.click("#items [data-name='a.safetensors']")
    page.wait_for_selector(".gallery-frame .placeholder")
    page.set_input_files("#gallery-file", str(pic))
    page.wait_for_selector(".gallery-status:text('Uploading…')")
    assert page.is_disabled("#gallery-upload")
    # B is not busy: its Upload works and its status is its own
    page.click("#items [data-name='b.safetensors']")
    page.wait_for_function(f"() => document.querySelector('#d-sha')?.value === '{b}'")
    assert page.is_enabled("#gallery-upload")
    assert page.inner_text(".gallery-status") == ""
    while not held:
        page.wait_for_timeout(20)
    held.pop().continue_()
    # A's upload lands: a notice says so, A's card shows the picture, B's gallery is untouched
    page.locator(".notice", has_text="Image added to a.safetensors.").wait_for()
    card = "#items [data-name='a.safetensors']"
    page.wait_for_function(f"() => document.querySelector(\"{card} img\")?.naturalWidth > 0")
    assert panel.model(a)["meta_json"]["images_count"] == 1
    assert page.inner_text(".gallery-status") == ""
    assert page.inner_text(".gallery-frame") == "No images"
    assert page.is_enabled("#gallery-upload")
    # and A shows it when shown again
    page.click(card)
    page.wait_for_selector(".gallery-counter:text('1 / 1')")


def test_read_only_library_disables_write_controls(tmp_path, browser, page_errors):
    from panel_support import read_only_panel

    def seed(panel):
        panel.write_model("checkpoints", "c1.safetensors")
        panel.promote_all()
        panel.write_model("checkpoints", "c2.safetensors")
        panel.scan()  # c2 stays pending

    server = read_only_panel(tmp_path, seed)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        pg = context.new_page()
        page_errors.attach(pg)
        open_panel(pg, server)
        pg.wait_for_selector("#banner:not([hidden])")
        banner = pg.inner_text("#banner")
        assert banner.startswith("The library is read-only: ")
        for button in ("#scan", "#legacy"):
            assert pg.is_disabled(button)
            assert pg.get_attribute(button, "title") == banner
        pg.click("#items [data-name='c1.safetensors']")
        pg.wait_for_selector("#d-name")
        for button in ("#d-save", "#gallery-upload"):
            assert pg.is_disabled(button)
            assert pg.get_attribute(button, "title") == banner
        pg.fill("#d-description", "edit")  # editing is harmless; saving it is what cannot be
        assert pg.is_disabled("#d-save")
        pg.click("#pending-toggle")
        pg.wait_for_selector("#items [data-name='c2.safetensors']")
        pg.check("#select-all")
        assert pg.text_content("#import-selected") == "Import Selected (1)"
        assert pg.is_disabled("#import-selected")
        assert pg.get_attribute("#import-selected", "title") == banner
    finally:
        context.close()
        server.stop()


def test_keyboard_and_screen_reader_basics(panel, page):
    _seed_library(panel)
    open_panel(page, panel)
    # the splitter reports its position from the start, not only after a drag
    width = page.eval_on_selector(".details-col", "e => e.getBoundingClientRect().width")
    assert page.get_attribute("#splitter", "aria-valuenow") == str(round(width / 1400 * 100))

    # tabs: one tab stop, Left/Right move between tabs and show them
    tabs = page.eval_on_selector_all("[role=tab]", "els => els.map(e => [e.dataset.tab, "
                                     "e.getAttribute('aria-selected'), e.tabIndex])")
    assert tabs == [["checkpoints", "true", 0], ["loras", "false", -1], ["others", "false", -1]]
    page.focus(".tab[data-tab='checkpoints']")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#items [data-name='lora_one.safetensors']")
    assert page.evaluate("document.activeElement.dataset.tab") == "loras"
    assert page.get_attribute(".tab[data-tab='loras']", "aria-selected") == "true"
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#items [data-name='Odd VAE']")
    page.keyboard.press("ArrowRight")  # wraps around
    page.wait_for_selector("#items [data-name='Alpha']")
    assert page.evaluate("document.activeElement.dataset.tab") == "checkpoints"
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector("#items [data-name='Odd VAE']")
    assert page.evaluate("document.activeElement.dataset.tab") == "others"
    page.click(".tab[data-tab='checkpoints']")

    # the tag input is a combobox that points at its suggestion list and the active option
    page.click("#items [data-name='Alpha']")
    page.wait_for_selector("#d-name")
    combo = "#d-tags"
    assert page.get_attribute(combo, "role") == "combobox"
    assert page.get_attribute(combo, "aria-expanded") == "false"
    listbox = page.get_attribute(combo, "aria-controls")
    assert page.get_attribute(f"#{listbox}", "role") == "listbox"
    page.fill(combo, "s")
    page.wait_for_selector(f"#{listbox} li")
    assert page.get_attribute(combo, "aria-expanded") == "true"
    assert page.get_attribute(combo, "aria-activedescendant") is None
    page.press(combo, "ArrowDown")
    active = page.get_attribute(combo, "aria-activedescendant")
    assert page.get_attribute(f"#{active}", "aria-selected") == "true"
    assert page.inner_text(f"#{active}") == page.inner_text(f"#{listbox} li.active")
    page.press(combo, "Escape")
    assert page.get_attribute(combo, "aria-expanded") == "false"
    assert page.get_attribute(combo, "aria-activedescendant") is None


def test_the_opening_requests_start_early_and_are_made_once(panel, page):
    # boot.js asks for the types and the opening tab while the other modules load; api.js takes
    # those answers over, so the 50k-model list of a big library is never fetched twice.
    _seed_library(panel)
    asked = []
    page.on("request", lambda r: asked.append(r.url.split("/", 3)[3]) if "/api/" in r.url else None)
    open_panel(page, panel, "?tab=LoRAs")  # any case names the tab
    assert card_names(page) == ["lora_one.safetensors"]
    assert asked.count("api/models/get_types") == 1
    assert asked.count("api/models?type=loras") == 1
    assert [u for u in asked if u.startswith("api/models?")] == ["api/models?type=loras"]
    page.click(".tab[data-tab='checkpoints']")
    page.wait_for_selector("#items [data-name='Alpha']")
    assert card_names(page) == ["Alpha", "Gamma"]
    assert asked.count("api/models?type=checkpoints") == 1


def test_index_preloads_every_module_the_panel_imports():
    # Without a preload the browser finds the modules level by level, one round trip each.
    from pathlib import Path

    static = Path(__file__).resolve().parent.parent / "static"
    html = (static / "index.html").read_text(encoding="utf-8")
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/js/([\w.-]+)">', html))
    entries = set(re.findall(r'<script type="module" src="/static/js/([\w.-]+)">', html))
    assert entries == {"boot.js", "app.js"}
    seen, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source = (static / "js" / name).read_text(encoding="utf-8")
        todo += re.findall(r'^import[^;]*?from "\./([\w.-]+)";', source, re.M | re.S)
    assert seen - entries == preloaded
