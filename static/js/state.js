// Shared panel state and a tiny event bus. Modules read `state` and announce changes with emit().

export const state = {
  types: [], // configured model types, from /api/models/get_types
  tab: null, // current type tab ("others" for the Others tab)
  lockedTab: false, // selection mode locks the tab
  pendingMode: false,
  models: new Map(), // tab -> ModelSimpleRecord[] (active library cache)
  pending: null, // PendingModelSimpleRecord[] or null when not loaded
  tags: [], // every tag: {id, name}
  selectedSha: null, // active model shown in details
  selectedPendingId: null, // pending model shown in details
  pendingChecked: new Set(), // pending ids ticked for import
  view: "card",
  cols: 4,
  search: "",
  tagFilter: new Map([["nsfw", "exclude"]]), // lower-case tag name -> "include" | "exclude"
  imageRev: new Map(), // sha -> revision used as the ?rev= cache buster
  config: null, // /api/panel/config
  select: null, // selection mode settings, see selection.js
};

const listeners = new Map();

export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
}

export function emit(event, detail) {
  for (const fn of listeners.get(event) || []) fn(detail);
}

export function revOf(sha) {
  return state.imageRev.get(sha) || 0;
}

export function bumpRev(sha) {
  state.imageRev.set(sha, revOf(sha) + 1);
}

/** Every cached list entry of `sha` (a model appears in one type list, maybe also "others"). */
export function cachedEntries(sha) {
  const found = [];
  for (const list of state.models.values()) {
    for (const item of list) if (item.sha256 === sha) found.push(item);
  }
  return found;
}

/** The type a pending item belongs to: its own type when known, else the Others tab. */
export function pendingTab(item) {
  const type = item.type || "";
  return state.types.includes(type) ? type : "others";
}
