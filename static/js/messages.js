/**
 * The conversation list: messages, whispers and notices, at most MAX_ITEMS in the DOM.
 * Every piece of network text is set with textContent (see dom.el); message text gets
 * dir="auto" so right-to-left writing displays correctly.
 */

import { el, timeEl } from "./dom.js";

const MAX_ITEMS = 300;
const NEAR_BOTTOM_PX = 80;

export class MessageList {
  /**
   * @param {HTMLElement} list the <ol> that holds the conversation (and scrolls)
   * @param {HTMLButtonElement} jump the "new messages below" button
   * @param {{me: () => object|null, isFacilitator: () => boolean, nameOf: (pid: string) => string,
   *          onReport: (msg: object) => void, onDelete: (msg: object) => void}} hooks
   */
  constructor(list, jump, hooks) {
    this.list = list;
    this.jump = jump;
    this.hooks = hooks;
    this.byMid = new Map();
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
    const stick = forceScroll || this.nearBottom();
    this.list.append(item);
    while (this.list.childElementCount > MAX_ITEMS) {
      const first = this.list.firstElementChild;
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

    const head = el("p", { class: "msg-head" }, [
      announcement ? el("span", { class: "msg-kind", text: "Announcement · " }) : null,
      el("span", { class: "msg-name", text: own ? `${msg.name} (you)` : msg.name }),
      facilitator ? el("span", { class: "badge", text: "Facilitator" }) : null,
      timeEl(msg.ts),
    ]);
    const body = el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto" } });
    const actions = el("div", { class: "msg-actions" });
    if (!own) {
      actions.append(el("button", {
        class: "quiet-btn",
        text: "Report",
        attrs: { type: "button", "aria-label": `Report message from ${msg.name}` },
        on: { click: () => this.hooks.onReport(msg) },
      }));
    }
    if (this.hooks.isFacilitator()) {
      actions.append(el("button", {
        class: "quiet-btn danger",
        text: "Delete",
        attrs: { type: "button", "aria-label": `Delete message from ${msg.name}` },
        on: { click: () => this.hooks.onDelete(msg) },
      }));
    }
    if (actions.childElementCount) head.append(actions);
    const item = el("li", {
      class: classes.join(" "),
      attrs: { "data-mid": msg.mid, "data-seq": msg.seq },
    }, [head, body]);
    this.byMid.set(msg.mid, { msg, item });
    this.append(item, own);
  }

  /** Add a private line between a participant and a facilitator. */
  addWhisper(msg) {
    const me = this.hooks.me();
    const fromMe = me !== null && msg.from === me.pid;
    const label = fromMe
      ? `Private · you to ${this.hooks.nameOf(msg.to)}`
      : `Private · ${this.hooks.nameOf(msg.from)} to you`;
    const item = el("li", { class: `msg whisper${fromMe ? " own" : ""}` }, [
      el("p", { class: "msg-head" }, [el("span", { class: "msg-name", text: label }), timeEl(msg.ts)]),
      el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto" } }),
    ]);
    this.append(item, fromMe);
  }

  /** Add a plain-language notice (joins, leaves, mutes, ...). */
  addNotice(text, tone = "info") {
    this.append(el("li", { class: `notice notice-${tone}` }, [el("span", { text }), timeEl(Date.now())]));
  }

  /** Replace a deleted message with a gentle placeholder and forget its text. */
  markDeleted(mid) {
    const entry = this.byMid.get(mid);
    if (!entry) return false;
    entry.item.className = "msg deleted";
    entry.item.replaceChildren(el("p", { class: "msg-text", text: "This message was removed by a facilitator." }));
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
