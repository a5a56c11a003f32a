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
    const body = el("p", { class: "msg-text", text: msg.text, attrs: { dir: "auto" } });
    const actions = el("div", { class: "msg-actions" });
    if (!own) {
      const report = el("button", { class: "quiet-btn", attrs: { type: "button" }, on: { click: () => this.hooks.onReport(msg) } });
      actions.append(attrs(render(report, "msg.report"), { "aria-label": ["msg.report_label", { name: msg.name }] }));
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

  /** Add a private line between a participant and a facilitator. */
  addWhisper(msg) {
    const me = this.hooks.me();
    const fromMe = me !== null && msg.from === me.pid;
    const label = fromMe
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
