/**
 * Safety tools on the page (protocol §14). For everyone: a warning or a held message explained
 * calmly, the contact-details nudge as a confirm dialog, "help is on the way", an ignore control
 * on each participant, a content warning from the composer. For facilitators: warn, mute with a
 * reason, hold for review, the review queue (post or discard), "resolved" on reports, help
 * flares once per person with "seen", a content warning on any message, the room's review and contact settings, co-facilitator
 * keys (invite with a copyable link, revoke), and the facilitators-only backchannel.
 * The server enforces every decision; these controls only ask.
 */

import { $, announce, el, openDialog, show } from "./dom.js";
import { attrs, formatNumber, render, t, timeEl } from "./i18n.js";

// What looks like contact details, in the contract's order, by sentence.
const KINDS = {
  phone: "safety.kind.phone",
  email: "safety.kind.email",
  url: "safety.kind.url",
  handle: "safety.kind.handle",
};

export class SafetyTools {
  constructor({ conn, state, messages, members, notice, composer }) {
    this.conn = conn;
    this.state = state;
    this.messages = messages;
    this.members = members;
    this.notice = notice;
    this.composer = composer; // { resend(text, extra) }
    this.ignored = new Set(); // pids this member ignores (the server keeps the truth)
    this.held = new Map(); // facilitators: mid -> held message
    this.flares = new Map(); // facilitators: pid -> its help alert
    this.on = false;
    $("cw-toggle").addEventListener("change", () => {
      show($("cw-row"), $("cw-toggle").checked);
      if ($("cw-toggle").checked) $("cw-text").focus();
    });
    $("review-all").addEventListener("change", (e) => this.send({ t: "settings", review: e.target.checked ? "all" : "off" }));
    $("contact-select").addEventListener("change", (e) => this.send({ t: "settings", contact: e.target.value }));
    $("invite-btn").addEventListener("click", () => this.invite());
    $("revoke-form").addEventListener("submit", (e) => this.revoke(e));
    $("invite-copy").addEventListener("click", () => this.copyInvite());
  }

  send(msg, pending = null) {
    const id = this.conn.request(msg);
    if (id === null) this.notice("fac.offline", {}, "warn");
    else if (pending) this.state.pending.set(id, pending);
    return id;
  }

  /* ---------- composing ---------- */

  /** The composer's extra fields: a content warning when the toggle is on. */
  sayFields() {
    const cw = $("cw-text").value.trim();
    return $("cw-toggle").checked && cw ? { cw } : {};
  }

  clearComposer() {
    $("cw-toggle").checked = false;
    $("cw-text").value = "";
    show($("cw-row"), false);
  }

  /** An error that is ours to explain; true when handled. */
  async onError(request, msg) {
    if (msg.code === "check_first" && request?.kind === "say") {
      const found = Object.keys(KINDS).filter((k) => (msg.kinds ?? []).includes(k));
      const kinds = (found.length ? found : ["phone"]).map((k) => t(KINDS[k])).join(", ");
      render($("contact-text"), "safety.check_first_text", { kinds });
      if (await openDialog($("contact-dialog")) === "send") {
        this.composer.resend(request.text, { ...request.extra, confirm: true });
      } else {
        $("composer-text").value = request.text;
        $("composer-text").focus();
      }
      return true;
    }
    if (msg.code === "not_allowed" && request?.kind === "say") {
      $("composer-text").value = request.text;
      render($("composer-note"), "safety.not_allowed");
      announce(t("safety.not_allowed"));
      return true;
    }
    return false;
  }

  onAck(request, msg) {
    if (request?.kind === "say" && msg.held) this.notice("safety.held_ack", {}, "warn");
    if (request?.kind === "invite") this.showInvite(msg);
    if (request?.kind === "revoke") this.notice("safety.revoked", { label: request.label });
    if (request?.kind === "ignore") {
      this.notice(request.on ? "safety.ignored_notice" : "safety.unignored_notice", { name: request.name });
    }
  }

  /* ---------- the server's safety messages ---------- */

