// Metadata read from model files: base model, trigger words (copy + edit), training tags with
// counts, short hashes, where each value came from, the raw header, "re-read from files", and
// the base-model chip and filter of the library list.
import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { gateWrite } from "./readonly.js";
import { state } from "./state.js";

const SOURCE_KEYS = ["lora_manager", "stability_matrix", "a1111", "civitai_info", "model_manager",
  "header", "user"];
const label = (forId, key) => h("label", { for: forId, dataset: { i18n: key }, text: t(key) });
const i18nText = (tag, key, attrs = {}) => h(tag, { ...attrs, dataset: { i18n: key }, text: t(key) });

/** Trigger words as typed in the input: comma separated, trimmed, no empties or repeats. */
export function parseWords(text) {
  const seen = new Set();
  const words = [];
  for (const part of String(text || "").split(",")) {
    const word = part.trim();
    if (word && !seen.has(word.toLowerCase())) {
      seen.add(word.toLowerCase());
      words.push(word);
    }
  }
  return words;
}

const sourceName = (source) => (SOURCE_KEYS.includes(source) ? t(`meta.source.${source}`) : source);

/** The metadata block of the details form. `onReread(sha)` re-reads and reloads the model. */
export function metadataView({ onReread, onStatus }) {
  const base = h("input", { type: "text", id: "d-base-model", maxLength: 200 });
  const family = h("span", { class: "chip small base-family", id: "d-base-family" });
  const words = h("input", { type: "text", id: "d-trigger-words" });
  const copy = h("button", { type: "button", class: "btn", id: "d-trigger-copy" },
    i18nText("span", "meta.copyWords"));
  const training = h("div", { class: "tag-row training-tags", id: "d-training-tags" });
  const author = h("div", { class: "muted meta-author", id: "d-author" });
  const hashes = h("div", { class: "muted mono short-hashes", id: "d-short-hashes" });
  const sources = h("div", { class: "muted meta-sources", id: "d-meta-sources" });
  const problems = h("ul", { class: "meta-problems", id: "d-meta-problems" });
  const rawPre = h("pre", { class: "raw-header mono", id: "d-raw-header-json" });
  const raw = h("details", { class: "raw-header-box", id: "d-raw-header" },
    i18nText("summary", "meta.rawHeader"), rawPre);
  const reread = h("button", { type: "button", class: "btn", id: "d-reread" },
    i18nText("span", "meta.reread"));
  let rec = null;

  copy.addEventListener("click", async () => {
    const text = parseWords(words.value).join(", ");
    try {
      await navigator.clipboard.writeText(text);
      onStatus(t("meta.wordsCopied"), "ok");
    } catch {
      words.select();
      onStatus(t("details.copyManual"));
    }
  });
  reread.addEventListener("click", () => rec && onReread(rec.sha256));

  const addWord = (word) => {
    const list = parseWords(words.value);
    if (!list.some((w) => w.toLowerCase() === word.toLowerCase())) list.push(word);
    words.value = list.join(", ");
    words.dispatchEvent(new Event("input", { bubbles: true }));
  };

  const el = h("div", { class: "metadata-view", id: "d-metadata" },
    h("div", { class: "field" }, label("d-base-model", "meta.baseModel"),
      h("div", { class: "field-row" }, base, family)),
    h("div", { class: "field" }, label("d-trigger-words", "meta.triggerWords"),
      h("div", { class: "field-row" }, words, copy)),
    h("div", { class: "field" }, i18nText("span", "meta.trainingTags", { class: "field-label" }),
      training),
    author, hashes, sources, problems, raw,
    h("div", { class: "details-actions" }, reread));

  function fill(record) {
    rec = record;
    base.value = record.base_model || "";
    family.textContent = record.base_family || "UNKNOWN";
    words.value = (record.trigger_words || []).join(", ");
    const tags = record.training_tags || [];
    replace(training, tags.length ? tags.slice(0, 60).map((entry) => h("button", {
      type: "button", class: "chip small training-tag", title: t("meta.addWord"),
      dataset: { tag: entry.tag }, onclick: () => addWord(entry.tag),
    }, `${entry.tag} (${entry.count})`)) : i18nText("span", "meta.noTrainingTags", { class: "muted" }));
    author.textContent = record.author ? t("meta.author", { name: record.author }) : "";
    hashes.textContent = `AutoV2 ${String(record.autov2 || "").toUpperCase()}`
      + (record.autov3 ? ` · AutoV3 ${record.autov3.toUpperCase()}` : "");
    const from = Object.entries(record.metadata_sources || {});
    sources.textContent = from.length ? t("meta.sources", {
      list: from.map(([field, source]) => `${t(`meta.field.${field}`)} ← ${sourceName(source)}`)
        .join(", ") }) : "";
    const report = record.metadata_report || {};
    const lines = [...(report.rejected || []).map((r) => `${r.file || r.source}: ${r.reason}`),
      ...(report.problems || []).map((p) => `${p.file}: ${p.problem}`)];
    replace(problems, lines.map((line) => h("li", { text: line })));
    const header = record.header_metadata;
    raw.hidden = !header;
    raw.open = false;
    rawPre.textContent = header ? JSON.stringify(header, null, 2) : "";
    gateWrite(reread);
  }

  /** The PATCH fields this block changed, compared with `record`. */
  function changes(record) {
    const out = {};
    if (base.value.trim() !== (record.base_model || "")) out.base_model = base.value.trim();
    const now = parseWords(words.value);
    if (now.join("\n") !== (record.trigger_words || []).join("\n")) out.trigger_words = now;
    return out;
  }

  const values = () => ({ base: base.value, words: words.value });
  /** Put back what was typed while a save was in flight; true if anything was. */
  function restore(sent, now) {
    let kept = false;
    if (now.base !== sent.base) { base.value = now.base; kept = true; }
    if (now.words !== sent.words) { words.value = now.words; kept = true; }
    return kept;
  }

  return { el, fill, changes, values, restore, redraw: () => rec && fill(rec) };
}

