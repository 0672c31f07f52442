// Type tabs: one per configured type plus "Others"; loading and error (Retry) states.
import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { state } from "./state.js";

let nav;
let onPick;
let status = "loading";
let error = "";

export function tabLabel(type) {
  return type === "others" ? t("tabs.others") : type;
}

export function mountTabs(el, pick) {
  nav = el;
  onPick = pick;
  // a tablist: Left/Right (and Home/End) move to the neighbouring tab and show it
  nav.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: -1, ArrowRight: 1, Home: "first", End: "last" };
    if (!(event.key in moves) || !event.target.matches?.("[role=tab]")) return;
    event.preventDefault();
    const all = [...nav.querySelectorAll("[role=tab]")];
    const at = all.indexOf(event.target);
    const move = moves[event.key];
    const to = move === "first" ? 0 : move === "last" ? all.length - 1
      : (at + move + all.length) % all.length;
    select(all[to].dataset.tab);
    nav.querySelector(".tab.active")?.focus();
  });
  render();
}

/** Fetch the types; resolves true when they loaded. */
export async function loadTypes() {
  status = "loading";
  render();
  try {
    state.types = (await api.types()).types || [];
    status = "ready";
    render();
    return true;
  } catch (err) {
    status = "error";
    error = err.message;
    render();
    return false;
  }
}

function select(type) {
  if (state.lockedTab || type === state.tab) return;
  onPick(type);
}

export function render() {
  if (!nav) return;
  if (status === "loading") {
    replace(nav, h("span", { class: "tabs-status" }, h("span", { class: "spinner",
      "aria-hidden": "true" }), t("tabs.loading")));
    return;
  }
  if (status === "error") {
    replace(nav, h("span", { class: "tabs-status error", role: "alert" }, t("tabs.error", { error })),
      h("button", { type: "button", class: "btn small", id: "tabs-retry",
        onclick: () => nav.dispatchEvent(new CustomEvent("retry")) }, t("common.retry")));
    return;
  }
  const tabs = [...state.types, "others"];
  replace(nav, tabs.map((type) => {
    const count = state.pendingMode && state.pending
      ? state.pending.filter((p) => (type === "others"
        ? !state.types.includes(p.type || "") : p.type === type)).length : null;
    return h("button", {
      type: "button",
      role: "tab",
      class: `tab${type === state.tab ? " active" : ""}`,
      "aria-selected": String(type === state.tab),
      tabindex: type === state.tab ? "0" : "-1",
      "aria-controls": "library",
      dataset: { tab: type },
      onclick: () => select(type),
    }, tabLabel(type), count !== null ? h("span", { class: "tab-count", text: String(count) }) : "");
  }));
}
