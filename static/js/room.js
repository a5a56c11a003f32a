/**
 * The room page (/r/<room>): reads the link, shows the title and rules, joins, and keeps the
 * conversation state (members, last seq, pending requests). Rendering lives in messages.js and
 * members.js, facilitator tools in facilitator.js, the socket in connection.js.
 */

import { Connection } from "./connection.js";
import { $, announce, el, openDialog, show } from "./dom.js";
import { FacilitatorTools } from "./facilitator.js";
import {
  chosenLanguage, currentLanguage, installLanguageSwitch, languages, plain, render, t, useLanguage,
} from "./i18n.js";
import { Members } from "./members.js";
import { SafetyTools } from "./safety.js";
import { MessageList } from "./messages.js";
import { MAX_TEXT, TYPING_INTERVAL_MS, codePoints } from "./protocol.js";
import { installQuickExit, onQuickExit } from "./quickexit.js";
import { forgetRoom, loadRoom, saveRoom } from "./store.js";
import { Structure } from "./structure.js";
import { Tabs } from "./tabs.js";
import { describeMute, errorText, statusText } from "./wording.js";

const roomId = decodeURIComponent(location.pathname.split("/")[2] ?? "") ||
  new URLSearchParams(location.search).get("room") || "";

// terminalReason: the sentence ({key, params}) a terminal close will show.
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
  onContentWarning: (msg) => safety.editContentWarning(msg),
});
const members = new Members(
  { list: $("members"), count: $("people-count"), to: $("to"), typing: $("typing") },
  {
    me: () => state.you,
    isFacilitator,
    onActions: (member) => tools.memberActions(member),
    onWhisper: (member) => { members.whisperTo(member.pid); $("composer-text").focus(); },
    onIgnore: (member) => safety.toggleIgnore(member),
    isIgnored: (pid) => safety.isIgnored(pid),
  },
);
const tools = new FacilitatorTools({ conn, state, messages, members, notice });
const safety = new SafetyTools({
  conn, state, messages, members, notice, composer: { resend: (text, extra) => say(text, extra) },
});
tools.safety = safety;
const structure = new Structure({ conn, state, members, isFacilitator, notice }); // §13
const tabs = new Tabs($("tabbar"));

/** Say something in the conversation and to screen readers: a sentence key and its params. */
function notice(key, params = {}, tone = "info") {
  messages.addNotice(key, params, tone);
  announce(t(key, params));
}

function setStatus(detail) {
  const line = $("status");
  line.dataset.state = detail.state;
  const sentence = statusText(detail, state.terminalReason);
  render($("status-text"), sentence.key, sentence.params);
  show($("retry-now"), detail.state === "reconnecting");
  if (detail.state === "closed") ended(state.terminalReason ?? detail.explanation);
}

/** Stop for good and say why: `explanation` is a sentence, {key, params}. */
function ended(explanation) {
  forgetRoom(roomId);
  $("status").dataset.state = "closed";
  render($("status-text"), explanation.key, explanation.params);
  render($("ended-heading"), state.you ? "ended.heading" : "ended.heading_unavailable");
  document.body.classList.add("ended");
  $("composer-text").disabled = true;
  $("send").disabled = true;
  $("help-btn").hidden = true;
  render($("ended-text"), explanation.key, explanation.params);
  show($("ended"));
  show($("join-view"), false);
  show($("waiting-view"), false);
  if (!state.you) show($("chat-view"), false);
  tabs.disable();
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
  // The title keeps its own direction in a <bdi>, and its place follows the page's.
  if (info?.title) plain($("room-title"), "").append(el("bdi", { text: info.title }));
  else render($("room-title"), "room.default_title");
  // The tab title stays neutral: browser history records titles, and a room's title can say
  // more about a person than they would want a shared device to show.
  document.title = "Hearth";
  if (info && "locked" in info) {
    const note = info.locked ? "join.locked_note" : info.admission === "knock" ? "join.knock_note" : null;
    if (note) render($("join-note"), note);
    else plain($("join-note"), "");
  }
  const rules = info?.rules || "";
  for (const id of ["join-rules", "about-rules"]) {
    if (rules) plain($(id), rules);
    else render($(id), "room.no_rules");
  }
  show($("agree-row"), Boolean(rules));
  $("agree").required = Boolean(rules);
}

