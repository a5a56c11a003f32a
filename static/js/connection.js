/**
 * One WebSocket to one room: join, resume after a drop, reconnect with capped backoff.
 *
 * Events (CustomEvent on the Connection):
 *   "status"  detail {state, explanation?, attempt?}
 *             state: "connecting" | "joining" | "waiting" | "open" | "reconnecting" | "closed"
 *   "message" detail: one server message (batches are already split)
 *   "joinerror" detail: the error message answering a join (name_taken, bad_name, ...)
 *
 * Whether a close allows reconnecting is decided by protocol.closePolicy, nowhere else.
 */

import { SUBPROTOCOL, closePolicy, decodeFrame, encode, newId } from "./protocol.js";
import { loadRoom, saveRoom } from "./store.js";

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10000;
const CONNECT_TIMEOUT_MS = 10000;
const RETRYABLE_JOIN_ERRORS = new Set(["unavailable", "rate_limited"]);
// §4: these three leave the connection open for another join.
const RECOVERABLE_JOIN_ERRORS = new Set(["name_taken", "bad_name", "rules_not_accepted"]);

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class Connection extends EventTarget {
  /**
   * @param {string} room the room id
   * @param {() => number} lastSeq the last seq the page has seen (for `since` on resume)
   */
  constructor(room, lastSeq) {
    super();
    this.room = room;
    this.lastSeq = lastSeq;
    this.ws = null;
    this.state = "idle";
    this.attempt = 0;
    this.timer = null;
    this.joinParams = {};
    this.joined = false;
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.drop());
  }

  /** Open the connection and join with {name?, agree?}; the key and resume come from the store. */
  start(joinParams) {
    this.joinParams = { ...joinParams };
    this.open();
  }

  /** Send one message; returns false when there is no open socket. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encode(msg));
    return true;
  }

  /** Send a request with a fresh id; returns the id, or null when not connected. */
  request(msg) {
    const id = newId();
    return this.send({ ...msg, id }) ? id : null;
  }

  /** Try the join again with new parameters (after name_taken, bad_name, rules_not_accepted). */
  rejoin(joinParams) {
    this.joinParams = { ...this.joinParams, ...joinParams };
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendJoin();
    else this.open();
  }

  /** Leave for good: the server answers `left` to the others and closes with 1000. */
  leave() {
    this.send({ t: "leave" });
  }

  /** Stop everything at once (quick exit): no more events, no reconnecting. */
  abandon() {
    clearTimeout(this.timer);
    this.state = "closed";
    this.ws = null;
  }

  open() {
    clearTimeout(this.timer);
    if (this.state === "closed") return;
    this.setState(this.joined ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(socketUrl(), [SUBPROTOCOL]);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    const timeout = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) this.drop();
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener("open", () => {
      clearTimeout(timeout);
      this.sendJoin();
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return;
      for (const msg of decodeFrame(event.data)) this.handle(msg);
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(timeout);
      if (this.ws === ws) this.closed(event.code);
    });
  }

  sendJoin() {
    const stored = loadRoom(this.room);
    const join = { t: "join", room: this.room };
    if (this.joinParams.name) join.name = this.joinParams.name;
    if (stored.key) join.key = stored.key;
    if (this.joinParams.agree || stored.agree) join.agree = true;
    if (stored.resume) {
      join.resume = stored.resume;
      const since = this.lastSeq();
      if (since > 0) join.since = since;
    }
    this.resuming = Boolean(stored.resume);
    this.setState("joining");
    this.send(join);
  }

  handle(msg) {
    if (msg.t === "welcome") {
      this.joined = true;
      this.attempt = 0;
      saveRoom(this.room, { resume: typeof msg.resume === "string" ? msg.resume : null });
      this.setState("open");
    } else if (msg.t === "waiting") {
      this.setState("waiting");
    } else if (msg.t === "error" && this.state === "joining") {
      this.joinFailed(msg);
      return;
    }
    this.dispatchEvent(new CustomEvent("message", { detail: msg }));
  }

  joinFailed(msg) {
    if (msg.code === "bad_resume") {
      // §4: an expired or revoked token never grants an identity; join afresh instead.
      saveRoom(this.room, { resume: null });
      this.dispatchEvent(new CustomEvent("message", { detail: msg }));
      this.sendJoin();
      return;
    }
    if (msg.code === "name_taken" && this.joined) {
      // Rejoining after a long absence: let the server pick a free name.
      this.joinParams.name = undefined;
      this.sendJoin();
      return;
    }
    if (RETRYABLE_JOIN_ERRORS.has(msg.code)) {
      this.drop();
      return;
    }
    if (!RECOVERABLE_JOIN_ERRORS.has(msg.code)) {
      // not_found, room_locked, banned, forbidden: the server closes next, and the close code
      // decides what the page says (closePolicy).
      this.dispatchEvent(new CustomEvent("message", { detail: msg }));
      return;
    }
    this.setState("idle");
    this.dispatchEvent(new CustomEvent("joinerror", { detail: msg }));
  }

  closed(code) {
    this.ws = null;
    if (this.state === "idle" && !this.joined) {
      // A join error left the socket open and the server's join timeout closed it while the
      // person was choosing another name: the next join simply opens a new socket.
      return;
    }
    const policy = closePolicy(code);
    if (policy.reconnect) {
      this.scheduleReconnect();
    } else {
      this.setState("closed", { code, explanation: policy.explanation });
    }
  }

  /** Forget the current socket (dead or half-open) and reconnect. */
  drop() {
    const ws = this.ws;
    if (!ws || this.state === "closed") return;
    this.ws = null;
    try {
      ws.close();
    } catch {
      // already closing
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.timer);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.setState("reconnecting", { attempt: this.attempt, delay: jittered });
    this.timer = setTimeout(() => this.open(), jittered);
  }

  /** Skip the backoff wait (the browser came back online, or the person pressed "Try now"). */
  reconnectNow() {
    if (this.state === "reconnecting" && !this.ws) {
      clearTimeout(this.timer);
      this.open();
    }
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, ...extra } }));
  }
}
