/**
 * The conversation list: messages, whispers and notices, at most MAX_ITEMS in the DOM.
 * Every piece of network text is set with textContent (see dom.el) or i18n.render. Message
 * text gets dir="auto" and names a <bdi>, so that each keeps its own direction whatever the
 * page's: right-to-left writing in an English room and English in an Arabic room both display
 * in the right order.
 */

import { el } from "./dom.js";
import { attrs, render, timeEl } from "./i18n.js";

const MAX_ITEMS = 300;
const PRESENCE_NAMED = 3; // joins, leaves and knocks of a run named one by one; then counted
const NEAR_BOTTOM_PX = 80;

export class MessageList {
  /**
   * @param {HTMLElement} list the <ol> that holds the conversation (and scrolls)
   * @param {HTMLButtonElement} jump the "new messages below" button
   * @param {{me: () => object|null, isFacilitator: () => boolean, nameOf: (pid: string) => string,
   *          onReport: (msg: object) => void, onDelete: (msg: object) => void,
   *          onContentWarning: (msg: object) => void}} hooks
   */
  constructor(list, jump, hooks) {
    this.list = list;
    this.jump = jump;
    this.hooks = hooks;
    this.byMid = new Map();
    this.run = null; // the presence notices since the last other item
    list.addEventListener("scroll", () => {
      if (this.nearBottom()) this.jump.hidden = true;
    });
    jump.addEventListener("click", () => this.scrollToEnd());
  }

  has(mid) {
    return this.byMid.has(mid);
  }

  get(mid) {
    return this.byMid.get(mid)?.msg ?? null;
  }

  nearBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.list;
    return scrollHeight - scrollTop - clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
    this.jump.hidden = true;
  }

  append(item, forceScroll = false) {
    if (!item.classList.contains("presence")) this.run = null;
    const stick = forceScroll || this.nearBottom();
    this.list.append(item);
    while (this.list.childElementCount > MAX_ITEMS) {
      // Notices go first: what people said stays as long as anything does.
      const first = this.list.querySelector(":scope > .notice") ?? this.list.firstElementChild;
      if (first.dataset.mid) this.byMid.delete(first.dataset.mid);
      first.remove();
    }
    if (stick) this.scrollToEnd();
    else this.jump.hidden = false;
  }

  /** Add a room message (`msg`, including announcements). */
  addMessage(msg) {
    const me = this.hooks.me();
    const own = me !== null && msg.pid === me.pid;
    const facilitator = msg.role === "facilitator";
    const announcement = msg.kind === "announce";
    const classes = ["msg"];
    if (own) classes.push("own");
    if (facilitator) classes.push("from-facilitator");
    if (announcement) classes.push("announce");

    const name = el("span", { class: "msg-name" });
    if (own) render(name, "members.you", { name: msg.name });
    else name.append(el("bdi", { text: msg.name }));
    const head = el("p", { class: "msg-head" }, [
      announcement ? render(el("span", { class: "msg-kind" }), "msg.announcement") : null,
      announcement ? el("span", { class: "msg-kind", text: "·", attrs: { "aria-hidden": "true" } }) : null,
      name,
      facilitator ? render(el("span", { class: "badge" }), "role.facilitator") : null,
      timeEl(msg.ts),
    ]);
    const body = msg.cw ? this.collapsed(msg) : el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto" } });
    const actions = el("div", { class: "msg-actions" });
    if (!own) {
      const report = el("button", { class: "quiet-btn", attrs: { type: "button" }, on: { click: () => this.hooks.onReport(msg) } });
      actions.append(attrs(render(report, "msg.report"), { "aria-label": ["msg.report_label", { name: msg.name }] }));
    }
    if (this.hooks.isFacilitator() && !announcement) {
      // §14: a facilitator may add, change or remove any message's content warning.
      const warn = el("button", { class: "quiet-btn", attrs: { type: "button" }, on: { click: () => this.hooks.onContentWarning(this.get(msg.mid) ?? msg) } });
      actions.append(attrs(render(warn, "safety.cw_edit"), { "aria-label": ["safety.cw_edit_label", { name: msg.name }] }));
    }
    if (this.hooks.isFacilitator()) {
      const remove = el("button", { class: "quiet-btn danger", attrs: { type: "button" }, on: { click: () => this.hooks.onDelete(msg) } });
      actions.append(attrs(render(remove, "msg.delete"), { "aria-label": ["msg.delete_label", { name: msg.name }] }));
    }
    if (actions.childElementCount) head.append(actions);
    const item = el("li", {
      class: classes.join(" "),
      attrs: { "data-mid": msg.mid, "data-seq": msg.seq },
    }, [head, body]);
    this.byMid.set(msg.mid, { msg, item });
    this.append(item, own);
  }

  /** A message behind its content warning (§14): the warning shows, the text opens on a tap. */
  collapsed(msg) {
    const text = el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto", id: `cw-${msg.mid}` } });
    text.hidden = true;
    const toggle = el("button", {
      class: "quiet-btn cw-toggle",
      attrs: { type: "button", "aria-expanded": "false", "aria-controls": `cw-${msg.mid}` },
    });
    render(toggle, "safety.cw_open");
    toggle.addEventListener("click", () => {
      text.hidden = !text.hidden;
      toggle.setAttribute("aria-expanded", String(!text.hidden));
      render(toggle, text.hidden ? "safety.cw_open" : "safety.cw_close");
    });
    return el("div", { class: "cw" }, [
      el("p", { class: "cw-label" }, [render(el("span"), "safety.cw_shown", { cw: msg.cw }), " ", toggle]),
      text,
    ]);
  }

  /** A content warning set or changed by a facilitator (§14 `cw`). */
  setContentWarning(mid, cw) {
    const entry = this.byMid.get(mid);
    if (!entry) return;
    const msg = { ...entry.msg, cw: cw || undefined };
    entry.msg = msg;
    const old = entry.item.querySelector(".cw, .msg-text");
    old?.replaceWith(cw ? this.collapsed(msg) : el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto" } }));
  }

  /** Mark a message that a screening flagged (facilitators only; no text travels with it). */
  markFlagged(mid) {
    const entry = this.byMid.get(mid);
    if (!entry || entry.item.querySelector(".flag")) return false;
    entry.item.querySelector(".msg-head")?.append(render(el("span", { class: "tag flag" }), "safety.flag"));
    return true;
  }

  /** Add a private line between a participant and a facilitator. */
  addWhisper(msg) {
    const me = this.hooks.me();
    const fromMe = me !== null && msg.from === me.pid;
    const team = msg.to === "facilitators";  // the facilitators' backchannel (§14)
    const label = team
      ? render(el("span", { class: "msg-name" }), "safety.team_whisper", { name: this.hooks.nameOf(msg.from) })
      : fromMe
        ? render(el("span", { class: "msg-name" }), "msg.whisper_to", { name: this.hooks.nameOf(msg.to) })
        : render(el("span", { class: "msg-name" }), "msg.whisper_from", { name: this.hooks.nameOf(msg.from) });
    const item = el("li", { class: `msg whisper${fromMe ? " own" : ""}` }, [
      el("p", { class: "msg-head" }, [label, timeEl(msg.ts)]),
      el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto" } }),
    ]);
    this.append(item, fromMe);
  }

  /** Add a plain-language notice (joins, leaves, mutes, ...): a sentence key and params. */
  addNotice(key, params = {}, tone = "info") {
    this.append(el("li", { class: `notice notice-${tone}` }, [render(el("span"), key, params), timeEl(Date.now())]));
  }

  /**
   * Arrivals, departures and knocks, coalesced (issue 11, item 12): the first few of a run
   * (nothing said in between) are named one by one; the rest of the run update one notice in
   * place ("12 people joined."), so a crowd at the door never pushes what was said out of view.
   * `kind` is "joined", "left" or "knocking".
   */
  addPresence(kind, name) {
    const single = { joined: "notice.joined", left: "notice.left", knocking: "notice.knock" }[kind];
    const run = this.run ?? { named: 0, counter: null };
    if (run.named < PRESENCE_NAMED) {
      run.named += 1;
      this.append(el("li", { class: "notice notice-info presence" }, [render(el("span"), single, { name }), timeEl(Date.now())]));
      this.run = run;
      return;
    }
    if (!run.counter) {
      run.counter = { item: el("li", { class: "notice notice-info presence" }), counts: { joined: 0, left: 0, knocking: 0 } };
      this.append(run.counter.item);
      this.run = run;
    }
    const counts = run.counter.counts;
    counts[kind] += 1;
    const many = { joined: "notice.people_joined", left: "notice.people_left", knocking: "notice.people_knocking" };
    const parts = Object.entries(counts).filter(([, n]) => n > 0)
      .flatMap(([which, n]) => [render(el("span"), many[which], { count: n }), " "]);
    run.counter.item.replaceChildren(...parts, timeEl(Date.now()));
    if (this.nearBottom()) this.scrollToEnd();
  }

  /** Replace a deleted message with a gentle placeholder and forget its text. */
  markDeleted(mid) {
    const entry = this.byMid.get(mid);
    if (!entry) return false;
    entry.item.className = "msg deleted";
    entry.item.replaceChildren(render(el("p", { class: "msg-text" }), "msg.deleted"));
    this.byMid.delete(mid);
    return true;
  }

  /** Scroll to a message and highlight it briefly (from the reports inbox). */
  focusMessage(mid) {
    const entry = this.byMid.get(mid);
    if (!entry) return false;
    entry.item.classList.add("highlight");
    entry.item.setAttribute("tabindex", "-1");
    entry.item.focus();
    entry.item.scrollIntoView({ block: "center" });
    setTimeout(() => entry.item.classList.remove("highlight"), 2000);
    return true;
  }
}
