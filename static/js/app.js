// Entry point: builds the shell, wires modules together through the state event bus.
import { api } from "./api.js";
import { initialTab, matchTab } from "./boot.js";
import { importRunning, importSelected } from "./conflicts.js";
import * as details from "./details.js";
import { notify } from "./dialog.js";
import { $, h } from "./dom.js";
import { LANGUAGES, initLanguage, language, onLanguageChange, setLanguage, t,
  translateStatic } from "./i18n.js";
import { mountSplitter, mountToolbar } from "./layout.js";
import { openLegacyDialog } from "./legacy.js";
import * as library from "./library.js";
import { mountManage } from "./manage.js";
import * as pending from "./pending.js";
import { gateWrite, readOnlyText } from "./readonly.js";
import * as selection from "./selection.js";
import { emit, on, state } from "./state.js";
import * as tabs from "./tabs.js";

const params = new URLSearchParams(location.search);

async function loadTags() {
  try {
    state.tags = (await api.tags()).tags;
    library.render();
  } catch (err) {
    notify(t("tags.loadFailed", { error: err.message }), "error");
  }
}

function pickTab(type) {
  state.tab = type;
  tabs.render();
  library.load();
}

function updateToolbar() {
  const count = state.pending ? state.pending.length : 0;
  const badge = $("#pending-badge");
  badge.textContent = String(count);
  badge.hidden = count === 0;
  const toggle = $("#pending-toggle");
  toggle.setAttribute("aria-pressed", String(state.pendingMode));
  toggle.classList.toggle("active", state.pendingMode);
  const importBtn = $("#import-selected");
  importBtn.hidden = !state.pendingMode;
  gateWrite(importBtn, state.pendingChecked.size === 0 || importRunning());
  gateWrite($("#scan"));
  gateWrite($("#legacy"));
  $("#import-count").textContent = state.pendingChecked.size ? ` (${state.pendingChecked.size})` : "";
  $("#toolbar").dataset.activeTab = state.tab || "";
}

function setPendingMode(on) {
  state.pendingMode = on;
  state.pendingChecked.clear();
  state.selectedPendingId = null;
  document.body.classList.toggle("is-pending", on);
  $("#pending-pill").hidden = !on;
  $("#details").hidden = on;
  $("#pending-details").hidden = !on;
  pending.showPending(null);
  library.retranslate();
  library.load(on); // entering pending mode always re-reads the queue
  tabs.render();
  updateToolbar();
}

function wireEvents() {
  on("library:click", async (model) => {
    if (state.select?.kind === "lora") {
      selection.addLora(model);
      return;
    }
    if (model.sha256 !== state.selectedSha && !await details.confirmDiscard()) return;
    if (state.select?.kind === "checkpoint") selection.pickCheckpoint(model);
    state.selectedSha = model.sha256;
    details.show(model.sha256);
    library.updateMarks();
  });
  on("pending:click", (item) => {
    state.selectedPendingId = item.id;
    state.pendingChecked.add(item.id);
    pending.showPending(item.id);
    library.updateMarks();
    updateToolbar();
  });
  on("pending:checked", updateToolbar);
  on("pending:loaded", () => {
    updateToolbar();
    tabs.render();
    if (state.pendingMode) library.render();
  });
  on("images:changed", ({ sha, count }) => {
    for (const list of state.models.values()) {
      for (const m of list) if (m.sha256 === sha) m.images_count = count;
    }
    if (!state.pendingMode) library.updateItem(sha);
  });
  on("model:saved", () => library.render());
  on("config:loaded", () => {
    // write controls follow the read-only state
    if (!state.select) updateToolbar();
    details.retranslate();
  });
  on("library:refresh", () => {
    loadTags();
    if (!state.pendingMode) pending.reloadPending();
  });
  on("library:changed", () => (state.pendingMode ? library.render() : library.load()));
  on("import:done", async () => {
    await pending.reloadPending();
    await loadTags();
    library.load(!state.pendingMode);
    updateToolbar();
  });
  on("selection:changed", () => {
    selection.renderSelection();
    // LoRAs taken into the list leave the library; a checkpoint pick only moves the highlight
    if (state.select?.kind === "lora") library.render();
    else library.updateMarks();
  });
  on("selection:show", async (sha) => {
    if (sha !== state.selectedSha && !await details.confirmDiscard()) return;
    state.selectedSha = sha;
    details.show(sha);
  });
  onLanguageChange(() => {
    tabs.render();
    library.retranslate();
    details.retranslate();
    pending.retranslate();
    if (state.select) selection.renderSelection();
    updateToolbar();
  });
}

function mountLanguageSwitch() {
  const select = $("#lang");
  for (const { code, label } of LANGUAGES) select.append(h("option", { value: code, text: label }));
  select.value = language();
  select.addEventListener("change", () => setLanguage(select.value));
}

/** Tell the user when the library cannot be written (e.g. a database made by newer software). */
async function checkWritable() {
  try {
    state.config = await api.panelConfig();
  } catch (err) {
    notify(err.message, "error");
    return;
  }
  const text = readOnlyText();
  const banner = $("#banner");
  banner.hidden = !text;
  banner.className = "banner error";
  banner.textContent = text;
  emit("config:loaded");
}

async function start() {
  const loaded = await tabs.loadTypes();
  if (!loaded) return;
  const wanted = state.select ? selection.tabForKind(state.select.kind, state.types)
    : params.get("tab");
  // selection mode keeps the asked-for tab even when it is not (yet) a configured type
  state.tab = state.select ? matchTab(state.types, wanted) || wanted : initialTab(state.types, wanted);
  tabs.render();
  await Promise.all([library.load(), loadTags(),
    state.select ? null : pending.reloadPending(), state.select ? null : checkWritable()]);
  if (state.select) {
    selection.matchInitialCheckpoint();
    selection.renderSelection();
    library.render();
  }
}

function init() {
  initLanguage(params);
  translateStatic();
  mountLanguageSwitch();
  state.select = selection.selectionFromUrl(params);
  state.lockedTab = Boolean(state.select);
  document.body.classList.toggle("select-mode", Boolean(state.select));
  library.mountLibrary($("#library"));
  details.mountDetails($("#details"));
  pending.mountPendingDetails($("#pending-details"));
  mountSplitter($("#splitter"), $("#layout"));
  tabs.mountTabs($("#tabs"), pickTab);
  $("#tabs").addEventListener("retry", () => start());
  wireEvents();
  if (state.select) {
    $("#toolbar").hidden = true;
    selection.mountSelection($("#select-bar"), $("#selected-loras"),
      () => details.confirmDiscard("details.discardClose"));
    selection.startSelection();
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented || document.querySelector("dialog[open]")) {
        return;
      }
      // Escape in a field only leaves the field; it must not throw away the whole selection
      if (event.target instanceof Element && event.target.matches("input, textarea, select")) {
        event.target.blur();
        return;
      }
      event.preventDefault(); // or this Escape would also dismiss the "discard?" question it opens
      selection.cancelSelection();
    });
  } else {
    mountToolbar($("#toolbar"), $("#toolbar-handle"));
    $("#pending-toggle").addEventListener("click", () => setPendingMode(!state.pendingMode));
    $("#scan").addEventListener("click", () => pending.scan());
    $("#import-selected").addEventListener("click", () => importSelected());
    $("#legacy").addEventListener("click", () => openLegacyDialog());
    mountManage($("#toolbar"), { refresh: () => library.refresh(), scan: () => pending.scan() });
    updateToolbar();
  }
  start();
}

init();
