// Pending mode: read-only details of a pending model, the badge count, and Scan.
import { api, pendingImageUrl } from "./api.js";
import { notify } from "./dialog.js";
import { formatDate, formatSize, h, replace } from "./dom.js";
import { language, t } from "./i18n.js";
import { jobFailureText, reportList, runJob } from "./jobs.js";
import { emit, state } from "./state.js";

let root;
let current = null; // PendingModelRecord shown
let loadSeq = 0;

export function mountPendingDetails(el) {
  root = el;
  renderEmpty();
}

function renderEmpty() {
  current = null;
  replace(root, h("div", { class: "details-empty" }, h("p", { text: t("pending.empty") })));
}

const ro = (id, key, value, multiline = false) => h("div", { class: "field" },
  h("label", { for: id, text: t(key) }),
  multiline
    ? h("textarea", { id, readOnly: true, rows: 3, value: value || "" })
    : h("input", { type: "text", id, readOnly: true, value: value || "" }));

function render(rec) {
  const meta = rec.meta_json || {};
  const pic = (meta.images || []).length ? pendingImageUrl(meta.images[0]) : "";
  const frame = h("div", { class: "gallery-frame" });
  const placeholder = () => replace(frame, h("div", { class: "placeholder", text: t("common.noImage") }));
  if (pic) {
    const img = h("img", { class: "gallery-img", src: pic, alt: rec.name || "" });
    img.addEventListener("error", placeholder);
    frame.append(img);
  } else {
    placeholder();
  }
  replace(root, h("div", { class: "details-form pending-details", dataset: { id: rec.id } },
    h("div", { class: "readonly-note", text: t("pending.readOnly") }),
    h("div", { class: "gallery" }, frame),
    ro("p-name", "details.name", rec.name),
    ro("p-path", "details.path", rec.path),
    ro("p-sha", "details.sha256", rec.sha256 || t("pending.notHashed")),
    h("div", { class: "field-grid" },
      ro("p-type", "details.type", rec.type),
      ro("p-size", "details.size", formatSize(rec.size_bytes)),
      ro("p-created", "details.created", formatDate(rec.created_at, language()))),
    h("div", { class: "field" }, h("span", { class: "label", text: t("details.tags") }),
      h("div", { class: "chips" }, (rec.tags || []).map((tag) => h("span", { class: "chip",
        text: tag.name })))),
    ro("p-description", "details.description", meta.description, true),
    ro("p-link", "details.link", meta.community_links),
    ro("p-positive", "details.positive", meta.prompts?.positive, true),
    ro("p-negative", "details.negative", meta.prompts?.negative, true)));
}

/** Show the pending model `id` (read-only). */
export async function showPending(id) {
  if (id === null || id === undefined) {
    renderEmpty();
    return;
  }
  const seq = ++loadSeq;
  replace(root, h("div", { class: "details-empty" }, h("p", { class: "loading",
    text: t("details.loading") })));
  try {
    const rec = await api.pendingModel(id);
    if (seq !== loadSeq) return;
    current = rec;
    render(rec);
  } catch (err) {
    if (seq !== loadSeq) return;
    replace(root, h("div", { class: "details-empty" }, h("p", { class: "error", text: err.message }),
      h("button", { type: "button", class: "btn small", onclick: () => showPending(id) },
        t("common.retry"))));
  }
}

export function retranslate() {
  if (current) render(current);
  else if (!root.querySelector(".loading, .error")) renderEmpty();
}

/** Reload the pending list (for the badge and pending mode). */
export async function reloadPending() {
  try {
    state.pending = (await api.pendingModels()).models;
    const ids = new Set(state.pending.map((p) => p.id));
    for (const id of [...state.pendingChecked]) if (!ids.has(id)) state.pendingChecked.delete(id);
  } catch (err) {
    notify(t("pending.loadFailed", { error: err.message }), "error");
  }
  emit("pending:loaded");
}

/** Scan the model folders in a background job, then show what it found. */
export async function scan() {
  let run;
  try {
    run = await runJob(t("scan.title"), api.scan);
  } catch (err) {
    notify(t("scan.failed", { error: err.message }), "error", 0);
    return;
  }
  const { job, dialog } = run;
  const r = job.result;
  const failure = jobFailureText(job);
  if (failure) dialog.body.append(h("p", { class: "error", text: failure }));
  if (r && typeof r === "object") {
    dialog.body.append(reportList([
      [t("scan.scanned"), r.scanned, "scanned"],
      [t("scan.added"), r.added, "added"],
      [t("scan.skipped"), r.skipped, "skipped"],
      [t("scan.relinked"), r.relinked, "relinked"],
      [t("scan.errors"), r.errors, "errors"],
    ]));
  }
  dialog.setTitle(t(job.state === "succeeded" ? "scan.done" : "scan.title"));
  await reloadPending();
  if (r?.relinked) state.models.clear();
  emit("library:changed");
}
