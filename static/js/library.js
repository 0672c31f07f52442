// The library column: toolbar (search, tags, view, columns, refresh), cards or rows, loading/error.
import { api, imageUrl, pendingImageUrl } from "./api.js";
import { itemElement, markItem, unobserveAll } from "./cards.js";
import { $, h, replace } from "./dom.js";
import { applyFilters, searchFilter, tagFilterDropdown } from "./filters.js";
import { baseFilterControl } from "./metadata-view.js";
import { t } from "./i18n.js";
import { mountSelectionBar, modifiedClick, renderBar, toggle } from "./selection-bar.js";
import { sortControl, sortItems } from "./sort.js";
import { emit, pendingTab, revOf, state } from "./state.js";

const CHUNK = 150; // cards added per step while scrolling; a huge library never renders at once
let root;
let itemsEl;
let statusEl;
let countEl;
let pendingTools;
let tagDropdown;
let searchInput;
let baseSelect;
let loadSeq = 0;
let moreObserver = null;
let rendered = new Map(); // key -> item of every element now in itemsEl
let sorter;

const activeAdapter = {
  key: (m) => m.sha256,
  url: (m) => (m.images_count > 0 ? imageUrl(m.sha256, 0, "medium", revOf(m.sha256)) : ""),
  selected: (m) => (state.select?.kind === "checkpoint"
    ? state.select.picked?.sha256 === m.sha256 : state.selectedSha === m.sha256),
  // multi-select (selection-bar.js): a box on each card, Ctrl/Cmd/Shift-click; not for the nodes
  get checked() { return state.select ? undefined : (m) => state.multi.has(m.sha256); },
  get onCheck() { return state.select ? undefined : toggle; },
  onClick: (m, event) => (!state.select && event && (event.ctrlKey || event.metaKey || event.shiftKey)
    ? modifiedClick(m, event) : emit("library:click", m)),
};

const pendingAdapter = {
  key: (p) => `p${p.id}`,
  url: (p) => pendingImageUrl(p.image),
  selected: (p) => state.selectedPendingId === p.id,
  checked: (p) => state.pendingChecked.has(p.id),
  onCheck: (p, on) => {
    if (on) state.pendingChecked.add(p.id);
    else state.pendingChecked.delete(p.id);
    emit("pending:checked");
    updateMarks();
  },
  onClick: (p) => emit("pending:click", p),
};

/** Items of the current tab (before search and tag filters). */
export function tabItems() {
  if (state.pendingMode) return (state.pending || []).filter((p) => pendingTab(p) === state.tab);
  let list = state.models.get(state.tab) || [];
  if (state.select?.kind === "lora") {
    const taken = new Set(state.select.loras.map((e) => e.sha256).filter(Boolean));
    list = list.filter((m) => !taken.has(m.sha256));
  }
  return list;
}

/** Items after search and tag filters, as shown. */
export function visibleItems() {
  return sortItems(applyFilters(tabItems()));
}

export function mountLibrary(el) {
  root = el;
  searchInput = h("input", { type: "search", class: "search", id: "search",
    "aria-label": t("library.search"), placeholder: t("library.search") });
  searchInput.addEventListener("input", () => {
    state.search = searchInput.value;
    render({ reset: true });
  });
  tagDropdown = tagFilterDropdown(() => searchFilter(tabItems()), () => render({ reset: true }));
  baseSelect = baseFilterControl(() => tabItems(), () => render({ reset: true }));
  const cols = h("input", { type: "number", id: "cols", min: 2, max: 12, value: String(state.cols),
    class: "cols-input" });
  cols.addEventListener("change", () => {
    const n = Math.max(2, Math.min(12, Math.round(Number(cols.value)) || 4));
    cols.value = String(n);
    state.cols = n;
    applyView();
  });
  const viewBtn = (view) => h("button", { type: "button", class: "btn seg", dataset: { view },
    onclick: () => { state.view = view; applyView(); render(); } },
  h("span", { dataset: { i18n: `library.view.${view}` }, text: t(`library.view.${view}`) }));
  countEl = h("span", { class: "count muted", "aria-live": "polite" });
  const selectAll = h("input", { type: "checkbox", id: "select-all" });
  selectAll.addEventListener("change", () => {
    for (const p of visibleItems()) {
      if (selectAll.checked) state.pendingChecked.add(p.id);
      else state.pendingChecked.delete(p.id);
    }
    emit("pending:checked");
    updateMarks();
  });
  pendingTools = h("label", { class: "pending-tools", hidden: true }, selectAll,
    h("span", { dataset: { i18n: "pending.selectAll" }, text: t("pending.selectAll") }));
  replace(root,
    h("div", { class: "lib-toolbar" },
      searchInput,
      tagDropdown.el,
      baseSelect.el,
      h("div", { class: "seg-group", role: "group" }, viewBtn("card"), viewBtn("list")),
      h("label", { class: "cols-label" }, h("span", { dataset: { i18n: "library.cols" },
        text: t("library.cols") }), cols),
      (sorter = sortControl(() => render({ reset: true }))).el,
      pendingTools,
      h("button", { type: "button", class: "btn", id: "refresh", onclick: () => refresh() },
        h("span", { dataset: { i18n: "library.refresh" }, text: t("library.refresh") })),
      countEl),
    statusEl = h("div", { class: "lib-status", role: "status" }),
    itemsEl = h("div", { class: "lib-items", id: "items" }));
  mountSelectionBar(root, { visibleItems, updateMarks, refresh });
  applyView();
}

