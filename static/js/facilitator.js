/**
 * Facilitator tools: member actions (mute, unmute, remove, whisper), delete, lock, slow mode,
 * close, the knock waiting list, the reports inbox, help-flare alerts and the recent-actions log.
 * The server enforces every decision; these controls only ask (protocol.md §6).
 */

import { $, announce, clockText, el, openDialog, show } from "./dom.js";

const MUTE_CHOICES = { mute300: 300, mute1800: 1800, mute: null };

export class FacilitatorTools {
  constructor({ conn, state, messages, members, notice }) {
    this.conn = conn;
    this.state = state;
    this.messages = messages;
    this.members = members;
    this.notice = notice;
    this.waiting = new Map();
    this.reports = [];
    this.on = false;
    $("lock-btn").addEventListener("click", () => this.send({ t: this.state.room?.locked ? "unlock" : "lock" }));
    $("slow-select").addEventListener("change", (e) => this.send({ t: "slow", seconds: Number(e.target.value) }));
    $("close-btn").addEventListener("click", () => this.confirmClose());
  }

  send(msg) {
    if (this.conn.request(msg) === null) this.notice("Not connected right now; please try again in a moment.", "warn");
  }

  /** Show or hide the tools according to the role in a `welcome`. */
  enable(welcome) {
    this.on = welcome.you?.role === "facilitator";
    document.body.classList.toggle("is-facilitator", this.on);
    show($("facilitator-panel"), this.on);
    if (!this.on) return;
    this.waiting = new Map((welcome.waiting ?? []).map((m) => [m.pid, m]));
    this.reports = [...(welcome.reports ?? [])];
    this.renderWaiting();
    this.renderReports();
    $("log-list").replaceChildren(...(welcome.log ?? []).slice(-20).reverse().map((entry) => el("li", {
      text: `${clockText(entry.ts)} · ${this.members.nameOf(entry.by)}: ${entry.action}` +
        (entry.pid ? ` ${this.members.nameOf(entry.pid)}` : "") + (entry.mid ? " (a message)" : ""),
    })));
    this.roomChanged();
  }

  /** Handle facilitator-only messages; returns true when the message was consumed. */
  handle(msg) {
    if (msg.t === "joined" || msg.t === "left") {
      const pid = msg.member?.pid ?? msg.pid;
      if (this.waiting.delete(pid)) this.renderWaiting();
      return false;
    }
    if (!this.on) return false;
    if (msg.t === "knock") {
      this.waiting.set(msg.member.pid, msg.member);
      this.renderWaiting();
      this.notice(`${msg.member.name} is waiting to join.`, "warn");
      return true;
    }
    if (msg.t === "report") {
      this.reports.push(msg);
      this.renderReports();
      this.notice(`New report from ${this.members.nameOf(msg.by)}.`, "warn");
      return true;
    }
    if (msg.t === "help") {
      this.helpAlert(msg);
      return true;
    }
    return false;
  }

  roomChanged() {
    if (!this.on) return;
    const locked = Boolean(this.state.room?.locked);
    $("lock-btn").textContent = locked ? "Unlock the room" : "Lock the room";
    $("lock-btn").setAttribute("aria-pressed", String(locked));
    const slow = String(this.state.room?.slow ?? 0);
    const select = $("slow-select");
    if (![...select.options].some((o) => o.value === slow)) {
      select.append(el("option", { text: `${slow} seconds`, attrs: { value: slow } }));
    }
    select.value = slow;
  }

  helpAlert(msg) {
    const name = this.members.nameOf(msg.pid);
    const alert = el("div", { class: "help-alert" }, [
      el("p", { text: `${name} asked for help at ${clockText(msg.ts ?? Date.now())}.` }),
    ]);
    const actions = el("div", { class: "button-row" }, [
      el("button", {
        text: `Message ${name} privately`,
        attrs: { type: "button" },
        on: { click: () => { this.members.whisperTo(msg.pid); $("composer-text").focus(); } },
      }),
      el("button", { class: "secondary", text: "Dismiss", attrs: { type: "button" }, on: { click: () => alert.remove() } }),
    ]);
    alert.append(actions);
    $("alerts").append(alert);
    announce(`${name} asked for help.`);
  }