  /** Handle a §14 message; true when consumed. */
  handle(msg) {
    const me = this.state.you?.pid;
    switch (msg.t) {
      case "warned": {
        const reason = msg.reason ? { reason: `“${msg.reason}”` } : {};
        this.notice(msg.reason ? "safety.warned_reason" : "safety.warned", reason, "warn");
        this.notice("safety.warnings_so_far", { count: Number(msg.count) || 1 }, "warn");
        return true;
      }
      case "muted":
        if (msg.pid === me && msg.reason) {
          queueMicrotask(() => this.notice("safety.muted_reason", { reason: `“${msg.reason}”` }, "warn"));
        }
        return false; // the room's own handler says the rest
      case "reviewed":
        if (this.held.delete(msg.mid)) this.renderReview();
        if (!this.on) this.notice(msg.action === "release" ? "safety.released" : "safety.discarded", {}, "warn");
        return true;
      case "help_seen":
        if (msg.pid === undefined) {
          this.notice("safety.help_seen", {}, "warn");
        } else {
          this.flares.get(msg.pid)?.remove();
          this.flares.delete(msg.pid);
          this.notice("safety.help_seen_by", { by: this.members.nameOf(msg.by), name: this.members.nameOf(msg.pid) });
        }
        return true;
      case "report_reviewed":
        this.notice("safety.report_reviewed");
        return true;
      case "cw":
        this.messages.setContentWarning(msg.mid, msg.cw);
        return true;
      default:
        break;
    }
    if (!this.on) return false;
    switch (msg.t) {
      case "held":
        this.held.set(msg.mid, msg);
        this.renderReview();
        this.notice("safety.held_notice", { name: msg.name }, "warn");
        return true;
      case "hold":
        this.members.setHeld(msg.pid, msg.on);
        return true;
      case "flag": {
        const name = this.members.nameOf(msg.pid);
        // A flag without a mid: the say was refused, so no message exists to mark (Part 2).
        if (msg.mid === undefined) this.notice("safety.flag_refused_notice", { name }, "warn");
        else {
          this.messages.markFlagged(msg.mid);
          this.notice("safety.flag_notice", { name }, "warn");
        }
        return true;
      }
      case "resolved":
        return false; // the reports inbox drops it (facilitator.js)
      case "help":
        this.helpAlert(msg);
        return true;
      default:
        return false;
    }
  }

  /* ---------- facilitators ---------- */

  enable(welcome) {
    // Whom this member ignores, as the server keeps it (Part 2: the own welcome.you carries
    // `ignores`), so that a reloaded page still shows them as ignored and can undo it.
    this.ignored = new Set(welcome.you?.ignores ?? []);
    this.members.render();
    this.on = welcome.you?.role === "facilitator";
    if (!this.on) return;
    this.held = new Map((welcome.held ?? []).map((h) => [h.mid, h]));
    this.renderReview();
    this.roomChanged(welcome.room);
  }

  /** A facilitator adds, changes or (left empty) removes a message's content warning (§14). */
  async editContentWarning(msg) {
    render($("cw-quote"), "msg.quote", { name: msg.name, text: msg.text });
    const field = $("cw-edit-text");
    field.value = msg.cw ?? "";
    if (await openDialog($("cw-dialog")) !== "save") return;
    const cw = field.value.trim().slice(0, 60);
    if (cw === (msg.cw ?? "")) return;
    this.send({ t: "cw", mid: msg.mid, cw });
  }

  roomChanged(room) {
    if (!this.on || !room) return;
    $("review-all").checked = room.review === "all";
    $("contact-select").value = room.contact ?? "nudge";
  }

  /** One alert per person (issue 11, item 12): a second flare updates the first. */
  helpAlert(msg) {
    const name = this.members.nameOf(msg.pid);
    const time = msg.ts ?? Date.now();
    const existing = this.flares.get(msg.pid);
    if (existing) {
      render(existing.querySelector("p"), "safety.help_again", { name, time });
      $("alerts").prepend(existing);
      announce(t("fac.help_announce", { name }));
      return;
    }
    const alert = el("div", { class: "help-alert" }, [render(el("p"), "fac.help_alert", { name, time })]);
    const button = (cls, key, onClick) => render(el("button", { class: cls, attrs: { type: "button" }, on: { click: onClick } }), key);
    const seen = button("", "safety.seen", () => {
      this.send({ t: "help_seen", pid: msg.pid });
      alert.remove();
      this.flares.delete(msg.pid);
    });
    const whisper = el("button", {
      class: "secondary", attrs: { type: "button" },
      on: { click: () => { this.members.whisperTo(msg.pid); $("composer-text").focus(); } },
    });
    alert.append(el("div", { class: "button-row" }, [seen, render(whisper, "fac.help_whisper", { name })]));
    this.flares.set(msg.pid, alert);
    $("alerts").append(alert);
    announce(t("fac.help_announce", { name }));
  }

