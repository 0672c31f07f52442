// Library cards and list rows, with lazily loaded previews (only cards that come into view).
import { h } from "./dom.js";
import { formatSize } from "./dom.js";
import { t } from "./i18n.js";
import { baseChip } from "./metadata-view.js";

let observer = null;

function lazyObserver() {
  if (!observer) {
    observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        const img = entry.target.querySelector("img[data-src]");
        if (img) {
          img.src = img.dataset.src;
          img.removeAttribute("data-src");
        }
      }
    }, { threshold: 0.1 });
  }
  return observer;
}

/** Stop watching everything under `root` (before it is replaced). */
export function unobserveAll(root) {
  if (!observer) return;
  for (const el of root.querySelectorAll(".thumb")) observer.unobserve(el);
}

/** A thumbnail box: a lazily loaded <img> for `url`, or the "No image" placeholder. */
export function thumb(url, alt = "") {
  const box = h("div", { class: "thumb" });
  const placeholder = () => {
    box.classList.add("empty");
    box.replaceChildren(h("span", { class: "placeholder", text: t("common.noImage") }));
  };
  if (!url) {
    placeholder();
    return box;
  }
  const img = h("img", { alt, decoding: "async", dataset: { src: url }, draggable: "false" });
  img.addEventListener("load", () => box.classList.add("loaded"));
  img.addEventListener("error", placeholder);
  box.append(img);
  lazyObserver().observe(box);
  return box;
}

function tagChips(tags) {
  return h("div", { class: "tag-row" },
    (tags || []).map((tag) => h("span", { class: "chip small", text: tag.name })));
}

/**
 * One item as a card (view "card") or a row (view "list"). `a` is the adapter:
 * {key, url(item), selected(item), checked?(item), onCheck?(item, on), onClick(item), badge?(item)}.
 */
export function itemElement(item, a, view) {
  const checked = a.checked ? a.checked(item) : false;
  const name = item.name || item.path || "";
  const el = h("div", {
    class: view === "list" ? "row" : "card",
    role: "button",
    tabindex: "0",
    title: [name, (item.tags || []).map((tag) => tag.name).join(", ")].filter(Boolean).join("\n"),
    dataset: { key: a.key(item), name },
  });
  el.addEventListener("click", (event) => a.onClick(item, event));
  el.addEventListener("keydown", (event) => {
    if ((event.key === "Enter" || event.key === " ") && event.target === el) {
      event.preventDefault();
      a.onClick(item);
    }
  });
  let box = null;
  if (a.onCheck) {
    box = h("input", { type: "checkbox", class: "item-check", checked,
      "aria-label": t("pending.check", { name }) });
    let shift = false; // the change event does not say whether Shift was held (range selection)
    box.addEventListener("click", (event) => { event.stopPropagation(); shift = event.shiftKey; });
    box.addEventListener("change", () => a.onCheck(item, box.checked, { shiftKey: shift }));
  }
  const badge = a.badge ? a.badge(item) : null;
  if (view === "list") {
    el.append(
      box || "",
      thumb(a.url(item), name),
      h("div", { class: "row-main" }, h("div", { class: "item-name", text: name }), tagChips(item.tags)),
      baseChip(item),
      badge ? h("span", { class: "badge-text", text: badge }) : "",
      h("span", { class: "row-size", text: formatSize(item.size_bytes) }),
    );
  } else {
    el.append(
      thumb(a.url(item), name),
      box ? h("div", { class: "card-check" }, box) : "",
      badge ? h("span", { class: "card-badge", text: badge }) : "",
      h("div", { class: "card-overlay" }, h("div", { class: "item-name", text: name }), baseChip(item),
        tagChips(item.tags)),
    );
  }
  markItem(el, item, a);
  return el;
}

/** Bring an item element's selected/checked state up to date (no rebuild: keeps scroll and focus). */
export function markItem(el, item, a) {
  const selected = Boolean(a.selected(item));
  el.classList.toggle("selected", selected);
  el.setAttribute("aria-pressed", String(selected));
  if (!a.checked) return;
  const checked = Boolean(a.checked(item));
  el.classList.toggle("checked", checked);
  const box = el.querySelector(".item-check");
  if (box) box.checked = checked;
}
