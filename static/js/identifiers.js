// The identifier guard on the tablet (DESIGN §6): the rules of interview/store/identifiers.py, so a
// peer typing without a network is warned as the case store would warn. Kept free of regular
// expression lookbehind (older Safari cannot parse it): what the Python patterns check behind
// a match is checked here by hand. tests/test_identifiers.py runs both on the same texts.

export const KINDS = ["national_id", "phone", "email", "address", "name"];
const MASK = "\u2022";
const CONTEXT = 24;

const W = "[\\p{L}\\p{N}_]"; // Python's \w
const SP = "[ \\u00a0]";
const AFTER_NUMBER = `(?!${W}|[.,]\\d|${SP}\\d|-\\d)`;
const END = `(?!${W})`;

const isWord = (ch) => !!ch && /[\p{L}\p{N}_]/u.test(ch);
const isDigit = (ch) => !!ch && /\d/.test(ch);
const isLetter = (ch) => !!ch && /\p{L}/u.test(ch);
const isUpper = (ch) => !!ch && ch === ch.toUpperCase() && ch !== ch.toLowerCase();
const isLower = (ch) => !!ch && ch === ch.toLowerCase() && ch !== ch.toUpperCase();

// (?<![\w+.,/-])(?<!\d[ \u00a0])
function beforeNumber(text, i) {
  const prev = text[i - 1];
  if (prev && (isWord(prev) || "+.,/-".includes(prev))) return false;
  return !(prev && " \u00a0".includes(prev) && isDigit(text[i - 2]));
}

// every match of `re` whose start passes `okBefore`, as Python's finditer with a lookbehind
function scan(re, text, okBefore = () => true) {
  const found = [];
  re.lastIndex = 0;
  let m;
  while ((m = re.exec(text))) {
    if (okBefore(text, m.index)) {
      found.push(m);
      if (!m[0].length) re.lastIndex += 1;
    } else {
      re.lastIndex = m.index + 1;
    }
  }
  return found;
}

// --- national identity numbers ----------------------------------------------------------------

const NATIONAL_ID = new RegExp(`(\\d{6})(?:${SP}|-)?(\\d{5})${AFTER_NUMBER}`, "gu");
const W1 = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const W2 = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

function control(digits, weights) {
  const rest = 11 - (weights.reduce((sum, w, i) => sum + w * digits[i], 0) % 11);
  if (rest === 11) return 0;
  return rest === 10 ? null : rest;
}

