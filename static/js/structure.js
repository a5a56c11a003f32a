/**
 * The shape of the meeting on the page (protocol §13): the pause, the round ("now speaking",
 * the queue, raise hand, I'm done, and the facilitator's round controls), the end of the session
 * (its notice, and extend), the lobby before the opening, and stepping out.
 *
 * The server decides all of it and tells everyone; this module shows it and asks. Screen
 * readers hear the turn change (who speaks now, or that it is their turn), never every change
 * of the queue.
 *
 *   client → server: pause {}, unpause {}, extend {minutes}, round {mode, order?, strict?},
 *                    hand {down?}, done {}, next {}, end_round {}, away {on}
 *   server → client: room {locked, slow, paused, ends_at}, ending {at},
 *                    round {active, mode?, strict?, speaker?, queue?}, away {pid, on},
 *                    waiting {opens_at?}; welcome.room has staffed, capacity, opens_at, ends_at,
 *                    paused; welcome.round the round; welcome.members[].away
 */

import { $, announce, el, show } from "./dom.js";
import { at, plain, render, t } from "./i18n.js";

const NOTICE_MS = 5 * 60 * 1000;
const EXTEND_CHOICES = [5, 10, 15, 30];
const TICK_MS = 15000; // how often "in about N minutes" is brought up to date

