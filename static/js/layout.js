// Layout pieces: the clamped library/details splitter and the draggable floating toolbar.

const SPLIT_KEY = "hikaze.detailsWidth";

/** Drag (or arrow keys) to size the details pane: 10-80 % of the window width, remembered. */
export function mountSplitter(splitter, layout) {
  const clamp = (px) => Math.min(window.innerWidth * 0.8, Math.max(window.innerWidth * 0.1, px));
  const announce = (width) => splitter.setAttribute("aria-valuenow",
    String(Math.round((width / window.innerWidth) * 100)));
  const detailsWidth = () => layout.querySelector(".details-col").getBoundingClientRect().width;
  const set = (px) => {
    const width = Math.round(clamp(px));
    layout.style.setProperty("--details-width", `${width}px`);
    announce(width);
    return width;
  };
  let saved = null;
  try {
    saved = Number(localStorage.getItem(SPLIT_KEY)) || null;
  } catch {
    saved = null;
  }
  if (saved) set(saved);
  else announce(detailsWidth()); // the CSS default width, reported from the start
  window.addEventListener("resize", () => announce(detailsWidth()));
  const remember = (px) => {
    try {
      localStorage.setItem(SPLIT_KEY, String(px));
    } catch {
      /* not remembered */
    }
  };
  splitter.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    splitter.setPointerCapture(event.pointerId);
    splitter.classList.add("dragging");
    const move = (e) => set(window.innerWidth - e.clientX);
    const up = (e) => {
      splitter.classList.remove("dragging");
      splitter.removeEventListener("pointermove", move);
      splitter.removeEventListener("pointerup", up);
      remember(set(window.innerWidth - e.clientX));
    };
    splitter.addEventListener("pointermove", move);
    splitter.addEventListener("pointerup", up);
  });
  splitter.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    event.preventDefault();
    remember(set(detailsWidth() + (event.key === "ArrowLeft" ? 32 : -32)));
  });
}

/** The toolbar floats bottom-centre; its handle drags it, clamped to the window (8 px). */
export function mountToolbar(toolbar, handle) {
  let pos = null;
  const place = () => {
    if (!pos) return;
    const rect = toolbar.getBoundingClientRect();
    const x = Math.min(window.innerWidth - rect.width - 8, Math.max(8, pos.x));
    const y = Math.min(window.innerHeight - rect.height - 8, Math.max(8, pos.y));
    toolbar.style.left = `${x}px`;
    toolbar.style.top = `${y}px`;
    toolbar.style.bottom = "auto";
    toolbar.style.transform = "none";
  };
  handle.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    const rect = toolbar.getBoundingClientRect();
    const dx = event.clientX - rect.left;
    const dy = event.clientY - rect.top;
    const move = (e) => {
      pos = { x: e.clientX - dx, y: e.clientY - dy };
      place();
    };
    const up = () => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
  });
  window.addEventListener("resize", place);
}
