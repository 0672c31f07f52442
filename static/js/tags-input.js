// Tag chip input: Enter or "," commits, Backspace on empty removes the last chip, suggestions
// of existing tags. New names become chips with id -1 (created with /api/tags_add on save).
import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

const norm = (s) => String(s || "").trim().replace(/\s+/g, " ");
const lower = (s) => norm(s).toLowerCase();

/** `allTags()` returns the known tags; `onChange()` runs after every edit. */
export function tagsInput({ id, allTags, onChange = () => {}, readOnly = false }) {
  let chips = [];
  let active = -1;
  const list = h("div", { class: "chips" });
  const menuId = `${id}-suggestions`;
  const input = h("input", { type: "text", id, class: "chip-input", autocomplete: "off",
    placeholder: t("details.tagsPlaceholder"), role: "combobox", "aria-autocomplete": "list",
    "aria-expanded": "false", "aria-controls": menuId,
    dataset: { i18nPlaceholder: "details.tagsPlaceholder" } });
  const menu = h("ul", { class: "suggestions", id: menuId, role: "listbox", hidden: true });
  const optionId = (index) => `${menuId}-${index}`;
  const expand = (open) => {
    input.setAttribute("aria-expanded", String(open));
    if (open && active >= 0) input.setAttribute("aria-activedescendant", optionId(active));
    else input.removeAttribute("aria-activedescendant");
  };
  const el = h("div", { class: `tags-input${readOnly ? " readonly" : ""}` }, list, input, menu);
  if (readOnly) input.hidden = true;

  function add(tag) {
    const name = norm(tag.name);
    if (!name || chips.some((c) => lower(c.name) === name.toLowerCase())) return;
    chips.push({ id: tag.id, name });
    draw();
    onChange();
  }

  function commit(text) {
    const name = norm(text);
    input.value = "";
    hideMenu();
    if (!name) return;
    const known = allTags().find((tag) => lower(tag.name) === name.toLowerCase());
    add(known || { id: -1, name });
  }

  function draw() {
    replace(list, chips.map((chip, index) => h("span", {
      class: `chip${chip.id < 0 ? " new" : ""}`,
      dataset: { tag: chip.name },
      title: chip.id < 0 ? t("details.newTag") : "",
    }, h("span", { text: chip.name }), readOnly ? "" : h("button", {
      type: "button",
      class: "chip-remove",
      "aria-label": t("details.removeTag", { name: chip.name }),
      onclick: () => {
        chips.splice(index, 1);
        draw();
        onChange();
      },
    }, "×"))));
  }

  function suggestions() {
    const text = lower(input.value);
    if (!text) return [];
    const have = new Set(chips.map((c) => lower(c.name)));
    return allTags().filter((tag) => lower(tag.name).includes(text) && !have.has(lower(tag.name)))
      .slice(0, 10);
  }

  function hideMenu() {
    menu.hidden = true;
    active = -1;
    expand(false);
  }

  function showMenu() {
    const found = suggestions();
    active = Math.min(active, found.length - 1);
    replace(menu, found.map((tag, index) => {
      const item = h("li", { role: "option", id: optionId(index),
        class: index === active ? "active" : "", "aria-selected": String(index === active),
        text: tag.name });
      item.addEventListener("mousedown", (event) => {
        event.preventDefault(); // keep focus in the input
        input.value = "";
        add(tag);
        hideMenu();
      });
      return item;
    }));
    menu.hidden = found.length === 0;
    expand(!menu.hidden);
    return found;
  }

  input.addEventListener("input", () => {
    if (input.value.includes(",")) {
      const parts = input.value.split(",");
      input.value = parts.pop();
      for (const part of parts) commit(part);
    }
    active = -1;
    showMenu();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      const found = suggestions();
      if (active >= 0 && found[active]) {
        input.value = "";
        add(found[active]);
        hideMenu();
      } else {
        commit(input.value);
      }
    } else if (event.key === "Backspace" && !input.value && chips.length) {
      chips.pop();
      draw();
      onChange();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const found = suggestions();
      if (!found.length) return;
      event.preventDefault();
      active = (active + (event.key === "ArrowDown" ? 1 : found.length - 1)) % found.length;
      showMenu();
    } else if (event.key === "Escape" && !menu.hidden) {
      event.stopPropagation();
      event.preventDefault();
      hideMenu();
    }
  });
  input.addEventListener("blur", () => {
    hideMenu();
  });

  return {
    el,
    input,
    value: () => chips.map((c) => ({ ...c })),
    set(tags) {
      chips = (tags || []).map((tag) => ({ id: tag.id, name: tag.name }));
      input.value = "";
      hideMenu();
      draw();
    },
    /** Commit whatever is typed but not yet a chip (before saving). */
    flush() {
      if (norm(input.value)) commit(input.value);
    },
  };
}
