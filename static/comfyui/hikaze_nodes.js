// Hikaze Manager inside ComfyUI: a "Select" button on both Hikaze loader nodes.
//
// The button opens the Hikaze panel in selection mode in an overlay iframe and writes the chosen
// checkpoint or LoRA list back into the node's `hikaze_payload` widget. It only uses a button widget
// and a body-level overlay, so it works the same in the classic LiteGraph canvas and in Vue nodes
// mode. The payload textbox stays visible: users can still edit the JSON by hand. Above it, a DOM
// widget shows the choice readably (ComfyUI lays DOM widgets over the classic canvas and moves
// their element into the node in Vue nodes mode, so one element serves both).
//
// Selection protocol (the panel implements the other side):
//   panel URL   http://127.0.0.1:<port>/?mode=select&kind=checkpoint|lora&parent=<this page's origin>
//   panel  ->   {source: "hikaze-panel", type: "ready" | "select" | "cancel", kind?, payload?}
//   page   ->   {source: "hikaze-comfyui", type: "init", kind, payload: <widget value>} after "ready"
// A message counts only when it comes from the overlay's own iframe window AND from the panel's
// origin; everything else is ignored.
//
// ComfyUI loads every .js under WEB_DIRECTORY as an ES module: this one registers the extension;
// the others only export: hikaze_payload.js (panel URL, selection -> widget text), hikaze_port.js
// (asking ComfyUI for the Hikaze port), hikaze_summary.js (the readable summary on the node).

import { app } from "../../scripts/app.js";
import {
  isPlainObject, panelHostFor, panelUrl, SelectionError, serializeSelection,
} from "./hikaze_payload.js";
import { PORT_WAIT_MS, waitForPort } from "./hikaze_port.js";
import { addSummary } from "./hikaze_summary.js";

export { panelHostFor, panelUrl, serializeSelection } from "./hikaze_payload.js";
export { PORT_WAIT_MS };

export const EXTENSION_NAME = "Hikaze.Manager.Select";
export const PAYLOAD_WIDGET = "hikaze_payload";
export const NODE_SPECS = Object.freeze({
  HikazeCheckpointLoader: Object.freeze({
    kind: "checkpoint", button: "Select checkpoint…", title: "Select checkpoint",
  }),
  HikazeLoraPowerLoader: Object.freeze({
    kind: "lora", button: "Select LoRAs…", title: "Select LoRAs",
  }),
});

const PANEL_SOURCE = "hikaze-panel";
const PAGE_SOURCE = "hikaze-comfyui";
// If the panel has not said "ready" by then, say so (the iframe stays: it may still come).
const READY_HINT_MS = 20000;
// The panel greets within a moment of its page loading; a frame that loaded and stays silent
// this long was almost always refused by the browser (the panel's frame-ancestors policy).
export const FRAME_SILENT_MS = 5000;
const CHECK_TIMEOUT_MS = 10000;
const Z_INDEX = "10000";

// ---------------------------------------------------------------------------------------------
// The overlay

let current = null; // the open SelectorOverlay, if any

function element(tag, style, attributes = {}) {
  const el = document.createElement(tag);
  Object.assign(el.style, style);
  for (const [name, value] of Object.entries(attributes)) el.setAttribute(name, value);
  return el;
}

function findPayloadWidget(node) {
  return node.widgets?.find((w) => w.name === PAYLOAD_WIDGET) ?? null;
}

class SelectorOverlay {
  constructor(node, spec) {
    this.node = node;
    this.spec = spec;
    this.widget = findPayloadWidget(node);
    this.iframe = null;
    this.panelOrigin = null;
    this.aborter = new AbortController();
    this.readyTimer = null;
    this.silentTimer = null;
    this.greeted = false;
    this.hintShown = false;
    this.previousFocus = document.activeElement;
    this.onMessage = this.onMessage.bind(this);
    this.onKeyDown = this.onKeyDown.bind(this);
    this.build();
  }

