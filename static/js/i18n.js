/**
 * The page's language (protocol §15). Every sentence comes from one catalogue per language,
 * which the server serves from its language directory (GET /api/languages/<tag>; see
 * docs/languages.md): nothing the page says is written in the scripts or the HTML alone.
 *
 *   HTML:    <h2 data-i18n="join.heading">…</h2>, data-i18n-attrs='{"placeholder": "key"}'
 *   scripts: render(node, key, params) for an element's text, t(key, params) for a plain string
 *
 * render() records the key and params on the element, so a language switch re-renders what is
 * already on the page, notices included.
 *
 * Params: a string (a name, a message, a reason) is isolated from the sentence around it, in a
 * <bdi> (or, where no element can go, between U+2068 and U+2069), so that a Hebrew name in an
 * English sentence, or an English name in an Arabic one, keeps its own direction. Numbers go
 * through Intl.NumberFormat; `count` also picks the plural form with Intl.PluralRules; `time`
 * (ms since the epoch) goes through Intl.DateTimeFormat as a time of day, `when` as a day and
 * a time (see at()); {key, params} is another sentence. The
 * formats use the reader's locale: the browser's own preference when it is a variant of the
 * page's language (es-MX for a Spanish page), else the page's language.
 *
 * The participant's own choice of language lives in sessionStorage only (protocol §15).
 */

const CHOICE_KEY = "hearth.lang";
const FSI = "\u2068";
const PDI = "\u2069";
// A placeholder with the full stop after it: a time that ends in one ("7:20 p.m." in es-MX)
// takes the sentence's place, rather than showing "p.m..".
const PLACEHOLDER_STOP = /\{([a-z_][a-z0-9_]*)\}(\.?)/g;
const FALLBACK = { tag: "en", name: "English", dir: "ltr", messages: {} };

let current = FALLBACK;
let locale = "en";
let plurals = new Intl.PluralRules("en");
let numbers = new Intl.NumberFormat("en");
let clockFormat = new Intl.DateTimeFormat("en", { hour: "2-digit", minute: "2-digit" });
let listing = null;

/** The languages the server has: {default, languages: [{tag, name, dir}]} (fetched once). */
export function languages() {
  listing ??= fetch("/api/languages", { cache: "no-store" })
    .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
    .catch(() => ({ default: "en", languages: [{ tag: "en", name: "English", dir: "ltr" }] }));
  return listing;
}

/** The participant's own choice for this tab, or null. */
export function chosenLanguage() {
  try {
    return sessionStorage.getItem(CHOICE_KEY);
  } catch {
    return null;
  }
}

