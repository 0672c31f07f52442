// Client-side search and the tag filter dropdown (none -> include -> exclude -> none).
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { baseFilter } from "./metadata-view.js";
import { state } from "./state.js";

const key = (name) => String(name || "").trim().toLowerCase();

// item -> {name, path, type, text}: the lower-cased text is made once per item, not per keystroke
// (a save changes the fields in place: then they no longer match and the text is made again)
const searchText = new WeakMap();

function haystack(item) {
  const known = searchText.get(item);
  if (known && known.name === item.name && known.path === item.path && known.type === item.type) {
    return known.text;
  }
  const text = [item.name, item.path, item.type].map((field) => String(field || "").toLowerCase())
    .join("\n");
  searchText.set(item, { name: item.name, path: item.path, type: item.type, text });
  return text;
}

/** Items whose name, path or type contains the search text (case-insensitive). */
export function searchFilter(items) {
  const needle = state.search.trim().toLowerCase();
  if (!needle) return items;
  return items.filter((item) => haystack(item).includes(needle));
}

/** Items passing the tag filter: every include tag present, no exclude tag present. */
export function tagFilter(items) {
  const include = [];
  const exclude = [];
  for (const [name, mode] of state.tagFilter) (mode === "include" ? include : exclude).push(name);
  if (!include.length && !exclude.length) return items;
  return items.filter((item) => {
    const names = tagKeys(item);
    return include.every((n) => names.includes(n)) && !exclude.some((n) => names.includes(n));
  });
}

const tagKeyCache = new WeakMap(); // item -> {tags, keys}: made again when the tags array changes

function tagKeys(item) {
  const tags = item.tags || [];
  const known = tagKeyCache.get(item);
  if (known && known.tags === tags && known.length === tags.length) return known.keys;
  const keys = tags.map((tag) => key(tag.name));
  tagKeyCache.set(item, { tags, length: tags.length, keys });
  return keys;
}

// items -> the lower-cased search text and tag names of each, by index: a keystroke over 50,000
// models is then one loop over strings (the shown list is a new array whenever its items change)
// (each made when first needed: the tag names for the default NSFW filter, the text on a search)
let prepared = { items: null, text: null, tags: null };

const lower = (item) => [item.name, item.path, item.type].map((f) => String(f || "").toLowerCase())
  .join("\n");

function prepare(items, part) {
  if (prepared.items !== items) prepared = { items, text: null, tags: null };
  if (!prepared[part]) prepared[part] = items.map(part === "text" ? lower : tagKeys);
  return prepared[part];
}

// the search text is made while the panel is idle after the first draw, not on the first keystroke
function prepareSoon(items) {
  if (prepared.items === items && prepared.text) return;
  const run = () => { if (prepared.items === items || prepared.items === null) prepare(items, "text"); };
  if (window.requestIdleCallback) requestIdleCallback(run, { timeout: 1000 });
  else setTimeout(run, 200);
}

/** Items passing the search, the tag filter and the base-model filter, in their order. */
export function applyFilters(items) {
  const needle = state.search.trim().toLowerCase();
  const include = [];
  const exclude = [];
  for (const [name, mode] of state.tagFilter) (mode === "include" ? include : exclude).push(name);
  if (!needle) prepareSoon(items);
  if (!needle && !include.length && !exclude.length) return baseFilter(items);
  const text = needle ? prepare(items, "text") : null;
  const tags = include.length || exclude.length ? prepare(items, "tags") : null;
  const out = [];
  for (let i = 0; i < items.length; i += 1) {
    if (needle && !text[i].includes(needle)) continue;
    if (tags && !include.every((n) => tags[i].includes(n))) continue;
    if (tags && exclude.some((n) => tags[i].includes(n))) continue;
    out.push(items[i]);
  }
  return baseFilter(out);
}

/** Number of active filters (include + exclude). */
export function activeFilterCount() {
  return state.tagFilter.size;
}

function cycle(name) {
  const mode = state.tagFilter.get(name);
  if (!mode) state.tagFilter.set(name, "include");
  else if (mode === "include") state.tagFilter.set(name, "exclude");
  else state.tagFilter.delete(name);
}

/**
 * The "Tags" dropdown. `getItems()` returns the items of the current tab after search;
 * `onChange()` re-renders the library. Returns {el, refresh()}.
 */
export function tagFilterDropdown(getItems, onChange) {
  const button = h("button", { type: "button", class: "btn tag-filter-btn", "aria-haspopup": "true",
    "aria-expanded": "false" });
  const panel = h("div", { class: "tag-filter-panel", hidden: true, role: "group" });
  const el = h("div", { class: "tag-filter" }, button, panel);

  const open = (yes) => {
    panel.hidden = !yes;
    button.setAttribute("aria-expanded", String(yes));
    if (yes) renderPanel();
  };
  button.addEventListener("click", () => open(panel.hidden));
  document.addEventListener("click", (event) => {
    if (!panel.hidden && !event.composedPath().includes(el)) open(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden && !document.querySelector("dialog[open]")) {
      event.preventDefault(); // handled: selection mode must not take it as "cancel"
      open(false);
      button.focus();
    }
  });

  function renderPanel() {
    const items = getItems();
    const shown = tagFilter(items);
    const counts = new Map();
    const spelled = new Map();
    for (const tag of state.tags) spelled.set(key(tag.name), tag.name);
    for (const item of items) for (const tag of item.tags || []) spelled.set(key(tag.name), tag.name);
    for (const item of shown) {
      for (const tag of item.tags || []) counts.set(key(tag.name), (counts.get(key(tag.name)) || 0) + 1);
    }
    const stateful = [...state.tagFilter.keys()].filter((name) => spelled.has(name));
    const others = [...counts.keys()].filter((name) => !state.tagFilter.has(name))
      .sort((a, b) => spelled.get(a).localeCompare(spelled.get(b)));
    const row = (name) => {
      const mode = state.tagFilter.get(name) || "none";
      return h("button", {
        type: "button",
        class: `tag-filter-item ${mode}`,
        dataset: { tag: name, mode },
        "aria-pressed": mode === "none" ? "false" : "true",
        title: t(`filter.mode.${mode}`),
        onclick: () => {
          cycle(name);
          onChange();
          renderPanel();
        },
      }, h("span", { class: "tag-name", text: spelled.get(name) }),
      h("span", { class: "tag-count", text: String(counts.get(name) || 0) }));
    };
    replace(panel,
      h("div", { class: "tag-filter-head" },
        h("span", { text: t("filter.hint") }),
        h("button", { type: "button", class: "btn small", dataset: { action: "clear-filters" },
          onclick: () => { state.tagFilter.clear(); onChange(); renderPanel(); } }, t("filter.clear"))),
      stateful.length || others.length
        ? h("div", { class: "tag-filter-list" }, stateful.map(row), others.map(row))
        : h("p", { class: "muted", text: t("filter.none") }));
  }

  function refresh() {
    const count = activeFilterCount();
    button.textContent = t("filter.button", { n: count });
    button.classList.toggle("active", count > 0);
    if (!panel.hidden) renderPanel();
  }
  refresh();
  return { el, refresh };
}
