// Multi-select in the library (click the box, Ctrl/Cmd-click, Shift-click ranges, Ctrl+A, Escape)
// and the bar of actions that apply to the whole selection, one request each.
import { api } from "./api.js";
import { confirmDialog, notify, openDialog } from "./dialog.js";
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { jobFailureText, runJob } from "./jobs.js";
import { state } from "./state.js";
import { trashModelFile } from "./trash.js";

state.multi = new Set(); // sha256 of the selected library models
let anchor = null;
let bar;
let hooks;
let lastResult = "";

/** Selected models that are in the current lists (for their names and tags). */
function selectedRecords() {
  const found = new Map();
  for (const list of state.models.values()) {
    for (const m of list) if (state.multi.has(m.sha256)) found.set(m.sha256, m);
  }
  return [...found.values()];
}

/** Tick or untick one model; Shift extends from the last one ticked over the visible order. */
export function toggle(item, on, event) {
  if (event?.shiftKey && anchor) {
    const shown = hooks.visibleItems();
    const from = shown.findIndex((m) => m.sha256 === anchor);
    const to = shown.findIndex((m) => m.sha256 === item.sha256);
    if (from >= 0 && to >= 0) {
      const [a, b] = from < to ? [from, to] : [to, from];
      for (const m of shown.slice(a, b + 1)) state.multi.add(m.sha256);
      anchor = item.sha256;
      changed();
      return;
    }
  }
  if (on) state.multi.add(item.sha256);
  else state.multi.delete(item.sha256);
  anchor = item.sha256;
  changed();
}

/** A card click with Ctrl/Cmd or Shift selects instead of opening the details. */
export function modifiedClick(item, event) {
  toggle(item, event.shiftKey ? true : !state.multi.has(item.sha256), event);
}

export function selectAllVisible() {
  for (const m of hooks.visibleItems()) state.multi.add(m.sha256);
  changed();
}

export function clearSelection() {
  state.multi.clear();
  anchor = null;
  lastResult = "";
  changed();
}

function changed() {
  hooks.updateMarks();
  renderBar();
}

function fieldDialog({ title, label, input, okLabel }) {
  return new Promise((resolve) => {
    let value = null;
    const dialog = openDialog({
      title,
      className: "multi-dialog",
      body: h("label", { class: "field" }, h("span", { text: label }), input),
      buttons: [
        { id: "cancel", label: t("common.cancel") },
        { id: "confirm", label: okLabel, kind: "primary", onClick: () => { value = input.value; } },
      ],
      onClose: () => resolve(value),
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && input.tagName === "INPUT") {
        value = input.value;
        dialog.close("confirm");
      }
    });
    input.focus();
  });
}

async function run(action, describe) {
  const shas = [...state.multi];
  bar.classList.add("busy");
  try {
    const report = await action(shas);
    lastResult = describe(report);
    notify(lastResult, "info");
    await hooks.refresh();
  } catch (err) {
    lastResult = t("multi.failed", { error: err.message });
    notify(lastResult, "error");
  } finally {
    bar.classList.remove("busy");
    renderBar();
  }
}

async function addTags() {
  const input = h("input", { type: "text", id: "multi-tags-input", placeholder: t("multi.tagsHint") });
  const value = await fieldDialog({ title: t("multi.addTags", { n: state.multi.size }),
    label: t("multi.tagNames"), input, okLabel: t("multi.add") });
  const names = (value || "").split(",").map((s) => s.trim()).filter(Boolean);
  if (!names.length) return;
  await run((shas) => api.editTags(shas, names, []),
    (r) => t("multi.tagsAdded", { tags: r.added.map((x) => x.name).join(", "), n: r.models, links: r.links_added }));
}

async function removeTags() {
  const tags = new Map();
  const records = selectedRecords();
  // models of other tabs may not be loaded: then offer every tag (removing an absent one is a no-op)
  const source = records.length === state.multi.size ? records : [{ tags: state.tags }];
  for (const m of source) for (const tag of m.tags || []) tags.set(tag.id, tag);
  if (!tags.size) {
    notify(t("multi.noTags"), "info");
    return;
  }
  const input = h("select", { id: "multi-remove-select", multiple: true, size: Math.min(8, tags.size) },
    [...tags.values()].map((tag) => h("option", { value: String(tag.id), text: tag.name })));
  const picked = await new Promise((resolve) => {
    let ids = null;
    openDialog({
      title: t("multi.removeTags", { n: state.multi.size }),
      className: "multi-dialog",
      body: input,
      buttons: [
        { id: "cancel", label: t("common.cancel") },
        { id: "confirm", label: t("multi.remove"), kind: "primary",
          onClick: () => { ids = [...input.selectedOptions].map((o) => Number(o.value)); } },
      ],
      onClose: () => resolve(ids),
    });
  });
  if (!picked?.length) return;
  await run((shas) => api.editTags(shas, [], picked),
    (r) => t("multi.tagsRemoved", { tags: r.removed.map((x) => x.name).join(", "), links: r.links_removed }));
}

