/**
 * The room page (/r/<room>): reads the link, shows the title and rules, joins, and keeps the
 * conversation state (members, last seq, pending requests). Rendering lives in messages.js and
 * members.js, facilitator tools in facilitator.js, the socket in connection.js.
 */

import { Connection } from "./connection.js";
import { $, announce, el, openDialog, show } from "./dom.js";
import { FacilitatorTools } from "./facilitator.js";
import { Members } from "./members.js";
import { MessageList } from "./messages.js";
import { MAX_TEXT, TYPING_INTERVAL_MS, codePoints } from "./protocol.js";
import { installQuickExit, onQuickExit } from "./quickexit.js";
import { forgetRoom, loadRoom, saveRoom } from "./store.js";
import { describeMute, errorText, statusText } from "./wording.js";

const roomId = decodeURIComponent(location.pathname.split("/")[2] ?? "") ||
  new URLSearchParams(location.search).get("room") || "";

const state = { you: null, room: null, lastSeq: 0, terminalReason: null, pending: new Map() };
const isFacilitator = () => state.you?.role === "facilitator";

/* Read the facilitator key from the fragment, keep it only in sessionStorage, and remove it
 * from the address bar (and so from history) at once. */
function takeKeyFromFragment() {
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (!key) return;
  saveRoom(roomId, { key });
  history.replaceState(null, "", location.pathname + location.search);
}

const conn = new Connection(roomId, () => state.lastSeq);
const messages = new MessageList($("messages"), $("jump"), {
  me: () => state.you,
  isFacilitator,
  nameOf: (pid) => members.nameOf(pid),
  onReport: (msg) => reportMessage(msg),
  onDelete: (msg) => tools.confirmDelete(msg),
});
const members = new Members(
  { list: $("members"), count: $("people-count"), to: $("to"), typing: $("typing") },
  {
    me: () => state.you,
    isFacilitator,
    onActions: (member) => tools.memberActions(member),
    onWhisper: (member) => { members.whisperTo(member.pid); $("composer-text").focus(); },
  },
);
const tools = new FacilitatorTools({ conn, state, messages, members, notice });

function notice(text, tone = "info") {
  messages.addNotice(text, tone);
  announce(text);
}

function setStatus(detail) {
  const line = $("status");
  line.dataset.state = detail.state;
  $("status-text").textContent = statusText(detail, state.terminalReason);
  show($("retry-now"), detail.state === "reconnecting");
  if (detail.state === "closed") ended(state.terminalReason ?? detail.explanation);
}

function ended(explanation) {
  forgetRoom(roomId);
  $("status").dataset.state = "closed";
  $("status-text").textContent = explanation;
  $("ended-heading").textContent = state.you ? "You're no longer connected" : "This room isn't available";
  document.body.classList.add("ended");
  $("composer-text").disabled = true;
  $("send").disabled = true;
  $("help-btn").hidden = true;
  $("ended-text").textContent = explanation;
  show($("ended"));
  show($("join-view"), false);
  show($("waiting-view"), false);
  if (!state.you) show($("chat-view"), false);
  $("ended").focus();
}

/* ---------- joining ---------- */

async function loadRoomInfo() {
  try {
    const response = await fetch(`/api/rooms/${encodeURIComponent(roomId)}`, { cache: "no-store" });
    if (response.status === 404) return { missing: true };
    if (response.ok) return await response.json();
  } catch {
    // Offline or not served: the join itself will tell.
  }
  return null;
}

function showRoomText(info) {
  const title = info?.title || "Support group";
  $("room-title").textContent = title;
  // The tab title stays neutral: browser history records titles, and a room's title can say
  // more about a person than they would want a shared device to show.
  document.title = "Hearth";
  if (info && "locked" in info) {
    $("join-note").textContent = info.locked
      ? "This room is locked right now, so no one new can join. You can try again later."
      : info.admission === "knock" ? "A facilitator lets each person in, so you may wait a moment." : "";
  }
  const rules = info?.rules || "";
  for (const id of ["join-rules", "about-rules"]) $(id).textContent = rules || "This room has no written rules.";
  show($("agree-row"), Boolean(rules));
  $("agree").required = Boolean(rules);
}

function showJoinError(message) {
  const box = $("join-error");
  box.textContent = errorText(message);
  show(box);
  if (message.code === "rules_not_accepted") {
    show($("agree-row"));
    $("agree").required = true;
    $("agree").focus();
  } else {
    $("name").focus();
  }
  $("join-btn").disabled = false;
}

