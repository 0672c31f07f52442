// Hikaze Manager inside ComfyUI: pure helpers of the Select overlay (no side effects; ComfyUI also
// imports this file on its own, as every .js under WEB_DIRECTORY).

/**
 * The host to reach the Hikaze panel on, or null when it cannot be reached from this page.
 *
 * The Hikaze server binds 127.0.0.1 only. When this page was opened on a loopback name, the browser
 * runs on the ComfyUI machine and 127.0.0.1 is that machine. Any other name (a LAN address, a
 * reverse proxy) means the browser may be elsewhere: `window.location.hostname` would not reach a
 * server bound to loopback, and 127.0.0.1 would be the *browser's* machine, where some other
 * program could answer, receive the payload and write into the node. So we refuse and explain.
 */
export function panelHostFor(hostname) {
  let name = String(hostname || "").trim().toLowerCase();
  if (name.startsWith("[") && name.endsWith("]")) name = name.slice(1, -1);
  if (name.endsWith(".")) name = name.slice(0, -1);
  const loopback = name === "localhost" || name === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
  return loopback ? "127.0.0.1" : null;
}

/** The panel URL in selection mode for `kind`, told which origin (this page) it answers to. */
export function panelUrl(host, port, kind, parentOrigin) {
  const query = `mode=select&kind=${encodeURIComponent(kind)}&parent=${encodeURIComponent(parentOrigin)}`;
  return `http://${host}:${port}/?${query}`;
}

/** A selection the node cannot take; the message says why. */
export class SelectionError extends Error {}

/** True for a plain object (not null, not an array). */
export function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function strength(entry, key, index) {
  let value = entry[key];
  if (value === undefined || value === null) value = 1;
  if (typeof value === "string" && value.trim() !== "") value = Number(value);
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new SelectionError(`LoRA #${index + 1} has an invalid ${key}`);
  }
  return value;
}

function optionalString(entry, key, index) {
  const value = entry[key];
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new SelectionError(`LoRA #${index + 1}: ${key} must be text`);
  return value;
}

/**
 * The widget text for a selection the panel sent, or a SelectionError naming what is wrong.
 * Checkpoint: compact `{"ckpt_path":"…","sha256":"…","name":"…"}` (sha256 and name when the
 * panel sent them; the node needs only ckpt_path). A missing strength means 1. LoRA: the document
 * pretty-printed with a 2-space indent, keys in the canonical order.
 */
export function serializeSelection(kind, payload) {
  if (!isPlainObject(payload)) throw new SelectionError("the selection is not an object");
  if (kind === "checkpoint") {
    const path = payload.ckpt_path;
    if (typeof path !== "string" || path.trim() === "") {
      throw new SelectionError("the selected checkpoint has no ckpt_path");
    }
    // sha256 lets the node find the file by its content after a move; name is for reading.
    const out = { ckpt_path: path };
    const sha = typeof payload.sha256 === "string" ? payload.sha256.trim().toLowerCase() : "";
    if (/^[0-9a-f]{64}$/.test(sha)) out.sha256 = sha;
    if (typeof payload.name === "string" && payload.name.trim() !== "") out.name = payload.name;
    return JSON.stringify(out);
  }
  if (kind === "lora") {
    let version = payload.version ?? 2;
    if (typeof version === "string" && /^\d+$/.test(version.trim())) version = Number(version);
    if (version !== 1 && version !== 2) {
      throw new SelectionError(`unsupported LoRA list version ${JSON.stringify(version)}`);
    }
    if (!Array.isArray(payload.loras)) throw new SelectionError("'loras' must be a list");
    const loras = payload.loras.map((entry, index) => {
      if (!isPlainObject(entry)) throw new SelectionError(`LoRA #${index + 1} is not an object`);
      const name = optionalString(entry, "name", index);
      const fullPath = optionalString(entry, "full_path", index);
      if (fullPath.trim() === "" && name.trim() === "") {
        throw new SelectionError(`LoRA #${index + 1} has no full_path`);
      }
      const enabled = entry.enabled ?? true;
      if (typeof enabled !== "boolean") {
        throw new SelectionError(`LoRA #${index + 1}: enabled must be true or false`);
      }
      return {
        name,
        full_path: fullPath,
        strength_model: strength(entry, "strength_model", index),
        strength_clip: strength(entry, "strength_clip", index),
        sha256: optionalString(entry, "sha256", index),
        enabled,
      };
    });
    return JSON.stringify({ version, loras }, null, 2);
  }
  throw new SelectionError(`unknown selection kind ${JSON.stringify(kind)}`);
}