  build() {
    this.backdrop = element("div", {
      position: "fixed", inset: "0", zIndex: Z_INDEX, background: "rgba(0, 0, 0, 0.6)",
      display: "flex", alignItems: "center", justifyContent: "center",
    }, { class: "hikaze-select-backdrop", "data-hikaze-kind": this.spec.kind });
    // No close on a backdrop click: a stray click next to the frame would drop the work in the
    // panel (unsaved edits, a half-built LoRA list). Close, Escape and the panel's Cancel close.
    // Keep pointer, wheel and key events away from the canvas and ComfyUI's shortcuts underneath
    // (Delete or Ctrl+Z on the focused close button must not edit the graph).
    for (const type of ["pointerdown", "wheel", "contextmenu", "keydown", "keyup", "keypress"]) {
      this.backdrop.addEventListener(type, (event) => event.stopPropagation());
    }

    this.dialog = element("div", {
      width: "90vw", height: "90vh", display: "flex", flexDirection: "column",
      background: "#1e1e1e", color: "#eee", border: "1px solid #555", borderRadius: "8px",
      boxShadow: "0 10px 40px rgba(0, 0, 0, 0.5)", overflow: "hidden",
      font: "14px system-ui, sans-serif",
    }, { class: "hikaze-select-dialog", role: "dialog", "aria-modal": "true",
         "aria-label": this.spec.title });

    const titleBar = element("div", {
      display: "flex", alignItems: "center", gap: "8px", padding: "6px 10px",
      background: "#2a2a2a", borderBottom: "1px solid #444", flex: "0 0 auto",
    }, { class: "hikaze-select-titlebar" });
    const title = element("span", { flex: "1 1 auto", fontWeight: "600" },
      { class: "hikaze-select-title" });
    title.textContent = this.spec.title;
    this.closeButton = element("button", {
      background: "transparent", color: "inherit", border: "1px solid #666", borderRadius: "4px",
      cursor: "pointer", padding: "2px 10px", font: "inherit",
    }, { type: "button", "aria-label": "Close", title: "Close (Esc)",
         class: "hikaze-select-close" });
    this.closeButton.textContent = "✕";
    this.closeButton.addEventListener("click", () => this.close());
    titleBar.append(title, this.closeButton);

    this.body = element("div", {
      flex: "1 1 auto", display: "flex", flexDirection: "column", minHeight: "0",
    }, { class: "hikaze-select-body" });
    this.status = element("div", { padding: "12px 16px", whiteSpace: "pre-wrap" },
      { class: "hikaze-select-status", role: "status", "aria-live": "polite" });
    this.body.append(this.status);

    this.dialog.append(titleBar, this.body);
    this.backdrop.append(this.dialog);
  }

  setStatus(text, isError = false) {
    this.status.textContent = text;
    this.status.hidden = !text;
    this.status.style.color = isError ? "#ff8a80" : "";
    this.status.setAttribute("role", isError ? "alert" : "status");
    this.status.dataset.state = isError ? "error" : (text ? "info" : "");
  }

  async open() {
    document.body.append(this.backdrop);
    window.addEventListener("message", this.onMessage);
    document.addEventListener("keydown", this.onKeyDown, true);
    this.closeButton.focus();
    if (!this.widget) {
      this.setStatus(`This node has no ${PAYLOAD_WIDGET} widget to write the selection into.`, true);
      return;
    }
    const host = panelHostFor(window.location.hostname);
    if (!host) {
      this.setStatus(
        "Hikaze Manager listens only on 127.0.0.1 of the computer running ComfyUI, so it can be " +
        "opened from ComfyUI only when ComfyUI itself is opened on that computer (for example " +
        `http://127.0.0.1:${window.location.port || "8188"}/). You can still edit the ` +
        `${PAYLOAD_WIDGET} text on the node by hand.`, true);
      return;
    }
    this.setStatus("Connecting to Hikaze Manager…");
    let port;
    try {
      port = await waitForPort(this.aborter.signal, (problem) => this.setStatus(problem
        ? `Asking ComfyUI for the Hikaze Manager port again (${problem.message})…`
        : "Hikaze Manager is starting…"));
    } catch (error) {
      if (!this.aborter.signal.aborted) this.setStatus(error.message, true);
      return;
    }
    if (this.aborter.signal.aborted || !port) return;
    const problem = await this.checkPanel(`http://${host}:${port}`);
    if (this.aborter.signal.aborted) return;
    if (problem) {
      this.setStatus(problem, true);
      return;
    }
    this.showPanel(host, port);
  }