/** "Re-read metadata from files" for one model; resolves with the report. */
export function rereadModel(sha) {
  return api.rereadMetadata([sha]);
}

/** The base-model chip of a card or list row ("" when unknown). */
export function baseChip(item) {
  const text = item.base_model || "";
  if (!text) return "";
  return h("span", { class: "chip small base-chip", title: text, dataset: { family: item.base_family || "" },
    text });
}

// --- base-model filter of the library list ------------------------------------------------------

let selected = "";

/** Library items of the chosen base family (pending items and "all" pass untouched). */
export function baseFilter(items) {
  if (!selected || state.pendingMode) return items;
  return items.filter((item) => (item.base_family || "UNKNOWN") === selected);
}

/** The "Base model" select; `getItems()` gives the tab's items, `onChange()` re-renders. */
export function baseFilterControl(getItems, onChange) {
  const select = h("select", { id: "base-filter", class: "base-filter",
    "aria-label": t("meta.filterLabel"), dataset: { i18nAriaLabel: "meta.filterLabel" } });
  select.addEventListener("change", () => {
    selected = select.value;
    onChange();
  });
  function refresh() {
    select.hidden = state.pendingMode;
    const counts = new Map();
    for (const item of getItems()) {
      const fam = item.base_family || "UNKNOWN";
      counts.set(fam, (counts.get(fam) || 0) + 1);
    }
    if (selected && !counts.has(selected)) counts.set(selected, 0);
    const options = [h("option", { value: "", text: t("meta.filterAll") })];
    for (const fam of [...counts.keys()].sort()) {
      options.push(h("option", { value: fam, text: `${fam} (${counts.get(fam)})` }));
    }
    replace(select, ...options);
    select.value = selected;
  }
  refresh();
  return { el: select, refresh };
}

