// Hikaze Manager inside ComfyUI: ask ComfyUI's sniffer route for the Hikaze server's port.
// Only exports (ComfyUI also imports this file on its own, as every .js under WEB_DIRECTORY).

import { api } from "../../scripts/api.js";

// The Hikaze server starts on a thread once ComfyUI is up; until it listens the sniffer says 0.
// Poll with backoff for a bounded time (the reference polled every second forever, 8.4.1).
export const PORT_WAIT_MS = 30000;
const PORT_RETRY_DELAYS_MS = [250, 500, 1000, 2000]; // then every 2 s until PORT_WAIT_MS
const PORT_REQUEST_TIMEOUT_MS = 5000;

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** One sniffer request: the port (0 = not listening yet). Throws with a message on failure. */
async function askPort(signal) {
  const request = new AbortController();
  const stop = () => request.abort();
  signal.addEventListener("abort", stop, { once: true });
  const timer = setTimeout(stop, PORT_REQUEST_TIMEOUT_MS);
  try {
    const response = await api.fetchApi("/hikaze/sniffer_port", {
      cache: "no-store", signal: request.signal,
    });
    if (response.status === 404) {
      const error = new Error(
        "ComfyUI does not serve /api/hikaze/sniffer_port: the Hikaze Manager custom node is not " +
        "loaded (check ComfyUI's console for an import error, then restart ComfyUI).");
      error.permanent = true;
      throw error;
    }
    if (!response.ok) throw new Error(`ComfyUI answered ${response.status} for the Hikaze port`);
    const body = await response.json();
    const port = body?.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new Error("ComfyUI reported an invalid Hikaze port");
    }
    return port;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
  }
}

/**
 * The Hikaze server's port, retried with backoff while it is 0 (or ComfyUI does not answer) for at
 * most PORT_WAIT_MS; `onWaiting(problem|null)` is called before each wait. Rejects with a message
 * saying why.
 */
export async function waitForPort(signal, onWaiting) {
  const deadline = Date.now() + PORT_WAIT_MS;
  let attempt = 0;
  let lastProblem = null;
  for (;;) {
    if (signal.aborted) return 0;
    try {
      const port = await askPort(signal);
      if (port > 0) return port;
      lastProblem = null;
    } catch (error) {
      if (signal.aborted) return 0;
      if (error.permanent) throw error;
      lastProblem = error;
    }
    if (signal.aborted) return 0;
    const delay = PORT_RETRY_DELAYS_MS[Math.min(attempt, PORT_RETRY_DELAYS_MS.length - 1)];
    attempt += 1;
    if (Date.now() + delay > deadline) break;
    onWaiting(lastProblem);
    await sleep(delay, signal);
  }
  const seconds = Math.round(PORT_WAIT_MS / 1000);
  if (lastProblem) {
    throw new Error(`Could not get the Hikaze Manager port from ComfyUI within ${seconds} s ` +
      `(${lastProblem.message}).`);
  }
  throw new Error(`Hikaze Manager did not start within ${seconds} s (ComfyUI still reports ` +
    "no port). Look for lines starting with [Hikaze] in ComfyUI's console.");
}