  /**
   * Ask the panel's server, cross-origin, whether it answers this page: null when it does, else
   * the reason. A server that does not trust this origin sends no CORS header, so the browser
   * hides its answer; framing would be refused the same way.
   */
  async checkPanel(panelOrigin) {
    const origin = window.location.origin;
    const request = new AbortController();
    const stop = () => request.abort();
    this.aborter.signal.addEventListener("abort", stop, { once: true });
    const timer = setTimeout(stop, CHECK_TIMEOUT_MS);
    try {
      const response = await fetch(`${panelOrigin}/api/panel/config`, {
        mode: "cors", credentials: "omit", cache: "no-store", signal: request.signal,
      });
      if (!response.ok) {
        return `${panelOrigin} answered ${response.status} where Hikaze Manager should be: ` +
          "the port ComfyUI reported belongs to another program. Restart ComfyUI and look " +
          "for lines starting with [Hikaze] in its console.";
      }
      const allowed = (await response.json())?.allowed_origins;
      if (Array.isArray(allowed) && !allowed.includes(origin.toLowerCase())) {
        return `Hikaze Manager at ${panelOrigin} does not trust this page's origin ${origin} ` +
          `(it trusts ${allowed.join(", ") || "no other origin"}). Open ComfyUI at one of those ` +
          "addresses.";
      }
      return null;
    } catch (error) {
      if (this.aborter.signal.aborted) return null;
      return `Hikaze Manager at ${panelOrigin} does not answer this page (${origin}): either it ` +
        "does not trust this origin (it trusts the addresses ComfyUI listens on) or it is not " +
        "reachable. Look for lines starting with [Hikaze] in ComfyUI's console.";
    } finally {
      clearTimeout(timer);
      this.aborter.signal.removeEventListener("abort", stop);
    }
  }

  showPanel(host, port) {
    this.panelOrigin = `http://${host}:${port}`;
    const src = panelUrl(host, port, this.spec.kind, window.location.origin);
    // The panel's server names this page as a framer from the Referer (IPv6 origins cannot be
    // listed in frame-ancestors), so send our origin even if ComfyUI's page sends no referrer.
    this.iframe = element("iframe", {
      flex: "1 1 auto", width: "100%", border: "0", background: "#1e1e1e",
    }, { class: "hikaze-select-frame", title: this.spec.title, referrerpolicy: "origin", src });
    this.iframe.addEventListener("load", () => {
      if (this.greeted) return;
      clearTimeout(this.silentTimer);
      this.silentTimer = setTimeout(() => {
        if (this.greeted) return;
        clearTimeout(this.readyTimer);
        this.hintShown = true;
        this.setStatus(`The browser refused to show Hikaze Manager (${this.panelOrigin}) inside ` +
          `this page (${window.location.origin}): the panel loaded but never answered, which ` +
          "happens when its frame-ancestors policy does not admit this origin (the browser " +
          "console names it). Update Hikaze Manager, or open ComfyUI at " +
          `http://127.0.0.1:${window.location.port || "8188"}/.`, true);
      }, FRAME_SILENT_MS);
    });
    this.setStatus("");
    this.body.append(this.iframe);
    this.readyTimer = setTimeout(() => {
      this.hintShown = true;
      this.setStatus(`Hikaze Manager at ${this.panelOrigin} has not answered yet. If the panel ` +
        "below stays empty, check ComfyUI's console for lines starting with [Hikaze].");
    }, READY_HINT_MS);
  }