function realDate(year, month, day) {
  const d = new Date(Date.UTC(year, month - 1, day));
  return d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

export function validNationalId(number) {
  if (!/^\d{11}$/.test(number)) return false;
  const d = [...number].map(Number);
  if (control(d.slice(0, 9), W1) !== d[9] || control(d.slice(0, 10), W2) !== d[10]) return false;
  let day = Number(number.slice(0, 2));
  let month = Number(number.slice(2, 4));
  const year = Number(number.slice(4, 6));
  if (day > 40) day -= 40; // D-number
  if (month > 40) month -= 40; // H-number
  return month >= 1 && month <= 12 && day >= 1 && (realDate(1900 + year, month, day) || realDate(2000 + year, month, day));
}

// --- phone numbers ----------------------------------------------------------------------------

const NO_BODY = `\\d{8}|\\d{3}${SP}\\d{2}${SP}\\d{3}|\\d{2}(?:${SP}\\d{2}){3}|\\d{4}${SP}\\d{4}`;
const NO_PHONE = new RegExp(`((?:\\+|00)47${SP}?)?(${NO_BODY})${AFTER_NUMBER}`, "gu");
const INT_PHONE = new RegExp(`(?:\\+|00)[1-9]\\d{0,2}(?:${SP}|-)?(?:\\(0\\)${SP}?)?\\d(?:(?:${SP}|-)?\\d){5,12}${AFTER_NUMBER}`, "gu");
const AMOUNT_BEFORE = /(?:\bkr\.?|\bNOK|€|\$|£)\s?$/i;
const AMOUNT_AFTER = /^\s?(?:kr\b|kroner|kr\.|nok\b|,-|%|prosent|euro|eur\b|dollar|usd\b|pounds?\b)/i;

function isDateOrYears(body) {
  const digits = body.replace(/\D/g, "");
  if (body.length === 8) {
    for (const [y, m, d] of [
      [digits.slice(0, 4), digits.slice(4, 6), digits.slice(6)],
      [digits.slice(4), digits.slice(2, 4), digits.slice(0, 2)],
    ]) {
      if (Number(y) >= 1900 && Number(y) <= 2099 && realDate(Number(y), Number(m), Number(d))) return true;
    }
  }
  const halves = body.split(/\s+/);
  return halves.length === 2 && halves.every((h) => h.length === 4 && Number(h) >= 1900 && Number(h) <= 2099);
}

function phones(text) {
  const spans = [];
  for (const m of scan(NO_PHONE, text, beforeNumber)) {
    const body = m[2];
    const end = m.index + m[0].length;
    if (!m[1]) {
      if ("01".includes(body[0]) || isDateOrYears(body)) continue;
      if (AMOUNT_BEFORE.test(text.slice(Math.max(0, m.index - 5), m.index))) continue;
      if (AMOUNT_AFTER.test(text.slice(end, end + 10))) continue;
    }
    spans.push([m.index, end]);
  }
  const plusOk = (t, i) => !(isWord(t[i - 1]) || "+.,".includes(t[i - 1] || "_"));
  for (const m of scan(INT_PHONE, text, plusOk)) spans.push([m.index, m.index + m[0].length]);
  return spans;
}

// --- e-mail -----------------------------------------------------------------------------------

const EMAIL = new RegExp(`[\\p{L}\\p{N}_%+-][\\p{L}\\p{N}_.%+-]*@[\\p{L}\\p{N}_-]+(?:\\.[\\p{L}\\p{N}_-]+)*\\.\\p{L}{2,}${END}`, "gu");
const emailOk = (t, i) => !(isWord(t[i - 1]) || ".%+-".includes(t[i - 1] || "_"));

// --- street addresses -------------------------------------------------------------------------

const UNITS = [
  "%", "prosent", `kr${END}`, "kroner", `km${END}`, "meter", `m${END}`, `cm${END}`, `mil${END}`, `min${END}`,
  "minutt", "time", "timer", `t${END}`, "døgn", "dag", "uke", "måned", "mnd", `år${END}`, "gang", "person",
  "stk", `kg${END}`, `times?${END}`, `days?${END}`, `weeks?${END}`, `months?${END}`, `years?${END}`,
  `hours?${END}`, `minutes?${END}`, `people${END}`, `persons?${END}`, `miles?${END}`,
].join("|");
const HOUSE = `\\d{1,4}(?:${SP}?[A-Za-z]${END})?(?!${W}|[.,:]\\d|${SP}?(?:${UNITS}))`;
const NB_STRONG = "gata|gaten|gate|veien|vegen|vei|veg|stien|plassen|allé|alléen";
const NB_PROPER = "torget|torg|bakken|ringen|svingen|brygge|brygga|alle|alleen|plass|sti";
const CAP = "A-ZÆØÅÄÖÜÉ";
const NB_STREET = new RegExp(`\\p{L}[\\p{L}-]+?(?:${NB_STRONG})${SP}+${HOUSE}`, "giu");
const NB_STREET_PROPER = new RegExp(`[${CAP}]\\p{L}+?(?:${NB_PROPER})${SP}+${HOUSE}`, "gu");
const NB_STREET_WORDS = new RegExp(
  `(?:[${CAP}][\\p{L}\\p{N}_'’.-]*${SP}+){0,2}[${CAP}][\\p{L}\\p{N}_'’.-]*${SP}+(?:gate|gata|vei|veg|allé|plass)${SP}+${HOUSE}`,
  "gu",
);
const EN_STREET = new RegExp(
  `\\d{1,5}[A-Za-z]?${SP}+(?:[A-Z][a-z'’]+${SP}+){1,3}(?:Street|St|Road|Rd|Avenue|Ave|Lane|Drive|Close|Way|Place|Square|Terrace|Crescent|Gardens)\\b\\.?`,
  "gu",
);
const streetOk = (t, i) => !(isWord(t[i - 1]) || t[i - 1] === "-");
const enStreetOk = (t, i) => !(isWord(t[i - 1]) || ".,".includes(t[i - 1] || "_"));

function addresses(text) {
  const spans = [];
  for (const re of [NB_STREET, NB_STREET_PROPER, NB_STREET_WORDS]) {
    for (const m of scan(re, text, streetOk)) spans.push([m.index, m.index + m[0].length]);
  }
  for (const m of scan(EN_STREET, text, enStreetOk)) spans.push([m.index, m.index + m[0].length]);
  return spans;
}

// --- personal names ---------------------------------------------------------------------------

const WORD = /\p{L}+(?:[-'’]\p{L}+)*/gu;
const GAP = /^[ \t\u00a0]+$/;
const TRIGGERS = new Set(["heter", "het", "kalt", "kalles", "kaltes", "navnet", "named", "called"]);
const NOT_SURNAMES = new Set(
  [
    "January February March April May June July August September October November December",
    "Januar Februar Mars Mai Juni Juli Oktober Desember",
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
    "Mandag Tirsdag Onsdag Torsdag Fredag Lørdag Søndag",
    "Jul Påske Christmas Easter Gud God Jesus",
    "Norge Norway Norwegian Norsk Sverige Sweden Danmark Denmark English Engelsk",
    "Oslo Bergen Trondheim Stavanger Tromsø Kristiansand Drammen Bodø Ålesund",
    "Facebook Messenger Snapchat Instagram Google Teams Zoom Vipps",
    "The And Or But He She They We It Hun Han De Vi Det Den Og Men",
  ].join(" ").split(" "),
);

const proper = (w) => w.length >= 2 && isUpper(w[0]) && isLower(w[1]) && !NOT_SURNAMES.has(w);
const listed = (w, names) => isUpper(w[0]) && (names.has(w) || names.has(w.split("-")[0]));

function personNames(text, names) {
  const words = [...text.matchAll(WORD)];
  const spans = [];
  const joined = (i) => GAP.test(text.slice(words[i - 1].index + words[i - 1][0].length, words[i].index));
  const endOf = (i) => words[i].index + words[i][0].length;
  words.forEach((m, i) => {
    if (!listed(m[0], names)) return;
    let j = i;
    while (j + 1 < words.length && j - i < 3 && joined(j + 1) && proper(words[j + 1][0])) j += 1;
    if (j > i) {
      spans.push([m.index, endOf(j)]);
      return;
    }
    if (i > 0 && joined(i)) {
      const before = words[i - 1][0].toLowerCase();
      const nameIs = before === "is" && i > 1 && words[i - 2][0].toLowerCase() === "name";
      if (TRIGGERS.has(before) || nameIs) spans.push([m.index, endOf(i)]);
    }
  });
  return spans;
}

// --- putting it together ----------------------------------------------------------------------

function mask(piece) {
  let digits = 0;
  let previousLetter = false;
  return [...piece]
    .map((ch) => {
      if (isDigit(ch)) {
        digits += 1;
        previousLetter = false;
        return digits <= 2 ? ch : MASK;
      }
      if (isLetter(ch)) {
        const out = previousLetter ? MASK : ch;
        previousLetter = true;
        return out;
      }
      previousLetter = false;
      return ch;
    })
    .join("");
}

function excerpt(masked, start, end) {
  let left = Math.max(0, start - CONTEXT);
  let right = Math.min(masked.length, end + CONTEXT);
  if (left > 0) {
    const space = masked.indexOf(" ", left);
    left = space !== -1 && space < start ? space + 1 : start;
  }
  if (right < masked.length) {
    const space = masked.lastIndexOf(" ", right - 1);
    right = space !== -1 && space >= end ? space : end;
  }
  const piece = masked.slice(left, right).split(/\s+/).filter(Boolean).join(" ");
  return (left > 0 ? "…" : "") + piece + (right < masked.length ? "…" : "");
}

// Possible direct identifiers in a text: [{kind, start, end, excerpt}], in order, none overlapping.
export function findIdentifiers(text, names = new Set()) {
  if (!text) return [];
  const candidates = [];
  for (const m of scan(NATIONAL_ID, text, beforeNumber)) {
    if (validNationalId(m[1] + m[2])) candidates.push([m.index, m.index + m[0].length, "national_id"]);
  }
  for (const m of scan(EMAIL, text, emailOk)) candidates.push([m.index, m.index + m[0].length, "email"]);
  for (const [s, e] of phones(text)) candidates.push([s, e, "phone"]);
  for (const [s, e] of addresses(text)) candidates.push([s, e, "address"]);
  for (const [s, e] of personNames(text, names)) candidates.push([s, e, "name"]);
  candidates.sort((a, b) => a[0] - b[0] || b[1] - b[0] - (a[1] - a[0]) || KINDS.indexOf(a[2]) - KINDS.indexOf(b[2]));
  const chosen = [];
  for (const c of candidates) {
    if (chosen.length && c[0] < chosen[chosen.length - 1][1]) continue;
    chosen.push(c);
  }
  let masked = text;
  for (const [s, e] of chosen) masked = masked.slice(0, s) + mask(masked.slice(s, e)) + masked.slice(e);
  return chosen.map(([start, end, kind]) => ({ kind, start, end, excerpt: excerpt(masked, start, end) }));
}

// --- the warning under a note box -------------------------------------------------------------

function render(el, words, kinds, excerpts) {
  let box = el.querySelector(".identifier-warning");
  if (!kinds.length) {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = document.createElement("div");
    box.className = "banner identifier-warning";
    box.setAttribute("role", "note");
    const textarea = el.querySelector("textarea");
    const errors = textarea && textarea.nextElementSibling && textarea.nextElementSibling.matches(".errors") ? textarea.nextElementSibling : null;
    (errors || textarea || el.lastElementChild).after(box);
  }
  box.dataset.identifiers = kinds.join(" ");
  const lines = kinds.map((kind) => {
    const p = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = words[kind] || kind;
    p.append(strong);
    return p;
  });
  const advice = document.createElement("p");
  advice.textContent = words.advice || "";
  lines.push(advice);
  if (excerpts.length) {
    const where = document.createElement("p");
    where.className = "muted";
    where.append(`${words.where || ""} `);
    excerpts.forEach((text, i) => {
      if (i) where.append(" · ");
      const q = document.createElement("q");
      q.textContent = text;
      where.append(q);
    });
    lines.push(where);
  }
  box.replaceChildren(...lines);
}

// Watch the note boxes of a guide section: warn while typing, and when a sync answer names
// kinds for a note. Returns {checkAll} (after the page lays the tablet's notes over it), or
// null when the page carries no guard data.
export function attachGuard(form) {
  const dataEl = document.getElementById("identifier-guard");
  if (!dataEl) return null;
  const data = JSON.parse(dataEl.textContent);
  const names = new Set(data.names || []);
  const words = data.words || {};
  const fromServer = new Map(); // note id → {text, kinds} of the last answer naming it
  const timers = new WeakMap();

  function check(el) {
    const textarea = el.querySelector("textarea");
    if (!textarea) return;
    const text = textarea.value.replace(/\r\n/g, "\n");
    const found = findIdentifiers(text, names);
    const kinds = new Set(found.map((f) => f.kind));
    const said = fromServer.get(el.dataset.noteId);
    if (said && said.text === text) said.kinds.forEach((k) => kinds.add(k));
    render(el, words, KINDS.filter((k) => kinds.has(k)), found.map((f) => f.excerpt));
  }

  const checkAll = () => form.querySelectorAll(".note[data-note-id]").forEach(check);
  form.addEventListener("input", (event) => {
    const el = event.target.closest && event.target.closest(".note[data-note-id]");
    if (!el || event.target.tagName !== "TEXTAREA") return;
    clearTimeout(timers.get(el));
    timers.set(el, setTimeout(() => check(el), 400));
  });
  document.addEventListener("tablet:warnings", (event) => {
    for (const { id, kinds, text } of event.detail || []) {
      if (typeof text === "string") fromServer.set(id, { text, kinds: kinds || [] });
      const el = form.querySelector(`.note[data-note-id="${CSS.escape(id)}"]`);
      if (el) check(el);
    }
  });
  checkAll();
  return { checkAll };
}

// Watch the free-text fields of a page other than a guide section (a stop or distress comment,
// the debrief's reflection: `[data-identifier-field]`): warn while typing, as under a note box,
// and when a sync answer names kinds for the debrief shown. Returns null without guard data.
export function attachFieldGuard(root = document) {
  const dataEl = document.getElementById("identifier-guard");
  const fields = [...root.querySelectorAll("[data-identifier-field]")];
  if (!dataEl || !fields.length) return null;
  const data = JSON.parse(dataEl.textContent);
  const names = new Set(data.names || []);
  const words = data.words || {};
  const fromServer = new Map(); // record id → {text, kinds} of the last answer naming it
  const recordOf = (el) => (el.closest("form") && el.closest("form").dataset.debriefId) || "";

  function check(el) {
    const textarea = el.querySelector("textarea");
    if (!textarea) return;
    const text = textarea.value.replace(/\r\n/g, "\n");
    const found = findIdentifiers(text, names);
    const kinds = new Set(found.map((f) => f.kind));
    const said = fromServer.get(recordOf(el));
    if (said && said.text.trim() === text.trim()) said.kinds.forEach((k) => kinds.add(k));
    render(el, words, KINDS.filter((k) => kinds.has(k)), found.map((f) => f.excerpt));
    const box = el.querySelector(".identifier-warning");
    // the warning is read with the field, as its error is
    if (box) {
      box.id = `${textarea.id}-identifiers`;
      const ids = new Set((textarea.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
      ids.add(box.id);
      textarea.setAttribute("aria-describedby", [...ids].join(" "));
    } else if (textarea.hasAttribute("aria-describedby")) {
      const ids = textarea.getAttribute("aria-describedby").split(" ").filter((id) => id && id !== `${textarea.id}-identifiers`);
      if (ids.length) textarea.setAttribute("aria-describedby", ids.join(" "));
      else textarea.removeAttribute("aria-describedby");
    }
  }

  const timers = new WeakMap();
  for (const el of fields) {
    el.addEventListener("input", (event) => {
      if (event.target.tagName !== "TEXTAREA") return;
      clearTimeout(timers.get(el));
      timers.set(el, setTimeout(() => check(el), 400));
    });
  }
  document.addEventListener("tablet:warnings", (event) => {
    for (const { id, kinds, text } of event.detail || []) {
      if (typeof text === "string") fromServer.set(id, { text, kinds: kinds || [] });
    }
    fields.forEach(check);
  });
  // a box the server drew for words no longer in the field (a draft laid over it) goes
  const checkAll = () => fields.forEach(check);
  return { checkAll };
}
