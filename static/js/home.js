/**
 * The start page (/): create a room (POST /api/rooms, with an operator token when the server
 * asks for one), show the two links with copy buttons, or go to a room from a pasted link.
 */

import { $, show } from "./dom.js";
import { installQuickExit } from "./quickexit.js";

const SUGGESTED_RULES = [
  "Be kind. Everyone here is doing their best.",
  "What is shared here stays here: no screenshots, no names.",
  "Speak from your own experience; don't give medical advice.",
  "No one has to talk. Listening is welcome.",
  "If you are in danger right now, use the help button or call your local emergency number.",
].join("\n");

let operatorToken = "";

async function createRoom(event) {
  event.preventDefault();
  const button = $("create-btn");
  show($("create-error"), false);
  if (!$("token-row").hidden) operatorToken = $("token").value.trim();
  const body = { title: $("title").value.trim(), rules: $("rules").value.trim() };
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
      fail(asked ? "That operator token wasn't accepted. Please check it and try again."
        : "This server needs an operator token to create rooms. Paste it below and try again.");
      return;
    }
    if (response.status !== 201) {
      fail("The room couldn't be created just now. Please try again in a moment.");
      return;
    }
    showResult(await response.json());
  } catch {
    fail("The server couldn't be reached. Check your connection and try again.");
  } finally {
    button.disabled = false;
  }
}

function fail(text) {
  $("create-error").textContent = text;
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

async function copy(inputId, label) {
  const input = $(inputId);
  let ok = false;
  try {
    await navigator.clipboard.writeText(input.value);
    ok = true;
  } catch {
    input.select();
    ok = document.execCommand?.("copy") ?? false;
  }
  $("copy-status").textContent = ok ? `${label} copied.` : `Select the ${label.toLowerCase()} and copy it by hand.`;
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
    $("join-error").textContent = "That doesn't look like a Hearth room link. It should contain /r/ followed by the room's code.";
    show($("join-error"));
    return;
  }
  location.assign(target);
}

installQuickExit($("exit-btn"));
$("create-form").addEventListener("submit", createRoom);
$("join-form").addEventListener("submit", goToRoom);
$("suggest-rules").addEventListener("click", () => { $("rules").value = SUGGESTED_RULES; $("rules").focus(); });
$("copy-join").addEventListener("click", () => copy("join-link", "Participants' link"));
$("copy-fac").addEventListener("click", () => copy("fac-link", "Facilitator link"));
