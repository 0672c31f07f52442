// "Migrate v1": pick a found v1 database (or type a path), migrate it as a job, show the report.
import { api } from "./api.js";
import { openDialog } from "./dialog.js";
import { formatDate, h, replace } from "./dom.js";
import { language, t } from "./i18n.js";
import { jobFailureText, reportList, runJob } from "./jobs.js";
import { emit, state } from "./state.js";

function candidateRow(c, onPick) {
  const input = h("input", { type: "radio", name: "legacy-candidate", value: c.path,
    disabled: !c.looks_like_v1 });
  input.addEventListener("change", () => onPick(c));
  const facts = c.looks_like_v1
    ? t("legacy.candidateFacts", { models: c.model_count ?? "?", migrated: c.migrated_rows || 0,
      date: formatDate(c.mtime, language()) })
    : (c.problem || t("legacy.notV1"));
  return h("label", { class: `candidate${c.looks_like_v1 ? "" : " unusable"}` }, input,
    h("span", { class: "candidate-text" }, h("span", { class: "mono", text: c.path }),
      h("span", { class: "muted small", text: facts })));
}

/** Open the migration form. */
export function openLegacyDialog() {
  const dbInput = h("input", { type: "text", id: "legacy-db", class: "mono",
    placeholder: "/path/to/ComfyUI-Hikaze-Model-Manager/data/hikaze_mm.sqlite3" });
  const imgInput = h("input", { type: "text", id: "legacy-images", class: "mono",
    placeholder: t("legacy.imagesPlaceholder") });
  const found = h("div", { class: "candidates", "aria-live": "polite" },
    h("p", { class: "muted", text: t("legacy.searching") }));
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const pick = (c) => {
    dbInput.value = c.path;
    imgInput.value = c.images_dir || "";
  };
  const dialog = openDialog({
    title: t("legacy.title"),
    className: "legacy-dialog wide",
    body: [
      h("p", { text: t("legacy.intro") }),
      h("h3", { text: t("legacy.found") }),
      found,
      h("div", { class: "field" }, h("label", { for: "legacy-db", text: t("legacy.dbPath") }), dbInput),
      h("div", { class: "field" }, h("label", { for: "legacy-images", text: t("legacy.imagesDir") }),
        imgInput),
      error,
    ],
    buttons: [
      { id: "cancel", label: t("common.cancel") },
      { id: "migrate", label: t("legacy.start"), kind: "primary", onClick: () => {
        const path = dbInput.value.trim();
        if (!path) {
          error.textContent = t("legacy.pathRequired");
          error.hidden = false;
          dbInput.focus();
          return false;
        }
        migrate(path, imgInput.value.trim(), error, dialog);
        return false;
      } },
    ],
  });
  api.legacyCandidates().then(({ candidates }) => {
    if (!candidates.length) {
      replace(found, h("p", { class: "muted", text: t("legacy.noneFound") }));
      return;
    }
    replace(found, candidates.map((c) => candidateRow(c, pick)));
  }).catch((err) => {
    replace(found, h("p", { class: "error", text: err.message }));
  });
  return dialog;
}

async function migrate(path, imagesDir, error, form) {
  error.hidden = true;
  let run;
  try {
    run = await runJob(t("legacy.running"), () => api.migrateLegacy(path, imagesDir || null));
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    return;
  }
  form.close("done");
  const { job, dialog } = run;
  const r = job.result;
  const failure = jobFailureText(job);
  if (failure) dialog.body.append(h("p", { class: "error", text: failure }));
  if (r && r.db_migration) {
    const m = r.db_migration;
    dialog.setTitle(t(r.status === "partial" ? "legacy.partial" : "legacy.done"));
    dialog.body.append(reportList([
      [t("legacy.migrated"), m.migrated, "migrated"],
      [t("legacy.pending"), m.pending, "pending"],
      [t("legacy.errors"), m.errors, "errors"],
      [t("legacy.imagesProcessed"), m.images_processed, "images_processed"],
      [t("legacy.imageErrors"), m.image_errors, "image_errors"],
      [t("legacy.imagesMissing"), m.images_missing, "images_missing"],
      [t("legacy.skipped"), m.skipped, "skipped"],
    ]));
    if (r.backup_path) {
      dialog.body.append(h("p", { class: "muted small", text: t("legacy.backup", { path: r.backup_path }) }));
    }
    const problems = r.problems || [];
    if (problems.length) {
      dialog.body.append(h("details", { class: "result-list problems" },
        h("summary", { text: t("legacy.problems", { n: problems.length + (r.problems_omitted || 0) }) }),
        h("ul", {}, problems.map((p) => h("li", {}, h("span", { class: "mono small",
          text: `#${p.legacy_id} ${p.path || ""}` }), " ", h("span", { text: p.problem }))))));
    }
  }
  state.models.clear();
  state.pending = null;
  emit("import:done");
}
