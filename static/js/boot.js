// Loaded before the panel's other modules (index.html): the first requests, the type list and
// then the opening tab's models, start while the browser still fetches and compiles the rest;
// api.js takes their answers over instead of asking again.

const early = new Map(); // GET url -> {response: Promise<Response>, at}, each taken at most once
// An answer nobody took soon after start is old news: the caller asks the server again.
const FRESH_MS = 10000;

/** The tab named `wanted` (from `?tab=`, in any case), or null when there is none. */
export function matchTab(types, wanted) {
  const all = [...types, "others"];
  return all.find((type) => type === wanted)
    || all.find((type) => wanted && type.toLowerCase() === wanted.toLowerCase()) || null;
}

/** The tab the panel opens on: the one `wanted` names, else the first. */
export function initialTab(types, wanted) {
  return matchTab(types, wanted) || [...types, "others"][0];
}

function prefetch(url) {
  const response = fetch(url, { headers: { Accept: "application/json" } });
  response.catch(() => {}); // a failure is reported by the request that takes it over
  early.set(url, { response, at: performance.now() });
  return response;
}

const params = new URLSearchParams(location.search);
const typesResponse = prefetch("/api/models/get_types");
// Settles once the opening tab's request (if any) is under way, so no caller asks twice.
const decided = params.get("mode") === "select" ? Promise.resolve() : typesResponse
  .then((response) => (response.ok ? response.clone().json() : null))
  .then((data) => {
    if (data && Array.isArray(data.types)) {
      prefetch(`/api/models?type=${encodeURIComponent(initialTab(data.types, params.get("tab")))}`);
    }
  })
  .catch(() => {});

/** The early answer to GET `url`, or null when there is none (then the caller fetches). */
export async function takeEarly(url) {
  if (url !== "/api/models/get_types") await decided;
  const entry = early.get(url);
  early.delete(url);
  return entry && performance.now() - entry.at < FRESH_MS ? entry.response : null;
}
