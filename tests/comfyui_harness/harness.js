// A fake ComfyUI page: loads every extension ComfyUI would load, registers node types from
// /api/object_info through the extensions' beforeRegisterNodeDef, creates one node of each type the
// way LiteGraph does (constructor adds the input widgets, then onNodeCreated), and renders each
// node's widgets as plain DOM so a test can click a button widget like a user.
//
// Two renderings, like ComfyUI's two canvas modes: the classic one (`/`) keeps the node's own
// widgets on the "canvas" and lays DOM widgets (addDOMWidget) over it in a separate layer; the Vue
// nodes one (`/?vue=1`, LiteGraph.vueNodesMode) builds each node as DOM and moves a DOM widget's
// element into the node, as ComfyUI's WidgetDOM component does.
import { app } from "/scripts/app.js";

const VUE_MODE = new URLSearchParams(location.search).get("vue") === "1";
globalThis.LiteGraph = { vueNodesMode: VUE_MODE };

class FakeNode {
  // The parts of LGraphNode the Hikaze extension uses.
  constructor(type) {
    this.type = type;
    this.comfyClass = type;
    this.widgets = [];
    this.dirtyCalls = [];
    this.widgetChanges = [];
  }

  addWidget(type, name, value, callback, options) {
    const widget = { type, name, value, callback, options: options || {} };
    this.widgets.push(widget);
    return widget;
  }

  addDOMWidget(name, type, element, options) {
    // ComfyUI's DOM widget: its value comes from options.getValue, its element is shown on the node.
    const widget = { type, name, element, options: options || {}, dom: true };
    Object.defineProperty(widget, "value", { get: () => widget.options.getValue?.(),
      set: (v) => widget.options.setValue?.(v), enumerable: true, configurable: true });
    this.widgets.push(widget);
    return widget;
  }

  setDirtyCanvas(foreground, background) {
    this.dirtyCalls.push([foreground, background]);
  }

  onWidgetChanged(name, value, oldValue, widget) {
    this.widgetChanges.push({ name, value, oldValue, same: widget === this.widgets.find((w) => w.name === name) });
  }
}

function nodeClassFor(def) {
  return class extends FakeNode {
    constructor() {
      super(def.name);
      for (const [name, spec] of Object.entries(def.input?.required || {})) {
        const [type, options] = spec;
        if (type === "STRING" && options?.multiline) {
          const widget = this.addWidget("customtext", name, options.default ?? "", null);
          widget.callbackValues = [];
          widget.callback = (value) => widget.callbackValues.push(value);
        }
      }
    }
  };
}

function render(node) {
  const box = document.createElement("section");
  box.className = VUE_MODE ? "node lg-node" : "node";
  box.dataset.type = node.type;
  box.dataset.nodeId = node.type;
  const title = document.createElement("h3");
  title.textContent = node.type;
  box.append(title);
  for (const widget of node.widgets) {
    if (widget.type === "button") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = widget.name;
      // LiteGraph calls a button widget's callback as (widget, canvas, node, pos, event).
      button.addEventListener("click", (event) => widget.callback?.(widget, null, node, [0, 0], event));
      box.append(button);
    } else if (widget.dom) {
      const holder = document.createElement("div");
      holder.className = "dom-widget";
      holder.dataset.widget = widget.name;
      holder.dataset.node = node.type;
      holder.replaceChildren(widget.element);
      // Classic canvas: DOM widgets live in a layer over the canvas; Vue nodes: inside the node.
      (VUE_MODE ? box : document.getElementById("dom-widgets")).append(holder);
    } else {
      const area = document.createElement("textarea");
      area.name = widget.name;
      area.value = widget.value;
      // Typing edits the widget like ComfyUI's text widget: the value, then the callback.
      area.addEventListener("input", () => {
        widget.value = area.value;
        widget.callback?.(widget.value);
      });
      box.append(area);
    }
  }
  document.getElementById("graph").append(box);
}

async function main() {
  const listed = await (await fetch("/api/extensions")).json();
  for (const url of listed) await import(url);
  const defs = await (await fetch("/api/object_info")).json();
  const types = {};
  for (const def of Object.values(defs)) {
    const nodeType = nodeClassFor(def);
    for (const extension of app.extensions) await extension.beforeRegisterNodeDef?.(nodeType, def, app);
    types[def.name] = nodeType;
  }
  const nodes = {};
  for (const [name, nodeType] of Object.entries(types)) {
    const node = new nodeType();
    node.onNodeCreated?.();
    for (const extension of app.extensions) await extension.nodeCreated?.(node, app);
    nodes[name] = node;
    render(node);
  }
  window.harness = { app, nodes, vueMode: VUE_MODE, ready: true };
}

main().catch((error) => {
  window.harness = { error: String(error?.stack || error) };
});
