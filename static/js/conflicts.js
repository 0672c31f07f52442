// Import Selected: promote pending models, resolve conflicts per item in a dialog, show results.
import { api } from "./api.js";
import { notify, openDialog } from "./dialog.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { jobFailureText, reportList, runJob } from "./jobs.js";
import { emit, state } from "./state.js";

export const STRATEGIES = ["override", "merge", "ignore", "delete"];

function emptyReport() {
  return { success: [], conflict: [], ignored: [], deleted: [], failed: [], warnings: [], notes: [] };
}

function mergeInto(total, report) {
  for (const key of ["success", "ignored", "deleted", "failed", "warnings"]) {
    total[key].push(...((report && report[key]) || []));
  }
}

async function importJob(ids, strategy, total) {
  const run = await runJob(t("import.title"), () => api.importModels(ids, strategy));
  run.dialog.close();
  const { job } = run;
  const failure = jobFailureText(job);
  if (failure) total.notes.push(failure);
  mergeInto(total, job.result);
  return (job.result && job.result.conflict) || [];
}

const pendingName = (id) => state.pending?.find((p) => p.id === id)?.name || `#${id}`;

/** Ask for a strategy per conflict. Resolves Map(id -> strategy), or null when cancelled. */
export function conflictDialog(conflicts) {
  return new Promise((resolve) => {
    let result = null;
    const selects = [];
    const option = (s) => h("option", { value: s, text: t(`strategy.${s}`) });
    const rows = conflicts.map((c, index) => {
      const select = h("select", { class: "strategy", dataset: { id: c.pending.id },
        "aria-label": t("conflict.strategyFor", { name: pendingName(c.pending.id) }) },
      STRATEGIES.map(option));
      select.value = "ignore";
      selects.push(select);
      return h("tr", { dataset: { id: c.pending.id } },
        h("td", { text: String(index + 1) }),
        h("td", {}, h("div", { class: "item-name", text: pendingName(c.pending.id) }),
          h("div", { class: "mono small", text: c.pending.path || "" })),
        h("td", {}, h("div", { class: "mono small", text: c.existing.path || "" }),
          h("div", { class: "mono small muted", title: c.existing.id,
            text: String(c.existing.id || "").slice(0, 16) })),
        h("td", {}, select));
    });
    const all = h("select", { id: "conflict-all", "aria-label": t("conflict.applyAll") },
      STRATEGIES.map(option));
    all.value = "ignore"; // the rows' default: "Apply to all" must not turn into an override
    const applyAll = h("button", { type: "button", class: "btn small", id: "conflict-apply-all",
      onclick: () => { for (const s of selects) s.value = all.value; } }, t("conflict.applyAll"));
    openDialog({
      title: t("conflict.title", { n: conflicts.length }),
      className: "conflict-dialog wide",
      body: [
        h("p", { text: t("conflict.intro") }),
        h("ul", { class: "strategy-help" }, STRATEGIES.map((s) => h("li", {},
          h("strong", { text: t(`strategy.${s}`) }), " ", t(`strategy.${s}.help`)))),
        h("div", { class: "conflict-all" }, all, applyAll),
        h("div", { class: "table-wrap" }, h("table", { class: "conflicts" },
          h("thead", {}, h("tr", {}, h("th", { text: "#" }), h("th", { text: t("conflict.pending") }),
            h("th", { text: t("conflict.existing") }), h("th", { text: t("conflict.strategy") }))),
          h("tbody", {}, rows))),
      ],
      buttons: [
        { id: "cancel", label: t("conflict.leave") },
        { id: "resolve", label: t("conflict.resolve"), kind: "primary", onClick: () => {
          result = new Map(selects.map((s) => [Number(s.dataset.id), s.value]));
        } },
      ],
      onClose: () => resolve(result),
    });
  });
}

function showResults(total, unresolved) {
  const list = (title, items, text) => (items.length ? h("details", { class: "result-list", open: true },
    h("summary", { text: `${title} (${items.length})` }),
    h("ul", {}, items.map((item) => h("li", { text: text(item) })))) : "");
  openDialog({
    title: t("import.results"),
    className: "results-dialog",
    body: [
      total.notes.map((note) => h("p", { class: "error", text: note })),
      reportList([
        [t("import.success"), total.success.length, "success"],
        [t("import.ignored"), total.ignored.length, "ignored"],
        [t("import.deleted"), total.deleted.length, "deleted"],
        [t("import.failed"), total.failed.length, "failed"],
        [t("import.warnings"), total.warnings.length, "warnings"],
        [t("import.unresolved"), unresolved.length, "unresolved"],
      ]),
      list(t("import.failed"), total.failed, (f) => `${pendingName(f.id)}: ${f.error}`),
      list(t("import.warnings"), total.warnings, (w) => `${pendingName(w.id)}: ${w.warning}`),
      list(t("import.unresolved"), unresolved, (c) => `${pendingName(c.pending.id)}: ${c.pending.path}`),
    ],
    buttons: [{ id: "close", label: t("common.close"), kind: "primary" }],
  });
}

let running = false;

export function importRunning() {
  return running;
}

/** Import the ticked pending models; conflicts go through the dialog, then results are shown. */
export async function importSelected() {
  const ids = [...state.pendingChecked];
  if (!ids.length || running) return;
  running = true;
  emit("pending:checked");
  const total = emptyReport();
  let unresolved = [];
  let failed = false;
  try {
    const conflicts = await importJob(ids, null, total);
    unresolved = conflicts;
    if (conflicts.length) {
      const choice = await conflictDialog(conflicts);
      if (choice) {
        unresolved = [];
        const groups = new Map();
        for (const [id, strategy] of choice) {
          if (!groups.has(strategy)) groups.set(strategy, []);
          groups.get(strategy).push(id);
        }
        for (const [strategy, group] of groups) {
          unresolved.push(...await importJob(group, strategy, total));
        }
      }
    }
    failed = total.notes.length > 0; // a job failed or was cancelled
    showResults(total, unresolved);
  } catch (err) {
    failed = true;
    notify(t("import.failedAll", { error: err.message }), "error", 0);
  } finally {
    running = false;
    // after a failure the ticks stay, for another try (imported items leave the queue anyway)
    if (!failed) state.pendingChecked.clear();
    state.models.clear();
    emit("import:done");
  }
}
