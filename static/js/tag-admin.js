// Tag management: usage counts, rename (onto an existing name merges), merge several, delete.
// Every change is previewed with a dry run, so the counts shown are those the change will make.
import { api } from "./api.js";
import { confirmDialog, notify, openDialog } from "./dialog.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

function usageText(tag) {
  return t("tagAdmin.usage", { name: tag.name, models: tag.models, pending: tag.pending });
}

async function confirmChange(preview, apply, done) {
  let report;
  try {
    report = await preview();
  } catch (err) {
    notify(err.message, "error");
    return;
  }
  const before = (report.before || report.deleted || []).map(usageText).join("; ");
  const message = report.deleted
    ? t("tagAdmin.deleteConfirm", { before })
    : t(report.merged ? "tagAdmin.mergeConfirm" : "tagAdmin.renameConfirm",
      { before, after: usageText(report.tag) });
  if (!await confirmDialog(message, { okLabel: t("common.ok"), danger: Boolean(report.deleted) })) return;
  try {
    await apply();
    notify(t("tagAdmin.done"), "info");
  } catch (err) {
    notify(err.message, "error");
  }
  done();
}

/** Open the tag view; `onChange` runs after every change (the library reloads its tags). */
export function openTagAdmin(onChange) {
  const checked = new Set();
  const dialog = openDialog({ title: t("tagAdmin.title"), className: "manage-dialog tag-admin",
    body: h("p", { text: t("common.loading") }), buttons: [{ id: "close", label: t("common.close") }] });
  let tags = [];
  const changed = () => { checked.clear(); reload(); if (onChange) onChange(); };
  const mergeInput = h("input", { type: "text", id: "tag-merge-target", placeholder: t("tagAdmin.mergeInto") });
  const mergeSelected = () => {
    const target = mergeInput.value.trim();
    if (checked.size < 1 || !target) {
      notify(t("tagAdmin.pickMerge"), "info");
      return;
    }
    const existing = tags.find((tag) => tag.name.toLowerCase() === target.toLowerCase());
    const into = existing ? existing.id : target;
    const source = [...checked];
    confirmChange(() => api.mergeTags(source, into, true), () => api.mergeTags(source, into, false), changed);
  };
  const deleteSelected = () => {
    if (!checked.size) return;
    const ids = [...checked];
    confirmChange(() => api.deleteTags(ids, true), () => api.deleteTags(ids, false), changed);
  };
  const row = (tag) => {
    const box = h("input", { type: "checkbox", checked: checked.has(tag.id),
      "aria-label": tag.name, class: "tag-check" });
    box.addEventListener("change", () => (box.checked ? checked.add(tag.id) : checked.delete(tag.id)));
    const name = h("input", { type: "text", value: tag.name, class: "tag-name-input", "aria-label": t("tagAdmin.rename") });
    const rename = () => {
      const value = name.value.trim();
      if (!value || value === tag.name) return;
      confirmChange(() => api.renameTag(tag.id, value, true), () => api.renameTag(tag.id, value, false), changed);
    };
    name.addEventListener("keydown", (event) => { if (event.key === "Enter") rename(); });
    return h("tr", { dataset: { tag: tag.name, id: String(tag.id) } },
      h("td", {}, box), h("td", {}, name),
      h("td", { class: "num", text: String(tag.models) }), h("td", { class: "num", text: String(tag.pending) }),
      h("td", {}, h("button", { type: "button", class: "btn small", dataset: { action: "rename" }, onclick: rename },
        t("tagAdmin.rename")),
      h("button", { type: "button", class: "btn small danger", dataset: { action: "delete" },
        onclick: () => confirmChange(() => api.deleteTags([tag.id], true),
          () => api.deleteTags([tag.id], false), changed) }, t("tagAdmin.delete"))));
  };
  const reload = async () => {
    try {
      tags = (await api.tagUsage()).tags;
    } catch (err) {
      dialog.setBody(h("p", { class: "error", text: err.message }));
      return;
    }
    if (!tags.length) {
      dialog.setBody(h("p", { class: "muted", text: t("tagAdmin.none") }));
      return;
    }
    dialog.setBody(
      h("div", { class: "tag-admin-tools" }, mergeInput,
        h("button", { type: "button", class: "btn small", id: "tag-merge", onclick: mergeSelected }, t("tagAdmin.merge")),
        h("button", { type: "button", class: "btn small danger", id: "tag-delete-selected", onclick: deleteSelected },
          t("tagAdmin.deleteSelected"))),
      h("table", { class: "manage-table" },
        h("thead", {}, h("tr", {}, ["", "tagAdmin.name", "tagAdmin.models", "tagAdmin.pending", ""]
          .map((k) => h("th", { text: k ? t(k) : "", class: k.endsWith("models") || k.endsWith("pending") ? "num" : null })))),
        h("tbody", {}, tags.map(row))));
  };
  reload();
  return dialog;
}
