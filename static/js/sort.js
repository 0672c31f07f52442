// Sorting of the library and pending lists: client-side (the lists are already loaded in full).
// File times and pending sizes come from /api/models/sort_keys, fetched when a sort needs them.
import { api } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { on, state } from "./state.js";

const STORAGE_KEY = "hikaze.sort";
const text = (v) => String(v ?? "").toLocaleLowerCase();
let extra = null; // {models: {sha: {mtime}}, pending: {id: {mtime, size_bytes, created_at}}}
let extraLoading = null;

/**
 * The sort keys. Add one entry to add a sort: `get(item, pending)` returns a string or number
 * (null sorts last); `needsExtra` loads /api/models/sort_keys first; `field` shows the key only
 * when the listed records carry that field (e.g. `base_model` from the metadata work).
 */
export const SORT_KEYS = [
  { id: "name", get: (m) => text(m.name || m.path) },
  { id: "added", get: (m, p) => (p ? m.id : m.created_at ?? null) },
  { id: "size", needsExtra: "pending", get: (m, p) => (p ? extra?.pending?.[m.id]?.size_bytes : m.size_bytes) ?? null },
  { id: "mtime", needsExtra: "all", get: (m, p) => (p ? extra?.pending?.[m.id]?.mtime : extra?.models?.[m.sha256]?.mtime) ?? null },
  { id: "type", get: (m) => text(m.type) },
  { id: "base_model", field: "base_model", get: (m) => (m.base_model ? text(m.base_model) : null) },
];

function saved() {
  try {
    const value = JSON.parse(localStorage.getItem(STORAGE_KEY) || "{}");
    return { key: value.key || "name", desc: Boolean(value.desc) };
  } catch {
    return { key: "name", desc: false };
  }
}

export const sort = saved();

function keyOf(id) {
  return SORT_KEYS.find((k) => k.id === id) || SORT_KEYS[0];
}

function needsExtra(key, pending) {
  return key.needsExtra === "all" || (key.needsExtra === "pending" && pending);
}

/** Forget the file times (after a scan, import or edit) so the next sort re-reads them. */
export function invalidateSortKeys() {
  extra = null;
  memo = null;
}

on("library:refresh", invalidateSortKeys);
on("pending:loaded", invalidateSortKeys);
on("model:saved", () => forgetSorted()); // a name or base model changed in place

const collator = new Intl.Collator(); // one collator: far cheaper than localeCompare per pair
let memo = null; // {items, key, desc, pending, extra, sorted}: a search or filter does not re-sort

/** Forget the last sort (the items' names or keys may have changed in place). */
export function forgetSorted() {
  memo = null;
}

/**
 * A sorted copy of `items` (the same array again while neither the items nor the sort changed);
 * when keys must be fetched first, `onReady` re-renders later.
 */
export function sortItems(items, onReady) {
  const pending = state.pendingMode;
  const key = keyOf(sort.key);
  if (needsExtra(key, pending) && !extra) {
    if (!extraLoading) {
      extraLoading = api.sortKeys().then((data) => { extra = data; }).catch(() => { extra = {}; })
        .finally(() => { extraLoading = null; if (onReady) onReady(); });
    }
  }
  if (memo && memo.items === items && memo.key === key && memo.desc === sort.desc
      && memo.pending === pending && memo.extra === extra) return memo.sorted;
  const dir = sort.desc ? -1 : 1;
  const entries = items.map((item) => ({ item, value: key.get(item, pending), name: text(item.name || item.path) }));
  const byName = (a, b) => collator.compare(a.name, b.name);
  const sorted = entries.sort((a, b) => {
    if (a.value === null || a.value === undefined) return (b.value === null || b.value === undefined) ? byName(a, b) : 1;
    if (b.value === null || b.value === undefined) return -1;
    const c = typeof a.value === "number" && typeof b.value === "number"
      ? a.value - b.value : collator.compare(String(a.value), String(b.value));
    return c ? c * dir : byName(a, b);
  }).map((entry) => entry.item);
  memo = { items, key, desc: sort.desc, pending, extra, sorted };
  return sorted;
}

/** The sort picker and direction button; `onChange` re-renders the list. */
export function sortControl(onChange) {
  const select = h("select", { id: "sort-key", class: "sort-select", "aria-label": t("sort.label") });
  const dirBtn = h("button", { type: "button", class: "btn seg", id: "sort-dir" });
  const store = () => localStorage.setItem(STORAGE_KEY, JSON.stringify(sort));
  const paint = () => {
    dirBtn.textContent = sort.desc ? "↓" : "↑";
    dirBtn.title = t(sort.desc ? "sort.desc" : "sort.asc");
    dirBtn.setAttribute("aria-label", dirBtn.title);
  };
  select.addEventListener("change", () => { sort.key = select.value; store(); onChange(); });
  dirBtn.addEventListener("click", () => { sort.desc = !sort.desc; store(); paint(); onChange(); });
  const refresh = (items = []) => {
    const keys = SORT_KEYS.filter((k) => !k.field || k.id === sort.key
      || items.some((m) => m[k.field] !== undefined && m[k.field] !== null));
    const wanted = keys.map((k) => k.id).join();
    if (select.dataset.keys !== wanted || select.dataset.lang !== t("sort.key.name")) {
      select.replaceChildren(...keys.map((k) => h("option", { value: k.id, text: t(`sort.key.${k.id}`) })));
      select.dataset.keys = wanted;
      select.dataset.lang = t("sort.key.name");
    }
    select.value = sort.key;
    paint();
  };
  refresh();
  return { el: h("span", { class: "sort-group" }, select, dirBtn), refresh };
}
