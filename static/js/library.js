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
import { virtualGrid } from "./vgrid.js";

let root;
let itemsEl;
let statusEl;
let countEl;
let pendingTools;
let tagDropdown;
let searchInput;
let baseSelect;
let loadSeq = 0;
let grid; // only the rows on screen are drawn (vgrid.js): a huge library costs what a screenful does
let sorter;
let tabCache = { source: null, tab: null, list: [] };

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

/** The current tab's list as loaded (one array per list and tab, so its sort can be reused). */
function tabSource() {
  if (!state.pendingMode) return state.models.get(state.tab) || [];
  const source = state.pending || [];
  if (tabCache.source !== source || tabCache.tab !== state.tab) {
    tabCache = { source, tab: state.tab, list: source.filter((p) => pendingTab(p) === state.tab) };
  }
  return tabCache.list;
}

function withoutTaken(list) {
  if (state.select?.kind === "lora") {
    const taken = new Set(state.select.loras.map((e) => e.sha256).filter(Boolean));
    return list.filter((m) => !taken.has(m.sha256));
  }
  return list;
}

/** Items of the current tab (before search and tag filters). */
export function tabItems() {
  return withoutTaken(tabSource());
}

/** Items after search and tag filters, as shown (sorted once per list, then filtered in order). */
export function visibleItems(onReady) {
  return withoutTaken(applyFilters(sortItems(tabSource(), onReady)));
}

export function mountLibrary(el) {
  root = el;
  searchInput = h("input", { type: "search", class: "search", id: "search",
    "aria-label": t("library.search"), placeholder: t("library.search") });
  searchInput.addEventListener("input", () => {
    state.search = searchInput.value;
    render({ reset: true, search: true });
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
    itemsEl = h("div", { class: "lib-items", id: "items", tabindex: "-1" }));
  grid = virtualGrid(itemsEl, {
    make: (item) => itemElement(item, currentAdapter(), state.view),
    keyOf: (item) => currentAdapter().key(item),
    perRow: () => (state.view === "card" ? state.cols : 1),
    onDrop: (el) => unobserveAll(el),
  });
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
  grid?.relayout();
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
  grid.setItems([], { reset: true });
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
 * Re-draw the items of the current tab from the cache. Keeps the scroll position (so a click far
 * down a big library does not lose its place), unless `reset` (another tab, search or filter):
 * then it starts again from the top; `search`: only the search text changed. Only the rows on
 * screen are built (vgrid.js).
 */
export function render({ reset = false, search = false } = {}) {
  if (!itemsEl) return;
  const all = tabItems();
  if (!search) baseSelect.refresh(); // the base counts and sort keys do not depend on the search
  const shown = visibleItems(() => render());
  if (!search) sorter.refresh(all);
  renderBar();
  countEl.textContent = t("library.count", { shown: shown.length, total: all.length });
  tagDropdown.refresh();
  pendingTools.hidden = !state.pendingMode;
  updateSelectAll(shown);
  if (!statusEl.classList.contains("error") && !statusEl.classList.contains("loading")) {
    statusEl.textContent = shown.length ? "" : t(all.length ? "library.noMatch" : "library.empty");
  }
  grid.setItems(shown, { reset });
}

/** After a selection or tick changed: update the drawn items in place (no rebuild). */
export function updateMarks() {
  if (!itemsEl) return;
  const adapter = currentAdapter();
  grid.forEach((el, item) => markItem(el, item, adapter));
  if (state.pendingMode) updateSelectAll(visibleItems());
}

/** Redraw the one item `key` (e.g. its preview changed), in place. */
export function updateItem(key) {
  if (grid) grid.redraw(key);
}

/** Re-translate the parts built with t() (static ones carry data-i18n). */
export function retranslate() {
  searchInput.placeholder = t(state.pendingMode ? "pending.search" : "library.search");
  searchInput.setAttribute("aria-label", searchInput.placeholder);
  render();
}