function applyView() {
  itemsEl.className = `lib-items ${state.view}-view${state.cols > 6 ? " dense" : ""}`;
  itemsEl.style.setProperty("--cols", String(state.cols));
  for (const b of root.querySelectorAll("[data-view]")) {
    b.classList.toggle("active", b.dataset.view === state.view);
    b.setAttribute("aria-pressed", String(b.dataset.view === state.view));
  }
  $("#cols", root).disabled = state.view !== "card";
}

/** Load the data of the current tab (cached unless `force`) and render it. */
export async function load(force = false) {
  const seq = ++loadSeq;
  const tab = state.tab;
  const needs = state.pendingMode ? (force || !state.pending) : (force || !state.models.has(tab));
  if (!needs) {
    // another tab's load may still be running or have failed: its status is not this tab's
    statusEl.replaceChildren();
    statusEl.className = "lib-status";
    render({ reset: true });
    return;
  }
  unobserveAll(itemsEl);
  itemsEl.replaceChildren();
  replace(statusEl, h("span", { class: "spinner", "aria-hidden": "true" }),
    t(state.pendingMode ? "pending.loading" : "library.loading"));
  statusEl.className = "lib-status loading";
  try {
    if (state.pendingMode) {
      state.pending = (await api.pendingModels()).models;
      emit("pending:loaded");
    } else {
      state.models.set(tab, (await api.models(tab)).models);
    }
    if (seq !== loadSeq) return;
    statusEl.replaceChildren();
    statusEl.className = "lib-status";
    render({ reset: true });
  } catch (err) {
    if (seq !== loadSeq) return;
    statusEl.className = "lib-status error";
    replace(statusEl, h("span", { text: err.message }),
      h("button", { type: "button", class: "btn small", onclick: () => load(true) }, t("common.retry")));
  }
}

/** Reload the current tab from the server (and the tag list). */
export async function refresh() {
  if (state.pendingMode) {
    state.pending = null;
  } else {
    state.models.clear();
  }
  emit("library:refresh");
  await load(true);
}

const currentAdapter = () => (state.pendingMode ? pendingAdapter : activeAdapter);

function updateSelectAll(shown) {
  if (!state.pendingMode) return;
  const box = $("#select-all", pendingTools);
  const ticked = shown.filter((p) => state.pendingChecked.has(p.id)).length;
  box.checked = shown.length > 0 && ticked === shown.length;
  box.indeterminate = ticked > 0 && ticked < shown.length;
}

/**
 * Re-draw the items of the current tab from the cache. Keeps the scroll position and at least as
 * many items as were drawn (so a click far down a big library does not lose its place), unless
 * `reset` (another tab, search or filter): then it starts again from the top.
 */
export function render({ reset = false } = {}) {
  if (!itemsEl) return;
  const all = tabItems();
  baseSelect.refresh();
  const shown = sortItems(applyFilters(all), () => render());
  const adapter = currentAdapter();
  sorter.refresh(all);
  renderBar();
  countEl.textContent = t("library.count", { shown: shown.length, total: all.length });
  tagDropdown.refresh();
  pendingTools.hidden = !state.pendingMode;
  updateSelectAll(shown);
  const before = reset ? 0 : rendered.size;
  const scroll = reset ? 0 : itemsEl.scrollTop;
  unobserveAll(itemsEl);
  if (moreObserver) moreObserver.disconnect();
  itemsEl.replaceChildren();
  rendered = new Map();
  if (!statusEl.classList.contains("error") && !statusEl.classList.contains("loading")) {
    statusEl.textContent = shown.length ? "" : t(all.length ? "library.noMatch" : "library.empty");
  }
  let next = 0;
  const addChunk = (size) => {
    const part = shown.slice(next, next + size).map((item) => {
      const el = itemElement(item, adapter, state.view);
      rendered.set(el.dataset.key, item);
      return el;
    });
    next += part.length;
    itemsEl.append(...part);
    if (next < shown.length) {
      const sentinel = h("div", { class: "sentinel" });
      itemsEl.append(sentinel);
      moreObserver = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          moreObserver.disconnect();
          sentinel.remove();
          addChunk(CHUNK);
        }
      }, { root: itemsEl, rootMargin: "400px" });
      moreObserver.observe(sentinel);
    }
  };
  addChunk(Math.max(CHUNK, before));
  itemsEl.scrollTop = scroll;
}

/** After a selection or tick changed: update the drawn items in place (no rebuild). */
export function updateMarks() {
  if (!itemsEl) return;
  const adapter = currentAdapter();
  for (const el of itemsEl.querySelectorAll("[data-key]")) {
    const item = rendered.get(el.dataset.key);
    if (item) markItem(el, item, adapter);
  }
  updateSelectAll(visibleItems());
}

/** Redraw the one item `key` (e.g. its preview changed), in place. */
export function updateItem(key) {
  if (!itemsEl) return;
  for (const el of itemsEl.querySelectorAll("[data-key]")) {
    if (el.dataset.key !== key) continue;
    const item = rendered.get(key);
    unobserveAll(el);
    el.replaceWith(itemElement(item, currentAdapter(), state.view));
  }
}

/** Re-translate the parts built with t() (static ones carry data-i18n). */
export function retranslate() {
  searchInput.placeholder = t(state.pendingMode ? "pending.search" : "library.search");
  searchInput.setAttribute("aria-label", searchInput.placeholder);
  render();
}
