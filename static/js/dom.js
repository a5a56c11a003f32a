/**
 * Small DOM helpers. Text from the network only ever enters the page through `text` here
 * (textContent) or i18n.render (text nodes and <bdi>), never innerHTML.
 */

import { t } from "./i18n.js";

/**
 * Build an element.
 * @param {string} tag
 * @param {{class?: string, text?: string, attrs?: object, on?: object}} [opts]
 * @param {(Node|string|null)[]} [children] strings become text nodes
 */
export function el(tag, opts = {}, children = []) {
  const node = document.createElement(tag);
  if (opts.class) node.className = opts.class;
  if (opts.text !== undefined) node.textContent = String(opts.text);
  for (const [name, value] of Object.entries(opts.attrs ?? {})) {
    if (value !== undefined && value !== null && value !== false) {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const [type, handler] of Object.entries(opts.on ?? {})) node.addEventListener(type, handler);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

let announceTimer = null;
const pending = [];

/**
 * Queue a sentence for screen readers in the polite live region. Bursts are merged so a busy
 * room does not flood the reader: only the last few lines of a burst are spoken.
 */
export function announce(sentence) {
  pending.push(sentence);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const region = $("announcer");
    if (!region) return;
    const lines = pending.splice(0);
    const spoken = lines.length > 3 ? [t("announce.burst", { count: lines.length }), ...lines.slice(-2)] : lines;
    region.textContent = spoken.join(" ");
  }, 250);
}

/** Open a <dialog> modally, returning a promise of its returnValue when it closes. */
export function openDialog(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
  });
}