  renderWaiting() {
    $("waiting-count").textContent = `(${this.waiting.size})`;
    const items = [...this.waiting.values()].map((m) => el("li", { class: "member" }, [
      el("span", { class: "member-name", text: m.name, attrs: { dir: "auto" } }),
      el("button", { text: "Let in", attrs: { type: "button", "aria-label": `Let ${m.name} in` }, on: { click: () => this.send({ t: "admit", pid: m.pid }) } }),
      el("button", { class: "secondary", text: "Decline", attrs: { type: "button", "aria-label": `Decline ${m.name}` }, on: { click: () => { this.send({ t: "deny", pid: m.pid }); this.waiting.delete(m.pid); this.renderWaiting(); } } }),
    ]));
    $("waiting-list").replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No one is waiting." })]));
  }

  renderReports() {
    const items = this.reports.map((r, index) => {
      const msg = this.messages.get(r.mid);
      const item = el("li", { class: "report" }, [
        el("p", { text: `${clockText(r.ts ?? Date.now())} · from ${this.members.nameOf(r.by)}${r.reason ? `: “${r.reason}”` : ""}` }),
        el("p", { class: "report-quote", text: msg ? `${msg.name}: ${msg.text}` : "The message is no longer shown.", attrs: { dir: "auto" } }),
      ]);
      const row = el("div", { class: "button-row" });
      if (msg) {
        row.append(
          el("button", { class: "secondary", text: "Show", attrs: { type: "button" }, on: { click: () => this.messages.focusMessage(r.mid) } }),
          el("button", { class: "danger", text: "Delete message", attrs: { type: "button" }, on: { click: () => this.confirmDelete(msg) } }),
        );
      }
      row.append(el("button", { class: "secondary", text: "Dismiss", attrs: { type: "button" }, on: { click: () => { this.reports.splice(index, 1); this.renderReports(); } } }));
      item.append(row);
      return item;
    });
    $("reports-count").textContent = `(${this.reports.length})`;
    $("reports-list").replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No open reports." })]));
  }

  /** Ask for confirmation in the shared dialog; resolves to the reason text or null. */
  async confirm({ title, text, action, reason = false }) {
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = action;
    show($("confirm-reason-row"), reason);
    $("confirm-reason").value = "";
    if (await openDialog($("confirm-dialog")) !== "ok") return null;
    return $("confirm-reason").value.trim();
  }

  async confirmDelete(msg) {
    const ok = await this.confirm({
      title: "Delete this message?", text: `${msg.name}: ${msg.text}`, action: "Delete message",
    });
    if (ok !== null) this.send({ t: "delete", mid: msg.mid });
  }

  async confirmClose() {
    const ok = await this.confirm({
      title: "Close this session?",
      text: "Everyone will be disconnected and the conversation will be erased. This can't be undone.",
      action: "Close the session",
    });
    if (ok !== null) this.send({ t: "close" });
  }

  async memberActions(member) {
    $("member-dialog-title").textContent = `Actions for ${member.name}`;
    const muted = member.muted_until !== undefined;
    show($("member-unmute"), muted);
    for (const id of ["member-mute300", "member-mute1800", "member-mute"]) show($(id), !muted);
    const choice = await openDialog($("member-dialog"));
    if (choice in MUTE_CHOICES) {
      const seconds = MUTE_CHOICES[choice];
      this.send(seconds === null ? { t: "mute", pid: member.pid } : { t: "mute", pid: member.pid, seconds });
    } else if (choice === "unmute") {
      this.send({ t: "unmute", pid: member.pid });
    } else if (choice === "whisper") {
      this.members.whisperTo(member.pid);
      $("composer-text").focus();
    } else if (choice === "remove") {
      const reason = await this.confirm({
        title: `Remove ${member.name}?`,
        text: "They will be disconnected and can't come back to this room.",
        action: "Remove", reason: true,
      });
      if (reason !== null) this.send(reason ? { t: "remove", pid: member.pid, reason } : { t: "remove", pid: member.pid });
    }
  }
}
