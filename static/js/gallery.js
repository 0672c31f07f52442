// Image gallery of one model: high-quality current image, arrows, dots, upload, delete, open.
import { api, imageUrl } from "./api.js";
import { confirmDialog } from "./dialog.js";
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { bumpRev, revOf } from "./state.js";

/** `onCountChange(sha, count)` runs after an upload or delete changed the number of images. */
export function gallery({ onCountChange }) {
  let sha = null;
  let count = 0;
  let index = 0;
  let busy = false;
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
    uploadBtn.disabled = busy || !sha;
    deleteBtn.disabled = busy || count === 0;
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

  async function upload(chosen) {
    if (!sha || busy) return;
    busy = true;
    setStatus(t("gallery.uploading"));
    draw();
    const target = sha;
    try {
      const res = await api.uploadImage(target, chosen);
      bumpRev(target);
      if (target !== sha) return;
      count = res.count;
      index = res.seq;
      setStatus(t("gallery.uploaded"), "ok");
      onCountChange(target, count);
    } catch (err) {
      setStatus(t("gallery.uploadFailed", { error: err.message }), "error");
    } finally {
      busy = false;
      draw();
    }
  }

  async function remove() {
    if (!sha || busy || count === 0) return;
    const seq = index;
    const ok = await confirmDialog(t("gallery.confirmDelete", { n: seq + 1 }),
      { okLabel: t("gallery.delete"), danger: true });
    if (!ok) return;
    busy = true;
    draw();
    const target = sha;
    try {
      await api.deleteImage(target, seq);
      bumpRev(target);
      if (target !== sha) return;
      count -= 1;
      index = Math.min(seq, Math.max(0, count - 1));
      setStatus(t("gallery.deleted"), "ok");
      onCountChange(target, count);
    } catch (err) {
      setStatus(t("gallery.deleteFailed", { error: err.message }), "error");
    } finally {
      busy = false;
      draw();
    }
  }

  return {
    el,
    show(nextSha, nextCount) {
      sha = nextSha;
      count = Number(nextCount) || 0;
      index = 0;
      setStatus("");
      draw();
    },
    redraw: draw,
  };
}
