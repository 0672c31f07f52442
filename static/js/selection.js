// Selection mode for the ComfyUI nodes (panel inside an iframe): origin checks, messages, the
// checkpoint pick and the LoRA list with strengths.
import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { jobFailureText, runJob } from "./jobs.js";
import { load as loadLibrary } from "./library.js";
import { loraDocument, parseCheckpointPayload, parseLoraPayload } from "./lora-doc.js";
import { readOnlyText } from "./readonly.js";
import { emit, pendingTab, state } from "./state.js";

const KIND_TABS = { checkpoint: ["checkpoints", "checkpoint"], lora: ["loras", "lora"] };
let bar;
let listEl;
let mayClose = async () => true; // asks about unsaved details edits before the panel is closed

/** Selection settings from the URL, or null when the panel is not in selection mode. */
export function selectionFromUrl(params) {
  if (params.get("mode") !== "select") return null;
  const kind = params.get("kind") === "lora" ? "lora" : "checkpoint";
  return { kind, parent: String(params.get("parent") || "").toLowerCase(), allowed: false,
    version: 2, loras: [], picked: null, initialPath: "", warning: "", error: "",
    firstUse: { busy: false, message: "", failed: false } };
}

/** The tab a selection kind is locked to, among the configured types. */
export function tabForKind(kind, types) {
  for (const name of KIND_TABS[kind]) {
    const found = types.find((type) => type.toLowerCase() === name);
    if (found) return found;
  }
  return KIND_TABS[kind][0];
}

function post(message) {
  const sel = state.select;
  if (!sel || !sel.allowed) return;
  window.parent.postMessage({ source: "hikaze-panel", ...message }, sel.parent);
}

function onMessage(event) {
  const sel = state.select;
  if (event.origin !== sel.parent || event.source !== window.parent) return;
  const data = event.data;
  if (!data || data.source !== "hikaze-comfyui" || data.type !== "init") return;
  if (data.kind && data.kind !== sel.kind) return;
  if (sel.kind === "lora") {
    const doc = parseLoraPayload(data.payload);
    sel.version = doc.version;
    sel.loras = doc.loras;
    sel.warning = doc.error ? t("select.badPayload", { error: doc.error })
      : doc.dropped ? t("select.dropped", { n: doc.dropped }) : "";
  } else {
    const doc = parseCheckpointPayload(data.payload);
    sel.initialPath = doc.path;
    sel.warning = doc.error ? t("select.badPayload", { error: doc.error }) : "";
    matchInitialCheckpoint();
  }
  emit("selection:changed");
}

/** Pre-select the checkpoint the node already uses, once the library list is known. */
export function matchInitialCheckpoint() {
  const sel = state.select;
  if (!sel || sel.kind !== "checkpoint" || !sel.initialPath || sel.picked) return;
  const list = state.models.get(state.tab) || [];
  const found = list.find((m) => m.path === sel.initialPath);
  if (found) sel.picked = found;
}

/** Check the parent origin against /api/panel/config, then greet the parent. */
export async function startSelection() {
  const sel = state.select;
  try {
    state.config = await api.panelConfig();
  } catch (err) {
    sel.error = t("select.configFailed", { error: err.message });
    emit("selection:changed");
    return;
  }
  emit("config:loaded");
  const allowed = (state.config.allowed_origins || []).map((o) => String(o).toLowerCase());
  // frame-ancestors cannot tell every outer page apart (for an IPv6 ComfyUI page it admits any
  // host on that port), so every ancestor must be an allowed ComfyUI page (Chromium lists them).
  const outsider = Array.from(window.location.ancestorOrigins || [])
    .map((o) => String(o).toLowerCase()).find((o) => !allowed.includes(o));
  if (!sel.parent || !allowed.includes(sel.parent)) {
    sel.error = t("select.badOrigin", { origin: sel.parent || "?" });
  } else if (outsider) {
    sel.error = t("select.badAncestor", { origin: outsider });
  } else if (window.parent === window) {
    sel.error = t("select.notFramed");
  } else {
    sel.allowed = true;
    window.addEventListener("message", onMessage);
    post({ type: "ready" });
  }
  emit("selection:changed");
}

export function pickCheckpoint(model) {
  state.select.picked = model;
  emit("selection:changed");
}

