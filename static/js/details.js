// Details editor of an active model: fields, tags, gallery; Save sends only what changed.
import { api } from "./api.js";
import { confirmDialog } from "./dialog.js";
import { $, formatDate, formatSize, h, replace } from "./dom.js";
import { gallery } from "./gallery.js";
import { metadataView, rereadModel } from "./metadata-view.js";
import { language, t } from "./i18n.js";
import { gateWrite, readOnlyReason } from "./readonly.js";
import { cachedEntries, emit, state } from "./state.js";
import { tagsInput } from "./tags-input.js";

let root;
let form;
let emptyEl;
let statusEl;
let tagBox;
let pics;
let metaView;
let record = null; // the record as last loaded or saved
let recordEtag = null; // its ETag: a save is refused (412) if the model changed since
// This panel's own picture uploads and deletes in flight, then the re-read after them: a save waits
let etagRefresh = Promise.resolve();
let loadSeq = 0;

const label = (forId, key) => h("label", { for: forId, dataset: { i18n: key }, text: t(key) });
const field = (forId, key, control, extra = null) => h("div", { class: "field" },
  label(forId, key), extra ? h("div", { class: "field-row" }, control, extra) : control);
const i18nBtn = (key, attrs) => h("button", { type: "button", class: "btn", ...attrs },
  h("span", { dataset: { i18n: key }, text: t(key) }));

