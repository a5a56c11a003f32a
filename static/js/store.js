/**
 * The only place the client keeps anything beyond the page's memory: one sessionStorage entry
 * per room with the resume token and, for a facilitator, the key, so that a reload works (and
 * `hearth.lang`, the person's own choice of page language, kept by i18n.js).
 * Never message text, never localStorage, cookies or IndexedDB (no trace on a shared device).
 */

const PREFIX = "hearth.room.";

function read(room) {
  try {
    const raw = sessionStorage.getItem(PREFIX + room);
    const value = raw ? JSON.parse(raw) : {};
    return typeof value === "object" && value !== null ? value : {};
  } catch {
    return {};
  }
}

function write(room, value) {
  try {
    sessionStorage.setItem(PREFIX + room, JSON.stringify(value));
  } catch {
    // Storage may be disabled (private modes); the page still works, only reloads lose identity.
  }
}

/** @returns {{resume?: string, key?: string, agree?: boolean}} */
export function loadRoom(room) {
  return read(room);
}

/** Merge fields into the room's entry; a field set to undefined or null is removed. */
export function saveRoom(room, fields) {
  const value = { ...read(room), ...fields };
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || v === null) delete value[k];
  }
  write(room, value);
}

export function forgetRoom(room) {
  try {
    sessionStorage.removeItem(PREFIX + room);
  } catch {
    // nothing to forget
  }
}

export function forgetEverything() {
  try {
    sessionStorage.clear();
  } catch {
    // nothing to forget
  }
}
