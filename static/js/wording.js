/**
 * Plain-language sentences for statuses, errors and mutes, in one place so the tone stays calm
 * and consistent.
 */

import { clockText } from "./dom.js";

const ERRORS = {
  name_taken: "Someone here is already using that name. Try another, or leave the box empty and we'll suggest one.",
  bad_name: "That name can't be used here. Names are 1–24 characters and can't be a role such as “facilitator”.",
  rules_not_accepted: "Please read the room's rules and tick the box to agree before joining.",
  rate_limited: "You're sending messages quickly. Please wait a moment and try again.",
  too_large: "That message is too long. Please make it shorter.",
  forbidden: "That isn't possible for you in this room.",
  not_found: "That person or message is no longer here.",
  unavailable: "The server couldn't pass that on just now. Please try again in a moment.",
  not_joined: "You're not in the room yet.",
};

/** A sentence for an `error` message. */
export function errorText(error) {
  if (error.code === "muted") {
    return typeof error.until === "number"
      ? `You're muted until ${clockText(error.until)}. You can still read, and message a facilitator privately.`
      : "You're muted for now. You can still read, and message a facilitator privately.";
  }
  if (error.code === "slow_mode") {
    const seconds = Math.max(1, Math.ceil((Number(error.retry_after) || 1000) / 1000));
    return `Slow mode is on. You can send your next message in ${seconds} second${seconds === 1 ? "" : "s"}.`;
  }
  return ERRORS[error.code] ?? (typeof error.message === "string" && error.message
    ? error.message
    : "Something went wrong. Please try again.");
}

/** "X has been muted …" for a `muted` message. */
export function describeMute(subject, until) {
  if (until === null || until === undefined) return `${subject} been muted by a facilitator until they unmute.`;
  return `${subject} been muted by a facilitator until ${clockText(until)}.`;
}

/** The status line's sentence for a Connection status event. */
export function statusText(detail, terminalReason) {
  switch (detail.state) {
    case "connecting": return "Connecting…";
    case "joining": return "Joining the room…";
    case "waiting": return "Waiting for a facilitator to let you in.";
    case "open": return "Connected";
    case "reconnecting": return "Connection lost. Reconnecting…";
    case "closed": return terminalReason ?? detail.explanation ?? "Disconnected.";
    default: return "Not connected yet.";
  }
}
