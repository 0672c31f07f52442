// The nodes' hikaze_payload documents: lenient reading, canonical writing (reference 3.10).

const LIST_KEYS = ["loras", "LoRAs", "LoRAList", "loRAList"];

function pick(obj, keys) {
  for (const key of keys) if (obj[key] !== undefined) return obj[key];
  return undefined;
}

function strength(value) {
  if (value === undefined || value === null || value === "") return 1;
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return null; // booleans and other junk are not strengths
}

/** One entry in canonical key order, or null when it cannot be used. */
export function readEntry(raw) {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  const rawPath = pick(raw, ["full_path", "path", "fullPath"]);
  const name = typeof raw.name === "string" ? raw.name : "";
  if (rawPath !== undefined && rawPath !== null && typeof rawPath !== "string") return null;
  const fullPath = rawPath || "";
  if (!fullPath.trim() && !name.trim()) return null; // nothing says which LoRA this is
  const model = strength(pick(raw, ["strength_model", "MStrength", "strengthModel"]));
  const clip = strength(pick(raw, ["strength_clip", "CStrength", "strengthClip"]));
  let enabled = pick(raw, ["enabled", "toggleOn"]);
  if (enabled === undefined) enabled = true;
  if (model === null || clip === null || typeof enabled !== "boolean") return null;
  const sha = typeof raw.sha256 === "string" ? raw.sha256.trim().toLowerCase() : "";
  return { name, full_path: fullPath, strength_model: model, strength_clip: clip, sha256: sha, enabled };
}

/**
 * Read a LoRA payload string. Returns {version, loras, error, dropped}: `error` when the text is
 * not a usable document (the selection then starts empty, never with example data), `dropped`
 * the number of entries that could not be read (they are left out, and the user is told).
 */
export function parseLoraPayload(text) {
  const empty = (error = null) => ({ version: 2, loras: [], error, dropped: 0 });
  if (text === undefined || text === null) return empty();
  let data = text;
  if (typeof text === "string") {
    if (!text.trim()) return empty();
    try {
      data = JSON.parse(text);
    } catch (err) {
      return empty(`invalid JSON (${err.message})`);
    }
  }
  let version = 2;
  let list;
  if (Array.isArray(data)) {
    list = data;
  } else if (data && typeof data === "object") {
    const v = data.version;
    if (v !== undefined && v !== null) {
      const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : v;
      if (n !== 1 && n !== 2) return empty(`unsupported version ${JSON.stringify(v)}`);
      version = n;
    }
    list = pick(data, LIST_KEYS);
    if (list === undefined || list === null) list = [];
    if (!Array.isArray(list)) return empty("the LoRA list is not an array");
  } else {
    return empty("the payload is not an object or a list");
  }
  const loras = [];
  let dropped = 0;
  for (const raw of list) {
    const entry = readEntry(raw);
    if (entry) loras.push(entry);
    else dropped += 1;
  }
  return { version, loras, error: null, dropped };
}

/** The document the LoRA node reads, keys in canonical order. */
export function loraDocument(version, entries) {
  return {
    version: version || 2,
    loras: entries.map((e) => ({
      name: e.name || "",
      full_path: e.full_path,
      strength_model: e.strength_model,
      strength_clip: e.strength_clip,
      sha256: e.sha256 || "",
      enabled: e.enabled,
    })),
  };
}

/** The checkpoint payload's path, or {error}. */
export function parseCheckpointPayload(text) {
  if (text === undefined || text === null || (typeof text === "string" && !text.trim())) {
    return { path: "" };
  }
  try {
    const data = typeof text === "string" ? JSON.parse(text) : text;
    if (data && typeof data === "object" && !Array.isArray(data)) {
      return { path: typeof data.ckpt_path === "string" ? data.ckpt_path : "" };
    }
    return { path: "", error: "the payload is not an object" };
  } catch (err) {
    return { path: "", error: `invalid JSON (${err.message})` };
  }
}