  /** A release or discard answered not_found: the message no longer waits (it was older than
   *  the room keeps messages, or went elsewhere unheard), so it leaves the queue too. */
  reviewGone(request) {
    if (this.held.delete(request.mid)) this.renderReview();
  }

  renderReview() {
    if (!this.on) return;
    $("review-count").textContent = `(${formatNumber(this.held.size)})`;
    const items = [...this.held.values()].map((h) => {
      const review = (action) => this.send({ t: action, mid: h.mid }, { kind: "review", mid: h.mid });
      const post = el("button", { attrs: { type: "button" }, on: { click: () => review("release") } });
      const drop = el("button", { class: "secondary", attrs: { type: "button" }, on: { click: () => review("discard") } });
      return el("li", { class: "report held-item" }, [
        el("p", {}, [timeEl(h.ts), " · ", el("bdi", { text: h.name })]),
        h.cw ? render(el("p", { class: "hint" }), "safety.cw_shown", { cw: h.cw }) : null,
        el("p", { class: "report-quote", text: h.text, attrs: { dir: "auto" } }),
        el("div", { class: "button-row" }, [
          attrs(render(post, "safety.release"), { "aria-label": ["safety.release_label", { name: h.name }] }),
          attrs(render(drop, "safety.discard"), { "aria-label": ["safety.discard_label", { name: h.name }] }),
        ]),
      ]);
    });
    $("review-list").replaceChildren(...(items.length ? items : [render(el("li", { class: "empty" }), "safety.review_empty")]));
  }

  /** The member dialog's §14 choices (warn, hold, unhold) and the mute reason. */
  memberChoice(choice, member) {
    const reason = $("member-reason").value.trim();
    if (choice === "warn") {
      this.send(reason ? { t: "warn", pid: member.pid, reason } : { t: "warn", pid: member.pid });
      return true;
    }
    if (choice === "hold" || choice === "unhold") {
      this.send({ t: choice, pid: member.pid });
      return true;
    }
    return false;
  }

  muteReason() {
    const reason = $("member-reason").value.trim();
    return reason ? { reason } : {};
  }

  prepareMemberDialog(member) {
    $("member-reason").value = "";
    show($("member-hold"), !member.held);
    show($("member-unhold"), Boolean(member.held));
  }

  async invite() {
    $("invite-label").value = "";
    show($("invite-result"), false);
    show($("invite-create"), true);
    $("invite-label").disabled = false;
    const dialog = $("invite-dialog");
    const form = $("invite-form");
    const create = (event) => {
      if (event.submitter?.value !== "create") return;
      event.preventDefault();
      const label = $("invite-label").value.trim();
      if (!label) { $("invite-label").focus(); return; }
      this.send({ t: "invite", label }, { kind: "invite", label });
    };
    form.addEventListener("submit", create);
    await openDialog(dialog);
    form.removeEventListener("submit", create);
  }

  showInvite(ack) {
    const link = `${location.origin}/r/${encodeURIComponent(this.state.room?.id ?? "")}#key=${encodeURIComponent(ack.key)}`;
    $("invite-link").value = link;
    $("invite-label").disabled = true;
    show($("invite-create"), false);
    show($("invite-result"));
    $("invite-link").focus();
    $("invite-link").select();
  }

  async copyInvite() {
    try {
      await navigator.clipboard.writeText($("invite-link").value);
    } catch {
      $("invite-link").select();
      document.execCommand?.("copy");
    }
    render($("invite-note"), "safety.invite_copied");
  }

  revoke(event) {
    event.preventDefault();
    const label = $("revoke-label").value.trim();
    if (!label) return;
    this.send({ t: "revoke", label }, { kind: "revoke", label });
    $("revoke-label").value = "";
  }

  /* ---------- everyone ---------- */

  isIgnored(pid) {
    return this.ignored.has(pid);
  }

  toggleIgnore(member) {
    const on = !this.ignored.has(member.pid);
    if (this.send({ t: on ? "ignore" : "unignore", pid: member.pid }, { kind: "ignore", on, name: member.name }) === null) return;
    if (on) this.ignored.add(member.pid);
    else this.ignored.delete(member.pid);
    this.members.render();
  }
}
