// Read-only reports: duplicate files (same content or same name) and library entries whose file is
// gone. Nothing is deleted here except through the trash (explicit, confirmed) or library removal.
import { api } from "./api.js";
import { confirmDialog, notify, openDialog } from "./dialog.js";
import { formatSize, h } from "./dom.js";
import { t } from "./i18n.js";
import { trashFileDialog } from "./trash.js";

function pathRow(entry, reload) {
  return h("li", { class: "dup-path", dataset: { path: entry.path } },
    h("span", { class: `source-tag ${entry.source}`, text: t(`dup.source.${entry.source}`) }),
    h("span", { class: "mono small", text: entry.path }),
    h("button", { type: "button", class: "btn small danger", dataset: { action: "trash" },
      onclick: async () => { if (await trashFileDialog({ path: entry.path })) reload(); } },
    t("dup.trash")));
}

/** Duplicates: groups with their sizes and the space a single copy would free. */
export function openDuplicates() {
  const dialog = openDialog({ title: t("dup.title"), className: "manage-dialog duplicates-view",
    body: h("p", { text: t("common.loading") }), buttons: [{ id: "close", label: t("common.close") }] });
  const reload = async () => {
    let data;
    try {
      data = await api.duplicates();
    } catch (err) {
      dialog.setBody(h("p", { class: "error", text: err.message }));
      return;
    }
    dialog.setBody(
      h("h3", { text: t("dup.sameContent", { n: data.same_content.length, size: formatSize(data.reclaimable_bytes) }) }),
      data.same_content.length ? h("div", { class: "dup-groups" }, data.same_content.map((g) => h("section",
        { class: "dup-group", dataset: { sha: g.sha256 } },
        h("div", { class: "dup-head" }, h("strong", { text: g.name }),
          h("span", { class: "muted small", text: t("dup.groupSize", { n: g.paths.length,
            size: formatSize(g.size_bytes), total: formatSize(g.total_bytes), free: formatSize(g.reclaimable_bytes) }) })),
        h("ul", {}, g.paths.map((p) => pathRow(p, reload))))))
        : h("p", { class: "muted", text: t("dup.none") }),
      h("h3", { text: t("dup.sameName", { n: data.same_name.length }) }),
      data.same_name.length ? h("div", { class: "dup-groups" }, data.same_name.map((g) => h("section",
        { class: "dup-group same-name" },
        h("div", { class: "dup-head" }, h("strong", { text: g.name }),
          h("span", { class: "muted small", text: formatSize(g.total_bytes) })),
        h("ul", {}, g.files.map((p) => pathRow(p, reload))))))
        : h("p", { class: "muted", text: t("dup.none") }));
  };
  reload();
  return dialog;
}

/** Missing files: rescan to relink moved files, or remove the entries from the library. */
export function openMissing({ scan, onChange }) {
  const dialog = openDialog({ title: t("missing.title"), className: "manage-dialog missing-view",
    body: h("p", { text: t("common.loading") }), buttons: [{ id: "close", label: t("common.close") }] });
  const reload = async () => {
    let models;
    try {
      models = (await api.missing()).models;
    } catch (err) {
      dialog.setBody(h("p", { class: "error", text: err.message }));
      return;
    }
    const removeAll = async () => {
      if (!await confirmDialog(t("multi.removeConfirm", { n: models.length }), { danger: true })) return;
      try {
        const r = await api.removeModels(models.map((m) => m.sha256));
        notify(t("multi.removed", { n: r.removed }), "info");
      } catch (err) {
        notify(err.message, "error");
      }
      if (onChange) onChange();
      reload();
    };
    dialog.setBody(
      h("div", { class: "tag-admin-tools" },
        h("button", { type: "button", class: "btn small", id: "missing-rescan", onclick: async () => {
          await scan();
          if (onChange) onChange();
          reload();
        } }, t("missing.rescan")),
        h("button", { type: "button", class: "btn small danger", id: "missing-remove-all",
          disabled: !models.length, onclick: removeAll }, t("missing.removeAll", { n: models.length }))),
      models.length ? h("table", { class: "manage-table" },
        h("thead", {}, h("tr", {}, ["missing.name", "missing.path", "missing.elsewhere"].map((k) => h("th", { text: t(k) })))),
        h("tbody", {}, models.map((m) => h("tr", { dataset: { sha: m.sha256 } },
          h("td", { text: m.name }), h("td", { class: "mono small", text: m.path }),
          h("td", { class: "mono small", text: m.found_elsewhere.join("\n") || "—" })))))
        : h("p", { class: "muted", text: t("missing.none") }));
  };
  reload();
  return dialog;
}
