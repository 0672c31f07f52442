// Moving a model file to the trash (explicit, confirmed by name) and restoring it from the trash.
import { api } from "./api.js";
import { notify, openDialog } from "./dialog.js";
import { formatSize, h } from "./dom.js";
import { t } from "./i18n.js";

const baseName = (path) => String(path || "").split(/[\\/]/).pop();

/** Ask, naming the file, then move it (and its sidecars) to the trash. Resolves the entry or null. */
export function trashFileDialog({ path, sha256 = null, offerRemove = false }) {
  const name = baseName(path);
  const remove = h("input", { type: "checkbox", id: "trash-remove-lib" });
  return new Promise((resolve) => {
    let entry = null;
    openDialog({
      title: t("trash.confirmTitle"),
      className: "trash-dialog",
      body: [
        h("p", { text: t("trash.confirm", { name }) }),
        h("p", { class: "muted small mono", text: path }),
        offerRemove ? h("label", { class: "check-label" }, remove, t("trash.alsoRemove")) : "",
      ],
      buttons: [
        { id: "cancel", label: t("common.cancel") },
        { id: "confirm", label: t("trash.move", { name }), kind: "danger", onClick: async () => {
          const body = sha256 ? { sha256 } : { path };
          body.confirm = name;
          if (sha256 && offerRemove) body.remove_from_library = remove.checked;
          try {
            entry = await api.trashFile(body);
            notify(t("trash.moved", { name }), "info");
          } catch (err) {
            notify(t("trash.failed", { error: err.message }), "error");
          }
        } },
      ],
      onClose: () => resolve(entry),
    });
  });
}

/** The library model's own file. */
export function trashModelFile(model) {
  return trashFileDialog({ path: model.path, sha256: model.sha256, offerRemove: true });
}

function entryRow(entry, reload, onRestored) {
  return h("tr", { dataset: { id: entry.id } },
    h("td", {}, h("div", { text: baseName(entry.path) }), h("div", { class: "muted small mono", text: entry.path })),
    h("td", { text: formatSize(entry.size_bytes) }),
    h("td", { text: new Date(entry.trashed_at).toLocaleString() }),
    h("td", { text: new Date(entry.expires_at).toLocaleDateString() }),
    h("td", {}, h("button", { type: "button", class: "btn small", dataset: { action: "restore" },
      onclick: async () => {
        try {
          await api.restoreFile(entry.id);
          notify(t("trash.restored", { name: baseName(entry.path) }), "info");
          if (onRestored) onRestored();
        } catch (err) {
          notify(t("trash.failed", { error: err.message }), "error");
        }
        reload();
      } }, t("trash.restore"))));
}

/** The trash view: every entry still restorable, with its expiry. */
export function openTrashDialog(onRestored) {
  const dialog = openDialog({ title: t("trash.title"), className: "manage-dialog trash-view",
    body: h("p", { text: t("common.loading") }), buttons: [{ id: "close", label: t("common.close") }] });
  const reload = async () => {
    try {
      const data = await api.trashList();
      if (!data.entries.length) {
        dialog.setBody(h("p", { class: "muted", text: t("trash.empty", { days: data.retention_days }) }));
        return;
      }
      dialog.setBody(h("p", { class: "muted small", text: t("trash.hint", { days: data.retention_days }) }),
        h("table", { class: "manage-table" },
          h("thead", {}, h("tr", {}, ["trash.file", "trash.size", "trash.when", "trash.expires", ""]
            .map((k) => h("th", { text: k ? t(k) : "" })))),
          h("tbody", {}, data.entries.map((e) => entryRow(e, reload, onRestored)))));
    } catch (err) {
      dialog.setBody(h("p", { class: "error", text: err.message }));
    }
  };
  reload();
  return dialog;
}