/** A safe http(s) URL for a community link, or null. */
export function safeLink(value) {
  try {
    const url = new URL(String(value || "").trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export function mountDetails(el) {
  root = el;
  pics = gallery({
    onCountChange: (sha, count) => emit("images:changed", { sha, count }),
    onWrite: (sha, finished) => {
      if (record?.sha256 !== sha) return;
      etagRefresh = Promise.all([etagRefresh, finished]).then(() => refreshEtag(sha));
    },
  });
  tagBox = tagsInput({ id: "d-tags", allTags: () => state.tags });
  metaView = metadataView({ onReread: (sha) => reread(sha), onStatus: (text, kind) => setStatus(text, kind) });
  const link = h("a", { class: "btn icon", id: "d-link-open", target: "_blank",
    rel: "noopener noreferrer", "aria-label": t("details.openLink"), title: t("details.openLink"),
    dataset: { i18nTitle: "details.openLink", i18nAriaLabel: "details.openLink" } },
  h("span", { dataset: { i18n: "details.open" }, text: t("details.open") }));
  const linkInput = h("input", { type: "url", id: "d-link", placeholder: "https://" });
  const updateLink = () => {
    const href = safeLink(linkInput.value);
    if (href) {
      link.href = href;
      link.removeAttribute("aria-disabled");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
  };
  linkInput.addEventListener("input", updateLink);
  const copy = i18nBtn("details.copy", { id: "d-copy", onclick: () => copyPath() });
  statusEl = h("div", { class: "details-status", id: "d-status", role: "status" });
  form = h("form", { class: "details-form", hidden: true, novalidate: true },
    pics.el,
    field("d-name", "details.name", h("input", { type: "text", id: "d-name" })),
    field("d-path", "details.path", h("input", { type: "text", id: "d-path", readOnly: true }), copy),
    field("d-sha", "details.sha256", h("input", { type: "text", id: "d-sha", readOnly: true,
      class: "mono" })),
    h("div", { class: "field-grid" },
      field("d-type", "details.type", h("input", { type: "text", id: "d-type", readOnly: true })),
      field("d-size", "details.size", h("input", { type: "text", id: "d-size", readOnly: true })),
      field("d-created", "details.created", h("input", { type: "text", id: "d-created",
        readOnly: true }))),
    field("d-tags", "details.tags", tagBox.el),
    metaView.el,
    field("d-description", "details.description", h("textarea", { id: "d-description", rows: 5 })),
    field("d-link", "details.link", linkInput, link),
    field("d-positive", "details.positive", h("textarea", { id: "d-positive", rows: 3 })),
    field("d-negative", "details.negative", h("textarea", { id: "d-negative", rows: 3 })),
    h("div", { class: "details-actions" },
      i18nBtn("details.save", { id: "d-save", class: "btn primary", onclick: () => save() }),
      i18nBtn("details.revert", { id: "d-revert", onclick: () => show(record?.sha256, true) })),
    statusEl);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.updateLink = updateLink;
  emptyEl = h("div", { class: "details-empty" });
  replace(root, emptyEl, form);
  showEmpty();
}

function showEmpty(message = t("details.empty")) {
  record = null;
  form.hidden = true;
  emptyEl.hidden = false;
  replace(emptyEl, h("p", { text: message }));
}

/** Show (and load) the model `sha`; `force` re-reads it from the server (Revert). */
export async function show(sha, force = false) {
  if (!sha) return showEmpty();
  if (!force && record?.sha256 === sha && !form.hidden) return undefined;
  const seq = ++loadSeq;
  form.hidden = true;
  emptyEl.hidden = false;
  replace(emptyEl, h("p", { class: "loading", text: t("details.loading") }));
  try {
    const { data: loaded, etag } = await api.modelTagged(sha);
    if (seq !== loadSeq) return undefined;
    fill(loaded, etag);
    if (force) setStatus(t("details.reverted"), "ok");
  } catch (err) {
    if (seq !== loadSeq) return undefined;
    replace(emptyEl, h("p", { class: "error", text: err.message }),
      h("button", { type: "button", class: "btn small", onclick: () => show(sha, true) },
        t("common.retry")));
  }
  return undefined;
}

export function clearDetails() {
  loadSeq += 1;
  showEmpty();
}

function fill(rec, etag = null) {
  record = rec;
  recordEtag = etag;
  const meta = rec.meta_json || {};
  $("#d-name", form).value = rec.name || "";
  $("#d-path", form).value = rec.path || "";
  $("#d-path", form).title = rec.path || "";
  $("#d-sha", form).value = rec.sha256;
  $("#d-type", form).value = rec.type || "";
  $("#d-size", form).value = formatSize(rec.size_bytes);
  $("#d-created", form).value = formatDate(rec.created_at, language());
  $("#d-description", form).value = meta.description || "";
  $("#d-link", form).value = meta.community_links || "";
  $("#d-positive", form).value = meta.prompts?.positive || "";
  $("#d-negative", form).value = meta.prompts?.negative || "";
  form.updateLink();
  tagBox.set(rec.tags);
  metaView.fill(rec);
  pics.show(rec.sha256, meta.images_count);
  gateWrite($("#d-save", form));
  setStatus("");
  emptyEl.hidden = true;
  form.hidden = false;
}

const withoutCount = (rec) => JSON.stringify({ ...rec,
  meta_json: { ...rec.meta_json, images_count: 0 } });

/**
 * The ETag covers the picture count, so this panel's own upload or delete leaves `recordEtag`
 * stale: re-read the model and take the new ETag only if nothing else changed. If someone else
 * changed a field meanwhile the old ETag stays, and a save still meets the 412 that says so.
 */
async function refreshEtag(sha) {
  let fresh;
  try {
    fresh = await api.modelTagged(sha);
  } catch {
    return; // the old ETag stays: at worst a save is refused and offers a reload
  }
  if (record?.sha256 !== sha || !fresh.etag || withoutCount(fresh.data) !== withoutCount(record)) {
    return;
  }
  record.meta_json = { ...record.meta_json, images_count: fresh.data.meta_json.images_count };
  recordEtag = fresh.etag;
}

function setStatus(text, kind = "") {
  statusEl.textContent = text;
  statusEl.className = `details-status ${kind}`.trim();
}

async function copyPath() {
  const input = $("#d-path", form);
  try {
    await navigator.clipboard.writeText(input.value);
    setStatus(t("details.copied"), "ok");
  } catch {
    input.select();
    setStatus(t("details.copyManual"));
  }
}

const TEXT_FIELDS = { name: "#d-name", description: "#d-description", link: "#d-link",
  positive: "#d-positive", negative: "#d-negative" };
const tagNames = (tags) => tags.map((tag) => tag.name.toLowerCase()).sort().join("\n");

/** What the form holds now: the text fields, the tag chips and the text typed after them. */
function formValues() {
  const values = {};
  for (const [key, selector] of Object.entries(TEXT_FIELDS)) values[key] = $(selector, form).value;
  values.tags = tagBox.value();
  values.tagText = tagBox.input.value;
  values.meta = metaView.values();
  return values;
}

// Compare what inputs can hold: a text input drops line breaks, a URL input also trims, and a
// textarea turns \r\n and \r into \n. Stored values are read the same way, so a value the form
// cannot show exactly is neither "changed" by merely showing it nor rewritten by a Save.
const oneLine = (s) => String(s || "").replace(/[\r\n]/g, "");
const multiLine = (s) => String(s || "").replace(/\r\n?/g, "\n");
const linkValue = (s) => oneLine(s).trim();

/** The fields of `values` that differ from the loaded record (tags compared as id sets). */
function changes(values) {
  const meta = record.meta_json || {};
  const out = {};
  const differs = (norm, value, stored) => norm(value) !== norm(stored);
  if (differs(oneLine, values.name, record.name)) out.name = oneLine(values.name);
  const metaOut = {};
  if (differs(multiLine, values.description, meta.description)) {
    metaOut.description = multiLine(values.description);
  }
  if (differs(linkValue, values.link, meta.community_links)) {
    metaOut.community_links = linkValue(values.link);
  }
  const prompts = {};
  for (const key of ["positive", "negative"]) {
    if (differs(multiLine, values[key], meta.prompts?.[key])) prompts[key] = multiLine(values[key]);
  }
  if (Object.keys(prompts).length) metaOut.prompts = prompts;
  if (Object.keys(metaOut).length) out.meta_json = metaOut;
  const tags = values.tags;
  const before = (record.tags || []).map((tag) => tag.id).sort((a, b) => a - b).join(",");
  const after = tags.map((tag) => tag.id).sort((a, b) => a - b).join(",");
  if (before !== after || tags.some((tag) => tag.id < 0)) out.tags = tags;
  return Object.assign(out, metaView.changes(record));
}

/** True when the form holds edits that were not saved. */
export function isDirty() {
  if (!record || form.hidden) return false;
  const values = formValues();
  return Object.keys(changes(values)).length > 0 || Boolean(values.tagText.trim());
}

/** Resolves true when there are no unsaved edits, or the user agreed to drop them. */
export async function confirmDiscard(messageKey = "details.discard") {
  if (!isDirty()) return true;
  return confirmDialog(t(messageKey), { okLabel: t("details.discardOk"), danger: true });
}

/**
 * After a save refilled the form: put back what was typed while the save was in flight (fields
 * that no longer equal what was sent), so those edits stay in the form, unsaved. True if any.
 */
function restoreNewerEdits(sent, now, createdByName) {
  let kept = false;
  for (const [key, selector] of Object.entries(TEXT_FIELDS)) {
    if (now[key] === sent[key]) continue;
    $(selector, form).value = now[key];
    kept = true;
  }
  form.updateLink();
  if (tagNames(now.tags) !== tagNames(sent.tags)) {
    tagBox.set(now.tags.map((tag) => (tag.id < 0
      ? createdByName.get(tag.name.toLowerCase()) || tag : tag)));
    kept = true;
  }
  if (metaView.restore(sent.meta, now.meta)) kept = true;
  if (now.tagText) {
    tagBox.input.value = now.tagText;
    kept = true;
  }
  return kept;
}

async function save() {
  if (!record || readOnlyReason()) return;
  tagBox.flush();
  const sha = record.sha256;
  const saveBtn = $("#d-save", form);
  const sent = formValues();
  let tags = sent.tags;
  const diff = changes(sent);
  if (!Object.keys(diff).length) {
    setStatus(t("details.noChanges"));
    return;
  }
  gateWrite(saveBtn, true);
  setStatus(t("details.saving"));
  const createdByName = new Map();
  try {
    const fresh = tags.filter((tag) => tag.id < 0).map((tag) => tag.name);
    if (fresh.length) {
      const created = (await api.addTags(fresh)).tags;
      for (const tag of created) {
        createdByName.set(tag.name.toLowerCase(), tag);
        if (!state.tags.some((known) => known.id === tag.id)) state.tags.push(tag);
      }
      state.tags.sort((a, b) => a.name.localeCompare(b.name));
      tags = tags.map((tag) => (tag.id < 0 ? createdByName.get(tag.name.toLowerCase()) || tag : tag));
    }
    if (diff.tags) diff.tags = [...new Set(tags.map((tag) => tag.id))];
    await etagRefresh; // an upload made here (even one still in flight) must not look like a change
    const { data: saved, etag } = await api.saveModel(sha, diff, recordEtag);
    for (const entry of cachedEntries(sha)) {
      entry.name = saved.name || entry.name;
      entry.tags = saved.tags;
      entry.base_model = saved.base_model;
      entry.base_family = saved.base_family;
    }
    if (record?.sha256 === sha) {
      const now = formValues();
      fill(saved, etag);
      const kept = restoreNewerEdits(sent, now, createdByName);
      setStatus(t(kept ? "details.savedNewer" : "details.saved"), "ok");
    }
    emit("model:saved", saved);
  } catch (err) {
    if (err.status === 412) {
      gateWrite(saveBtn);
      offerReload(sha);
      return;
    }
    setStatus(t("details.saveFailed", { error: err.message }), "error");
  } finally {
    gateWrite(saveBtn);
  }
}

/** "Re-read metadata from files": unsaved edits are confirmed away first; typed values stay. */
async function reread(sha) {
  if (readOnlyReason() || !(await confirmDiscard())) return;
  setStatus(t("meta.rereading"));
  try {
    const report = await rereadModel(sha);
    if (record?.sha256 !== sha) return;
    const { data: saved, etag } = await api.modelTagged(sha);
    fill(saved, etag);
    for (const entry of cachedEntries(sha)) Object.assign(entry, { name: saved.name,
      base_model: saved.base_model, base_family: saved.base_family });
    const failed = report.failed?.[0]?.error;
    setStatus(failed ? t("meta.rereadFailed", { error: failed })
      : t(report.updated?.length ? "meta.rereadDone" : "meta.rereadSame"), failed ? "error" : "ok");
    emit("model:saved", saved);
    emit("images:changed", { sha, count: saved.meta_json?.images_count ?? 0 });
  } catch (err) {
    setStatus(t("meta.rereadFailed", { error: err.message }), "error");
  }
}

/** Someone else saved this model since it was loaded: say so, and offer to load their version. */
async function offerReload(sha) {
  setStatus(t("details.staleSave"), "error");
  const reload = await confirmDialog(t("details.staleSave"), {
    title: t("details.staleTitle"), okLabel: t("details.staleReload"),
  });
  if (reload && record?.sha256 === sha) await show(sha, true);
}

/** Redraw language-dependent values (dates, gallery buttons) after a language switch. */
export function retranslate() {
  if (record) $("#d-created", form).value = formatDate(record.created_at, language());
  gateWrite($("#d-save", form));
  pics.redraw();
  metaView.redraw();
  if (!record && !emptyEl.hidden && !emptyEl.querySelector(".loading, .error")) showEmpty();
}