function startJoin(event) {
  event.preventDefault();
  const name = $("name").value.trim();
  const agree = $("agree").checked;
  if (!$("agree-row").hidden && !agree) {
    showJoinError({ code: "rules_not_accepted" });
    return;
  }
  if (agree) saveRoom(roomId, { agree: true });
  show($("join-error"), false);
  $("join-btn").disabled = true;
  const params = { name: name || undefined, agree };
  conn.rejoin(params);
}

/* ---------- server messages ---------- */

const handlers = {
  welcome(msg) {
    const previous = state.you;
    state.you = msg.you;
    state.room = msg.room;
    document.body.classList.toggle("is-facilitator", isFacilitator());
    members.reset(msg.members ?? []);
    showRoomText(msg.room);
    $("retention").textContent = retentionText(msg.room?.retention);
    show($("join-view"), false);
    show($("waiting-view"), false);
    show($("chat-view"));
    for (const m of msg.history ?? []) handlers.msg(m, true);
    state.lastSeq = Math.max(state.lastSeq, Number(msg.seq) || 0);
    tools.enable(msg);
    $("help-btn").hidden = isFacilitator();
    if (!previous) {
      notice(`Welcome. You are ${msg.you.name}${isFacilitator() ? ", facilitating this room" : ""}.`);
      $("composer-text").focus();
    } else if (previous.pid !== msg.you.pid) {
      notice(`You're back as ${msg.you.name}. Messages from while you were away may be missing.`, "warn");
    } else {
      notice("Reconnected.");
    }
    messages.scrollToEnd();
  },
  waiting() {
    show($("join-view"), false);
    show($("waiting-view"));
    $("waiting-view").focus();
  },
  denied() {
    state.terminalReason = "A facilitator wasn't able to let you in this time.";
  },
  joined(msg) {
    if (members.add(msg.member)) notice(`${msg.member.name} joined.`);
  },
  left(msg) {
    const member = members.remove(msg.pid);
    if (!member) return;
    notice(msg.removed ? `${member.name} was asked to leave by a facilitator.` : `${member.name} left.`);
  },
  msg(msg, fromHistory = false) {
    if (messages.has(msg.mid) || (typeof msg.seq === "number" && msg.seq <= state.lastSeq)) return;
    if (typeof msg.seq === "number") state.lastSeq = Math.max(state.lastSeq, msg.seq);
    messages.addMessage(msg);
    members.stopTyping(msg.pid);
    if (!fromHistory && msg.pid !== state.you?.pid) {
      announce(`${msg.kind === "announce" ? "Announcement from " : ""}${msg.name}: ${msg.text.slice(0, 200)}`);
    }
  },
  whisper(msg) {
    messages.addWhisper(msg);
    if (msg.from !== state.you?.pid) announce(`Private message from ${members.nameOf(msg.from)}: ${msg.text.slice(0, 200)}`);
  },
  typing(msg) {
    if (msg.pid !== state.you?.pid) members.startTyping(msg.pid);
  },
  muted(msg) {
    const member = members.setMuted(msg.pid, msg.until);
    if (!member) return;
    const self = msg.pid === state.you?.pid;
    notice(describeMute(self ? "You have" : `${member.name} has`, msg.until), self ? "warn" : "info");
  },
  unmuted(msg) {
    const member = members.setMuted(msg.pid, undefined);
    if (member) notice(msg.pid === state.you?.pid ? "You can send messages again." : `${member.name} can send messages again.`);
  },
  removed(msg) {
    state.terminalReason = "A facilitator has removed you from this room." +
      (msg.reason ? ` The reason given: “${msg.reason}”` : "");
  },
  deleted(msg) {
    messages.markDeleted(msg.mid);
  },
  room(msg) {
    const before = state.room ?? {};
    if (before.locked !== msg.locked) {
      notice(msg.locked ? "The room is now locked: no one new can join." : "The room is open to new people again.");
    }
    if (before.slow !== msg.slow) {
      notice(msg.slow ? `Slow mode is on: one message every ${msg.slow} seconds each.` : "Slow mode is off.");
    }
    state.room = { ...before, locked: msg.locked, slow: msg.slow };
    tools.roomChanged();
  },
  closed() {
    state.terminalReason = "The facilitator has closed this session. Thank you for being here.";
  },
  resources(msg) {
    state.pending.delete(msg.id);
    showResources(msg);
  },
  ack(msg) {
    const request = state.pending.get(msg.id);
    state.pending.delete(msg.id);
    if (request?.kind === "report") notice("Thank you. The facilitators have been told; only they can see reports.");
  },
  error(msg) {
    const request = state.pending.get(msg.id);
    state.pending.delete(msg.id);
    if (request?.text && !$("composer-text").value) $("composer-text").value = request.text;
    if (msg.code === "bad_resume") return;
    if (!state.you && msg.code === "forbidden" && loadRoom(roomId).key) {
      state.terminalReason = "This facilitator link isn't valid for this room. Ask for a new one, " +
        "or join with the participants' link.";
    }
    const text = errorText(msg);
    $("composer-note").textContent = text;
    announce(text);
  },
};