export function addLora(model) {
  state.select.loras.push({ name: model.name || "", full_path: model.path, strength_model: 1,
    strength_clip: 1, sha256: model.sha256, enabled: true });
  emit("selection:changed");
}

async function confirm() {
  const sel = state.select;
  if (sel.kind === "checkpoint" && !sel.picked) return;
  if (!await mayClose()) return;
  if (sel.kind === "checkpoint") {
    const m = sel.picked;
    post({ type: "select", kind: "checkpoint",
      payload: { ckpt_path: m.path, sha256: m.sha256, name: m.name || "" } });
  } else {
    post({ type: "select", kind: "lora", payload: loraDocument(sel.version, sel.loras) });
  }
}

export async function cancelSelection() {
  if (!await mayClose()) return;
  post({ type: "cancel" });
}

/**
 * Mount the selection bar (header) and the selected-LoRAs list. `beforeClose()` resolves false
 * to keep the panel open (Cancel and Confirm close it in ComfyUI).
 */
export function mountSelection(barEl, listElement, beforeClose) {
  if (beforeClose) mayClose = beforeClose;
  bar = barEl;
  listEl = listElement;
  bar.hidden = false;
  listEl.hidden = state.select.kind !== "lora";
  renderSelection();
}

function strengthInput(entry, key, labelKey) {
  const input = h("input", { type: "number", step: "0.05", class: `strength ${key}`,
    value: String(entry[key]), "aria-label": t(labelKey, { name: entry.name || entry.full_path }) });
  const read = (restore) => {
    const n = Number(input.value);
    if (input.value.trim() !== "" && Number.isFinite(n)) entry[key] = n;
    else if (restore) input.value = String(entry[key]);
  };
  input.addEventListener("input", () => read(false));
  input.addEventListener("change", () => read(true));
  return input;
}

function loraRow(entry, index, known) {
  const sel = state.select;
  const move = (delta) => {
    const to = index + delta;
    if (to < 0 || to >= sel.loras.length) return;
    [sel.loras[index], sel.loras[to]] = [sel.loras[to], sel.loras[index]];
    emit("selection:changed");
  };
  const inLibrary = entry.sha256 && known.has(entry.sha256);
  const enabled = h("input", { type: "checkbox", class: "enabled", checked: entry.enabled,
    "aria-label": t("select.enabled") });
  enabled.addEventListener("change", () => { entry.enabled = enabled.checked; });
  const label = entry.name || String(entry.full_path || "").split(/[\\/]/).pop();
  return h("li", { class: `lora-row${inLibrary ? "" : " missing"}`, dataset: { index } },
    h("span", { class: "lora-index", text: String(index + 1) }),
    h("div", { class: "lora-name" },
      inLibrary
        ? h("button", { type: "button", class: "link", text: label,
          onclick: () => emit("selection:show", entry.sha256) })
        : h("span", { text: label }),
      h("div", { class: "mono small muted", text: entry.full_path }),
      inLibrary ? "" : h("span", { class: "badge-text warn", text: t("select.notInLibrary") })),
    h("label", { class: "strength-label" }, h("span", { text: t("select.model") }),
      strengthInput(entry, "strength_model", "select.strengthModel")),
    h("label", { class: "strength-label" }, h("span", { text: t("select.clip") }),
      strengthInput(entry, "strength_clip", "select.strengthClip")),
    h("label", { class: "enabled-label" }, enabled, h("span", { text: t("select.on") })),
    h("div", { class: "lora-actions" },
      h("button", { type: "button", class: "btn icon small", "aria-label": t("select.up"),
        disabled: index === 0, onclick: () => move(-1) }, "↑"),
      h("button", { type: "button", class: "btn icon small", "aria-label": t("select.down"),
        disabled: index === sel.loras.length - 1, onclick: () => move(1) }, "↓"),
      h("button", { type: "button", class: "btn icon small danger", "aria-label": t("select.remove"),
        onclick: () => { sel.loras.splice(index, 1); emit("selection:changed"); } }, "✕")));
}

