/**
 * On a phone the room is one column: a tab bar at the bottom keeps the conversation, the people
 * here, the round and (for facilitators) the tools one tap away, instead of somewhere below the
 * composer. On a wide screen every pane shows at once and the tab bar is not there.
 *
 * WAI-ARIA tabs while the tab bar shows: arrow keys move between tabs (mirrored right to left),
 * Home and End go to the first and last, and each pane is a tabpanel labelled by its tab.
 */

import { $ } from "./dom.js";

const NARROW = window.matchMedia("(max-width: 59.99rem)");

export class Tabs {
  constructor(bar) {
    this.bar = bar;
    this.current = "tab-chat";
    bar.addEventListener("click", (event) => {
      const tab = event.target.closest("[role=tab]");
      if (tab) this.select(tab.id, true);
    });
    bar.addEventListener("keydown", (event) => this.key(event));
    NARROW.addEventListener("change", () => this.layout());
  }

  tabs() {
    return [...this.bar.querySelectorAll("[role=tab]")].filter((tab) => !tab.hidden);
  }

  /** Show the tab bar (once in the room); `tools`: whether the facilitator tab is there. */
  enable(tools) {
    $("tab-tools").hidden = !tools;
    if (!tools && this.current === "tab-tools") this.current = "tab-chat";
    this.bar.hidden = false;
    this.layout();
  }

  disable() {
    this.bar.hidden = true;
    this.layout();
  }

  select(id, focus = false) {
    this.current = id;
    this.layout();
    if (focus) $(id).focus();
  }

  /** Panes and ARIA for the current width: tabs on a phone, everything at once otherwise. */
  layout() {
    const phone = NARROW.matches && !this.bar.hidden;
    document.body.classList.toggle("tabbed", phone);
    for (const tab of this.bar.querySelectorAll("[role=tab]")) {
      const selected = tab.id === this.current;
      const pane = $(tab.dataset.pane);
      tab.setAttribute("aria-selected", String(selected));
      tab.setAttribute("aria-controls", tab.dataset.pane);
      tab.tabIndex = selected ? 0 : -1;
      if (!pane) continue;
      pane.dataset.label ??= pane.getAttribute("aria-labelledby") ?? "";
      if (phone) {
        pane.setAttribute("role", "tabpanel");
        pane.setAttribute("aria-labelledby", tab.id);
        pane.classList.toggle("pane-hidden", !selected);
      } else {
        pane.removeAttribute("role");
        if (pane.dataset.label) pane.setAttribute("aria-labelledby", pane.dataset.label);
        else pane.removeAttribute("aria-labelledby");
        pane.classList.remove("pane-hidden");
      }
    }
  }

  key(event) {
    const tabs = this.tabs();
    const at = tabs.findIndex((tab) => tab.id === this.current);
    const rtl = document.documentElement.dir === "rtl";
    const step = { ArrowRight: rtl ? -1 : 1, ArrowLeft: rtl ? 1 : -1 }[event.key];
    let next = null;
    if (step) next = tabs[(at + step + tabs.length) % tabs.length];
    else if (event.key === "Home") next = tabs[0];
    else if (event.key === "End") next = tabs[tabs.length - 1];
    if (!next) return;
    event.preventDefault();
    this.select(next.id, true);
  }
}
