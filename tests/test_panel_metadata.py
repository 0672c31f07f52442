"""The panel's metadata-from-files parts in a real headless Chromium: base model on cards and in
details, the base-model filter, trigger words (copy, edit, add from training tags), training tags
with counts, the raw header, re-read from files, imported previews in the gallery."""

from __future__ import annotations

import json

from metadata_support import safetensors_bytes, sample_metadata
from panel_support import (  # noqa: F401  (fixtures)
    browser,
    card_names,
    open_panel,
    page,
    page_errors,
    panel,
    parent_site,
    png_bytes,
)


def _seed(panel):
    loras = panel.root / "loras"
    _, pepper = panel.write_model("loras", "pepper.safetensors",
                                  safetensors_bytes(sample_metadata("civitai_seed_pepper_carrot_sdxl.json")))
    (loras / "pepper.civitai.info").write_text(json.dumps(
        {"model": {"name": "Pepper"}, "baseModel": "Illustrious", "trainedWords": ["pepper girl"],
         "creator": {"username": "carrot"}}))
    (loras / "pepper.preview.png").write_bytes(png_bytes(color=(10, 200, 10)))
    _, soraka = panel.write_model("loras", "soraka.safetensors",
                                  safetensors_bytes(sample_metadata("kohya_sd15_soraka_classic.json")))
    _, plain = panel.write_model("loras", "plain.safetensors")
    panel.promote_all()
    return {"pepper": pepper, "soraka": soraka, "plain": plain}


def test_cards_show_base_model_and_filter_by_it(panel, page):
    _seed(panel)
    open_panel(page, panel)
    page.click(".tab:text('loras')")
    page.wait_for_selector("#items [data-name='Pepper']")
    assert page.inner_text("#items [data-name='Pepper'] .base-chip") == "Illustrious"
    assert page.locator("#items [data-name='plain.safetensors'] .base-chip").count() == 0
    options = page.eval_on_selector_all("#base-filter option", "els => els.map(e => e.value)")
    assert options == ["", "SD1", "SDXL", "UNKNOWN"]
    page.select_option("#base-filter", "SDXL")
    assert card_names(page) == ["Pepper"]
    page.select_option("#base-filter", "SD1")
    assert card_names(page) == ["Soraka_Classic"]
    page.select_option("#base-filter", "")
    assert len(card_names(page)) == 3


def test_details_trigger_words_training_tags_raw_header_and_preview(panel, page):
    shas = _seed(panel)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_panel(page, panel)
    page.click(".tab:text('loras')")
    page.click("#items [data-name='Pepper']")
    page.wait_for_selector("#d-base-model")
    assert page.input_value("#d-base-model") == "Illustrious"
    assert page.inner_text("#d-base-family") == "SDXL"
    assert page.input_value("#d-trigger-words") == "pepper girl"
    first = page.eval_on_selector("#d-training-tags .training-tag", "e => e.textContent")
    assert first == "1girl (96)"
    assert "AutoV2 " + shas["pepper"][:10].upper() in page.inner_text("#d-short-hashes")
    assert "AutoV3" in page.inner_text("#d-short-hashes")
    assert "Civitai Helper" in page.inner_text("#d-meta-sources")
    assert page.inner_text("#d-author") == "Author: carrot"
    assert "author ← Civitai Helper" in page.inner_text("#d-meta-sources")
    # The raw header is collapsed until asked for.
    assert not page.is_visible("#d-raw-header-json")
    page.click("#d-raw-header summary")
    assert '"ss_output_name": "Pepper__Carrot"' in page.inner_text("#d-raw-header-json")
    # The imported preview is an ordinary picture of the gallery.
    page.wait_for_function("() => document.querySelector('.gallery-img')?.naturalWidth > 0")
    # Copy, then edit: a training tag click adds it; Save sends only the changed fields.
    page.click("#d-trigger-copy")
    page.wait_for_selector("#d-status.ok")
    assert page.evaluate("() => navigator.clipboard.readText()") == "pepper girl"
    patches = []
    page.on("request", lambda r: patches.append(r.post_data_json) if r.method == "PATCH" else None)
    page.click("#d-training-tags .training-tag[data-tag='1girl']")
    assert page.input_value("#d-trigger-words") == "pepper girl, 1girl"
    page.fill("#d-base-model", "Pony")
    page.click("#d-save")
    page.wait_for_selector("#d-status.ok")
    assert patches == [{"trigger_words": ["pepper girl", "1girl"], "base_model": "Pony"}]
    saved = panel.model(shas["pepper"])
    assert saved["trigger_words"] == ["pepper girl", "1girl"]
    assert saved["metadata_sources"]["trigger_words"] == "user"
    # Re-read from files keeps what was typed.
    page.click("#d-reread")
    page.wait_for_function("() => document.querySelector('#d-status')?.textContent.includes('kept')"
                           " || document.querySelector('#d-status')?.textContent.includes('nothing')")
    assert page.input_value("#d-trigger-words") == "pepper girl, 1girl"
    assert page.input_value("#d-base-model") == "Pony"
    assert page.inner_text("#items [data-name='Pepper'] .base-chip") == "Pony"


def test_model_without_header_hides_the_raw_view(panel, page):
    _seed(panel)
    open_panel(page, panel)
    page.click(".tab:text('loras')")
    page.click("#items [data-name='plain.safetensors']")
    page.wait_for_selector("#d-base-model")
    assert page.is_hidden("#d-raw-header")
    assert page.inner_text("#d-training-tags") == "No training tags in the file."
    # Random bytes named .safetensors: the header problem is named in the details.
    assert page.inner_text("#d-meta-problems").startswith("plain.safetensors: ")
