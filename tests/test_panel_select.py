"""Selection mode: the panel inside an iframe of a ComfyUI page from another origin."""

from __future__ import annotations

import json

from panel_support import (  # noqa: F401  (fixtures)
    ParentSite,
    browser,
    page,
    page_errors,
    panel,
    parent_site,
)

PARENT_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<iframe id="panel" src="{src}" style="width:1300px;height:820px;border:0"></iframe>
<script>
window.__messages = [];
window.__raw = [];
const frame = document.getElementById("panel");
const init = () => frame.contentWindow.postMessage(
  {{source: "hikaze-comfyui", type: "init", kind: "{kind}", payload: {payload}}}, "{panel_origin}");
window.addEventListener("message", (event) => {{
  window.__messages.push({{origin: event.origin, data: event.data}});
  window.__raw.push(JSON.stringify(event.data));
  if (event.data && event.data.type === "ready") init();
}});
{extra}
</script></body></html>"""


def _open(page, panel, site, kind, payload, extra=""):
    src = f"{panel.url}/?mode=select&kind={kind}&parent={site.origin}"
    site.html = PARENT_PAGE.format(src=src, kind=kind, payload=json.dumps(payload),
                                   panel_origin=panel.origin, extra=extra)
    page.goto(f"{site.origin}/workflow")
    frame = page.frame_locator("#panel")
    frame.locator("#select-confirm").wait_for()
    return frame


def _messages(page):
    return page.evaluate("window.__messages")


def _wait_for_message(page, type_):
    page.wait_for_function(f"() => window.__messages.some(m => m.data.type === '{type_}')")
    return [m for m in _messages(page) if m["data"]["type"] == type_][-1]


def test_checkpoint_selection_posts_the_chosen_model(panel, parent_site, page):
    _, first = panel.write_model("checkpoints", "first.safetensors")
    current_path, current = panel.write_model("checkpoints", "current.safetensors")
    panel.write_model("loras", "a_lora.safetensors")
    panel.promote_all()
    frame = _open(page, panel, parent_site, "checkpoint", json.dumps({"ckpt_path": str(current_path)}))
    ready = _wait_for_message(page, "ready")
    assert ready == {"origin": panel.origin, "data": {"source": "hikaze-panel", "type": "ready"}}
    # the node's current checkpoint is preselected; tabs and the toolbar are hidden
    frame.locator("#select-summary:text('current.safetensors')").wait_for()
    assert frame.locator(".tabs").is_hidden()
    assert frame.locator("#toolbar").is_hidden()
    assert frame.locator("#items [data-key]").count() == 2  # checkpoints only
    frame.locator("#items [data-name='first.safetensors']").click()
    assert frame.locator("#select-summary").inner_text() == "first.safetensors"
    frame.locator("#d-sha").wait_for()
    assert frame.locator("#d-sha").input_value() == first
    frame.locator("#select-confirm").click()
    chosen = _wait_for_message(page, "select")
    assert chosen["origin"] == panel.origin
    assert chosen["data"] == {
        "source": "hikaze-panel", "type": "select", "kind": "checkpoint",
        "payload": {"ckpt_path": str(panel.root / "checkpoints" / "first.safetensors"),
                    "sha256": first, "name": "first.safetensors"},
    }
    frame.locator("#select-cancel").click()
    assert _wait_for_message(page, "cancel")["data"] == {"source": "hikaze-panel", "type": "cancel"}
    assert current  # (the preselected one was replaced by the click)


def test_lora_selection_keeps_unknown_entries_and_edits_strengths(panel, parent_site, page):
    paths = {}
    shas = {}
    for name in ("ink", "light", "zebra"):
        path, sha = panel.write_model("loras", f"{name}.safetensors")
        paths[name], shas[name] = str(path), sha
    panel.promote_all()
    payload = json.dumps({"version": 2, "LoRAs": [
        {"name": "ink", "path": paths["ink"], "MStrength": "0.7", "CStrength": 0.5,
         "sha256": shas["ink"].upper(), "toggleOn": False},
        {"path": "/elsewhere/hand_typed.safetensors", "strength_model": 0.8, "strength_clip": 1,
         "enabled": True},
        {"name": "gone", "full_path": "/x/gone.safetensors", "strength_model": 1.2,
         "strength_clip": 0.9, "sha256": "f" * 64, "enabled": True},
    ]})
    frame = _open(page, panel, parent_site, "lora", payload)
    _wait_for_message(page, "ready")
    frame.locator("#lora-list .lora-row >> nth=2").wait_for()
    rows = frame.locator("#lora-list .lora-row")
    assert rows.count() == 3
    assert frame.locator("#lora-list .lora-row.missing").count() == 2
    assert frame.locator("#lora-list .lora-row >> nth=1").inner_text().count("not in library") == 1
    assert frame.locator("#select-summary").inner_text() == "3 selected"
    # the library below leaves out what is already selected
    frame.locator("#items [data-name='zebra.safetensors']").wait_for()
    assert frame.locator("#items [data-key]").count() == 2
    assert frame.locator("#items [data-name='ink.safetensors']").count() == 0

    frame.locator("#items [data-name='zebra.safetensors']").click()
    frame.locator("#lora-list .lora-row >> nth=3").wait_for()
    assert frame.locator("#items [data-key]").count() == 1
    zebra = frame.locator("#lora-list .lora-row >> nth=3")
    assert zebra.locator(".strength_model").input_value() == "1"
    zebra.locator(".strength_model").fill("0.75")
    zebra.locator("[aria-label='Move up']").click()  # zebra goes before "gone"
    frame.locator("#lora-list .lora-row >> nth=0").locator(".enabled").check()  # ink on
    frame.locator("#lora-list .lora-row >> nth=1").locator("[aria-label='Remove']").click()
    assert frame.locator("#lora-list .lora-row").count() == 3
    frame.locator("#select-confirm").click()

    chosen = _wait_for_message(page, "select")
    assert chosen["data"]["kind"] == "lora"
    expected = {"version": 2, "loras": [
        {"name": "ink", "full_path": paths["ink"], "strength_model": 0.7, "strength_clip": 0.5,
         "sha256": shas["ink"], "enabled": True},
        {"name": "zebra.safetensors", "full_path": paths["zebra"], "strength_model": 0.75,
         "strength_clip": 1, "sha256": shas["zebra"], "enabled": True},
        {"name": "gone", "full_path": "/x/gone.safetensors", "strength_model": 1.2,
         "strength_clip": 0.9, "sha256": "f" * 64, "enabled": True},
    ]}
    assert chosen["data"]["payload"] == expected
    # canonical key order, as the node and the reference write it
    raw = [r for r in page.evaluate("window.__raw") if '"select"' in r][-1]
    assert raw == json.dumps({"source": "hikaze-panel", "type": "select", "kind": "lora",
                              "payload": expected}, separators=(",", ":"))


def test_lora_entry_without_sha_survives_confirm(panel, parent_site, page):
    payload = json.dumps([{"path": "C:\\loras\\mine.safetensors", "MStrength": 0.6,
                           "CStrength": 0.4, "toggleOn": False}])
    frame = _open(page, panel, parent_site, "lora", payload)
    frame.locator("#lora-list .lora-row.missing").wait_for()
    frame.locator("#select-confirm").click()
    chosen = _wait_for_message(page, "select")
    assert chosen["data"]["payload"] == {"version": 2, "loras": [
        {"name": "", "full_path": "C:\\loras\\mine.safetensors", "strength_model": 0.6,
         "strength_clip": 0.4, "sha256": "", "enabled": False}]}


def test_unreadable_lora_payload_warns_and_starts_empty(panel, parent_site, page):
    frame = _open(page, panel, parent_site, "lora", "{not json")
    frame.locator("#banner.warn").wait_for()
    assert "could not be read" in frame.locator("#banner").inner_text()
    assert frame.locator("#lora-list").count() == 0
    assert "example" not in frame.locator("#selected-loras").inner_text()
    assert frame.locator("#selected-loras").inner_text().endswith("Click a LoRA below to add it.")


def test_parent_not_in_allowed_origins_gets_nothing(panel, browser, page_errors):
    """A page of another origin cannot frame the panel (CSP frame-ancestors): no message at all."""
    evil = ParentSite()
    context = browser.new_context()
    try:
        pg = context.new_page()
        page_errors.attach(pg)
        src = f"{panel.url}/?mode=select&kind=checkpoint&parent={evil.origin}"
        evil.html = PARENT_PAGE.format(src=src, kind="checkpoint", payload='"{}"',
                                       panel_origin=panel.origin, extra=(
            'frame.addEventListener("load", () => { window.__loaded = true; '
            'frame.contentWindow.postMessage({source: "hikaze-comfyui", type: "init", '
            f'kind: "checkpoint", payload: "{{}}"}}, "*"); }});'))
        pg.goto(f"{evil.origin}/workflow")
        pg.wait_for_function("() => window.__loaded === true")
        pg.wait_for_timeout(500)
        assert pg.evaluate("window.__messages") == []
        assert pg.frame_locator("#panel").locator("#select-confirm").count() == 0
    finally:
        context.close()
        evil.stop()
    # Chromium reports the refused framing on the console; that is the expected outcome here
    assert all("frame-ancestors" in e or "Refused" in e for e in page_errors), page_errors
    page_errors.clear()


def test_allowed_parent_page_but_other_parent_parameter(panel, parent_site, page):
    frame = _open(page, panel, parent_site, "checkpoint", "", extra="")
    _wait_for_message(page, "ready")
    # the same panel, framed by an allowed page but told its parent is another origin, refuses to
    # talk to anyone: an error banner, Confirm disabled, Cancel posts nothing
    page.evaluate(f"document.getElementById('panel').src = "
                  f"'{panel.url}/?mode=select&kind=lora&parent=http://127.0.0.1:9'")
    frame.locator("#banner.error").wait_for()
    assert "not an allowed ComfyUI page" in frame.locator("#banner").inner_text()
    assert frame.locator("#select-confirm").is_disabled()
    frame.locator("#select-cancel").click()
    page.wait_for_timeout(300)
    assert [m["data"]["type"] for m in _messages(page)] == ["ready"]


def test_lora_payload_reader_cases(panel, page):
    """The panel's own payload reader (static/js/lora-doc.js), run in the browser."""
    page.goto(f"{panel.url}/")
    cases = {
        "empty": "",
        "bad_json": "{not json",
        "bare_list": json.dumps([{"full_path": "/a.safetensors", "strength_model": "0.5",
                                  "strength_clip": 1, "enabled": True}]),
        "version_string": json.dumps({"version": "1", "LoRAList": [{"path": "/b.pt"}]}),
        "version_three": json.dumps({"version": 3, "loras": []}),
        "not_a_list": json.dumps({"loras": {"a": 1}}),
        "mixed": json.dumps({"loras": [
            {"full_path": "/ok.safetensors", "strengthModel": 2, "strengthClip": "0.25",
             "enabled": False, "sha256": "  ABC  "},
            {"full_path": "/bool.safetensors", "strength_model": True},
            {"name": "only a name"},
            {"full_path": 7},
            "junk",
        ]}),
    }
    result = page.evaluate("""async (cases) => {
        const { parseLoraPayload } = await import('/static/js/lora-doc.js');
        const out = {};
        for (const [key, text] of Object.entries(cases)) out[key] = parseLoraPayload(text);
        return out;
    }""", cases)
    assert result["empty"] == {"version": 2, "loras": [], "error": None, "dropped": 0}
    assert result["bad_json"]["loras"] == [] and "invalid JSON" in result["bad_json"]["error"]
    assert result["bare_list"]["loras"] == [{"name": "", "full_path": "/a.safetensors",
                                             "strength_model": 0.5, "strength_clip": 1,
                                             "sha256": "", "enabled": True}]
    assert result["version_string"]["version"] == 1
    assert result["version_string"]["loras"][0]["full_path"] == "/b.pt"
    assert result["version_string"]["loras"][0]["strength_model"] == 1  # default
    assert "unsupported version" in result["version_three"]["error"]
    assert result["not_a_list"]["error"] == "the LoRA list is not an array"
    mixed = result["mixed"]
    assert mixed["dropped"] == 3
    assert mixed["loras"] == [
        {"name": "", "full_path": "/ok.safetensors", "strength_model": 2, "strength_clip": 0.25,
         "sha256": "abc", "enabled": False},
        {"name": "only a name", "full_path": "", "strength_model": 1, "strength_clip": 1,
         "sha256": "", "enabled": True},
    ]


