// Every call to the Hikaze API: same-origin relative URLs, response.ok checked, JSON errors raised.
import { takeEarly } from "./boot.js";

export class ApiError extends Error {
  constructor(message, status = 0, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

async function request(method, url, body, { raw = false, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    const early = method === "GET" ? await takeEarly(url) : null;
    response = await (early || fetch(url, init));
  } catch (err) {
    throw new ApiError(`Network error: ${err.message || err}`, 0);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data && typeof data.error === "string" && data.error)
      || `HTTP ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, response.status, data);
  }
  return raw ? { status: response.status, data, etag: response.headers.get("ETag") } : data;
}

const q = encodeURIComponent;

export const api = {
  panelConfig: () => request("GET", "/api/panel/config"),
  types: () => request("GET", "/api/models/get_types"),
  models: (type) => request("GET", `/api/models?type=${q(type)}`),
  rereadMetadata: (shas) => request("POST", "/api/models/reread_metadata", { sha256: shas }),
  /** `{ data, etag }` of a model: the ETag goes back as If-Match when it is saved. */
  modelTagged: (sha) => request("GET", `/api/models/${q(sha)}`, undefined, { raw: true }),
  /** PATCH only if the model is still as loaded (`etag`): a 412 ApiError when someone else saved. */
  saveModel: (sha, changes, etag) => request("PATCH", `/api/models/${q(sha)}`, changes,
    { raw: true, headers: etag ? { "If-Match": etag } : {} }),
  tags: () => request("GET", "/api/tags"),
  addTags: (names) => request("POST", "/api/tags_add", { newtags: names }),
  uploadImage(sha, file) {
    const form = new FormData();
    form.append("sha256", sha);
    form.append("image", file);
    return request("POST", "/api/images/upload", form);
  },
  deleteImage: (sha, seq) => request("DELETE", `/api/images/delete?sha256=${q(sha)}&seq=${q(seq)}`),
  pendingModels: () => request("GET", "/api/migration/pending_models"),
  pendingModel: (id) => request("GET", `/api/migration/pending_model?id=${q(id)}`),
  scan: () => request("POST", "/api/scan", { async: true }, { raw: true }),
  importModels: (ids, strategy) => request(
    "POST", "/api/migration/import_models",
    { id: ids, conflict_strategy: strategy ?? null, async: true }, { raw: true },
  ),
  legacyCandidates: () => request("GET", "/api/migration/legacy_candidates"),
  migrateLegacy(dbPath, imagesDir) {
    const body = { legacy_db_path: dbPath, async: true };
    if (imagesDir) body.legacy_images_dir = imagesDir;
    return request("POST", "/api/migration/migrate_legacy_db", body, { raw: true });
  },
  job: (id) => request("GET", `/api/jobs/${q(id)}`),
  cancelJob: (id) => request("DELETE", `/api/jobs/${q(id)}`),
  // library management (handlers/manage.py)
  sortKeys: () => request("GET", "/api/models/sort_keys"),
  editTags: (shas, add, remove) => request("POST", "/api/models/tags", { sha256: shas, add, remove }),
  setType: (shas, type) => request("POST", "/api/models/set_type", { sha256: shas, type }),
  removeModels: (shas) => request("POST", "/api/models/remove", { sha256: shas }),
  tagUsage: () => request("GET", "/api/tags/usage"),
  renameTag: (id, name, dryRun) => request("POST", "/api/tags/rename", { id, name, dry_run: dryRun }),
  mergeTags: (source, target, dryRun) => request("POST", "/api/tags/merge", { source, target, dry_run: dryRun }),
  deleteTags: (ids, dryRun) => request("POST", "/api/tags/delete", { id: ids, dry_run: dryRun }),
  duplicates: () => request("GET", "/api/library/duplicates"),
  missing: () => request("GET", "/api/library/missing"),
  trashList: () => request("GET", "/api/files/trash"),
  trashFile: (body) => request("POST", "/api/files/trash", body),
  restoreFile: (id) => request("POST", "/api/files/restore", { id }),
  rereadMetadataJob: (shas) =>
    request("POST", "/api/models/reread_metadata", { sha256: shas, async: true }, { raw: true }),
};

/** Preview URL of an active model's image set (seq, tier); `rev` busts caches after changes. */
export function imageUrl(sha, seq = 0, quality = "medium", rev = 0) {
  return `/api/images/${q(sha)}_${q(seq)}.webp?quality=${q(quality)}&rev=${q(rev)}`;
}

/** Preview URL of a pending model's original picture, from its `image` field (basename). */
export function pendingImageUrl(image) {
  const name = String(image || "").split(/[\\/]/).pop();
  return name ? `/api/images/pending/${q(name)}` : "";
}
