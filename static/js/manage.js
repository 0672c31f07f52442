// The toolbar entries of library management: tags, duplicates, missing files, trash.
import { h } from "./dom.js";
import { openDuplicates, openMissing } from "./duplicates.js";
import { t } from "./i18n.js";
import { openTagAdmin } from "./tag-admin.js";
import { openTrashDialog } from "./trash.js";

/** Add the buttons to `toolbar`; `refresh()` reloads the library, `scan()` runs a scan. */
export function mountManage(toolbar, { refresh, scan }) {
  const button = (id, key, onclick) => h("button", { type: "button", class: "btn", id, onclick },
    h("span", { dataset: { i18n: key }, text: t(key) }));
  const buttons = [
    button("manage-tags", "manage.tags", () => openTagAdmin(refresh)),
    button("manage-duplicates", "manage.duplicates", () => openDuplicates()),
    button("manage-missing", "manage.missing", () => openMissing({ scan, onChange: refresh })),
    button("manage-trash", "manage.trash", () => openTrashDialog(refresh)),
  ];
  toolbar.append(...buttons);
}
