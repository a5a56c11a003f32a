/**
 * Hearth wire protocol v1, browser side: encoding, decoding and the close-code policy.
 *
 * Encoding: this client offers only the `hearth.v1.json` subprotocol, so every message is one
 * JSON object in one text frame and no MessagePack library is vendored. A server frame holds one
 * message or a JSON array of messages (batching); `decodeFrame` accepts both.
 *
 * Message table (mirrors docs/protocol.md §4–§8; keep in step with chat/protocol.py):
 *
 *   client → server                          server → client(s)
 *   join {room, name?, key?, resume?,        welcome {room{id,title,rules,locked,slow,history,
 *         since?, agree?, id?}                 admission,typing,retention}, you{pid,name,role},
 *                                              resume, members[], history[], seq,
 *                                              reports[]?, log[]?, waiting[]?}   (to the joiner)
 *                                            waiting {}            (knock rooms, to the joiner)
 *                                            joined {member}       (to everyone else)
 *                                            knock {member}        (to facilitators)
 *                                            denied {}             (then close 4003)
 *   say {text, id?}                          msg {mid,seq,pid,name,role,text,ts,kind?}
 *                                            ack {id, mid, seq}    (to the sender)
 *   typing {}                                typing {pid?}         (≤ 1 per 3 s per member)
 *   report {mid, reason?, id?}               report {mid,by,reason,ts} (facilitators only) + ack
 *   whisper {to, text, id?}                  whisper {from,to,text,ts} (sender and target only;
 *                                              participant ↔ facilitator only)
 *   leave {}                                 left {pid, removed?}  (then close 1000)
 *   help {id?}                               help {pid, ts}        (facilitators)
 *                                            resources {id?, text, links[{title,url}]} (asker)
 *   --- facilitators only (others: error forbidden) ---
 *   mute {pid, seconds?}                     muted {pid, until}    (until: ts or null)
 *   unmute {pid}                             unmuted {pid}
 *   remove {pid, reason?}                    removed {reason} (target, then 4001) / left {pid,
 *                                              removed:true} (others)
 *   delete {mid}                             deleted {mid}
 *   lock {} / unlock {} / slow {seconds}     room {locked, slow}
 *   announce {text}                          msg {..., role:"facilitator", kind:"announce"}
 *   close {}                                 closed {}             (then close 4010)
 *   admit {pid} / deny {pid}                 (admit: welcome/joined as usual)
 *   --- any request ---
 *                                            error {id?, code, message, until?, retry_after?}
 *
 * Limits: text ≤ 2,000 code points, names 1–24 code points, frames ≤ 16,384 bytes,
 * request ids are integers 0 ≤ id < 2^31.
 */

export const SUBPROTOCOL = "hearth.v1.json";
export const MAX_TEXT = 2000;
export const MAX_NAME = 24;
export const TYPING_INTERVAL_MS = 3000;

/** Close codes from protocol.md §8. */
export const Close = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  REMOVED: 4001,
  BANNED: 4003,
  NOT_FOUND: 4004,
  LOCKED: 4005,
  ROOM_FULL: 4006,
  TOO_SLOW: 4008,
  ROOM_CLOSED: 4010,
});

/*
 * THE close-code policy: the one place that decides whether a closed connection may come back
 * with `resume` or must stop and explain (protocol.md §8, style.md §3). Everything else asks
 * `closePolicy(code)`.
 */
const RECONNECT = new Set([
  Close.GOING_AWAY, Close.NO_STATUS, Close.ABNORMAL, Close.INTERNAL_ERROR,
  Close.SERVICE_RESTART, Close.TRY_AGAIN_LATER, Close.TOO_SLOW,
]);

// Each terminal code's sentence, by catalogue key (lang/<tag>/page.json).
const TERMINAL_EXPLANATIONS = new Map([
  [Close.NORMAL, "close.normal"],
  [Close.POLICY, "close.policy"],
  [Close.TOO_BIG, "close.too_big"],
  [Close.REMOVED, "close.removed"],
  [Close.BANNED, "close.banned"],
  [Close.NOT_FOUND, "close.not_found"],
  [Close.LOCKED, "close.locked"],
  [Close.ROOM_FULL, "close.full"],
  [Close.ROOM_CLOSED, "close.room_closed"],
]);

/**
 * Decide what a close code means for the client.
 * @param {number} code the CloseEvent code
 * @returns {{reconnect: boolean, explanation: {key: string, params?: object}}} the sentence
 *   to show, as a catalogue key (see i18n.js)
 */
export function closePolicy(code) {
  if (RECONNECT.has(code)) {
    return { reconnect: true, explanation: { key: "close.reconnecting" } };
  }
  const key = TERMINAL_EXPLANATIONS.get(code);
  const explanation = key ? { key } : { key: "close.other", params: { code: String(code) } };
  return { reconnect: false, explanation };
}

/**
 * Encode one client message as a text frame.
 * @param {object} msg a message with a string `t`
 * @returns {string}
 */
export function encode(msg) {
  if (typeof msg !== "object" || msg === null || typeof msg.t !== "string") {
    throw new TypeError("a message needs a string field t");
  }
  return JSON.stringify(msg);
}

/**
 * Decode one server frame into a list of messages. Accepts a single object or an array of
 * objects (batching, §2). Anything else yields an empty list so a bad frame never breaks the page.
 * @param {string|ArrayBuffer|Blob} data the frame's payload
 * @returns {object[]}
 */
export function decodeFrame(data) {
  if (typeof data !== "string") return [];
  let value;
  try {
    value = JSON.parse(data);
  } catch {
    return [];
  }
  const list = Array.isArray(value) ? value : [value];
  return list.filter((m) => typeof m === "object" && m !== null && typeof m.t === "string");
}

/** Count Unicode code points (the server counts after NFKC; this is close enough for a hint). */
export function codePoints(text) {
  return [...text.normalize("NFKC")].length;
}

let nextId = 1;

/** A fresh request id, 1 ≤ id < 2^31. */
export function newId() {
  const id = nextId;
  nextId = nextId >= 0x7fffffff - 1 ? 1 : nextId + 1;
  return id;
}