conn.addEventListener("message", (event) => {
  const msg = event.detail;
  if (tools.handle(msg)) return;
  handlers[msg.t]?.(msg);
});
conn.addEventListener("status", (event) => setStatus(event.detail));
conn.addEventListener("joinerror", (event) => showJoinError(event.detail));

function retentionText(retention) {
  if (!retention) return "";
  const minutes = Math.round((retention.seconds ?? 0) / 60);
  return `The server keeps at most the last ${retention.messages} messages for up to ${minutes} minutes, ` +
    "in memory only, never on disk. This page keeps nothing after you close the tab.";
}

/* ---------- composing ---------- */

let lastTypingSent = 0;

function send(event) {
  event.preventDefault();
  const box = $("composer-text");
  const text = box.value.trim();
  if (!text) return;
  if (codePoints(text) > MAX_TEXT) {
    $("composer-note").textContent = `That message is too long: please keep it under ${MAX_TEXT} characters.`;
    return;
  }
  const to = $("to").value;
  const msg = to === "" ? { t: "say", text } : to === "announce" ? { t: "announce", text } : { t: "whisper", to, text };
  const id = conn.request(msg);
  if (id === null) {
    $("composer-note").textContent = "Not connected right now. Your message is still here; send it again once reconnected.";
    return;
  }
  state.pending.set(id, { kind: msg.t, text });
  box.value = "";
  $("composer-note").textContent = "";
  lastTypingSent = 0;
}

function typed() {
  const now = Date.now();
  if ($("composer-text").value && $("to").value === "" && now - lastTypingSent >= TYPING_INTERVAL_MS) {
    lastTypingSent = now;
    conn.send({ t: "typing" });
  }
}

async function reportMessage(msg) {
  const dialog = $("report-dialog");
  $("report-quote").textContent = `${msg.name}: ${msg.text}`;
  $("report-reason").value = "";
  if (await openDialog(dialog) !== "send") return;
  const reason = $("report-reason").value.trim();
  const id = conn.request(reason ? { t: "report", mid: msg.mid, reason } : { t: "report", mid: msg.mid });
  if (id !== null) state.pending.set(id, { kind: "report" });
}

function showResources(msg) {
  $("resources-text").textContent = msg.text || "";
  const links = (msg.links ?? []).filter((l) => /^(https?:|tel:)/i.test(String(l.url)));
  $("resources-links").replaceChildren(...links.map((l) => el("li", {}, [
    el("a", { text: l.title || l.url, attrs: { href: l.url, target: "_blank", rel: "noopener noreferrer" } }),
  ])));
  if (!$("resources-dialog").open) openDialog($("resources-dialog"));
}

function askForHelp() {
  const id = conn.request({ t: "help" });
  if (id !== null) state.pending.set(id, { kind: "help" });
  notice("You asked for help. A facilitator has been told and may message you privately.", "warn");
}

/* ---------- start ---------- */

async function main() {
  installQuickExit($("exit-btn"));
  onQuickExit(() => { conn.leave(); conn.abandon(); });
  if (!roomId) {
    ended("This link doesn't point to a room. Ask the person who invited you for the link again.");
    return;
  }
  takeKeyFromFragment();
  $("join-form").addEventListener("submit", startJoin);
  $("composer").addEventListener("submit", send);
  $("composer-text").addEventListener("input", typed);
  $("composer-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
  $("help-btn").addEventListener("click", askForHelp);
  $("retry-now").addEventListener("click", () => conn.reconnectNow());
  const stored = loadRoom(roomId);
  show($("facilitator-note"), Boolean(stored.key));
  const info = await loadRoomInfo();
  if (info?.missing) {
    ended("This room doesn't exist any more. It may have ended or the link may be wrong.");
    return;
  }
  showRoomText(info);
  if (stored.resume) {
    conn.start({});
  } else {
    show($("join-view"));
    $("name").focus();
  }
}

main();