function showJoinError(message) {
  const box = $("join-error");
  const sentence = errorText(message);
  render(box, sentence.key, sentence.params);
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
    showRetention(msg.room?.retention);
    if (!chosenLanguage() && msg.room?.lang && msg.room.lang !== currentLanguage().tag) useLanguage(msg.room.lang);
    show($("join-view"), false);
    show($("waiting-view"), false);
    show($("chat-view"));
    for (const m of msg.history ?? []) handlers.msg(m, true);
    state.lastSeq = Math.max(state.lastSeq, Number(msg.seq) || 0);
    tools.enable(msg);
    safety.enable(msg);
    structure.welcome(msg);
    tabs.enable(isFacilitator());
    // §13: help flares raised before this facilitator came (one alert per person, with Seen).
    if (isFacilitator()) for (const flare of msg.flares ?? []) safety.helpAlert(flare);
    $("help-btn").hidden = isFacilitator();
    if (!previous) {
      notice(isFacilitator() ? "notice.welcome_facilitator" : "notice.welcome", { name: msg.you.name });
      $("composer-text").focus();
    } else if (previous.pid !== msg.you.pid) {
      notice("notice.back_as", { name: msg.you.name }, "warn");
    } else {
      notice("notice.reconnected");
    }
    messages.scrollToEnd();
  },
  waiting(msg) {
    show($("join-view"), false);
    show($("waiting-view"));
    structure.waiting(msg);
    $("waiting-view").focus();
  },
  denied() {
    state.terminalReason = { key: "ended.denied" };
  },
  joined(msg) {
    if (members.add(msg.member)) presence("joined", msg.member.name);
    structure.membersChanged();
  },
  left(msg) {
    const member = members.remove(msg.pid);
    if (!member) return;
    if (msg.removed) notice("notice.removed", { name: member.name });
    else presence("left", member.name);
    structure.membersChanged();
  },
  msg(msg, fromHistory = false) {
    if (messages.has(msg.mid) || (typeof msg.seq === "number" && msg.seq <= state.lastSeq)) return;
    if (typeof msg.seq === "number") state.lastSeq = Math.max(state.lastSeq, msg.seq);
    messages.addMessage(msg);
    members.stopTyping(msg.pid);
    if (!fromHistory && msg.pid !== state.you?.pid) {
      const key = msg.kind === "announce" ? "announce.announcement" : "announce.message";
      announce(t(key, { name: msg.name, text: msg.text.slice(0, 200) }));
    }
  },
  whisper(msg) {
    messages.addWhisper(msg);
    if (msg.from !== state.you?.pid) {
      announce(t("announce.whisper", { name: members.nameOf(msg.from), text: msg.text.slice(0, 200) }));
    }
  },
  typing(msg) {
    if (msg.pid !== state.you?.pid) members.startTyping(msg.pid);
  },
  muted(msg) {
    const member = members.setMuted(msg.pid, msg.until);
    if (!member) return;
    const self = msg.pid === state.you?.pid;
    const sentence = describeMute(member.name, self, msg.until);
    notice(sentence.key, sentence.params, self ? "warn" : "info");
  },
  unmuted(msg) {
    const member = members.setMuted(msg.pid, undefined);
    if (member) {
      notice(msg.pid === state.you?.pid ? "notice.unmuted_you" : "notice.unmuted_other", { name: member.name });
    }
  },
  removed(msg) {
    state.terminalReason = msg.reason
      ? { key: "ended.removed_reason", params: { reason: msg.reason } }
      : { key: "ended.removed" };
  },
  deleted(msg) {
    messages.markDeleted(msg.mid);
  },
  room(msg) {
    const before = state.room ?? {};
    if (before.locked !== msg.locked) {
      notice(msg.locked ? "notice.locked" : "notice.unlocked");
    }
    if (before.slow !== msg.slow) {
      notice(msg.slow ? "notice.slow_on" : "notice.slow_off", { count: msg.slow });
    }
    state.room = {
      ...before, locked: msg.locked, slow: msg.slow, review: msg.review, contact: msg.contact,
      paused: msg.paused, ends_at: msg.ends_at,
    };
    tools.roomChanged();
    safety.roomChanged(state.room);
    structure.room(before, state.room);
  },
  // §13: the round, the end's notice, stepping out.
  round(msg) {
    structure.roundChanged(msg);
  },
  ending(msg) {
    structure.ending(msg);
  },
  away(msg) {
    structure.awayChanged(msg);
  },
  closed() {
    state.terminalReason = { key: structure.endedOnTime() ? "ended.on_time" : "close.room_closed" };
  },
  resources(msg) {
    state.pending.delete(msg.id);
    showResources(msg);
  },
  ack(msg) {
    const request = state.pending.get(msg.id);
    state.pending.delete(msg.id);
    if (request?.kind === "report") notice("notice.report_sent");
    safety.onAck(request, msg);
  },
  error(msg) {
    const request = state.pending.get(msg.id);
    state.pending.delete(msg.id);
    if (request?.kind === "say" && (msg.code === "check_first" || msg.code === "not_allowed")) {
      safety.onError(request, msg);
      return;
    }
    if (request?.kind === "review" && msg.code === "not_found") safety.reviewGone(request);
    if (request?.kind === "help" && msg.code === "rate_limited") {
      // A help flare shares the member's message allowance: after a quick run of messages the
      // server asks for a moment. The flare is not dropped: it goes again once allowed.
      setTimeout(sendHelp, Math.min(Math.max(Number(msg.retry_after) || 0, 100), 60_000));
      return;
    }
    if (request?.text && !$("composer-text").value) $("composer-text").value = request.text;
    if (msg.code === "bad_resume") return;
    if (!state.you && msg.code === "forbidden" && loadRoom(roomId).key) {
      state.terminalReason = { key: "ended.bad_key" };
    }
    const sentence = errorText(msg);
    render($("composer-note"), sentence.key, sentence.params);
    announce(t(sentence.key, sentence.params));
  },
};

