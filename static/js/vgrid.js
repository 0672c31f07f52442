// Windowed rendering of the library: a spacer as tall as every row, and only the rows on screen
// plus a margin in the DOM, so 50,000 cards cost what 50 do. Rows are a fixed height (cards keep
// their aspect ratio, list rows have a set height), so a row's place is its index times the pitch.
import { h } from "./dom.js";

const MARGIN_PX = 600; // drawn above and below what is on screen, so fast scrolls show no gaps

/**
 * A windowed list inside the scroll box `box`. `make(item)` builds an element (with data-key),
 * `keyOf(item)` names it, `perRow()` is the number of items per row (columns), `onDrop(el)` runs
 * for each element taken out of the DOM.
 */
export function virtualGrid(box, { make, keyOf, perRow, onDrop }) {
  const sizer = h("div", { class: "vgrid-sizer" });
  const win = h("div", { class: "vgrid-window" });
  sizer.append(win);
  box.replaceChildren(sizer);
  let items = [];
  let drawn = new Map(); // key -> {el, item, index}
  let from = 0; // index of the first drawn item
  let to = 0; // one past the last drawn item
  let pitch = 0; // row height plus gap, measured from a drawn element
  let cols = 1;
  let focusKey = null; // the focused item, re-focused when it scrolls back into the window
  let frame = 0;

  const gap = () => parseFloat(getComputedStyle(win).rowGap) || 0;

  function measure() {
    const first = win.firstElementChild;
    if (!first) return false;
    const next = first.getBoundingClientRect().height + gap();
    if (Math.abs(next - pitch) < 0.5) return false;
    pitch = next;
    return true;
  }

  function estimate() {
    if (pitch) return;
    // until an element can be measured: a card's height from its width (3:4), or a list row
    const style = getComputedStyle(box);
    const inner = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    pitch = cols > 1 ? ((inner - gap() * (cols - 1)) / cols) * (4 / 3) + gap() : 70;
    pitch = Math.max(pitch, 20);
  }

  function drop(entry) {
    if (document.activeElement === entry.el) {
      focusKey = entry.key;
      box.focus({ preventScroll: true }); // keyboard shortcuts keep working inside the library
    }
    if (onDrop) onDrop(entry.el);
    entry.el.remove();
  }

  function build(index) {
    const item = items[index];
    const key = keyOf(item);
    const el = make(item);
    return { el, item, index, key };
  }

  /** Draw the rows in view plus the margin; reuse the elements still in range. */
  function update(rebuild = false) {
    frame = 0;
    cols = Math.max(1, perRow());
    estimate();
    const rows = Math.ceil(items.length / cols);
    sizer.style.height = `${Math.max(0, rows * pitch - gap())}px`;
    const style = getComputedStyle(box);
    const top = box.scrollTop - parseFloat(style.paddingTop);
    const firstRow = Math.max(0, Math.floor((top - MARGIN_PX) / pitch));
    const lastRow = Math.min(rows, Math.ceil((top + box.clientHeight + MARGIN_PX) / pitch));
    const start = Math.min(items.length, firstRow * cols);
    const end = Math.min(items.length, lastRow * cols);
    if (rebuild) {
      for (const entry of drawn.values()) drop(entry);
      drawn = new Map();
      from = to = start;
    }
    if (start === from && end === to && !rebuild) return;
    const next = new Map();
    const keep = [];
    for (const entry of drawn.values()) {
      if (entry.index >= start && entry.index < end && items[entry.index] === entry.item) {
        keep.push(entry);
      } else {
        drop(entry);
      }
    }
    keep.sort((a, b) => a.index - b.index);
    const lo = keep.length ? keep[0].index : end;
    const hi = keep.length ? keep[keep.length - 1].index + 1 : end;
    // kept elements stay where they are in the DOM (focus and identity survive a scroll)
    const head = [];
    for (let i = start; i < lo; i += 1) head.push(build(i));
    const tail = [];
    for (let i = hi; i < end; i += 1) tail.push(build(i));
    if (keep.length && keep.length !== hi - lo) {
      // a gap inside the kept range (items replaced): rebuild the middle in order
      for (const entry of keep) drop(entry);
      keep.length = 0;
      for (let i = lo; i < hi; i += 1) keep.push(build(i));
      win.replaceChildren(...head.map((e) => e.el), ...keep.map((e) => e.el), ...tail.map((e) => e.el));
    } else {
      if (head.length) win.prepend(...head.map((e) => e.el));
      if (tail.length) win.append(...tail.map((e) => e.el));
    }
    for (const entry of [...head, ...keep, ...tail]) next.set(entry.key, entry);
    drawn = next;
    from = start;
    to = end;
    win.style.transform = `translateY(${(start / cols) * pitch}px)`;
    const back = focusKey && drawn.get(focusKey);
    if (back && document.activeElement === box) {
      back.el.focus({ preventScroll: true });
      focusKey = null;
    }
    if (measure()) update(true);
  }

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => update());
  };
  box.addEventListener("scroll", schedule, { passive: true });
  box.addEventListener("focusin", (event) => {
    if (event.target !== box) focusKey = null;
  });
  let width = -1;
  const resized = new ResizeObserver(() => {
    // a new width changes the card size (rebuild); a new height only shows more or fewer rows
    if (box.clientWidth === width) {
      update();
      return;
    }
    width = box.clientWidth;
    pitch = 0;
    update(true);
  });
  resized.observe(box);

  return {
    /** Show `list`; from the top when `reset`, else at the same scroll position. */
    setItems(list, { reset = false } = {}) {
      items = list;
      if (reset) box.scrollTop = 0;
      update(true);
    },
    /** Column count or view changed: measure again and redraw. */
    relayout() {
      pitch = 0;
      update(true);
    },
    /** Every drawn element with its item. */
    forEach(fn) {
      for (const entry of drawn.values()) fn(entry.el, entry.item);
    },
    /** Rebuild the drawn element of `key` (its item changed), in place. */
    redraw(key) {
      const entry = drawn.get(key);
      if (!entry) return;
      const focused = document.activeElement === entry.el;
      const el = make(entry.item);
      if (onDrop) onDrop(entry.el);
      entry.el.replaceWith(el);
      entry.el = el;
      if (focused) el.focus({ preventScroll: true });
    },
    /** Scroll so that item `index` is in view. */
    scrollToIndex(index) {
      const style = getComputedStyle(box);
      box.scrollTop = Math.floor(index / cols) * pitch + parseFloat(style.paddingTop);
      update();
    },
    get size() { return drawn.size; },
  };
}
