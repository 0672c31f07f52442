// The readable summary on a Hikaze loader node: what it will load, above the JSON (which stays
// editable in the payload widget).
//
// It is a DOM widget (node.addDOMWidget): ComfyUI lays DOM widgets over the classic LiteGraph
// canvas and moves their element into the node in Vue nodes mode, so one element serves both.
// ComfyUI also imports this file on its own (every .js under WEB_DIRECTORY); it only exports.

import { isPlainObject } from "./hikaze_payload.js";

function element(tag, style, attributes = {}) {
  const el = document.createElement(tag);
  Object.assign(el.style, style);
  for (const [name, value] of Object.entries(attributes)) el.setAttribute(name, value);
  return el;
}

export const SUMMARY_WIDGET = "hikaze_summary";
const LORA_KEYS = ["loras", "LoRAs", "LoRAList", "loRAList"];

// The first key present, even when its value is null: as the node reads an entry.
function first(entry, keys) {
  for (const key of keys) if (Object.prototype.hasOwnProperty.call(entry, key)) return entry[key];
  return undefined;
}

function baseName(path) {
  return String(path || "").split(/[\\/]/).pop();
}

function strengthText(value) {
  if (value === undefined || value === null) return "1";  // missing means 1 (the node agrees)
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isFinite(number)) return "?";
  return String(Math.round(number * 100) / 100);
}

/**
 * What the node will load, for reading: `{checkpoint: {name, path}}` or `{loras: [{name, path,
 * model, clip, enabled}]}`, or `{error}` when the payload cannot be read. Never throws.
 */
export function summarize(kind, text) {
  const source = String(text ?? "").trim();
  if (!source) return kind === "lora" ? { loras: [] } : { checkpoint: null };
  let data;
  try {
    data = JSON.parse(source);
  } catch (error) {
    return { error: "The payload is not valid JSON; the node will refuse it." };
  }
  if (kind === "checkpoint") {
    if (!isPlainObject(data)) return { error: "The payload must be a JSON object." };
    const path = typeof data.ckpt_path === "string" ? data.ckpt_path.trim() : "";
    if (!path) return { checkpoint: null };
    const name = typeof data.name === "string" && data.name.trim() ? data.name.trim() : baseName(path);
    return { checkpoint: { name, path } };
  }
  let items = Array.isArray(data) ? data : null;
  if (isPlainObject(data)) items = first(data, LORA_KEYS) === undefined ? [] : first(data, LORA_KEYS);
  if (!Array.isArray(items)) return { error: "The payload has no list of LoRAs." };
  const loras = items.map((entry, index) => {
    if (!isPlainObject(entry)) return { name: `#${index + 1} (not an entry)`, path: "", model: "?", clip: "?", enabled: false };
    const path = String(first(entry, ["full_path", "path", "fullPath"]) ?? "");
    const name = typeof entry.name === "string" && entry.name.trim() ? entry.name.trim() : baseName(path);
    return {
      name: name || `#${index + 1}`,
      path,
      model: strengthText(first(entry, ["strength_model", "MStrength", "strengthModel"])),
      clip: strengthText(first(entry, ["strength_clip", "CStrength", "strengthClip"])),
      enabled: first(entry, ["enabled", "toggleOn"]) !== false,
    };
  });
  return { loras };
}

function summaryLine(text, style = {}, attributes = {}) {
  const line = element("div", { whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis",
    ...style }, attributes);
  line.textContent = text;
  return line;
}