conn.addEventListener("message", (event) => {
  const msg = event.detail;
  if (safety.handle(msg)) return;
  if (tools.handle(msg)) return;
  handlers[msg.t]?.(msg);
});
conn.addEventListener("status", (event) => setStatus(event.detail));
conn.addEventListener("joinerror", (event) => showJoinError(event.detail));

function showRetention(retention) {
  if (!retention) return;
  const minutes = Math.round((retention.seconds ?? 0) / 60);
  render($("retention"), "retention.text", {
    messages: { key: "retention.messages", params: { count: retention.messages } },
    minutes: { key: "retention.minutes", params: { count: minutes } },
  });
}

/* ---------- composing ---------- */

let lastTypingSent = 0;

function send(event) {
  event.preventDefault();
  const box = $("composer-text");
  const text = box.value.trim();
  if (!text) return;
  if (codePoints(text) > MAX_TEXT) {
    render($("composer-note"), "composer.too_long", { count: MAX_TEXT });
    return;
  }
  const to = $("to").value;
  if (to === "") {
    if (say(text, safety.sayFields())) {
      box.value = "";
      safety.clearComposer();
    }
    return;
  }
  const msg = to === "announce" ? { t: "announce", text } : { t: "whisper", to, text };
  const id = conn.request(msg);
  if (id === null) {
    render($("composer-note"), "composer.offline");
    return;
  }
  state.pending.set(id, { kind: msg.t, text });
  box.value = "";
  plain($("composer-note"), "");
  lastTypingSent = 0;
}

/** Send a room message; `extra` holds cw and confirm (§14). False when not connected. */
function say(text, extra = {}) {
  const id = conn.request({ t: "say", text, ...extra });
  if (id === null) {
    render($("composer-note"), "composer.offline");
    return false;
  }
  state.pending.set(id, { kind: "say", text, extra });
  plain($("composer-note"), "");
  lastTypingSent = 0;
  return true;
}

/** Joins, leaves and knocks coalesce into one notice (issue 11, item 12). */
function presence(kind, name) {
  messages.addPresence(kind, name);
  announce(t({ joined: "notice.joined", left: "notice.left", knocking: "notice.knock" }[kind], { name }));
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
  render($("report-quote"), "msg.quote", { name: msg.name, text: msg.text });
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
    el("a", { text: l.title || l.url, attrs: { href: l.url, target: "_blank", rel: "noopener noreferrer", dir: "auto" } }),
  ])));
  if (!$("resources-dialog").open) openDialog($("resources-dialog"));
}

function sendHelp() {
  const id = conn.request({ t: "help" });
  if (id !== null) state.pending.set(id, { kind: "help" });
}

function askForHelp() {
  sendHelp();
  notice("notice.help_asked", {}, "warn");
}

/* ---------- start ---------- */

/** After a language switch: what is drawn from state rather than from sentences, again. */
function relocalized() {
  members.render();
  tools.roomChanged();
  structure.renderAll();
}

async function main() {
  installQuickExit($("exit-btn"));
  onQuickExit(() => { conn.leave(); conn.abandon(); });
  if (!roomId) {
    await useLanguage(chosenLanguage() ?? (await languages()).default);
    installLanguageSwitch($("lang-select"), relocalized);
    ended({ key: "ended.no_room_link" });
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
  // §15: the room's language, unless this person chose another for themselves.
  await useLanguage(chosenLanguage() ?? info?.lang ?? (await languages()).default);
  installLanguageSwitch($("lang-select"), relocalized);
  if (info?.missing) {
    ended({ key: "close.not_found" });
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