function rememberChoice(tag) {
  try {
    sessionStorage.setItem(CHOICE_KEY, tag);
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
}

/** The first of the browser's preferred languages that the server has, or null. */
export function browserLanguage(available) {
  const tags = new Set(available.map((l) => l.tag));
  for (const wanted of navigator.languages ?? [navigator.language]) {
    if (tags.has(wanted)) return wanted;
    const primary = wanted.split("-")[0].toLowerCase();
    if (tags.has(primary)) return primary;
  }
  return null;
}

export function currentLanguage() {
  return { tag: current.tag, name: current.name, dir: current.dir, locale };
}

function readerLocale(tag) {
  const primary = tag.split("-")[0].toLowerCase();
  const preferred = navigator.languages ?? [navigator.language];
  const match = preferred.find((l) => l.toLowerCase() === tag.toLowerCase()) ??
    preferred.find((l) => l.split("-")[0].toLowerCase() === primary);
  try {
    return Intl.getCanonicalLocales(match ?? tag)[0];
  } catch {
    return tag;
  }
}

/**
 * Show the page in `tag`: fetch its catalogue, set lang and dir on the document, and render
 * every translated element again. Falls back to English when the catalogue cannot be had.
 * @returns {Promise<boolean>} whether `tag` itself is now in use
 */
export async function useLanguage(tag) {
  let catalogue = null;
  for (const candidate of tag === "en" ? ["en"] : [tag, "en"]) {
    try {
      const response = await fetch(`/api/languages/${encodeURIComponent(candidate)}`, { cache: "no-store" });
      if (response.ok) {
        catalogue = await response.json();
        break;
      }
    } catch {
      // offline: try the next, then keep what the page has
    }
  }
  if (catalogue) {
    current = catalogue;
    locale = readerLocale(catalogue.tag);
    plurals = new Intl.PluralRules(locale);
    numbers = new Intl.NumberFormat(locale);
    clockFormat = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" });
  }
  const root = document.documentElement;
  try {
    root.lang = current.tag;
    root.dir = current.dir === "rtl" ? "rtl" : "ltr";
    relocalize(document);
  } finally {
    root.classList.remove("i18n-pending"); // never leave the page hidden
  }
  return current.tag === tag;
}

/**
 * Fill a <select> with the server's languages (each in its own name and language) and make it
 * switch this page, for this person only.
 */
export async function installLanguageSwitch(select, onChange = () => {}) {
  const { languages: available } = await languages();
  select.replaceChildren(...available.map((lang) => {
    const option = document.createElement("option");
    option.value = lang.tag;
    option.lang = lang.tag;
    option.dir = lang.dir;
    option.textContent = lang.name;
    return option;
  }));
  select.value = current.tag;
  select.addEventListener("change", async () => {
    rememberChoice(select.value);
    await useLanguage(select.value);
    onChange(current.tag);
  });
}

function lookup(key, params) {
  const entry = current.messages[key];
  if (entry === undefined) {
    console.warn(`hearth: no sentence for ${key}`);
    return key;
  }
  if (typeof entry === "string") return entry;
  const count = Number(params?.count ?? 0);
  return entry[plurals.select(count)] ?? entry.other ?? key;
}

function formatParam(name, value) {
  if (typeof value === "number" && name === "when") return day(value);
  if (typeof value === "number") return name === "time" ? clock(value) : numbers.format(value);
  if (value && typeof value === "object" && typeof value.key === "string") return t(value.key, value.params);
  return null; // a string: isolated by the caller
}

/**
 * A sentence as a plain string (for aria-label, title, the live region).
 * @param {string} key
 * @param {object} [params]
 * @param {{isolate?: boolean}} [opts] isolate string params with U+2068…U+2069 (for <option>)
 */
export function t(key, params = {}, { isolate = false } = {}) {
  return lookup(key, params).replace(PLACEHOLDER_STOP, (_, name, stop) => {
    const value = params[name];
    if (value === undefined || value === null) return stop;
    const formatted = formatParam(name, value);
    if (formatted !== null) return withStop(formatted, stop);
    return (isolate ? FSI + String(value) + PDI : String(value)) + stop;
  });
}

function withStop(formatted, stop) {
  return stop && formatted.endsWith(".") ? formatted : formatted + stop;
}

/** The sentence as nodes: text, with each string param in its own <bdi>. */
function nodes(key, params) {
  const template = lookup(key, params);
  const out = [];
  let last = 0;
  for (const match of template.matchAll(PLACEHOLDER_STOP)) {
    if (match.index > last) out.push(document.createTextNode(template.slice(last, match.index)));
    last = match.index + match[0].length - match[2].length; // the full stop stays template
    const value = params[match[1]];
    if (value === undefined || value === null) continue;
    const formatted = formatParam(match[1], value);
    if (formatted !== null) {
      out.push(document.createTextNode(formatted));
      if (match[2] && formatted.endsWith(".")) last += 1;
    } else {
      const bdi = document.createElement("bdi");
      bdi.textContent = String(value);
      out.push(bdi);
    }
  }
  if (last < template.length) out.push(document.createTextNode(template.slice(last)));
  return out;
}

/**
 * Set an element's text to a sentence, and remember it for a language switch.
 * @template {HTMLElement} E
 * @param {E} node
 * @param {string} key
 * @param {object} [params]
 * @returns {E}
 */
export function render(node, key, params = {}) {
  node.dataset.i18n = key;
  if (Object.keys(params).length) node.dataset.i18nParams = JSON.stringify(params);
  else delete node.dataset.i18nParams;
  if (node.tagName === "OPTION" || node.tagName === "TITLE") {
    node.textContent = t(key, params, { isolate: true });
  } else {
    node.replaceChildren(...nodes(key, params));
  }
  return node;
}

/** Set an element's text to something that is not a sentence of ours (a room's title, a
 * person's words), so that a language switch leaves it alone. */
export function plain(node, text) {
  delete node.dataset.i18n;
  delete node.dataset.i18nParams;
  node.textContent = text;
  return node;
}

/**
 * Set translated attributes (aria-label, title, placeholder) and remember them.
 * @param {HTMLElement} node
 * @param {Record<string, string|[string, object]>} map attribute → key, or [key, params]
 */
export function attrs(node, map) {
  node.dataset.i18nAttrs = JSON.stringify(map);
  applyAttrs(node, map);
  return node;
}

function applyAttrs(node, map) {
  for (const [name, spec] of Object.entries(map)) {
    const [key, params] = Array.isArray(spec) ? spec : [spec, {}];
    node.setAttribute(name, t(key, params ?? {}));
  }
}

function parse(json) {
  try {
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/** Render every translated element, attribute and time under `root` again. */
export function relocalize(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    render(node, node.dataset.i18n, node.dataset.i18nParams ? parse(node.dataset.i18nParams) : {});
  }
  for (const node of root.querySelectorAll("[data-i18n-attrs]")) applyAttrs(node, parse(node.dataset.i18nAttrs));
  for (const node of root.querySelectorAll("time[data-ts]")) node.textContent = clock(Number(node.dataset.ts));
}

/** A time of day in the reader's locale. */
export function clock(ts) {
  return clockFormat.format(new Date(ts));
}

/** Whether `ts` falls on today's date where the reader is. */
export function isToday(ts, now = Date.now()) {
  return new Date(ts).toDateString() === new Date(now).toDateString();
}

/**
 * A day and a time in the reader's locale: weekday, day and month (and the year when it is not
 * this year's), then the time, as Intl.DateTimeFormat writes them together ("jueves, 3 de
 * diciembre, 18:00").
 */
export function day(ts) {
  const date = new Date(ts);
  const options = { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" };
  if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
  const parts = new Intl.DateTimeFormat(locale, options).formatToParts(date);
  // The time holds together when the line wraps ("07:20" and "م" on one line): its spaces
  // become no-break spaces; the words of the date may still wrap.
  const hour = parts.findIndex((part) => part.type === "hour");
  return parts.map((part, i) => (i > hour && hour >= 0 ? part.value.replace(/ /g, "\u00a0") : part.value)).join("");
}

/**
 * The sentence for a moment that may be on another day: `key` with {time} ("It opens at
 * 18:00") when `ts` is today, else `dayKey` with {when} ("It opens on Thursday, 3 December
 * at 18:00"). Two sentences, not one with a longer {time}, because languages say "at six"
 * and "on Thursday" differently ("a las 18:00", "el jueves").
 * @returns {[string, object]} the key and its params, for render(node, ...at(...))
 */
export function at(key, dayKey, ts, params = {}) {
  return isToday(ts) ? [key, { ...params, time: ts }] : [dayKey, { ...params, when: ts }];
}

/** A number in the reader's locale. */
export function formatNumber(n) {
  return numbers.format(n);
}

/** A <time> element for a server timestamp (ms since the epoch), re-rendered on a switch. */
export function timeEl(ts) {
  const ms = typeof ts === "number" ? ts : Date.now();
  const node = document.createElement("time");
  node.dateTime = new Date(ms).toISOString();
  node.dataset.ts = String(ms);
  node.textContent = clock(ms);
  return node;
}

/** Names sorted for the reader's language. */
export function compareNames(a, b) {
  return a.localeCompare(b, locale);
}
