"""The panel with a 50,000-LoRA library: only the rows on screen are in the DOM (static/js/vgrid.js).

Timing targets (first cards, keystroke, scroll) are in bench/case_panel.py, not here.
"""

from __future__ import annotations

import sqlite3

from panel_support import (  # noqa: F401  (fixtures)
    browser,
    card_names,
    drawn_count,
    open_panel,
    page,
    page_errors,
    panel,
    parent_site,
    scroll_items,
)

N = 50_000
BOUND = 300  # the DOM stays under this many items wherever the list is scrolled to


def _seed(panel, n=N):
    """``n`` LoRAs written straight into the served database (an API import would take minutes)."""
    db = sqlite3.connect(panel.app.config["DATABASE"])
    try:
        with db:
            db.executemany(
                "INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json)"
                " VALUES (?, ?, ?, 'loras', ?, ?, '{}')",
                [(f"{i:064x}", f"/models/loras/l{i:05d}.safetensors", f"lora_{i:05d}", 1000 + i,
                  1_700_000_000_000 + i) for i in range(n)])
    finally:
        db.close()


def _visible_names(page) -> list[str]:
    """Names of the drawn items that are inside the scroll box's visible area."""
    return page.evaluate("""() => {
      const box = document.getElementById('items').getBoundingClientRect();
      return [...document.querySelectorAll('#items [data-key]')].filter((c) => {
        const r = c.getBoundingClientRect();
        return r.bottom > box.top && r.top < box.bottom;
      }).map((c) => c.dataset.name);
    }""")


def _index(name: str) -> int:
    return int(name.removeprefix("lora_"))


def test_fifty_thousand_loras_keep_the_dom_bounded(panel, page):
    _seed(panel)
    page.set_default_timeout(30_000)
    open_panel(page, panel, "?tab=loras")
    page.wait_for_selector("#items [data-name='lora_00000']")
    assert page.inner_text(".count") == f"{N} / {N}"
    assert 0 < drawn_count(page) < BOUND
    assert _visible_names(page)[0] == "lora_00000"

    middle = page.evaluate("() => document.getElementById('items').scrollHeight / 2")
    scroll_items(page, middle)
    assert 0 < drawn_count(page) < BOUND
    seen = [_index(n) for n in _visible_names(page)]
    assert seen and 20_000 < seen[0] < 30_000
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # in order, no gaps

    scroll_items(page)
    assert 0 < drawn_count(page) < BOUND
    assert _visible_names(page)[-1] == f"lora_{N - 1:05d}"  # the last model is reachable

    # the list view is windowed the same way
    page.click("[data-view='list']")
    scroll_items(page)
    assert 0 < drawn_count(page) < BOUND
    assert _visible_names(page)[-1] == f"lora_{N - 1:05d}"
    page.click("[data-view='card']")

    # a search narrows the list and draws it from the top
    page.fill("#search", "lora_4999")
    page.wait_for_function("() => document.querySelector('.count').textContent === '10 / 50000'")
    assert card_names(page) == [f"lora_{i}" for i in range(49_990, 50_000)]
    page.fill("#search", "")
    page.wait_for_function(f"() => document.querySelector('.count').textContent === '{N} / {N}'")
    assert _visible_names(page)[0] == "lora_00000"
    assert 0 < drawn_count(page) < BOUND


def test_shift_range_selection_across_a_scroll(panel, page):
    _seed(panel, 5_000)
    open_panel(page, panel, "?tab=loras")
    page.click("#items [data-name='lora_00002'] .item-check")
    top = scroll_items(page, 6000)
    assert top == 6000
    assert page.locator("#items [data-name='lora_00002']").count() == 0  # scrolled out of the DOM
    target = _visible_names(page)[4]
    page.click(f"#items [data-name='{target}'] .item-check", modifiers=["Shift"])
    assert page.inner_text(".multi-count") == f"{_index(target) - 2 + 1} selected"
    marks = page.eval_on_selector_all(
        "#items [data-key]", "els => els.map(e => [e.dataset.name, e.classList.contains('checked')])")
    assert all(on == (2 <= _index(name) <= _index(target)) for name, on in marks)
    # scrolling back draws the first one of the range ticked again
    scroll_items(page, 0)
    assert page.is_checked("#items [data-name='lora_00002'] .item-check")
    assert not page.is_checked("#items [data-name='lora_00001'] .item-check")
    # Ctrl+A from a card selects every shown model, not just the drawn ones
    page.focus("#items [data-name='lora_00000']")
    page.keyboard.press("Control+a")
    assert page.inner_text(".multi-count") == "5000 selected"
    page.keyboard.press("Escape")
    assert page.inner_text(".multi-count") == "0 selected"


def test_keyboard_focus_survives_scrolling_away_and_back(panel, page):
    _seed(panel, 2_000)
    open_panel(page, panel, "?tab=loras")
    page.focus("#items [data-name='lora_00001']")
    scroll_items(page)  # the focused card leaves the DOM: the library keeps the focus
    assert page.evaluate("document.activeElement.id") == "items"
    page.keyboard.press("Control+a")
    assert page.inner_text(".multi-count") == "2000 selected"
    page.keyboard.press("Escape")
    scroll_items(page, 0)
    assert page.evaluate("document.activeElement.dataset.name") == "lora_00001"
    page.keyboard.press("Enter")  # opens the details of the focused card
    page.wait_for_function("() => document.querySelector('#d-name')?.value === 'lora_00001'")
