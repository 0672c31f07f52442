// Read-only libraries (e.g. a database made by newer software): write controls stay disabled.
import { t } from "./i18n.js";
import { state } from "./state.js";

/** Why the library cannot be written, or "" when it can. */
export function readOnlyReason() {
  return state.config?.read_only_reason || "";
}

/** The read-only line for banners, or "". */
export function readOnlyText() {
  const reason = readOnlyReason();
  return reason ? t("app.readOnly", { reason }) : "";
}

/** Disable the write control `el` when `disabled`, or always while read-only (its title says why). */
export function gateWrite(el, disabled = false) {
  const text = readOnlyText();
  el.disabled = Boolean(disabled || text);
  if (text) el.title = text;
  else el.removeAttribute("title");
}