/** Redraw `box` from the payload text; returns the number of lines shown. */
export function renderSummary(box, kind, text) {
  const summary = summarize(kind, text);
  const lines = [];
  if (summary.error) {
    lines.push(summaryLine(summary.error, { color: "#ff8a80" }, { class: "hikaze-summary-error" }));
  } else if (kind === "checkpoint") {
    const ckpt = summary.checkpoint;
    lines.push(ckpt
      ? summaryLine(`Checkpoint: ${ckpt.name}`, { fontWeight: "600" },
        { class: "hikaze-summary-checkpoint", title: ckpt.path })
      : summaryLine("No checkpoint selected.", { opacity: "0.7" }, { class: "hikaze-summary-empty" }));
  } else if (!summary.loras.length) {
    lines.push(summaryLine("No LoRAs selected.", { opacity: "0.7" }, { class: "hikaze-summary-empty" }));
  } else {
    summary.loras.forEach((lora, index) => {
      const state = lora.enabled ? "on" : "off";
      const line = summaryLine(
        `${lora.enabled ? "●" : "○"} ${index + 1}. ${lora.name} · model ${lora.model} · ` +
        `clip ${lora.clip}${lora.enabled ? "" : " (off)"}`,
        { opacity: lora.enabled ? "1" : "0.45", textDecoration: lora.enabled ? "none" : "line-through" },
        { class: "hikaze-summary-lora", title: lora.path, "data-state": state });
      lines.push(line);
    });
  }
  box.replaceChildren(...lines);
  box.dataset.lines = String(lines.length);
  return lines.length;
}

const SUMMARY_LINE_PX = 18;

/** Watch every way the payload can change: assignments, the widget callback, typing. */
function watchPayload(widget, onChange) {
  let descriptor = null;
  for (let o = widget; o && !descriptor; o = Object.getPrototypeOf(o)) {
    descriptor = Object.getOwnPropertyDescriptor(o, "value");
  }
  let stored = widget.value;
  const get = descriptor?.get ? () => descriptor.get.call(widget) : () => stored;
  const set = descriptor?.set ? (v) => descriptor.set.call(widget, v) : (v) => { stored = v; };
  if (!descriptor || descriptor.configurable !== false) {
    Object.defineProperty(widget, "value", {
      configurable: true, enumerable: true, get,
      set(v) { set(v); onChange(); },
    });
  }
  const callback = widget.callback;
  widget.callback = function (...args) {
    const result = callback?.apply(this, args);
    onChange();
    return result;
  };
  const input = widget.inputEl || (widget.element?.tagName === "TEXTAREA" ? widget.element : null);
  input?.addEventListener?.("input", () => onChange());
}

/** Add the summary widget to `node`, kept in step with its `payload` widget. */
export function addSummary(node, kind, payload) {
  if (!payload || typeof node.addDOMWidget !== "function") return;
  if (node.widgets?.some((w) => w.name === SUMMARY_WIDGET)) return;
  const box = element("div", {
    font: "12px system-ui, sans-serif", lineHeight: `${SUMMARY_LINE_PX}px`, padding: "4px 6px",
    color: "var(--input-text, #ddd)", background: "var(--comfy-input-bg, rgba(0, 0, 0, 0.25))",
    borderRadius: "4px", overflow: "hidden", boxSizing: "border-box",
  }, { class: "hikaze-summary", "data-kind": kind, role: "list",
       "aria-label": kind === "lora" ? "Chosen LoRAs" : "Chosen checkpoint" });
  let lines = 1;
  let last = null;
  const refresh = () => {
    const text = String(payload.value ?? "");
    if (text === last) return;
    const initial = last === null;
    last = text;
    lines = renderSummary(box, kind, text);
    if (initial) return;
    // More lines: grow the node (never shrink what the user sized) and redraw it.
    const size = node.computeSize?.();
    if (size && node.size && size[1] > node.size[1]) node.setSize?.([node.size[0], size[1]]);
    node.setDirtyCanvas?.(true, false);
  };
  const height = () => lines * SUMMARY_LINE_PX + 10;
  const widget = node.addDOMWidget(SUMMARY_WIDGET, "hikaze-summary", box, {
    serialize: false, hideOnZoom: false, getValue: () => undefined, setValue: () => {},
    getMinHeight: height, getMaxHeight: height,
  });
  if (widget) widget.serialize = false; // neither in the workflow nor in the prompt
  watchPayload(payload, refresh);
  const onConfigure = node.onConfigure;
  node.onConfigure = function (...args) {
    const result = onConfigure?.apply(this, args);
    refresh();
    return result;
  };
  refresh();
}