def test_unsaved_details_edits_are_guarded_in_selection_mode(panel, parent_site, page):
    _, a = panel.write_model("loras", "a.safetensors")
    _, b = panel.write_model("loras", "b.safetensors")
    panel.promote_all()
    frame = _open(page, panel, parent_site, "lora", "")
    _wait_for_message(page, "ready")
    frame.locator("#items [data-name='a.safetensors']").click()
    frame.locator("#items [data-name='b.safetensors']").click()
    frame.locator("#lora-list button.link", has_text="a.safetensors").click()
    frame.locator("#d-name").wait_for()
    frame.locator("#d-description").fill("my unsaved notes for A")

    # showing another LoRA of the list asks first; keeping the edits keeps A
    frame.locator("#lora-list button.link", has_text="b.safetensors").click()
    frame.locator("dialog.confirm-dialog[open]").wait_for()
    frame.locator("dialog.confirm-dialog [data-action='cancel']").click()
    assert frame.locator("#d-sha").input_value() == a
    assert frame.locator("#d-description").input_value() == "my unsaved notes for A"

    # Escape in a field leaves the field; it does not cancel the whole selection
    frame.locator("#d-description").press("Escape")
    frame.locator("#lora-list .strength_model >> nth=0").press("Escape")
    page.wait_for_timeout(200)
    assert [m["data"]["type"] for m in _messages(page)] == ["ready"]

    # Cancel, Confirm and Escape outside a field ask before closing over unsaved edits
    frame.locator("#select-cancel").click()
    frame.locator("dialog.confirm-dialog[open]").wait_for()
    assert "close the panel" in frame.locator("dialog.confirm-dialog").inner_text()
    frame.locator("dialog.confirm-dialog [data-action='cancel']").click()
    frame.locator("#select-confirm").click()
    frame.locator("dialog.confirm-dialog[open]").wait_for()
    frame.locator("dialog.confirm-dialog [data-action='cancel']").click()
    frame.locator("#select-summary").click()
    page.keyboard.press("Escape")
    frame.locator("dialog.confirm-dialog[open]").wait_for()
    frame.locator("dialog.confirm-dialog [data-action='cancel']").click()
    page.wait_for_timeout(200)
    assert [m["data"]["type"] for m in _messages(page)] == ["ready"]
    assert frame.locator("#d-description").input_value() == "my unsaved notes for A"

    # agreeing to drop them shows B, and Confirm then closes without asking again
    frame.locator("#lora-list button.link", has_text="b.safetensors").click()
    frame.locator("dialog.confirm-dialog [data-action='confirm']").click()
    for _ in range(50):
        if frame.locator("#d-sha").input_value() == b:
            break
        page.wait_for_timeout(50)
    assert frame.locator("#d-sha").input_value() == b
    frame.locator("#select-confirm").click()
    assert _wait_for_message(page, "select")["data"]["kind"] == "lora"
    assert panel.model(a)["meta_json"]["description"] == ""


