// Image gallery of one model: high-quality current image, arrows, dots, upload, delete, open.
import { api, imageUrl } from "./api.js";
import { confirmDialog, notify } from "./dialog.js";
import { basename, h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { gateWrite } from "./readonly.js";
import { bumpRev, cachedEntries, revOf } from "./state.js";

/** A model's name for a notice, from the library cache. */
function nameOf(sha) {
  const entry = cachedEntries(sha)[0];
  return entry ? entry.name || basename(entry.path) : sha.slice(0, 12);
}

/**
 * `onCountChange(sha, count)` runs after an upload or delete changed the number of images, also
 * when it finished after another model was shown (its outcome is then a notice, not the status).
 * `onWrite(sha, finished)` runs as an upload or delete is sent; `finished` settles when it did.
 */
export function gallery({ onCountChange, onWrite = () => {} }) {
  let sha = null;
  let count = 0;
  let index = 0;
  const busy = new Map(); // sha -> status key, for models with an upload or delete in flight
  const frame = h("div", { class: "gallery-frame" });
  const dots = h("div", { class: "gallery-dots", role: "group" });
  const status = h("div", { class: "gallery-status", role: "status" });
  const file = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp,image/gif",
    class: "visually-hidden", id: "gallery-file", tabindex: "-1", "aria-hidden": "true" });
  const uploadBtn = h("button", { type: "button", class: "btn small", id: "gallery-upload",
    onclick: () => file.click() });
  const deleteBtn = h("button", { type: "button", class: "btn small danger", id: "gallery-delete",
    onclick: () => remove() });
  const openLink = h("a", { class: "btn small", id: "gallery-open", target: "_blank",
    rel: "noopener noreferrer" });
  const el = h("div", { class: "gallery" }, frame, dots,
    h("div", { class: "gallery-actions" }, uploadBtn, deleteBtn, openLink, file), status);

  file.addEventListener("change", () => {
    const chosen = file.files && file.files[0];
    file.value = "";
    if (chosen) upload(chosen);
  });

  const url = (seq, quality) => imageUrl(sha, seq, quality, revOf(sha));

  function go(next) {
    index = (next + count) % count;
    draw();
  }

  function draw() {
    uploadBtn.textContent = t("gallery.upload");
    deleteBtn.textContent = t("gallery.delete");
    openLink.textContent = t("gallery.open");
    gateWrite(uploadBtn, !sha || busy.has(sha));
    gateWrite(deleteBtn, !sha || busy.has(sha) || count === 0);
    openLink.hidden = count === 0;
    if (count === 0) {
      replace(frame, h("div", { class: "placeholder", text: t("gallery.empty") }));
      dots.replaceChildren();
      return;
    }
    index = Math.max(0, Math.min(index, count - 1));
    openLink.href = url(index, "high");
    const img = h("img", { src: url(index, "high"), alt: t("gallery.imageAlt",
      { n: index + 1, total: count }), class: "gallery-img" });
    const counter = h("span", { class: "gallery-counter", text: `${index + 1} / ${count}` });
    const arrows = count > 1 ? [
      h("button", { type: "button", class: "gallery-arrow prev", "aria-label": t("gallery.prev"),
        onclick: () => go(index - 1) }, "❮"),
      h("button", { type: "button", class: "gallery-arrow next", "aria-label": t("gallery.next"),
        onclick: () => go(index + 1) }, "❯"),
    ] : [];
    replace(frame, img, arrows, counter);
    replace(dots, count > 1 ? Array.from({ length: count }, (_, i) => h("button", {
      type: "button",
      class: `dot${i === index ? " active" : ""}`,
      "aria-label": t("gallery.goto", { n: i + 1 }),
      "aria-current": i === index ? "true" : "false",
      onclick: () => go(i),
    })) : []);
  }

  function setStatus(text, kind = "") {
    status.textContent = text;
    status.className = `gallery-status ${kind}`.trim();
  }

  /** The outcome of an upload or delete of `target`: in the status, or a notice if it left. */
  function report(target, ok, text, otherText) {
    if (target === sha) setStatus(text, ok ? "ok" : "error");
    else notify(otherText, ok ? "info" : "error");
  }

  async function upload(chosen) {
    const target = sha;
    if (!target || busy.has(target)) return;
    busy.set(target, "gallery.uploading");
    setStatus(t("gallery.uploading"));
    draw();
    try {
      const sent = api.uploadImage(target, chosen);
      onWrite(target, sent.catch(() => {}));
      const res = await sent;
      bumpRev(target);
      if (target === sha) {
        count = res.count;
        index = res.seq;
      }
      report(target, true, t("gallery.uploaded"), t("gallery.uploadedTo", { name: nameOf(target) }));
      onCountChange(target, res.count);
    } catch (err) {
      report(target, false, t("gallery.uploadFailed", { error: err.message }),
        t("gallery.uploadFailedFor", { name: nameOf(target), error: err.message }));
    } finally {
      busy.delete(target);
      draw();
    }
  }

  async function remove() {
    const target = sha;
    if (!target || busy.has(target) || count === 0) return;
    const seq = index;
    const ok = await confirmDialog(t("gallery.confirmDelete", { n: seq + 1 }),
      { okLabel: t("gallery.delete"), danger: true });
    if (!ok || target !== sha || busy.has(target)) return;
    const left = count - 1;
    busy.set(target, "");
    draw();
    try {
      const sent = api.deleteImage(target, seq);
      onWrite(target, sent.catch(() => {}));
      await sent;
      bumpRev(target);
      if (target === sha) {
        count = left;
        index = Math.min(seq, Math.max(0, count - 1));
      }
      report(target, true, t("gallery.deleted"), t("gallery.deletedFrom", { name: nameOf(target) }));
      onCountChange(target, left);
    } catch (err) {
      report(target, false, t("gallery.deleteFailed", { error: err.message }),
        t("gallery.deleteFailedFor", { name: nameOf(target), error: err.message }));
    } finally {
      busy.delete(target);
      draw();
    }
  }

  return {
    el,
    show(nextSha, nextCount) {
      sha = nextSha;
      count = Number(nextCount) || 0;
      index = 0;
      setStatus(busy.get(sha) ? t(busy.get(sha)) : "");
      draw();
    },
    redraw: draw,
  };
}
