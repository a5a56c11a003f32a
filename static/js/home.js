/**
 * The start page (/): create a room in a language (POST /api/rooms, with an operator token when
 * the server asks for one), show the two links with copy buttons, or go to a room from a
 * pasted link. The page itself speaks the reader's language when the server has it.
 */

import { $, show } from "./dom.js";
import {
  browserLanguage, chosenLanguage, currentLanguage, installLanguageSwitch, languages, render, t,
  useLanguage,
} from "./i18n.js";
import { readPlan, showTimeZone } from "./plan.js";
import { installQuickExit } from "./quickexit.js";

let operatorToken = "";

async function createRoom(event) {
  event.preventDefault();
  const button = $("create-btn");
  show($("create-error"), false);
  if (!$("token-row").hidden) operatorToken = $("token").value.trim();
  const body = { title: $("title").value.trim(), rules: $("rules").value.trim() };
  if ($("room-lang").value) body.settings = { lang: $("room-lang").value };
  const plan = readPlan(); // §13: staffed, capacity, opening and end
  if (plan.error) {
    $("plan").open = true;
    fail(plan.error);
    $(plan.field).focus();
    return;
  }
  if (Object.keys(plan.settings).length) body.settings = { ...body.settings, ...plan.settings };
  const headers = { "Content-Type": "application/json" };
  if (operatorToken) headers.Authorization = `Bearer ${operatorToken}`;
  button.disabled = true;
  try {
    const response = await fetch("/api/rooms", { method: "POST", headers, body: JSON.stringify(body), cache: "no-store" });
    if (response.status === 401) {
      const asked = !$("token-row").hidden;
      show($("token-row"));
      $("token").value = "";
      $("token").focus();
      fail(asked ? "home.error_token_rejected" : "home.error_token_needed");
      return;
    }
    if (response.status !== 201) {
      fail("home.error_create");
      return;
    }
    showResult(await response.json());
  } catch {
    fail("home.error_offline");
  } finally {
    button.disabled = false;
  }
}

function fail(key) {
  render($("create-error"), key);
  show($("create-error"));
}

function showResult(room) {
  const joinUrl = new URL(room.join_url, location.origin).href;
  const facUrl = new URL(room.facilitator_url, location.origin).href;
  $("join-link").value = joinUrl;
  $("fac-link").value = facUrl;
  $("open-fac").href = facUrl;
  operatorToken = "";
  $("token").value = "";
  show($("result"));
  $("result").focus();
}

async function copy(inputId, copied, byHand) {
  const input = $(inputId);
  let ok = false;
  try {
    await navigator.clipboard.writeText(input.value);
    ok = true;
  } catch {
    input.select();
    ok = document.execCommand?.("copy") ?? false;
  }
  render($("copy-status"), ok ? copied : byHand);
}

function goToRoom(event) {
  event.preventDefault();
  const raw = $("join-input").value.trim();
  let target = null;
  try {
    const url = new URL(raw, location.origin);
    if (url.origin === location.origin && url.pathname.startsWith("/r/")) target = url.pathname + url.hash;
  } catch {
    target = null;
  }
  if (!target && /^[A-Za-z0-9_-]{8,}$/.test(raw)) target = `/r/${raw}`;
  if (!target) {
    render($("join-error"), "home.error_bad_link");
    show($("join-error"));
    return;
  }
  location.assign(target);
}

/** The room-language choice: every language the server has, the reader's own selected. */
function fillRoomLanguages(available, preferred) {
  const select = $("room-lang");
  select.replaceChildren(...available.map((lang) => {
    const option = document.createElement("option");
    option.value = lang.tag;
    option.lang = lang.tag;
    option.dir = lang.dir;
    option.textContent = lang.name;
    return option;
  }));
  select.value = preferred;
}

async function main() {
  installQuickExit($("exit-btn"));
  $("create-form").addEventListener("submit", createRoom);
  $("join-form").addEventListener("submit", goToRoom);
  $("suggest-rules").addEventListener("click", () => {
    $("rules").value = t("home.suggested_rules");
    $("rules").focus();
  });
  $("copy-join").addEventListener("click", () => copy("join-link", "home.copied_join", "home.copy_by_hand_join"));
  $("copy-fac").addEventListener("click", () => copy("fac-link", "home.copied_fac", "home.copy_by_hand_fac"));
  const listing = await languages();
  await useLanguage(chosenLanguage() ?? browserLanguage(listing.languages) ?? listing.default);
  showTimeZone(); // once the sentences are here
  const own = currentLanguage().tag;
  fillRoomLanguages(listing.languages, listing.languages.some((l) => l.tag === own) ? own : listing.default);
  await installLanguageSwitch($("lang-select"), (tag) => {
    // Someone who switches the page to a language probably means the room, too.
    if (listing.languages.some((l) => l.tag === tag)) $("room-lang").value = tag;
  });
}

main();