  onMessage(event) {
    if (!this.iframe || event.source !== this.iframe.contentWindow) return;
    if (event.origin !== this.panelOrigin) return;
    const data = event.data;
    if (!isPlainObject(data) || data.source !== PANEL_SOURCE) return;
    if (data.type === "ready") {
      this.greeted = true;
      clearTimeout(this.readyTimer);
      clearTimeout(this.silentTimer);
      if (this.hintShown) {  // only the "not answered yet" hints go; an error stays readable
        this.hintShown = false;
        this.setStatus("");
      }
      this.iframe.contentWindow.postMessage({
        source: PAGE_SOURCE, type: "init", kind: this.spec.kind,
        payload: String(this.widget.value ?? ""),
      }, this.panelOrigin);
    } else if (data.type === "select") {
      if (data.kind !== this.spec.kind) {
        this.setStatus(`The panel sent a ${data.kind} selection to a ${this.spec.kind} node; ` +
          "nothing was changed.", true);
        return;
      }
      let value;
      try {
        value = serializeSelection(this.spec.kind, data.payload);
      } catch (error) {
        if (!(error instanceof SelectionError)) throw error;
        this.setStatus(`The selection was not applied: ${error.message}.`, true);
        return;
      }
      this.commit(value);
      this.close();
    } else if (data.type === "cancel") {
      this.close();
    }
  }

  onKeyDown(event) {
    if (event.key !== "Escape") return;
    event.preventDefault();
    event.stopPropagation();
    this.close();
  }

  /** Write the payload like a user edit: widget callback, node hook, dirty canvas (saved). */
  commit(value) {
    const { node, widget } = this;
    const old = widget.value;
    if (value !== old) {
      widget.value = value;
      for (const notify of [
        () => widget.callback?.(widget.value),
        () => node.onWidgetChanged?.(widget.name, widget.value, old, widget),
        () => app.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.(),
      ]) {
        try {
          notify();
        } catch (error) {
          console.error("[Hikaze] a listener of hikaze_payload failed", error);
        }
      }
    }
    node.setDirtyCanvas?.(true, true);
    app.graph?.setDirtyCanvas?.(true, true);
  }

  close() {
    this.aborter.abort();
    clearTimeout(this.readyTimer);
    clearTimeout(this.silentTimer);
    window.removeEventListener("message", this.onMessage);
    document.removeEventListener("keydown", this.onKeyDown, true);
    this.backdrop.remove();
    if (current === this) current = null;
    if (this.previousFocus?.isConnected) this.previousFocus.focus?.();
  }
}

/** Open the selection overlay for `node` (replacing any open one). */
export function openSelector(node, spec) {
  current?.close();
  current = new SelectorOverlay(node, spec);
  current.open();
  return current;
}

/** Close the open selection overlay, if any. */
export function closeSelector() {
  current?.close();
}

function addSelectButton(node, spec) {
  if (node.widgets?.some((w) => w.type === "button" && w.name === spec.button)) return;
  const button = node.addWidget("button", spec.button, null, () => openSelector(node, spec),
    { serialize: false });
  if (button) button.serialize = false; // not part of the workflow nor of the prompt
}

app.registerExtension({
  name: EXTENSION_NAME,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const spec = NODE_SPECS[nodeData?.name];
    if (!spec) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      try {
        addSelectButton(this, spec);
      } catch (error) {
        console.error("[Hikaze] could not add the select button", error);
      }
      try {
        addSummary(this, spec.kind, findPayloadWidget(this));
      } catch (error) {
        console.error("[Hikaze] could not add the summary", error);
      }
      return result;
    };
  },
});