async function setType() {
  const input = h("input", { type: "text", id: "multi-type-input", list: "multi-type-list",
    value: state.tab && state.tab !== "others" ? state.tab : "" });
  const list = h("datalist", { id: "multi-type-list" }, state.types.map((ty) => h("option", { value: ty })));
  document.body.append(list);
  const value = await fieldDialog({ title: t("multi.setType", { n: state.multi.size }),
    label: t("multi.type"), input, okLabel: t("common.ok") });
  list.remove();
  if (!value || !value.trim()) return;
  await run((shas) => api.setType(shas, value.trim()),
    (r) => t("multi.typeSet", { type: r.type, n: r.changed }));
}

async function removeFromLibrary() {
  const n = state.multi.size;
  if (!await confirmDialog(t("multi.removeConfirm", { n }), { okLabel: t("multi.removeLib"), danger: true })) return;
  await run(async (shas) => {
    const report = await api.removeModels(shas);
    for (const sha of report.sha256) state.multi.delete(sha);
    return report;
  }, (r) => t("multi.removed", { n: r.removed }));
}

async function reread() {
  const n = state.multi.size;
  // Thousands of models take a while: a background job, with the progress dialog.
  await run(async (shas) => {
    const { job, dialog } = await runJob(t("multi.rereadBtn"), () => api.rereadMetadataJob(shas));
    dialog.close("done");
    if (job.state !== "succeeded") throw new Error(jobFailureText(job));
    return job.result;
  }, () => t("multi.reread", { n }));
}

async function trashFile() {
  const [model] = selectedRecords();
  if (!model) return;
  const entry = await trashModelFile(model);
  if (entry) {
    if (entry.removed_from_library) state.multi.delete(model.sha256);
    lastResult = t("trash.moved", { name: entry.path });
    await hooks.refresh();
    renderBar();
  }
}

export function renderBar() {
  if (!bar) return;
  const n = state.multi.size;
  bar.hidden = Boolean(state.select) || state.pendingMode || (n === 0 && !lastResult);
  const btn = (id, label, onclick, extra = {}) => h("button", { type: "button", class: "btn small",
    dataset: { action: id }, onclick, ...extra }, label);
  replace(bar,
    h("span", { class: "multi-count", text: t("multi.count", { n }) }),
    btn("select-all", t("multi.selectAll"), selectAllVisible),
    btn("clear", t("multi.clear"), clearSelection, { disabled: n === 0 }),
    h("span", { class: "multi-sep" }),
    btn("add-tags", t("multi.addTagsBtn"), addTags, { disabled: n === 0 }),
    btn("remove-tags", t("multi.removeTagsBtn"), removeTags, { disabled: n === 0 }),
    btn("set-type", t("multi.setTypeBtn"), setType, { disabled: n === 0 }),
    btn("reread", t("multi.rereadBtn"), reread, { disabled: n === 0 }),
    btn("remove", t("multi.removeLib"), removeFromLibrary, { disabled: n === 0, class: "btn small danger" }),
    btn("trash", t("multi.trashBtn"), trashFile, { disabled: n !== 1, class: "btn small danger" }),
    h("span", { class: "multi-result muted small", role: "status", text: lastResult }));
}

/** Mount the bar above the library; `h` gives visibleItems(), updateMarks() and refresh(). */
export function mountSelectionBar(container, handles) {
  hooks = handles;
  bar = h("div", { id: "multi-bar", class: "multi-bar", role: "toolbar", hidden: true,
    "aria-label": t("multi.label") });
  container.before(bar);
  // Re-reading metadata is another module's endpoint: offered only once the server has it.
  container.addEventListener("keydown", (event) => {
    if (state.select || state.pendingMode) return;
    if (event.target instanceof Element && event.target.matches("input, textarea, select")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a") {
      event.preventDefault();
      selectAllVisible();
    } else if (event.key === "Escape" && state.multi.size) {
      event.preventDefault();
      clearSelection();
    }
  });
  renderBar();
}
