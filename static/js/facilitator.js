/**
 * Facilitator tools: member actions (mute, unmute, remove, whisper), delete, lock, slow mode,
 * close, the knock waiting list, the reports inbox and the recent-actions log. (Help-flare alerts
 * are safety.js's: it takes `help` before these tools see it.)
 * The server enforces every decision; these controls only ask (protocol.md §6).
 */

import { $, announce, el, openDialog, show } from "./dom.js";
import { attrs, formatNumber, render, t, timeEl } from "./i18n.js";

const MUTE_CHOICES = { mute300: 300, mute1800: 1800, mute: null };
// The facilitation log's actions (protocol §6 `log`), by sentence; others say the raw action.
const LOG_SENTENCES = {
  mute: "log.mute",
  unmute: "log.unmute",
  remove: "log.remove",
  delete: "log.delete",
  lock: "log.lock",
  unlock: "log.unlock",
  slow: "log.slow",
  announce: "log.announce",
  admit: "log.admit",
  deny: "log.deny",
  warn: "log.warn",
  hold: "log.hold",
  unhold: "log.unhold",
  release: "log.release",
  discard: "log.discard",
  resolve: "log.resolve",
  help_seen: "log.help_seen",
  invite: "log.invite",
  revoke: "log.revoke",
  settings: "log.settings",
  // §13
  pause: "log.pause",
  unpause: "log.unpause",
  extend: "log.extend",
  round: "log.round",
  next: "log.next",
  end_round: "log.end_round",
};

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
    if (this.conn.request(msg) === null) this.notice("fac.offline", {}, "warn");
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
    $("log-list").replaceChildren(...(welcome.log ?? []).slice(-20).reverse().map((entry) => this.logItem(entry)));
    this.roomChanged();
  }

  logItem(entry) {
    const params = { by: this.members.nameOf(entry.by), name: entry.pid ? this.members.nameOf(entry.pid) : "" };
    const key = LOG_SENTENCES[entry.action] ?? "log.other";
    if (key === "log.other") params.action = String(entry.action);
    const sentence = entry.label ? render(el("span"), "log.label", { entry: { key, params }, label: entry.label }) : render(el("span"), key, params);
    return el("li", {}, [timeEl(entry.ts), " · ", sentence]);
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
      this.messages.addPresence("knocking", msg.member.name);  // coalesced (issue 11, item 12)
      announce(t("notice.knock", { name: msg.member.name }));
      return true;
    }
    if (msg.t === "resolved") {
      this.reports = this.reports.filter((r) => r.mid !== msg.mid);
      this.renderReports();
      this.notice("safety.resolved_notice", { by: this.members.nameOf(msg.by) });
      return true;
    }
    if (msg.t === "report") {
      this.reports.push(msg);
      this.renderReports();
      this.notice("notice.report", { name: this.members.nameOf(msg.by) }, "warn");
      return true;
    }
    return false;
  }

  roomChanged() {
    if (!this.on) return;
    const locked = Boolean(this.state.room?.locked);
    render($("lock-btn"), locked ? "fac.unlock" : "fac.lock");
    $("lock-btn").setAttribute("aria-pressed", String(locked));
    const slow = String(this.state.room?.slow ?? 0);
    const select = $("slow-select");
    if (![...select.options].some((o) => o.value === slow)) {
      select.append(render(el("option", { attrs: { value: slow } }), "fac.slow_seconds", { count: Number(slow) }));
    }
    select.value = slow;
  }

  renderWaiting() {
    $("waiting-count").textContent = `(${formatNumber(this.waiting.size)})`;
    const items = [...this.waiting.values()].map((m) => {
      const admit = el("button", { attrs: { type: "button" }, on: { click: () => this.send({ t: "admit", pid: m.pid }) } });
      const deny = el("button", {
        class: "secondary", attrs: { type: "button" },
        on: { click: () => { this.send({ t: "deny", pid: m.pid }); this.waiting.delete(m.pid); this.renderWaiting(); } },
      });
      return el("li", { class: "member" }, [
        el("span", { class: "member-name" }, [el("bdi", { text: m.name })]),
        attrs(render(admit, "fac.admit"), { "aria-label": ["fac.admit_label", { name: m.name }] }),
        attrs(render(deny, "fac.deny"), { "aria-label": ["fac.deny_label", { name: m.name }] }),
      ]);
    });
    $("waiting-list").replaceChildren(...(items.length ? items : [render(el("li", { class: "empty" }), "fac.no_waiting")]));
  }

  renderReports() {
    const items = this.reports.map((r, index) => {
      const msg = this.messages.get(r.mid);
      const from = { name: this.members.nameOf(r.by), reason: r.reason };
      const item = el("li", { class: "report" }, [
        el("p", {}, [timeEl(r.ts ?? Date.now()), " · ", render(el("span"), r.reason ? "fac.report_from_reason" : "fac.report_from", from)]),
        msg
          ? render(el("p", { class: "report-quote" }), "msg.quote", { name: msg.name, text: msg.text })
          : render(el("p", { class: "report-quote" }), "fac.report_gone"),
      ]);
      const row = el("div", { class: "button-row" });
      const button = (cls, key, onClick) => render(el("button", { class: cls, attrs: { type: "button" }, on: { click: onClick } }), key);
      if (msg) {
        row.append(
          button("secondary", "fac.report_show", () => this.messages.focusMessage(r.mid)),
          button("danger", "fac.delete_message", () => this.confirmDelete(msg)),
        );
      }
      row.append(button("secondary", "safety.resolved", () => this.send({ t: "resolve", mid: r.mid })));
      row.append(button("secondary", "common.dismiss", () => { this.reports.splice(index, 1); this.renderReports(); }));
      item.append(row);
      return item;
    });
    $("reports-count").textContent = `(${formatNumber(this.reports.length)})`;
    $("reports-list").replaceChildren(...(items.length ? items : [render(el("li", { class: "empty" }), "fac.no_reports")]));
  }

  /**
   * Ask for confirmation in the shared dialog; resolves to the reason text or null.
   * `title`, `text` and `action` are sentences: [key, params].
   */
  async confirm({ title, text, action, reason = false }) {
    render($("confirm-title"), ...title);
    render($("confirm-text"), ...text);
    render($("confirm-ok"), ...action);
    show($("confirm-reason-row"), reason);
    $("confirm-reason").value = "";
    if (await openDialog($("confirm-dialog")) !== "ok") return null;
    return $("confirm-reason").value.trim();
  }

  async confirmDelete(msg) {
    const ok = await this.confirm({
      title: ["fac.confirm_delete_title"],
      text: ["msg.quote", { name: msg.name, text: msg.text }],
      action: ["fac.delete_message"],
    });
    if (ok !== null) this.send({ t: "delete", mid: msg.mid });
  }

  async confirmClose() {
    const ok = await this.confirm({
      title: ["fac.confirm_close_title"],
      text: ["fac.confirm_close_text"],
      action: ["fac.confirm_close_action"],
    });
    if (ok !== null) this.send({ t: "close" });
  }

  async memberActions(member) {
    render($("member-dialog-title"), "members.actions_for", { name: member.name });
    const muted = member.muted_until !== undefined;
    show($("member-unmute"), muted);
    for (const id of ["member-mute300", "member-mute1800", "member-mute"]) show($(id), !muted);
    this.safety?.prepareMemberDialog(member);
    const choice = await openDialog($("member-dialog"));
    if (this.safety?.memberChoice(choice, member)) return;
    if (choice in MUTE_CHOICES) {
      const seconds = MUTE_CHOICES[choice];
      const reason = this.safety?.muteReason() ?? {};
      this.send(seconds === null ? { t: "mute", pid: member.pid, ...reason } : { t: "mute", pid: member.pid, seconds, ...reason });
    } else if (choice === "unmute") {
      this.send({ t: "unmute", pid: member.pid });
    } else if (choice === "whisper") {
      this.members.whisperTo(member.pid);
      $("composer-text").focus();
    } else if (choice === "remove") {
      const reason = await this.confirm({
        title: ["fac.confirm_remove_title", { name: member.name }],
        text: ["fac.confirm_remove_text"],
        action: ["fac.confirm_remove_action"], reason: true,
      });
      if (reason !== null) this.send(reason ? { t: "remove", pid: member.pid, reason } : { t: "remove", pid: member.pid });
    }
  }
}