def test_read_only_library_shows_the_banner_in_selection_mode(tmp_path, parent_site, page):
    from panel_support import read_only_panel

    def seed(server):
        server.write_model("checkpoints", "c1.safetensors")
        server.promote_all()

    server = read_only_panel(tmp_path, seed, allowed_origins=[parent_site.origin])
    try:
        frame = _open(page, server, parent_site, "checkpoint", "")
        _wait_for_message(page, "ready")
        frame.locator("#banner:not([hidden])").wait_for()
        assert frame.locator("#banner").inner_text().startswith("The library is read-only: ")
        assert "error" in frame.locator("#banner").get_attribute("class")
        frame.locator("#items [data-name='c1.safetensors']").click()
        frame.locator("#d-name").wait_for()
        assert frame.locator("#d-save").is_disabled()
        assert frame.locator("#gallery-upload").is_disabled()
        # picking a model writes nothing: Confirm still works
        frame.locator("#select-confirm").click()
        assert _wait_for_message(page, "select")["data"]["payload"]["name"] == "c1.safetensors"
    finally:
        server.stop()


def test_empty_tab_offers_to_scan_and_import_then_shows_the_models(panel, parent_site, page):
    """First use: nothing in the library yet; one click scans ComfyUI's folders and imports the
    models of this tab (with progress), and the list fills in without leaving the overlay."""
    _, sha = panel.write_model("loras", "styles/ink.safetensors")
    panel.write_model("loras", "glow.safetensors")
    panel.write_model("checkpoints", "base.safetensors")  # another tab's: stays pending
    frame = _open(page, panel, parent_site, "lora", json.dumps({"version": 2, "loras": []}))
    _wait_for_message(page, "ready")
    offer = frame.locator("#first-use")
    offer.wait_for()
    assert "There are no loras in the library yet" in offer.inner_text()
    assert f"{panel.url}/" in offer.inner_text()  # the manual way, with the address
    frame.locator("#first-use-scan").click()
    frame.locator("#first-use-result").wait_for(timeout=20000)
    assert frame.locator("#first-use-result").inner_text() == (
        "Imported 2 models (0 already in the library, 0 failed).")
    frame.locator("#items [data-name='ink.safetensors']").wait_for()
    assert frame.locator("#items [data-key]").count() == 2
    assert frame.locator("#first-use-scan").count() == 0  # the tab is no longer empty
    library = {m["name"]: m for m in panel.get("/api/models?type=loras")["models"]}
    assert sorted(library) == ["glow.safetensors", "ink.safetensors"]
    assert library["ink.safetensors"]["sha256"] == sha
    pending = panel.get("/api/migration/pending_models")["models"]
    assert [p["name"] for p in pending] == ["base.safetensors"]
    # The imported model can be picked right away.
    frame.locator("#items [data-name='ink.safetensors']").click()
    frame.locator("#select-confirm").click()
    chosen = _wait_for_message(page, "select")
    assert [e["sha256"] for e in chosen["data"]["payload"]["loras"]] == [sha]


