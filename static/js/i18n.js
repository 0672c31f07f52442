// Translation: t(key, params); language from ?lang=, then localStorage, then navigator.language.
import { STRINGS } from "./strings.js";

export const LANGUAGES = [
  { code: "en", label: "English" },
  { code: "zh-CN", label: "中文" },
];
const STORAGE_KEY = "hikaze.lang";
const listeners = new Set();
let current = "en";

function normalize(code) {
  const value = String(code || "").toLowerCase();
  if (value.startsWith("zh")) return "zh-CN";
  if (value.startsWith("en")) return "en";
  return null;
}

function stored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** Pick the first usable language of the URL, storage and the browser; English otherwise. */
export function initLanguage(params = new URLSearchParams(location.search)) {
  current = normalize(params.get("lang")) || normalize(stored())
    || normalize(navigator.language) || "en";
  document.documentElement.lang = current;
  return current;
}

export function language() {
  return current;
}

/** Switch language, remember it, re-translate static text and tell every listener. */
export function setLanguage(code) {
  const next = normalize(code) || "en";
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    /* storage may be disabled (e.g. in a sandboxed frame); the choice then lasts this page */
  }
  if (next === current) return;
  current = next;
  document.documentElement.lang = next;
  translateStatic();
  for (const fn of listeners) fn(next);
}

export function onLanguageChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The text of `key` in the current language, with {name} placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = STRINGS[current]?.[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** Translate elements marked with data-i18n (text), data-i18n-placeholder/-title/-aria-label. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const attr of ["placeholder", "title", "aria-label"]) {
    const dataKey = `i18n${attr.split("-").map((p) => p[0].toUpperCase() + p.slice(1)).join("")}`;
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.dataset[dataKey]));
    }
  }
}