/** Redraw the bar and list from state.select. */
export function renderSelection() {
  const sel = state.select;
  if (!bar) return;
  const title = t(sel.kind === "lora" ? "select.titleLora" : "select.titleCheckpoint");
  const summary = sel.kind === "lora"
    ? t("select.countLoras", { n: sel.loras.length })
    : (sel.picked ? (sel.picked.name || sel.picked.path) : t("select.nothing"));
  replace(bar,
    h("strong", { class: "select-title", text: title }),
    h("span", { class: "select-summary", id: "select-summary", text: summary }),
    h("button", { type: "button", class: "btn", id: "select-cancel",
      onclick: () => cancelSelection() }, t("common.cancel")),
    h("button", { type: "button", class: "btn primary", id: "select-confirm",
      disabled: !sel.allowed || (sel.kind === "checkpoint" && !sel.picked),
      onclick: () => confirm() }, t("select.confirm")));
  const banner = document.getElementById("banner");
  const readOnly = readOnlyText();
  const messages = [sel.error, readOnly, sel.warning].filter(Boolean);
  const firstUse = firstUseBox(readOnly);
  banner.hidden = !messages.length && !firstUse;
  banner.className = `banner ${sel.error || readOnly ? "error" : messages.length ? "warn" : "info"}`;
  replace(banner, messages.map((text) => h("div", { text })), firstUse || "");
  if (sel.kind !== "lora") return;
  const known = new Set((state.models.get(state.tab) || []).map((m) => m.sha256));
  replace(listEl,
    h("div", { class: "selected-head" }, h("strong", { text: t("select.selected") })),
    sel.loras.length
      ? h("ol", { class: "lora-list", id: "lora-list" }, sel.loras.map((e, i) => loraRow(e, i, known)))
      : h("p", { class: "muted", text: t("select.noneSelected") }));
}

// ---------------------------------------------------------------------------------------------
// First use: an empty tab offers to scan ComfyUI's model folders and import what is found

/** The offer (or its outcome) when the locked tab has no models yet; null otherwise. */
function firstUseBox(readOnly) {
  const sel = state.select;
  const list = state.models.get(state.tab);
  const { busy, message, failed } = sel.firstUse;
  if (sel.error || !sel.allowed || !list || (list.length && !message)) return null;
  const steps = t("select.firstUse.manual", { url: `${location.origin}/` });
  const parts = [];
  if (message) parts.push(h("p", { class: failed ? "error" : "", id: "first-use-result", text: message }));
  if (!list.length) {
    parts.unshift(h("p", { text: t("select.firstUse.empty", { tab: state.tab }) }));
    if (!readOnly) {
      parts.push(h("button", { type: "button", class: "btn primary", id: "first-use-scan",
        disabled: busy, onclick: () => scanAndImport() }, t("select.firstUse.scan")));
    }
    parts.push(h("p", { class: "muted small", text: steps }));
  }
  return h("div", { class: "first-use", id: "first-use" }, parts);
}

function firstUseDone(message, failed = false) {
  state.select.firstUse = { busy: false, message, failed };
  renderSelection();
}

/** Scan every model folder, then import the pending models of this tab, with progress dialogs. */
async function scanAndImport() {
  const sel = state.select;
  sel.firstUse = { busy: true, message: "", failed: false };
  renderSelection();
  try {
    const scan = await runJob(t("select.firstUse.scanning"), api.scan);
    scan.dialog.close("done");
    const scanFailure = jobFailureText(scan.job);
    if (scanFailure) return firstUseDone(t("select.firstUse.failed", { error: scanFailure }), true);
    const pendingList = (await api.pendingModels()).models;
    const ids = pendingList.filter((item) => pendingTab(item) === state.tab).map((item) => item.id);
    if (!ids.length) {
      return firstUseDone(t("select.firstUse.nothing",
        { tab: state.tab, n: scan.job.result?.scanned ?? 0 }), true);
    }
    const run = await runJob(t("select.firstUse.importing", { n: ids.length }),
      () => api.importModels(ids, null));
    run.dialog.close("done");
    const failure = jobFailureText(run.job);
    const report = run.job.result || {};
    await loadLibrary(true);
    emit("library:changed");
    if (failure) return firstUseDone(t("select.firstUse.failed", { error: failure }), true);
    firstUseDone(t("select.firstUse.done", { n: (report.success || []).length,
      conflicts: (report.conflict || []).length, failed: (report.failed || []).length }));
  } catch (err) {
    firstUseDone(t("select.firstUse.failed", { error: err.message }), true);
  }
}