def test_empty_tab_with_nothing_on_disk_says_what_to_check(panel, parent_site, page):
    frame = _open(page, panel, parent_site, "checkpoint", json.dumps({"ckpt_path": ""}))
    _wait_for_message(page, "ready")
    frame.locator("#first-use-scan").click()
    result = frame.locator("#first-use-result")
    result.wait_for(timeout=20000)
    assert "found no new checkpoints" in result.inner_text()
    assert "extra_model_paths.yaml" in result.inner_text()
    assert frame.locator("#first-use-scan").is_enabled()  # it may be tried again


def test_a_filled_tab_shows_no_offer(panel, parent_site, page):
    panel.write_model("loras", "a.safetensors")
    panel.promote_all()
    frame = _open(page, panel, parent_site, "lora", json.dumps([]))
    _wait_for_message(page, "ready")
    frame.locator("#items [data-name='a.safetensors']").wait_for()
    assert frame.locator("#first-use").count() == 0


def test_an_allowed_parent_inside_a_page_that_is_not_allowed_is_refused(panel, parent_site, page):
    """frame-ancestors may admit an outer page it cannot tell apart (for an IPv6 ComfyUI page it
    admits any host on that port; 'self' is always admitted): the panel itself checks every
    ancestor, so an allowed ComfyUI page wrapped in another page gets nothing."""
    src = f"{panel.url}/?mode=select&kind=checkpoint&parent={parent_site.origin}"
    parent_site.html = PARENT_PAGE.format(src=src, kind="checkpoint", payload='""',
                                          panel_origin=panel.origin, extra="")
    # The outer page: a document of the panel's own origin ('self') that is not the panel.
    page.goto(f"{panel.url}/api/panel/config")
    page.evaluate(f"""() => {{
        const outer = document.createElement('iframe');
        outer.id = 'outer';
        outer.style.cssText = 'width:1350px;height:850px';
        outer.src = '{parent_site.origin}/workflow';
        document.body.appendChild(outer);
    }}""")
    frame = page.frame_locator("#outer").frame_locator("#panel")
    frame.locator("#banner.error").wait_for()
    assert f"inside a page of {panel.origin}" in frame.locator("#banner").inner_text()
    assert frame.locator("#select-confirm").is_disabled()
    parent = page.frame_locator("#outer")
    assert parent.locator("body").evaluate("() => window.__messages") == []  # not even "ready"