export class Structure {
  /**
   * @param {{conn: object, state: object, members: object, isFacilitator: () => boolean,
   *          notice: (key: string, params?: object, tone?: string) => void}} hooks
   */
  constructor({ conn, state, members, isFacilitator, notice }) {
    this.conn = conn;
    this.state = state;
    this.members = members;
    this.isFacilitator = isFacilitator;
    this.notice = notice;
    this.round = { active: false };
    this.away = false;
    this.endingShown = false;
    this.timer = null;
    for (const id of ["extend-now", "extend-later"]) {
      $(id).addEventListener("submit", (event) => {
        event.preventDefault();
        this.ask({ t: "extend", minutes: Number($(`${id}-minutes`).value) });
      });
    }
    $("pause-btn").addEventListener("click", () => this.ask({ t: this.state.room?.paused ? "unpause" : "pause" }));
    $("away-btn").addEventListener("click", () => this.ask({ t: "away", on: !this.away }));
    $("round-next").addEventListener("click", () => this.ask({ t: "next" }));
    $("round-end").addEventListener("click", () => this.ask({ t: "end_round" }));
    $("round-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const choice = $("round-mode").value;
      const request = { t: "round", mode: choice === "queue" ? "queue" : "order", strict: $("round-strict-box").checked };
      if (choice === "random") request.order = "random";
      this.ask(request);
    });
  }

  ask(msg) {
    const id = this.conn.request(msg);
    if (id === null) this.notice("fac.offline", {}, "warn");
    else this.state.pending.set(id, { kind: msg.t });
  }

  get me() {
    return this.state.you?.pid ?? null;
  }

  /* ---------- what the server says ---------- */

  welcome(msg) {
    for (const select of [$("extend-now-minutes"), $("extend-later-minutes")]) {
      if (select.options.length) continue; // filled once the page's language is known
      select.replaceChildren(...EXTEND_CHOICES.map((minutes) =>
        render(el("option", { attrs: { value: minutes } }), "ending.minutes", { count: minutes })));
      select.value = "10";
    }
    this.away = Boolean((msg.members ?? []).find((m) => m.pid === msg.you?.pid)?.away);
    this.round = msg.round ?? { active: false };
    this.endingShown = false;
    this.renderAll();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.renderEnding(), TICK_MS);
  }

  /** A `waiting` answer: at a knock room's door, or in the lobby until the opening. */
  waiting(msg) {
    if (typeof msg.opens_at === "number") {
      render($("waiting-heading"), "waiting.lobby_heading");
      render($("waiting-text"), ...at("waiting.lobby_text", "waiting.lobby_text_day", msg.opens_at));
      render($("status-text"), "status.lobby");
    } else {
      render($("waiting-heading"), "waiting.heading");
      render($("waiting-text"), "waiting.text");
    }
  }

  /** A `room` event: `before` is the room as the page knew it. */
  room(before, now) {
    if (Boolean(before.paused) !== Boolean(now.paused)) {
      this.notice(now.paused ? "notice.paused" : "notice.unpaused", {}, now.paused ? "warn" : "info");
    }
    if (before.ends_at !== now.ends_at && typeof now.ends_at === "number" && typeof before.ends_at === "number") {
      this.notice(...at("notice.extended", "notice.extended_day", now.ends_at));
      this.endingShown = false;
    }
    this.renderAll();
  }

  ending(msg) {
    this.endingShown = true;
    const minutes = Math.max(1, Math.round((msg.at - Date.now()) / 60000));
    this.notice("notice.ending", { count: minutes, time: msg.at }, "warn");
    this.renderEnding();
  }

  roundChanged(msg) {
    const before = this.round;
    this.round = msg;
    if (!before.active && msg.active) {
      this.notice(msg.mode === "queue" ? "notice.round_queue" : "notice.round_order");
    } else if (before.active && !msg.active) {
      this.notice("notice.round_ended");
    }
    // Screen readers hear the turn change, not every change of the queue.
    if (msg.active && msg.speaker && msg.speaker !== (before.active ? before.speaker : null)) {
      announce(msg.speaker === this.me ? t("announce.your_turn") : t("announce.turn", { name: this.members.nameOf(msg.speaker) }));
    }
    this.renderRound();
  }

  awayChanged(msg) {
    const member = this.members.setAway(msg.pid, msg.on);
    if (msg.pid === this.me) {
      this.away = msg.on;
      this.renderAway();
    } else if (member) {
      this.notice(msg.on ? "notice.away" : "notice.back", { name: member.name });
    }
  }

  /** Members came or went: the names in the round, and the staffed pause's wording. */
  membersChanged() {
    this.renderPause();
    this.renderRound();
  }

  /** Whether a `closed` now is the end time's (§13), not a facilitator's close. */
  endedOnTime() {
    const endsAt = this.state.room?.ends_at;
    return typeof endsAt === "number" && Date.now() >= endsAt - 5000;
  }

  /* ---------- drawing ---------- */

  renderAll() {
    this.renderPause();
    this.renderEnding();
    this.renderRound();
    this.renderAway();
    this.renderPlan();
    const facilitator = this.isFacilitator();
    for (const node of document.querySelectorAll(".fac-only")) node.classList.toggle("shown", facilitator);
    const paused = Boolean(this.state.room?.paused);
    render($("pause-btn"), paused ? "fac.unpause" : "fac.pause");
    $("pause-btn").setAttribute("aria-pressed", String(paused));
  }

  renderPause() {
    const room = this.state.room ?? {};
    const banner = $("paused-banner");
    show(banner, Boolean(room.paused));
    if (!room.paused) return;
    const staffNear = [...this.members.byPid.values()].some((m) => m.role === "facilitator");
    if (this.isFacilitator()) render(banner, "paused.banner_facilitator");
    else render(banner, staffNear ? "paused.banner" : "paused.banner_staffed");
  }

  renderEnding() {
    const endsAt = this.state.room?.ends_at;
    const timed = typeof endsAt === "number";
    show($("extend-later"), timed && this.isFacilitator());
    const left = timed ? endsAt - Date.now() : Infinity;
    const near = timed && (this.endingShown || left <= NOTICE_MS);
    show($("ending-banner"), near);
    if (!near) return;
    render($("ending-text"), "ending.soon", { time: endsAt, count: Math.max(1, Math.round(left / 60000)) });
  }

  renderRound() {
    const round = this.round;
    const mine = !this.isFacilitator();
    show($("speaking-banner"), Boolean(round.active));
    show($("round-speaker"), Boolean(round.active));
    show($("round-strict"), Boolean(round.active && round.strict));
    show($("round-queue-block"), Boolean(round.active));
    show($("round-running"), Boolean(round.active) && this.isFacilitator());
    if (!round.active) {
      render($("round-status"), "round.none");
      $("round-actions").replaceChildren();
      $("speaking-actions").replaceChildren();
      return;
    }
    const speaking = round.speaker
      ? round.speaker === this.me
        ? ["round.you_speaking", {}]
        : ["round.now_speaking", { name: this.members.nameOf(round.speaker) }]
      : ["round.nobody", {}];
    render($("speaking-text"), ...speaking);
    render($("round-speaker"), ...(round.speaker ? ["round.now_speaking", { name: this.members.nameOf(round.speaker) }] : ["round.nobody", {}]));
    render($("round-status"), round.mode === "queue" ? "round.queue_mode" : "round.order_mode");
    const items = (round.queue ?? []).map((pid) => el("li", { class: "member" }, [
      el("span", { class: "member-name" }, [el("bdi", { text: this.members.nameOf(pid) })]),
    ]));
    const none = round.mode === "queue" ? "round.queue_empty" : "round.last";
    $("round-queue").replaceChildren(...(items.length ? items : [render(el("li", { class: "empty" }), none)]));
    this.renderNote(round, mine);
    $("speaking-actions").replaceChildren(...(mine ? this.actions(round) : []));
    $("round-actions").replaceChildren(...(mine ? this.actions(round) : []));
  }

  renderNote(round, mine) {
    const note = $("speaking-note");
    const place = (round.queue ?? []).indexOf(this.me);
    if (mine && place >= 0) render(note, "round.before_you", { count: place + 1 });
    else if (mine && round.mode === "queue" && round.speaker !== this.me) render(note, "round.raise_hint");
    else if (round.strict && round.speaker !== this.me) render(note, "round.strict_note");
    else plain(note, "");
  }

  /** A participant's buttons: raise or lower a hand (queue rounds), "I'm done" (the speaker). */
  actions(round) {
    const me = this.me;
    const button = (key, msg, cls = "") => render(el("button", {
      class: cls, attrs: { type: "button" }, on: { click: () => this.ask(msg) },
    }), key);
    if (round.speaker === me) return [button("round.done", { t: "done" })];
    if (round.mode !== "queue") return [];
    const raised = (round.queue ?? []).includes(me);
    const hand = button(raised ? "round.lower" : "round.raise", raised ? { t: "hand", down: true } : { t: "hand" }, "secondary");
    hand.setAttribute("aria-pressed", String(raised));
    return [hand];
  }

  renderAway() {
    render($("away-btn"), this.away ? "away.back" : "away.step_out");
    $("away-btn").setAttribute("aria-pressed", String(this.away));
  }

  /** "About this room": the opening, the end, the capacity, staffing. */
  renderPlan() {
    const room = this.state.room ?? {};
    const lines = [];
    if (typeof room.opens_at === "number" && room.opens_at > Date.now()) lines.push(at("about.opens_at", "about.opens_at_day", room.opens_at));
    if (typeof room.ends_at === "number") lines.push(at("about.ends_at", "about.ends_at_day", room.ends_at));
    if (typeof room.capacity === "number") lines.push(["about.capacity", { count: room.capacity }]);
    if (room.staffed === "required") lines.push(["about.staffed", {}]);
    $("about-plan").replaceChildren(...lines.map(([key, params]) => render(el("li"), key, params)));
    show($("about-plan"), lines.length > 0);
  }
}
