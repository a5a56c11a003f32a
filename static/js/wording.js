/**
 * Which sentence the page says for statuses, errors and mutes. The sentences themselves live
 * in the language catalogues (lang/<tag>/page.json); here each situation names its key, so
 * that the tone stays calm and consistent in every language.
 *
 * A sentence is `{key, params}`: render it with i18n.render(node, key, params), or t().
 */

import { currentLanguage } from "./i18n.js";

const ERRORS = {
  name_taken: "error.name_taken",
  bad_name: "error.bad_name",
  rules_not_accepted: "error.rules_not_accepted",
  rate_limited: "error.rate_limited",
  too_large: "error.too_large",
  forbidden: "error.forbidden",
  not_found: "error.not_found",
  unavailable: "error.unavailable",
  not_joined: "error.not_joined",
  already_joined: "error.already_joined",
  bad_request: "error.bad_request",
  room_locked: "close.locked",
  paused: "error.paused", // §13
  not_your_turn: "error.not_your_turn",
  room_full: "error.room_full",
  banned: "close.banned",
};

const STATUS = {
  connecting: "status.connecting",
  joining: "status.joining",
  waiting: "status.waiting",
  open: "status.open",
  reconnecting: "status.reconnecting",
  closed: "status.closed",
};

/** The sentence for an `error` message. */
export function errorText(error) {
  if (error.code === "muted") {
    return typeof error.until === "number"
      ? { key: "error.muted_until", params: { time: error.until } }
      : { key: "error.muted" };
  }
  if (error.code === "slow_mode") {
    const seconds = Math.max(1, Math.ceil((Number(error.retry_after) || 1000) / 1000));
    return { key: "error.slow_mode", params: { count: seconds } };
  }
  if (ERRORS[error.code]) return { key: ERRORS[error.code] };
  // The server's own sentence is English: show it to readers of English only.
  if (currentLanguage().tag === "en" && typeof error.message === "string" && error.message) {
    return { key: "error.server", params: { message: error.message } };
  }
  return { key: "error.other" };
}

/** The notice for a `muted` message, about oneself or about `name`. */
export function describeMute(name, self, until) {
  const timed = until !== null && until !== undefined;
  if (self) return timed ? { key: "notice.muted_you_until", params: { time: until } } : { key: "notice.muted_you" };
  return timed
    ? { key: "notice.muted_other_until", params: { name, time: until } }
    : { key: "notice.muted_other", params: { name } };
}

/** The status line's sentence for a Connection status event. */
export function statusText(detail, terminalReason) {
  if (detail.state === "closed") return terminalReason ?? detail.explanation ?? { key: "status.closed" };
  return { key: STATUS[detail.state] ?? "status.idle" };
}
