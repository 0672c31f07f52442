// Background jobs: start, poll GET /api/jobs/<id> every 500 ms with a progress bar, cancel.
import { api } from "./api.js";
import { openDialog } from "./dialog.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const POLL_MS = 500;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One poll. DELETE on a job that had already finished answers that job and forgets it, so after
 * a Cancel the final state may only be in the DELETE's answer (a later GET is a 404).
 */
async function poll(id, cancelled) {
  const pending = cancelled();
  if (pending) {
    const answered = await pending;
    if (answered && TERMINAL.has(answered.state)) return answered;
  }
  try {
    return await api.job(id);
  } catch (err) {
    const answered = cancelled() && await cancelled();
    if (err.status === 404 && answered) return answered;
    throw err;
  }
}

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
  let finished = false;
  let cancelling = null; // the DELETE in flight or done: resolves to the Job it answered, or null
  const cancel = () => {
    if (!jobId || cancelling) return;
    bar.el.classList.add("cancelling");
    bar.el.querySelector(".job-progress-text").textContent = t("job.cancelling");
    cancelling = api.cancelJob(jobId).catch(() => null);
  };
  const dialog = openDialog({
    title,
    className: "job-dialog",
    body: bar.el,
    buttons: [{ id: "cancel-job", label: t("common.cancel"), onClick: (d) => {
      cancel();
      if (cancelling) d.footer.querySelector("button").disabled = true;
      return false;
    } }],
    onEscape: (d) => (finished ? d.close("escape") : cancel()),
  });
  bar.update(null);
  let job;
  try {
    const { status, data } = await start();
    if (status !== 202) {
      job = { state: "succeeded", result: data, status_code: status, progress: {} };
    } else {
      jobId = data.job_id;
      dialog.el.dataset.jobId = jobId;
      job = data.job;
      while (!TERMINAL.has(job.state)) {
        if (!cancelling) bar.update(job);
        await sleep(POLL_MS);
        job = await poll(jobId, () => cancelling);
      }
    }
  } catch (err) {
    dialog.close("error");
    throw err;
  }
  finished = true;
  bar.update(job);
  if (job.state === "succeeded") bar.done();
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
