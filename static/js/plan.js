/**
 * The start page's meeting plan (protocol §13): whether the room waits for a facilitator, how
 * many participants it holds, and when it opens and ends — read in the creator's own time zone
 * (a datetime-local field is local time) and sent as ms since the epoch.
 */

import { $ } from "./dom.js";
import { render } from "./i18n.js";

const MAX_CAPACITY = 1000;

/** Say which time zone the times are read in. */
export function showTimeZone() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  render($("times-hint"), "home.times_hint", { zone });
}

function when(id) {
  const value = $(id).value;
  if (!value) return null;
  const ms = new Date(value).getTime(); // "YYYY-MM-DDTHH:MM" with no zone: local time
  return Number.isFinite(ms) ? ms : NaN;
}

/**
 * The plan as room settings, or the sentence that says what is wrong with it.
 * @returns {{settings: object} | {error: string, field: string}}
 */
export function readPlan(now = Date.now()) {
  const settings = {};
  if ($("staffed").checked) settings.staffed = "required";
  const capacity = $("capacity").value.trim();
  if (capacity) {
    const n = Number(capacity);
    if (!Number.isInteger(n) || n < 1 || n > MAX_CAPACITY) return { error: "home.error_capacity", field: "capacity" };
    settings.capacity = n;
  }
  const opens = when("opens-at");
  const ends = when("ends-at");
  if (Number.isNaN(opens) || Number.isNaN(ends)) return { error: "home.error_times", field: "opens-at" };
  if (ends !== null && (ends <= now || (opens !== null && ends <= opens))) {
    return { error: "home.error_times", field: "ends-at" };
  }
  if (opens !== null && opens > now) settings.opens_at = opens;
  if (ends !== null) settings.ends_at = ends;
  return { settings };
}
