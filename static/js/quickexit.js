/**
 * Quick exit: replace the page with a neutral site (the operator's --quick-exit-url), leaving no
 * entry for Hearth behind it in the back-button history, and clear sessionStorage.
 *
 * Shortcuts: Escape pressed twice within 800 ms, or Shift+Escape once.
 */

import { forgetEverything } from "./store.js";

export const NEUTRAL_URL = "https://www.bbc.co.uk/weather";

/** Where quick exit goes: the operator's --quick-exit-url, which the server puts in the page. */
function neutralUrl() {
  const meta = document.querySelector('meta[name="hearth-quick-exit"]');
  return meta?.content || NEUTRAL_URL;
}
const DOUBLE_PRESS_MS = 800;

let beforeExit = () => {};

/** Run something (such as sending `leave`) just before leaving; it must not block. */
export function onQuickExit(fn) {
  beforeExit = fn;
}

export function quickExit() {
  try {
    beforeExit();
  } catch {
    // leaving matters more than saying goodbye
  }
  forgetEverything();
  document.title = "Weather";
  document.body.replaceChildren();
  // replace(), not assign(): the current entry is overwritten, so Back cannot return here.
  location.replace(neutralUrl());
}

export function installQuickExit(button) {
  let lastEscape = 0;
  button?.addEventListener("click", quickExit);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const now = performance.now();
    if (event.shiftKey || now - lastEscape < DOUBLE_PRESS_MS) {
      event.preventDefault();
      quickExit();
      return;
    }
    lastEscape = now;
  }, { capture: true });
}
