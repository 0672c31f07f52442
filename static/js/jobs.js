// Background jobs: start, poll GET /api/jobs/<id> every 500 ms with a progress bar, cancel.
import { api } from "./api.js";
import { openDialog } from "./dialog.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const POLL_MS = 500;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A progress bar element with update(job) and done(). */
export function progressBar() {
  const bar = h("progress", { class: "job-progress", max: 1, "aria-label": t("job.progress") });
  const text = h("div", { class: "job-progress-text", "aria-live": "polite" });
  const el = h("div", { class: "job-progress-box" }, bar, text);
  return {
    el,
    update(job) {
      const p = (job && job.progress) || {};
      const useBytes = p.bytes_total > 0;
      const total = useBytes ? p.bytes_total : p.files_total;
      const done = useBytes ? p.bytes_done : p.files_done;
      if (total > 0) bar.value = Math.min(1, done / total);
      else bar.removeAttribute("value"); // indeterminate
      const parts = [];
      if (p.files_total) parts.push(t("job.files", { done: p.files_done || 0, total: p.files_total }));
      if (p.message) parts.push(p.message);
      text.textContent = parts.join(" · ") || t("job.working");
    },
    done() {
      bar.value = 1;
    },
  };
}

/**
 * Run a long operation in a modal with a progress bar. `start()` returns {status, data} from the
 * API (202 + job, or a synchronous result). Resolves {job, dialog}: the dialog stays open, for
 * the caller to show the report in (dialog.setBody) or close. Start errors close it and reject.
 */
export async function runJob(title, start) {
  const bar = progressBar();
  let jobId = null;
  let cancelling = false;
  const cancel = async () => {
    if (!jobId || cancelling) return;
    cancelling = true;
    bar.el.classList.add("cancelling");
    try {
      await api.cancelJob(jobId);
    } catch {
      /* already finished: the poll sees it */
    }
  };
  const dialog = openDialog({
    title,
    className: "job-dialog",
    body: bar.el,
    buttons: [{ id: "cancel-job", label: t("common.cancel"), onClick: () => { cancel(); return false; } }],
    onEscape: () => cancel(),
  });
  bar.update(null);
  let job;
  try {
    const { status, data } = await start();
    if (status !== 202) {
      job = { state: "succeeded", result: data, status_code: status, progress: {} };
    } else {
      jobId = data.job_id;
      job = data.job;
      while (!TERMINAL.has(job.state)) {
        bar.update(job);
        await sleep(POLL_MS);
        job = await api.job(jobId);
      }
    }
  } catch (err) {
    dialog.close("error");
    throw err;
  }
  bar.update(job);
  bar.done();
  dialog.setButtons([{ id: "close", label: t("common.close"), kind: "primary" }]);
  dialog.el.dataset.state = job.state;
  return { job, dialog, bar };
}

/** A "label: value" list for a report object. */
export function reportList(rows) {
  return h("dl", { class: "report" }, rows.map(([label, value, key]) => [
    h("dt", { text: label }),
    h("dd", { text: String(value ?? 0), dataset: key ? { key } : undefined }),
  ]));
}

/** The line to show when a job did not succeed (error message, or cancelled). */
export function jobFailureText(job) {
  if (job.state === "cancelled") return t("job.cancelled");
  if (job.state === "failed") return job.error || t("job.failed");
  return "";
}
