/**
 * Who is here: the member list, the "send to" choices of the composer, and who is typing.
 */

import { el } from "./dom.js";
import { attrs, compareNames, formatNumber, plain, render, t } from "./i18n.js";

const TYPING_SHOWN_MS = 5000;

function muteLabel(until) {
  if (until === undefined) return null;
  const tag = el("span", { class: "tag" });
  return until === null ? render(tag, "members.muted") : render(tag, "members.muted_until", { time: until });
}

export class Members {
  /**
   * @param {{list: HTMLElement, count: HTMLElement, to: HTMLSelectElement, typing: HTMLElement}} nodes
   * @param {{me: () => object|null, isFacilitator: () => boolean,
   *          onActions: (member: object) => void, onWhisper: (member: object) => void}} hooks
   */
  constructor(nodes, hooks) {
    this.nodes = nodes;
    this.hooks = hooks;
    this.byPid = new Map();
    this.typing = new Map();
    this.frame = 0; // a render waiting for the next animation frame
  }

  reset(members) {
    this.byPid = new Map(members.map((m) => [m.pid, { ...m }]));
    this.render();
  }

  get(pid) {
    return this.byPid.get(pid) ?? null;
  }

  /** A member's name, or the sentence for someone who has left, as a plain string. */
  nameOf(pid) {
    return this.byPid.get(pid)?.name ?? t("members.someone_left");
  }

  add(member) {
    const known = this.byPid.has(member.pid);
    this.byPid.set(member.pid, { ...this.byPid.get(member.pid), ...member });
    this.renderSoon();
    return !known;
  }

  remove(pid) {
    const member = this.byPid.get(pid) ?? null;
    this.byPid.delete(pid);
    this.stopTyping(pid);
    this.renderSoon();
    return member;
  }

  /** §13 stepping out: "back in a moment" next to the name. */
  setAway(pid, on) {
    const member = this.byPid.get(pid);
    if (!member) return null;
    if (on) member.away = true;
    else delete member.away;
    this.renderSoon();
    return member;
  }

  /** A participant's messages held for review, or not (§14; facilitators see it). */
  setHeld(pid, on) {
    const member = this.byPid.get(pid);
    if (!member) return null;
    member.held = Boolean(on);
    this.renderSoon();
    return member;
  }

  setMuted(pid, until) {
    const member = this.byPid.get(pid);
    if (!member) return null;
    if (until === undefined) delete member.muted_until;
    else member.muted_until = until;
    this.renderSoon();
    return member;
  }

  /**
   * Draw the list at the next frame, once for every change before it. A crowd joining at once
   * (issue 11: 320 bots) would otherwise rebuild the whole list, and lay the page out again,
   * for each arrival, and freeze a facilitator's page for many seconds.
   */
  renderSoon() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const me = this.hooks.me();
    const facilitatorView = this.hooks.isFacilitator();
    const sorted = [...this.byPid.values()].sort((a, b) =>
      (a.role === b.role ? compareNames(a.name, b.name) : a.role === "facilitator" ? -1 : 1));
    this.nodes.count.textContent = formatNumber(sorted.length);
    this.nodes.list.replaceChildren(...sorted.map((m) => this.memberItem(m, me, facilitatorView)));
    this.renderTargets(sorted, me, facilitatorView);
  }

  memberItem(m, me, facilitatorView) {
    const self = me !== null && m.pid === me.pid;
    const name = el("span", { class: "member-name" });
    if (self) render(name, "members.you", { name: m.name });
    else name.append(el("bdi", { text: m.name }));
    const item = el("li", { class: "member" }, [
      name,
      m.role === "facilitator" ? render(el("span", { class: "badge" }), "role.facilitator") : null,
      muteLabel(m.muted_until),
      facilitatorView && m.held ? render(el("span", { class: "tag" }), "safety.held_tag") : null,
      this.hooks.isIgnored?.(m.pid) ? render(el("span", { class: "tag" }), "safety.ignored_tag") : null,
      m.away ? render(el("span", { class: "tag" }), "members.away") : null,
    ]);
    if (self) return item;
    if (!facilitatorView && m.role === "participant" && this.hooks.onIgnore) {
      // Anyone may ignore a participant (§14): never told, kept by the server across resumes.
      const ignored = this.hooks.isIgnored(m.pid);
      const button = el("button", { class: "quiet-btn", attrs: { type: "button", "aria-pressed": String(ignored) }, on: { click: () => this.hooks.onIgnore(m) } });
      item.append(attrs(render(button, ignored ? "safety.unignore" : "safety.ignore"), {
        "aria-label": [ignored ? "safety.unignore_label" : "safety.ignore_label", { name: m.name }],
      }));
    }
    if (facilitatorView && m.role !== "facilitator") {
      const button = el("button", { class: "quiet-btn", attrs: { type: "button" }, on: { click: () => this.hooks.onActions(m) } });
      item.append(attrs(render(button, "members.actions"), { "aria-label": ["members.actions_for", { name: m.name }] }));
    } else if (!facilitatorView && m.role === "facilitator") {
      const button = el("button", { class: "quiet-btn", attrs: { type: "button" }, on: { click: () => this.hooks.onWhisper(m) } });
      item.append(attrs(render(button, "member.whisper"), { "aria-label": ["members.whisper_to", { name: m.name }] }));
    }
    return item;
  }

  /** The composer's "send to" list: only the private lines the contract allows (§5 whisper). */
  renderTargets(sorted, me, facilitatorView) {
    const select = this.nodes.to;
    const previous = select.value;
    const options = [render(el("option", { attrs: { value: "" } }), "composer.to_everyone")];
    if (facilitatorView) {
      options.push(render(el("option", { attrs: { value: "announce" } }), "composer.to_announce"));
      options.push(render(el("option", { attrs: { value: "facilitators" } }), "safety.to_facilitators"));
    }
    for (const m of sorted) {
      if (me !== null && m.pid === me.pid) continue;
      const allowed = facilitatorView ? m.role === "participant" : m.role === "facilitator";
      if (allowed) options.push(render(el("option", { attrs: { value: m.pid } }), "composer.to_private", { name: m.name }));
    }
    select.replaceChildren(...options);
    select.value = options.some((o) => o.value === previous) ? previous : "";
  }

  whisperTo(pid) {
    if (this.frame) this.render(); // the choice may have arrived in this very frame
    this.nodes.to.value = pid;
    this.nodes.to.dispatchEvent(new Event("change"));
  }

  /** Someone is typing: `pid` absent in rooms with anonymous typing. */
  startTyping(pid) {
    const key = pid ?? "?";
    clearTimeout(this.typing.get(key));
    this.typing.set(key, setTimeout(() => this.stopTyping(key), TYPING_SHOWN_MS));
    this.renderTyping();
  }

  stopTyping(pid) {
    if (!this.typing.has(pid)) return;
    clearTimeout(this.typing.get(pid));
    this.typing.delete(pid);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typing.keys()].filter((k) => k !== "?" && this.byPid.has(k)).map((k) => this.nameOf(k));
    const anonymous = this.typing.has("?");
    const node = this.nodes.typing;
    if (names.length === 1 && !anonymous) render(node, "typing.one", { name: names[0] });
    else if (names.length === 2 && !anonymous) render(node, "typing.two", { name: names[0], other: names[1] });
    else if (names.length > 2) render(node, "typing.several");
    else if (anonymous || names.length) render(node, "typing.someone");
    else plain(node, "");
  }
}
