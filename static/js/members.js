/**
 * Who is here: the member list, the "send to" choices of the composer, and who is typing.
 */

import { el } from "./dom.js";

const TYPING_SHOWN_MS = 5000;

function muteLabel(until) {
  if (until === undefined) return null;
  if (until === null) return "muted";
  return `muted until ${new Date(until).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
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
  }

  reset(members) {
    this.byPid = new Map(members.map((m) => [m.pid, { ...m }]));
    this.render();
  }

  get(pid) {
    return this.byPid.get(pid) ?? null;
  }

  nameOf(pid) {
    return this.byPid.get(pid)?.name ?? "someone who has left";
  }

  add(member) {
    const known = this.byPid.has(member.pid);
    this.byPid.set(member.pid, { ...this.byPid.get(member.pid), ...member });
    this.render();
    return !known;
  }

  remove(pid) {
    const member = this.byPid.get(pid) ?? null;
    this.byPid.delete(pid);
    this.stopTyping(pid);
    this.render();
    return member;
  }

  setMuted(pid, until) {
    const member = this.byPid.get(pid);
    if (!member) return null;
    if (until === undefined) delete member.muted_until;
    else member.muted_until = until;
    this.render();
    return member;
  }

  render() {
    const me = this.hooks.me();
    const facilitatorView = this.hooks.isFacilitator();
    const sorted = [...this.byPid.values()].sort((a, b) =>
      (a.role === b.role ? a.name.localeCompare(b.name) : a.role === "facilitator" ? -1 : 1));
    this.nodes.count.textContent = String(sorted.length);
    this.nodes.list.replaceChildren(...sorted.map((m) => this.memberItem(m, me, facilitatorView)));
    this.renderTargets(sorted, me, facilitatorView);
  }

  memberItem(m, me, facilitatorView) {
    const self = me !== null && m.pid === me.pid;
    const muted = muteLabel(m.muted_until);
    const item = el("li", { class: "member" }, [
      el("span", { class: "member-name", text: self ? `${m.name} (you)` : m.name, attrs: { dir: "auto" } }),
      m.role === "facilitator" ? el("span", { class: "badge", text: "Facilitator" }) : null,
      muted ? el("span", { class: "tag", text: muted }) : null,
    ]);
    if (self) return item;
    if (facilitatorView && m.role !== "facilitator") {
      item.append(el("button", {
        class: "quiet-btn", text: "Actions",
        attrs: { type: "button", "aria-label": `Actions for ${m.name}` },
        on: { click: () => this.hooks.onActions(m) },
      }));
    } else if (!facilitatorView && m.role === "facilitator") {
      item.append(el("button", {
        class: "quiet-btn", text: "Message privately",
        attrs: { type: "button", "aria-label": `Message privately: ${m.name}` },
        on: { click: () => this.hooks.onWhisper(m) },
      }));
    }
    return item;
  }

  /** The composer's "send to" list: only the private lines the contract allows (§5 whisper). */
  renderTargets(sorted, me, facilitatorView) {
    const select = this.nodes.to;
    const previous = select.value;
    const options = [el("option", { text: "Everyone", attrs: { value: "" } })];
    if (facilitatorView) {
      options.push(el("option", { text: "Everyone, as an announcement", attrs: { value: "announce" } }));
    }
    for (const m of sorted) {
      if (me !== null && m.pid === me.pid) continue;
      const allowed = facilitatorView ? m.role === "participant" : m.role === "facilitator";
      if (allowed) options.push(el("option", { text: `${m.name} (private)`, attrs: { value: m.pid } }));
    }
    select.replaceChildren(...options);
    select.value = options.some((o) => o.value === previous) ? previous : "";
  }

  whisperTo(pid) {
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
    let text = "";
    if (names.length === 1 && !anonymous) text = `${names[0]} is typing…`;
    else if (names.length === 2 && !anonymous) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    else if (anonymous || names.length) text = "Someone is typing…";
    this.nodes.typing.textContent = text;
  }
}
