// In-page modal dialogs (<dialog>.showModal): Escape closes, focus stays inside. No alert/confirm.
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

/**
 * Open a modal. `buttons`: [{label, kind: "primary"|"danger"|"", onClick(dialog) -> false keeps
 * it open}]. `onClose(reason)` runs once. Returns {el, body, footer, close(reason), setButtons}.
 */
export function openDialog({ title, body, buttons = [], className = "", onEscape, onClose }) {
  const heading = h("h2", { class: "dialog-title", text: title });
  const bodyEl = h("div", { class: "dialog-body" }, body);
  const footer = h("div", { class: "dialog-footer" });
  const el = h("dialog", { class: `dialog ${className}`.trim(), "aria-label": title },
    heading, bodyEl, footer);
  let closed = false;
  const handle = {
    el,
    body: bodyEl,
    footer,
    setTitle(text) {
      heading.textContent = text;
      el.setAttribute("aria-label", text);
    },
    setBody(...nodes) {
      replace(bodyEl, ...nodes);
    },
    setButtons(list) {
      replace(footer, ...list.map((b) => h("button", {
        type: "button",
        class: `btn ${b.kind || ""}`.trim(),
        disabled: b.disabled,
        dataset: b.id ? { action: b.id } : undefined,
        onclick: async () => {
          const keep = b.onClick ? await b.onClick(handle) : undefined;
          if (keep !== false) handle.close(b.id || "button");
        },
      }, b.label)));
    },
    close(reason = "close") {
      if (closed) return;
      closed = true;
      el.close();
      el.remove();
      if (onClose) onClose(reason);
    },
    get closed() {
      return closed;
    },
  };
  el.addEventListener("cancel", (event) => {
    // Escape: let the owner decide (e.g. cancel a job), otherwise close.
    event.preventDefault();
    if (onEscape) onEscape(handle);
    else handle.close("escape");
  });
  handle.setButtons(buttons);
  document.body.append(el);
  el.showModal();
  return handle;
}

/** Ask a yes/no question in a modal; resolves true only when the confirm button is pressed. */
export function confirmDialog(message, { title = t("confirm.title"), okLabel = t("common.ok"),
  danger = false } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    openDialog({
      title,
      className: "confirm-dialog",
      body: h("p", { text: message }),
      buttons: [
        { id: "cancel", label: t("common.cancel") },
        { id: "confirm", label: okLabel, kind: danger ? "danger" : "primary",
          onClick: () => { answer = true; } },
      ],
      onClose: () => resolve(answer),
    });
  });
}

/** A small non-modal notice in the corner (errors and confirmations); role=status/alert. */
export function notify(message, kind = "info", ms = 6000) {
  let area = document.getElementById("notices");
  if (!area) {
    area = h("div", { id: "notices", class: "notices" });
    document.body.append(area);
  }
  const close = h("button", { type: "button", class: "notice-close", "aria-label": t("common.close"),
    text: "×" });
  const note = h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { text: message }), close);
  close.addEventListener("click", () => note.remove());
  area.append(note);
  if (ms) setTimeout(() => note.remove(), ms);
  return note;
}
