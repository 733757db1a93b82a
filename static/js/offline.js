// The tablet side of the interview: every change is saved in IndexedDB with its outbox entry
// (store.js), the outbox drains to POST /api/v1/sync, and the pages are shown from the tablet's
// own state, so an interview runs the same with or without a network. Without IndexedDB the
// plain forms post to the server as before.

import { rescueCopy, showKeeping } from "./keeping.js";
import * as seal from "./seal.js";
import * as store from "./store.js";

const PAGES = "fact-pages-v1"; // kept pages: they hold the peer's notes
const FILES = "fact-static-v1"; // styles, scripts, icons, the signed-out page: nobody's data
const SYNC_EVERY_MS = 30000;
const BATCH = 200;
const MAX_TEXT = 20000;

const stringsEl = document.getElementById("tablet-strings");
const strings = stringsEl ? JSON.parse(stringsEl.textContent) : {};
const userId = document.body.dataset.userId || null;
const ctxEl = document.getElementById("interview-context");
const ctx = ctxEl ? { ...ctxEl.dataset } : null;
const pageName = document.body.dataset.page || "";

// The button that sent a form: `event.submitter` where the browser has it (Safari 15.4+),
// else the submit button last clicked.
let lastClicked = null;
document.addEventListener(
  "click",
  (event) => {
    const button = event.target.closest && event.target.closest("button[type=submit], input[type=submit]");
    if (button) lastClicked = button;
  },
  true,
);
function submitterOf(event) {
  return event.submitter || (lastClicked && lastClicked.form === event.target ? lastClicked : null);
}

const state = {
  ready: false,
  csrf: document.querySelector("meta[name=csrf-token]")?.content || "",
  role: null,
  session: "unknown", // ok | login
  network: navigator.onLine ? "online" : "offline", // online | offline | unreachable
  storage: null, // the last storage error, shown until a save works again
  serverError: false,
  syncing: null,
  lastSyncOk: false,
  batch: BATCH,
  leave: false, // this page's interview was withdrawn and has left the tablet
};

// The singular form when there is one, where the words have one (`name_one`).
function count(name, n, extra = {}) {
  const text = n === 1 && strings[`${name}_one`] ? strings[`${name}_one`] : strings[name];
  return fmt(text, { n, ...extra });
}

function fmt(text, values) {
  return String(text || "").replace(/%\((\w+)\)[sd]/g, (_, name) => String(values[name] ?? ""));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// --- the status line ------------------------------------------------------------------------

const bar = document.getElementById("sync-bar");
const statusEl = document.getElementById("sync-status");

function placeStatus() {
  // in the interview the status sits in the sticky safety bar, so it is always in sight
  const safety = document.querySelector(".safety-bar");
  if (bar && safety) {
    bar.classList.add("in-safety-bar");
    safety.appendChild(bar);
  }
  if (bar) bar.hidden = false;
}

function showStatus(kind, text, href) {
  if (!statusEl) return;
  if (statusEl.dataset.state === kind && statusEl.textContent === text) return; // no flicker
  statusEl.dataset.state = kind;
  if (href) {
    // the whole message is the link: one large target that says where it goes
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    statusEl.replaceChildren(a);
  } else {
    statusEl.textContent = text;
  }
}

// Where the work is, in one line: a full or failing storage first, then logged out, two
// versions, refusals, then no network vs. a case store that does not answer, then waiting or
// all saved. Another person's waiting work is named (never shown) after it.
async function updateStatus() {
  if (!state.ready || !userId) return;
  let waiting = 0;
  let others = 0;
  let conflicts = 0;
  let rejected = [];
  try {
    const counts = await store.waitingByUser();
    for (const [who, n] of counts) {
      if (who === String(userId)) waiting = n;
      else others += n;
    }
    conflicts = (await store.allRecords(userId)).filter((r) => (r.entity === "note" || r.entity === "debrief") && r.data && r.data.conflict && !r.data.deleted).length;
    rejected = await store.rejectedOf(userId);
  } catch (error) {
    showStatus("error", fmt(strings.storage_error, { error: error.name || String(error) }));
    return;
  }
  const offline = !navigator.onLine || state.network === "offline";
  const unreachable = !offline && state.network === "unreachable";
  let kind = "saved";
  let text = state.lastSyncOk ? strings.all_saved : strings.saved_local;
  let href = null;
  if (state.storage) {
    kind = "full";
    text = state.storage.name === "QuotaExceededError" ? strings.storage_full : fmt(strings.storage_error, { error: state.storage.name || String(state.storage) });
  } else if (state.session === "login") {
    kind = "login";
    text = waiting ? count("login", waiting) : strings.login_none;
    href = `/login?next=${encodeURIComponent(location.pathname)}`;
  } else if (conflicts) {
    kind = "conflict";
    text = strings.conflict;
    href = "/interviews/conflicts";
  } else if (rejected.length) {
    kind = "error";
    text = fmt(strings.rejected, { n: rejected.length, reason: rejected[0].reason });
  } else if (offline) {
    kind = "offline";
    text = waiting ? count("offline", waiting) : strings.offline_none;
  } else if (unreachable) {
    kind = "unreachable";
    text = waiting ? count("unreachable", waiting) : strings.unreachable_none;
  } else if (waiting) {
    kind = "waiting";
    text = count("waiting", waiting);
  } else if (state.serverError) {
    kind = "error";
    text = strings.server_error;
  }
  if (others) text = `${text} ${count("others_waiting", others)}`;
  showStatus(kind, text, href);
}

function storageFailed(error) {
  state.storage = error;
  updateStatus();
}

// --- talking to the case store ---------------------------------------------------------------

class Stop extends Error {
  constructor(kind, detail) {
    super(kind);
    this.kind = kind;
    this.detail = detail;
  }
}

// A fetch that fails is "offline" when the tablet has no network, and "unreachable" when it
// has one but the case store does not answer (down, or silent past the wait).
async function request(url, options = {}, ms = 20000) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    return await fetch(url, { credentials: "same-origin", ...options, signal: controller.signal });
  } catch {
    throw new Stop(navigator.onLine ? "unreachable" : "offline");
  } finally {
    clearTimeout(timer);
  }
}

async function refreshSession() {
  const response = await request("/api/v1/session", { headers: { Accept: "application/json" } });
  if (response.status === 401) throw new Stop("login");
  if (!response.ok) throw new Stop("error");
  const info = await response.json();
  state.csrf = info.csrf_token;
  state.role = info.role;
  if (String(info.user_id) !== String(userId)) throw new Stop("login");
  state.session = "ok";
  state.sid = info.sid || null;
  if (info.sid) await store.setMeta(`sid:${userId}`, info.sid).catch(() => {});
  if (info.rescue_token) await store.setMeta(`rescue:${userId}`, info.rescue_token).catch(() => {});
  document.querySelectorAll("input[name=csrf_token]").forEach((input) => (input.value = info.csrf_token));
  return info;
}

async function post(body, retried = false) {
  const response = await request("/api/v1/sync", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": state.csrf, Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status === 401) throw new Stop("login");
  if (response.status === 413) throw new Stop("too_large");
  if (response.status === 400 || response.status === 403) {
    const answer = await response.json().catch(() => ({}));
    if (answer.code === "csrf" && !retried) {
      await refreshSession();
      return post(body, true);
    }
    throw new Stop(answer.code === "csrf" ? "login" : "error", answer.error);
  }
  if (!response.ok) throw new Stop("error");
  return response.json();
}

// Send the outbox until nothing sendable is left; take in what others changed.
async function drain() {
  if (!navigator.onLine) {
    state.network = "offline";
    return;
  }
  if (state.session !== "ok") await refreshSession();
  const device = await store.deviceId();
  const replaces = (await store.getMeta("replaces")) || null;
  for (let round = 0; round < 50; round += 1) {
    const { batch, total, interviews } = await store.takeBatch(userId, state.batch);
    const cursor = await store.getMeta(`cursor:${userId}`);
    let answer;
    try {
      // pending: what the tablet still holds besides this batch, so a tablet that has sent
      // everything never looks like one holding changes (the coordinator's alerts read it)
      const pending = Math.max(0, total - batch.length);
      const body = { device_id: device, cursor: cursor ?? null, pending, pending_interviews: interviews, changes: batch.map(store.asChange) };
      if (replaces) body.replaces = replaces;
      answer = await post(body);
    } catch (error) {
      if (error.kind === "too_large" && state.batch > 1) {
        state.batch = Math.max(1, Math.floor(state.batch / 2));
        continue;
      }
      throw error;
    }
    state.network = "online";
    state.batch = BATCH;
    const summary = await store.applyAnswer({ userId, batch, results: answer.results, updates: answer.updates, cursor: answer.cursor });
    announceWarnings(batch, answer.results);
    if (summary && summary.withdrawn.length) await dropWithdrawn(summary.withdrawn);
    // the server answers updates in pages: ask again while the cursor still moves
    const more = answer.cursor !== (cursor ?? null) && answer.updates.length > 0;
    if (!batch.length && !more) break;
  }
  state.lastSyncOk = true;
  state.serverError = false;
  await dropFinished();
}

// The identifier guard: tell the section page which kinds the case store found in each kept
// note (kinds only; identifiers.js shows the warning under the note box).
function announceWarnings(batch, results) {
  const byId = new Map(batch.map((e) => [e.change_id, e]));
  const notes = [];
  for (const result of results) {
    const e = byId.get(result.change_id);
    if (!e || e.entity !== "note" || !["applied", "duplicate", "conflict"].includes(result.status)) continue;
    notes.push({ id: e.id, kinds: result.warnings || [], text: e.data ? e.data.text : undefined });
  }
  if (notes.length) document.dispatchEvent(new CustomEvent("tablet:warnings", { detail: notes }));
}

function syncNow() {
  if (!state.ready || !userId) return Promise.resolve();
  if (!state.syncing) {
    const run = async () => {
      try {
        statusEl?.setAttribute("aria-busy", "true");
        await drain();
      } catch (error) {
        if (error instanceof Stop) {
          if (error.kind === "login") state.session = "login";
          else if (error.kind === "offline" || error.kind === "unreachable") state.network = error.kind;
          else state.serverError = true;
          state.lastSyncOk = false;
        } else if (error && error.name === "QuotaExceededError") {
          state.storage = error;
        } else {
          state.serverError = true;
          console.warn("sync stopped", error && error.name);
        }
      }
    };
    const locked = navigator.locks ? () => navigator.locks.request("fact-sync", run) : run;
    state.syncing = locked().finally(async () => {
      state.syncing = null;
      statusEl?.removeAttribute("aria-busy");
      if (state.leave) {
        // this page's interview is no longer on the tablet: the participant has withdrawn
        state.leave = false;
        window.alert(strings.withdrawn_removed);
        location.replace("/interviews/");
        return;
      }
      await updateStatus();
      document.dispatchEvent(new CustomEvent("tablet:synced"));
    });
  }
  return state.syncing;
}

let soon = null;
function syncSoon(ms = 1500) {
  // at most one waiting: steady typing still reaches the case store every moment or two
  if (soon) return;
  soon = setTimeout(() => {
    soon = null;
    syncNow();
  }, ms);
}

// Wait for a sync at most `ms`, so a page change never hangs on a weak network.
async function syncBriefly(ms = 2500) {
  if (!navigator.onLine) return;
  await Promise.race([syncNow(), sleep(ms)]);
}

// Synced data of finished interviews leaves the tablet (nothing waiting, debrief written).
async function dropFinished() {
  const records = await store.allRecords(userId);
  const mine = (r) => r.entity === "debrief" && r.data && (String(r.data.author_id) === String(userId) || !r.from_server);
  for (const iv of records.filter((r) => r.entity === "interview")) {
    if (!["completed", "stopped"].includes(iv.data.status)) continue;
    if (ctx && ctx.interviewId === iv.id) continue; // the peer is looking at it
    if ((await store.pendingFor(iv.id)).length) continue; // anyone's: nothing waiting leaves
    const debriefed = records.some((r) => mine(r) && r.data.interview_id === iv.id);
    if (state.role === "peer" && !debriefed) continue;
    await store.dropInterview(iv.id);
    await dropPages(iv.id);
  }
}

// The participant has withdrawn: the tablet's records and outbox entries for these interviews
// are already gone (store.applyAnswer); their kept pages and their place in the list go too, and
// a page showing one of them is left for the list of interviews.
async function dropWithdrawn(interviewIds) {
  for (const id of interviewIds) await dropPages(id);
  const prepared = await store.getMeta(`prepared:${userId}`);
  if (prepared && prepared.interviews) {
    prepared.interviews = prepared.interviews.filter((iv) => !interviewIds.includes(iv.id));
    await store.setMeta(`prepared:${userId}`, prepared);
  }
  if (ctx && interviewIds.includes(ctx.interviewId)) state.leave = true;
}

async function dropPages(interviewId) {
  if (!("caches" in window)) return;
  const cache = await caches.open(PAGES);
  for (const req of await cache.keys()) {
    if (new URL(req.url).pathname.startsWith(`/interviews/${interviewId}`)) await cache.delete(req);
  }
}

// --- the interview's state, as this tablet knows it -------------------------------------------

function fold(status, data) {
  const kind = data.kind;
  if (kind === "capacity_check" && data.details && data.details.outcome === "ok" && status === "planned") return "in_progress";
  if ((kind === "pause" || kind === "distress_1") && status === "in_progress") return "paused";
  if (kind === "resume" && status === "paused") return "in_progress";
  if ((kind === "stop" || kind === "distress_2") && ["planned", "in_progress", "paused"].includes(status)) return "stopped";
  if (kind === "complete" && ["in_progress", "paused"].includes(status)) return "completed";
  return status;
}

async function localState() {
  const record = await store.getRecord("interview", ctx.interviewId);
  const fromStore = record && Number(record.rev) >= Number(ctx.rev || 0);
  let status = (fromStore && record.data.status) || ctx.status;
  let section = Number(ctx.currentSection || 0);
  if (record && record.data.current_section != null) section = Number(record.data.current_section);
  const records = await store.recordsOf(ctx.interviewId, userId);
  const consented =
    ctx.consented === "1" || records.some((r) => r.entity === "consent" && r.data.kind !== "withdrawal" && r.data.answers && r.data.answers.participate);
  for (const entry of await store.pendingFor(ctx.interviewId, userId)) {
    if (entry.entity === "event") status = fold(status, entry.data);
  }
  return { status, section, consented };
}

function phaseOf(st) {
  if (st.status === "planned") return "planned";
  if (st.status === "completed" || st.status === "stopped") return "over";
  return st.consented ? "running" : "consent";
}

let stateShown = false;
function showState(st) {
  document.querySelectorAll("[data-show-when]").forEach((el) => {
    const hide = !el.dataset.showWhen.split(" ").includes(st.status);
    // a control that takes another's place while the page is in use waits for the next tap;
    // the first showing of the tablet's state is no such change
    if (stateShown && el.hidden && !hide) el.dataset.settleUntil = String(Date.now() + SETTLE_MS);
    el.hidden = hide;
  });
  stateShown = true;
  document.querySelectorAll("[data-status-badge]").forEach((el) => {
    const badge = document.createElement("span");
    badge.className = `badge badge-${st.status}`;
    badge.textContent = (strings.status || {})[st.status] || st.status;
    el.replaceChildren(badge);
  });
  const phase = phaseOf(st);
  document.querySelectorAll("[data-phase]").forEach((el) => {
    el.hidden = !el.dataset.phase.split(" ").includes(phase);
  });
  document.querySelectorAll("[data-current-section-link]").forEach((el) => {
    el.href = `${ctx.base}/section/${st.section}`;
  });
}

// Show the page that fits the tablet's state, as the server would by redirecting.
function guard(st) {
  const base = ctx.base;
  const running = ["in_progress", "paused"].includes(st.status);
  const over = ["completed", "stopped"].includes(st.status);
  let target = null;
  if (pageName === "section") {
    if (st.status === "planned") target = `${base}/capacity`;
    else if (!st.consented) target = running ? `${base}/consent` : base;
  } else if (pageName === "consent") {
    if (st.status === "planned") target = `${base}/capacity`;
    else if (st.consented) target = `${base}/section/0`;
    else if (!running) target = base;
  } else if (pageName === "capacity" || pageName === "reschedule") {
    if (st.status !== "planned") target = base;
  } else if (["finish", "distress", "distress_two"].includes(pageName)) {
    if (!running) target = base;
  } else if (pageName === "stop") {
    if (!running && st.status !== "planned") target = base;
  } else if (pageName === "debrief") {
    if (!over) target = base;
  }
  if (!target) return false;
  // a page the person has already typed in stays: their words come first
  const typed = [...document.querySelectorAll("main textarea, main input[type=text]")].some((f) => f.value !== f.defaultValue);
  if (typed) return false;
  // never bounce between two pages that disagree
  const key = "tablet-guard";
  const last = JSON.parse(sessionStorage.getItem(key) || "{}");
  if (last.from === target && Date.now() - last.at < 5000) return false;
  sessionStorage.setItem(key, JSON.stringify({ from: location.pathname, at: Date.now() }));
  location.replace(target);
  return true;
}

const LEAVING = Symbol("leaving");

// Go on to the next page once the change had its moment to reach the case store. `said` names
// a confirmation ({sent, kept}): the next page shows "sent" when nothing of this interview is
// waiting any more, else "kept" (saved on this tablet, sent when there is a network).
async function go(url, said = null) {
  await syncBriefly();
  if (said) notice(await sentOrKept(said));
  location.assign(url);
  return LEAVING; // the form stays disabled: what it recorded is saved
}

async function sentOrKept(said, values = {}) {
  const waiting = (await store.pendingFor(ctx.interviewId, userId).catch(() => [1])).length;
  return fmt(strings[waiting ? said.kept : said.sent], values);
}

// A confirmation for the next page (the plain forms' flash messages, made on the tablet).
const NOTICE = "fact-notice";
function notice(text) {
  try {
    sessionStorage.setItem(NOTICE, JSON.stringify({ text, user: userId, at: Date.now() }));
  } catch {
    // no sessionStorage: the page itself shows the state
  }
}

function showNotices() {
  let row = null;
  try {
    row = JSON.parse(sessionStorage.getItem(NOTICE) || "null");
    sessionStorage.removeItem(NOTICE);
  } catch {
    row = null;
  }
  if (row && String(row.user) === String(userId) && Date.now() - row.at < 60000) say(row.text);
}

function say(text, kind = "success") {
  const box = document.getElementById("tablet-notices");
  if (!box || !text) return;
  const p = document.createElement("p");
  p.className = `flash flash-${kind}`;
  p.textContent = text;
  box.replaceChildren(p);
}

// "Checked in at 14:05" in the safety bar: the last check-in the case store has, or a newer one
// still waiting on this tablet.
function clock(iso) {
  // the page's language decides the form ("14:05", "2:05 PM"), as it does for the server's words
  return new Intl.DateTimeFormat(document.documentElement.lang || "nb", {
    timeZone: "Europe/Oslo", hour: "numeric", minute: "2-digit",
  }).format(new Date(iso));
}

async function showCheckIn() {
  const el = document.querySelector("[data-last-check-in]");
  if (!el || !ctx) return;
  const waiting = (await store.pendingFor(ctx.interviewId, userId))
    .filter((e) => e.entity === "event" && e.data && e.data.kind === "check_in")
    .map((e) => e.recorded_at)
    .sort();
  const latest = waiting.length ? waiting[waiting.length - 1] : "";
  let known = el.dataset.lastCheckIn || "";
  if (!latest && el.dataset.waitingAt > known) known = el.dataset.waitingAt; // it was sent
  el.dataset.lastCheckIn = known;
  el.dataset.waitingAt = latest;
  if (latest && latest > known) el.textContent = fmt(strings.checked_in_waiting, { time: clock(latest) });
  else if (known) el.textContent = fmt(strings.checked_in_at, { time: clock(known) });
  el.hidden = !(latest || known);
}

// An event (pause, resume, check-in, distress) is recorded once however often it is tapped:
// taps while it is being recorded do nothing, and a button that has just taken the place of the
// one tapped does not take the same tap (Resume appears where Pause was).
let acting = false;
const SETTLE_MS = 700;
async function safetyEvent(kind, allowed) {
  if (acting) return false;
  acting = true;
  try {
    const st = await localState();
    if (!allowed.includes(st.status)) return false;
    const recorded = await recordEvent(kind);
    showState(await localState());
    if (kind === "check_in") {
      await showCheckIn();
      const time = clock(new Date().toISOString());
      const sent = async () => !(await store.pendingFor(ctx.interviewId, userId)).some((e) => e.id === recorded);
      // a sync already under way may have left before this check-in: then one more, at once
      syncNow().then(async () => {
        if (!(await sent()) && navigator.onLine) await syncNow();
        const waiting = !(await sent());
        await showCheckIn();
        say(fmt(strings[waiting ? "checked_in_kept" : "checked_in_sent"], { time }), waiting ? "info" : "success");
      });
    } else {
      syncSoon(200);
    }
    return true;
  } finally {
    acting = false;
  }
}

document.addEventListener(
  "click",
  (event) => {
    const host = event.target.closest && event.target.closest("[data-show-when]");
    if (host && Number(host.dataset.settleUntil || 0) > Date.now()) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

async function recordEvent(kind, details = {}) {
  const id = store.uuid();
  await store.saveImmutable({
    entity: "event",
    id,
    interviewId: ctx.interviewId,
    userId,
    data: { interview_id: ctx.interviewId, kind, details },
  });
  return id;
}

function saveSection(index) {
  return store.saveEditable({
    entity: "interview",
    id: ctx.interviewId,
    interviewId: ctx.interviewId,
    userId,
    values: { current_section: index },
    createData: {},
    known: { rev: Number(ctx.rev || 1), base: { current_section: Number(ctx.currentSection || 0) } },
  });
}

function formAlert(form, message) {
  let alert = form.querySelector(".form-alert");
  if (!alert) {
    alert = document.createElement("p");
    alert.className = "banner error form-alert";
    alert.setAttribute("role", "alert");
    alert.tabIndex = -1;
    form.prepend(alert);
  }
  alert.textContent = message;
  alert.focus();
}

// --- notes on a guide section ----------------------------------------------------------------

function noteValues(el) {
  const checked = el.querySelector("input[type=radio]:checked");
  return {
    text: el.querySelector("textarea").value.replace(/\r\n/g, "\n"),
    polarity: checked && checked.value ? checked.value : null,
    themes: [...el.querySelectorAll("input[data-key]:checked")].map((i) => i.dataset.key).sort(),
    possible_quote: el.querySelector("input[type=checkbox][id$='-quote']").checked,
  };
}

// what the server put in the box, before anyone typed: the base of an edit
function noteDefaults(el) {
  const checked = [...el.querySelectorAll("input[type=radio]")].find((r) => r.defaultChecked);
  return {
    text: el.querySelector("textarea").defaultValue.replace(/\r\n/g, "\n"),
    polarity: checked && checked.value ? checked.value : null,
    themes: [...el.querySelectorAll("input[data-key]")].filter((i) => i.defaultChecked).map((i) => i.dataset.key).sort(),
    possible_quote: el.querySelector("input[type=checkbox][id$='-quote']").defaultChecked,
  };
}

const sameNote = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function fillNote(el, data) {
  el.querySelector("textarea").value = data.deleted ? "" : data.text || "";
  fillTags(el, data);
}

function fillTags(el, data) {
  el.querySelectorAll("input[type=radio]").forEach((r) => (r.checked = (r.value || null) === (data.polarity || null)));
  const themes = new Set(data.themes || []);
  el.querySelectorAll("input[data-key]").forEach((c) => (c.checked = themes.has(c.dataset.key)));
  if (themes.size) el.querySelector("details.themes")?.setAttribute("open", "");
  el.querySelector("input[type=checkbox][id$='-quote']").checked = !!data.possible_quote;
}

// Each note comes with its chosen themes only; the other choices are copied from the page's
// one list, named for the note and in the server's order (the question's suggested themes
// first, then the page's order), the chosen boxes kept as they are. Done before anything
// else reads the notes, with or without this tablet's storage.
function fillThemeChoices() {
  const source = document.getElementById("theme-choices");
  if (!source) return;
  document.querySelectorAll("details.themes[data-choices]").forEach((details) => {
    const first = (details.dataset.first || "").split(" ").filter(Boolean);
    const rank = (label) => {
      const at = first.indexOf(label.querySelector("input").dataset.key);
      return at < 0 ? first.length : at;
    };
    const fieldset = details.querySelector("fieldset");
    const kept = new Map([...fieldset.querySelectorAll("label.check")].map((l) => [l.querySelector("input").dataset.key, l]));
    const labels = [...source.content.cloneNode(true).children]
      .sort((a, b) => rank(a) - rank(b))
      .map((label) => {
        const key = label.querySelector("input").dataset.key;
        if (kept.has(key)) {
          const own = kept.get(key);
          kept.delete(key);
          return own;
        }
        label.querySelector("input").name = `${details.dataset.choices}-theme`;
        return label;
      });
    fieldset.querySelector("noscript")?.remove();
    // what is left in `kept` is a retired theme the note still carries: it stays last
    fieldset.replaceChildren(fieldset.querySelector("legend"), ...labels, ...kept.values());
    delete details.dataset.choices;
  });
}

// A note with two versions shows the other one beside it, as the server's page does.
function showConflict(el, record) {
  const conflict = record.data.conflict;
  el.classList.toggle("conflict", !!conflict);
  let box = el.querySelector(".conflict-box");
  if (!conflict) {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = document.createElement("div");
    box.className = "conflict-box";
    box.setAttribute("role", "note");
    el.querySelector("textarea").before(box);
  }
  const p = document.createElement("p");
  const strong = document.createElement("strong");
  strong.textContent = `${strings.two_versions}:`;
  p.append(strong, ` ${strings.two_versions_text}`);
  const quote = document.createElement("blockquote");
  quote.textContent = conflict.text || record.data.text || "";
  const link = document.createElement("a");
  link.href = `/interviews/conflicts#note-${record.id}`;
  link.textContent = strings.choose_version;
  const linkP = document.createElement("p");
  linkP.append(link);
  box.replaceChildren(p, quote, linkP);
}

let slotCounter = 0;

function renameSlot(el, fromPrefix, toPrefix) {
  el.querySelectorAll("[id],[for],[name],[aria-describedby]").forEach((node) => {
    for (const attr of ["id", "for", "name", "aria-describedby"]) {
      const value = node.getAttribute(attr);
      if (value && value.includes(fromPrefix)) node.setAttribute(attr, value.split(fromPrefix).join(toPrefix));
    }
  });
}

function freshSlot(template) {
  const el = template.cloneNode(true);
  slotCounter += 1;
  const prefix = `new-${el.dataset.question}`;
  renameSlot(el, prefix, `${prefix}-${slotCounter}`);
  el.dataset.noteId = store.uuid();
  el.dataset.new = "";
  el.dataset.rev = "";
  const hidden = el.querySelector("input[type=hidden][name$='-id']");
  if (hidden) hidden.value = el.dataset.noteId;
  return el;
}

function initSection(form) {
  const templates = {};
  const saving = new Map(); // note element -> its saves still being written
  const base = new WeakMap();

  // Words in a box before this script woke up were typed by the person (a slow tablet) or kept
  // by the server after a refused post: they are saved, never cleared. The form carries
  // autocomplete="off", so a browser does not put old words back into the boxes on reload.
  const early = new Set();
  form.querySelectorAll(".note[data-new]").forEach((slot) => {
    templates[slot.dataset.question] = slot.cloneNode(true);
    const empty = templates[slot.dataset.question];
    empty.querySelector("textarea").textContent = "";
    fillNote(empty, { text: "", polarity: null, themes: [], possible_quote: false });
    // a kept page carries the same id for its empty box on every load: never reuse it
    slot.dataset.noteId = store.uuid();
    const hidden = slot.querySelector("input[type=hidden][name$='-id']");
    if (hidden) hidden.value = slot.dataset.noteId;
    if (slot.querySelector("textarea").value.trim()) early.add(slot);
  });
  form.querySelectorAll(".note:not([data-new])").forEach((el) => {
    base.set(el, noteDefaults(el));
    if (!sameNote(noteValues(el), base.get(el))) early.add(el);
  });

  const noteEls = () => [...form.querySelectorAll(".note[data-note-id]")];
  const questions = new Set(Object.keys(templates));

  async function overlay({ initial }) {
    const records = (await store.recordsOf(ctx.interviewId, userId)).filter((r) => r.entity === "note");
    const pending = new Set((await store.pendingFor(ctx.interviewId, userId)).map((e) => e.record_key));
    const byId = new Map(records.map((r) => [r.id, r]));
    const shown = new Set();
    for (const el of noteEls()) {
      if ("new" in el.dataset) continue;
      if (initial && early.has(el)) continue; // the person's words on screen are the newest
      const record = byId.get(el.dataset.noteId);
      shown.add(el.dataset.noteId);
      if (!record) continue;
      const busy = saving.has(el) || el.contains(document.activeElement);
      const ours = pending.has(record.key);
      if (ours && !initial) continue; // what is on screen is newer than the store's copy
      if (!ours && busy) {
        // typing now: the words on screen stay; tags changed elsewhere are taken in
        if (record.rev != null && record.data.text === el.querySelector("textarea").value) el.dataset.rev = record.rev;
        if (!saving.has(el) && !el.querySelector(".tags").contains(document.activeElement)) fillTags(el, record.data);
        showConflict(el, record);
        continue;
      }
      if (ours || record.rev == null || Number(record.rev) >= Number(el.dataset.rev || 0)) {
        if (record.data.deleted && !ours) {
          el.remove();
          continue;
        }
        fillNote(el, record.data);
        showConflict(el, record);
        if (record.rev != null && !ours) el.dataset.rev = record.rev;
      }
    }
    const missing = records
      .filter((r) => !shown.has(r.id) && questions.has(r.data.question_key) && !r.data.deleted)
      .sort((a, b) => String(a.created_local || a.data.updated_at || "").localeCompare(String(b.created_local || b.data.updated_at || "")));
    for (const record of missing) {
      const slot = form.querySelector(`.note[data-new][data-question="${CSS.escape(record.data.question_key)}"]`);
      if (!slot) continue;
      const el = freshSlot(templates[record.data.question_key]);
      delete el.dataset.new;
      el.dataset.noteId = record.id;
      el.dataset.rev = record.rev ?? "";
      const label = el.querySelector("label");
      if (label && label.firstChild) label.firstChild.textContent = strings.note;
      fillNote(el, record.data);
      showConflict(el, record);
      slot.before(el);
    }
  }

  // Saved on every input, not after a pause: the words go to the journal at once (a reload or
  // a Back swipe right after a keystroke cannot beat it), then into IndexedDB with their
  // outbox entry. IndexedDB runs the saves in the order they were asked for.
  function save(el) {
    if (!el.isConnected) return Promise.resolve();
    const values = noteValues(el);
    const isNew = "new" in el.dataset;
    if (isNew && !values.text.trim()) return Promise.resolve(); // an empty box is not a note yet
    if (values.text.length > MAX_TEXT) {
      formAlert(form, strings.too_long);
      return Promise.resolve();
    }
    const deleted = !isNew && !values.text.trim();
    const seen = el.dataset.rev === "" ? null : Number(el.dataset.rev);
    const args = {
      entity: "note",
      id: el.dataset.noteId,
      interviewId: ctx.interviewId,
      userId,
      values: { ...values, deleted },
      createData: { interview_id: ctx.interviewId, question_key: el.dataset.question },
      seenRev: seen,
      known: isNew || seen === null ? null : { rev: seen, base: { ...base.get(el), deleted: false } },
    };
    const mark = store.journal(userId, args);
    lastSaved.set(el, JSON.stringify(values));
    // from its first saved word the box is a note (the next keystroke edits it)
    if (isNew) markSaved(el);
    if (deleted && seen === null) markEmpty(el); // never sent: it is an empty box again
    const done = store.saveEditable(args).then(
      () => {
        store.unjournal(mark);
        state.storage = null;
        updateStatus();
        syncSoon();
      },
      (error) => {
        storageFailed(error);
        throw error;
      },
    );
    const all = saving.get(el) || new Set();
    all.add(done);
    saving.set(el, all);
    const settle = () => {
      all.delete(done);
      if (!all.size && saving.get(el) === all) saving.delete(el);
    };
    done.then(settle, settle);
    return done;
  }

  function markSaved(el) {
    delete el.dataset.new;
    const label = el.querySelector("label");
    if (label && label.firstChild && strings.note) label.firstChild.textContent = strings.note;
  }

  function markEmpty(el) {
    el.dataset.new = "";
    const label = el.querySelector("label");
    if (label && label.firstChild && strings.new_note) label.firstChild.textContent = strings.new_note;
  }

  const lastSaved = new WeakMap();
  const changed = (event) => {
    const el = event.target.closest(".note[data-note-id]");
    if (!el) return;
    // a textarea's "change" on blur repeats what "input" already saved
    if (lastSaved.get(el) === JSON.stringify(noteValues(el))) return;
    save(el).catch(() => {});
  };
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);

  let ready = null;
  // every save has been asked for already: wait until they are written
  async function flushAll() {
    if (ready) await ready;
    const empty = { text: "", polarity: null, themes: [], possible_quote: false };
    for (const el of noteEls()) {
      const now = noteValues(el);
      const unsaved = lastSaved.has(el) ? lastSaved.get(el) !== JSON.stringify(now) : !sameNote(now, base.get(el) || empty);
      if (unsaved) save(el).catch(() => {});
    }
    await Promise.all([...saving.values()].flatMap((all) => [...all]));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.dataset.leaving) return; // a second tap on the way to the next page
    const leave = (url) => {
      form.dataset.leaving = "1";
      return go(url);
    };
    const submitter = submitterOf(event);
    const goTo = (submitter && submitter.value) || "stay";
    try {
      await flushAll();
    } catch {
      return; // the storage error is on screen, and the words are still in the boxes
    }
    const index = Number(ctx.section);
    const count = Number(ctx.sections);
    const base = ctx.base;
    try {
      if (goTo === "next" && index + 1 < count) {
        await saveSection(index + 1);
        return leave(`${base}/section/${index + 1}`);
      }
      if (goTo === "back" && index > 0) {
        await saveSection(index - 1);
        return leave(`${base}/section/${index - 1}`);
      }
      if (goTo.startsWith("section-")) {
        const target = Number(goTo.slice(8));
        if (target >= 0 && target < count) {
          await saveSection(target);
          return leave(`${base}/section/${target}`);
        }
      }
      if (goTo === "finish") return leave(`${base}/finish`);
      if (goTo === "stop") return leave(`${base}/stop`);
      if (goTo === "distress") {
        await recordEvent("distress_1");
        return leave(`${base}/distress`);
      }
      if (["pause", "resume", "check_in"].includes(goTo)) {
        const allowed = { pause: ["in_progress"], resume: ["paused"], check_in: ["in_progress", "paused"] };
        await safetyEvent(goTo, allowed[goTo]);
      }
      if (submitter && submitter.dataset.addNote) {
        const question = submitter.dataset.addNote;
        const slot = form.querySelector(`.note[data-new][data-question="${CSS.escape(question)}"]`);
        if (slot) slot.querySelector("textarea").focus();
        else {
          const el = freshSlot(templates[question]);
          submitter.before(el);
          el.querySelector("textarea").focus();
        }
      }
      await updateStatus();
    } catch (error) {
      storageFailed(error);
    }
  });

  // a saved new box becomes a note: offer a fresh empty box under it
  form.addEventListener("focusin", (event) => {
    const el = event.target.closest(".note[data-note-id]");
    if (!el || "new" in el.dataset) return;
    const question = el.dataset.question;
    const open = form.querySelector(`.note[data-new][data-question="${CSS.escape(question)}"]`);
    if (!open) {
      const button = form.querySelector(`[data-add-note="${CSS.escape(question)}"]`);
      if (button) button.before(freshSlot(templates[question]));
    }
  });

  async function saveEarly() {
    for (const el of early) {
      if (!el.isConnected) continue;
      const text = el.querySelector("textarea").value;
      const twin = noteEls().some(
        (o) => o !== el && !("new" in o.dataset) && o.dataset.question === el.dataset.question && o.querySelector("textarea").value === text,
      );
      // a browser that ignores autocomplete="off" may still put a saved note's words back
      if ("new" in el.dataset && twin) fillNote(el, { text: "", polarity: null, themes: [], possible_quote: false });
      else await save(el);
    }
  }

  // the identifier guard is loaded on its own: should it fail, notes are saved as ever
  const guard = import("./identifiers.js").then((m) => m.attachGuard(form)).catch(() => null);
  const checkIdentifiers = () => guard.then((g) => g && g.checkAll()).catch(() => {});
  document.addEventListener("tablet:synced", () => overlay({ initial: false }).then(checkIdentifiers).catch(() => {}));
  ready = overlay({ initial: true })
    .then(saveEarly)
    .catch(() => {}); // a storage error is on screen, and the words stay in the boxes
  ready.then(checkIdentifiers);
  return ready;
}

// --- the other interview forms ----------------------------------------------------------------

function osloToUtc(day, time) {
  // the form's date and time are Oslo wall-clock time; find the UTC instant that shows them
  const [y, m, d] = day.split("-").map(Number);
  const [hh, mm] = time.split(":").map(Number);
  const wanted = Date.UTC(y, m - 1, d, hh, mm);
  const parts = (t) => {
    const p = Object.fromEntries(
      new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Oslo", hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
        .formatToParts(new Date(t))
        .map((x) => [x.type, x.value]),
    );
    return Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute));
  };
  let guess = wanted;
  for (let i = 0; i < 3; i += 1) guess += wanted - parts(guess);
  return new Date(guess).toISOString();
}

const handlers = {
  async event(form) {
    const kind = form.dataset.kind;
    const allowed = { pause: ["in_progress"], resume: ["paused"], check_in: ["in_progress", "paused"], distress_1: ["in_progress", "paused"] };
    await safetyEvent(kind, allowed[kind] || []);
    const st = await localState();
    if (kind === "distress_1") return go(`${ctx.base}/distress`);
    if (kind === "resume" && pageName === "distress") return go(`${ctx.base}/section/${st.section}`);
  },
  async capacity(form, submitter) {
    const data = new FormData(form);
    const flags = {
      understands: data.get("understands") === "y",
      can_explain: data.get("can_explain") === "y",
      not_in_crisis: data.get("not_in_crisis") === "y",
    };
    if (submitter && submitter.value === "reschedule") {
      await recordEvent("capacity_check", { outcome: "reschedule", ...flags });
      return go(`${ctx.base}/reschedule`);
    }
    if (!(flags.understands && flags.can_explain && flags.not_in_crisis)) return formAlert(form, strings.need_all_three);
    const minutes = Number(data.get("minutes"));
    if (!Number.isInteger(minutes) || minutes < 15 || minutes > 240) return formAlert(form, strings.minutes_range);
    await recordEvent("capacity_check", { outcome: "ok", minutes });
    return go(`${ctx.base}/consent`);
  },
  async reschedule(form) {
    const data = new FormData(form);
    const reason = data.get("reason");
    const day = data.get("day");
    const at = data.get("at");
    if (!reason) return formAlert(form, strings.need_reason);
    if (!!day !== !!at) return formAlert(form, strings.need_both);
    await recordEvent("reschedule", { reason, new_time: day ? osloToUtc(day, at) : null });
    return go(ctx.base, { sent: "moved_sent", kept: "moved_kept" });
  },
  async consent(form) {
    const data = new FormData(form);
    const answers = {};
    for (const key of form.dataset.items.split(" ")) {
      const value = data.get(`item-${key}`);
      if (value !== "yes" && value !== "no") return formAlert(form, strings.answer_every_item);
      answers[key] = value === "yes";
    }
    if (!answers.participate) return formAlert(form, strings.need_participate);
    const method = data.get("method");
    if (method !== "tablet" && method !== "paper") return formAlert(form, strings.need_method);
    const payload = {
      interview_id: ctx.interviewId,
      form_version: Number(form.dataset.formVersion),
      language: ctx.language,
      answers,
      method,
    };
    const identity = {};
    const printed = String(data.get("printed_name") || "").trim();
    if (printed && method === "tablet") identity.printed_name = printed;
    if (method === "tablet") {
      const signature = String(data.get("signature") || "");
      if (!signature.startsWith("data:image/png;base64,")) return formAlert(form, strings.need_signature);
      identity.signature = signature;
    } else {
      const number = String(data.get("paper_form_number") || "").trim();
      if (!number) return formAlert(form, strings.need_paper_number);
      payload.paper_form_number = number;
    }
    if (Object.keys(identity).length) {
      // the signature and the name are sealed to the study's key before they are stored: the
      // tablet never holds them in plain form, and only the case store can open them
      const key = await studyKey();
      if (!key || !seal.available()) return formAlert(form, strings.no_study_key);
      payload.sealed = await seal.seal(identity, key);
    }
    await store.saveImmutable({
      entity: "consent",
      id: store.uuid(),
      interviewId: ctx.interviewId,
      userId,
      data: payload,
      keep: { interview_id: ctx.interviewId, participant_id: ctx.participantId, kind: "consent", answers },
    });
    await recordEvent("start");
    return go(`${ctx.base}/section/0`, { sent: "consent_sent", kept: "consent_kept" });
  },
  async distress_two(form) {
    const data = new FormData(form);
    await recordEvent("distress_2", { contact_team: data.get("contact_team") === "y", comment: String(data.get("comment") || "").trim() });
    await recordEvent("stop", { reason: "distress", comment: "" });
    return go(`${ctx.base}/debrief?follow_up=1`, { sent: "distress_stopped", kept: "distress_stopped" });
  },
  async stop(form) {
    const data = new FormData(form);
    const reason = data.get("reason");
    if (!reason) return formAlert(form, strings.need_reason);
    await recordEvent("stop", { reason, comment: String(data.get("comment") || "").trim() });
    return go(`${ctx.base}/debrief`, { sent: "stopped_sent", kept: "stopped_kept" });
  },
  async finish() {
    const st = await localState();
    if (!st.consented) return go(`${ctx.base}/consent`);
    if (["in_progress", "paused"].includes(st.status)) await recordEvent("complete");
    return go(`${ctx.base}/debrief`, { sent: "finished_sent", kept: "finished_kept" });
  },
  async debrief(form) {
    const args = debriefArgs(form);
    if (!args.values.wellbeing) return formAlert(form, strings.need_wellbeing);
    args.values.reflection = args.values.reflection.trim();
    await saveDebrief(form, args);
    return go(ctx.base, { sent: "debrief_sent", kept: "debrief_kept" });
  },
};

async function myDebrief() {
  const records = await store.recordsOf(ctx.interviewId, userId);
  return records.find((r) => r.entity === "debrief" && (String(r.data.author_id) === String(userId) || !r.from_server)) || null;
}

// The debrief is saved as it is written, like a note: on every input, to the journal at once and
// then to the tablet's store. Until "how are you doing" is answered there is no debrief to send
// yet, so the words wait as a draft on the tablet.
function debriefArgs(form) {
  const data = new FormData(form);
  const wellbeing = Number(data.get("wellbeing"));
  if (!form.dataset.debriefId) form.dataset.debriefId = store.uuid();
  const rev = form.dataset.rev ? Number(form.dataset.rev) : null;
  return {
    entity: "debrief",
    id: form.dataset.debriefId,
    interviewId: ctx.interviewId,
    userId,
    values: {
      wellbeing: wellbeing >= 1 && wellbeing <= 5 ? wellbeing : null,
      reflection: String(data.get("reflection") || "").replace(/\r\n/g, "\n"),
      wants_debrief_talk: data.get("wants_debrief_talk") === "y",
      participant_follow_up: data.get("participant_follow_up") === "y",
    },
    createData: { interview_id: ctx.interviewId },
    seenRev: form._seenRev ?? rev,
    known: form._serverId && rev ? { rev, base: form._base || {} } : null,
  };
}

const draftKey = () => `fact-draft:${userId}:debrief:${ctx.interviewId}`;

function saveDebrief(form, args) {
  if (!args.values.wellbeing) {
    try {
      localStorage.setItem(draftKey(), JSON.stringify(args.values));
    } catch {
      // no localStorage: the words stay in the form
    }
    return Promise.resolve();
  }
  const mark = store.journal(userId, args);
  try {
    localStorage.removeItem(draftKey());
  } catch {
    // nothing kept
  }
  return store.saveEditable(args).then(
    () => {
      store.unjournal(mark);
      state.storage = null;
      updateStatus();
      syncSoon();
    },
    (error) => {
      storageFailed(error);
      throw error;
    },
  );
}

async function initDebrief(form) {
  // the base is what the server rendered, not what may already have been typed over it
  const wellbeing = [...form.querySelectorAll("input[name=wellbeing]")];
  const reflection = form.querySelector("[name=reflection]");
  const boxes = ["wants_debrief_talk", "participant_follow_up"].map((name) => form.querySelector(`[name=${name}]`));
  const chosen = wellbeing.find((r) => r.defaultChecked);
  form._serverId = form.dataset.debriefId || "";
  form._base = {
    wellbeing: chosen ? Number(chosen.value) : null,
    reflection: reflection ? reflection.defaultValue.trim() : "",
    wants_debrief_talk: !!boxes[0]?.defaultChecked,
    participant_follow_up: !!boxes[1]?.defaultChecked,
  };
  const untouched = () =>
    wellbeing.every((r) => r.checked === r.defaultChecked) &&
    (!reflection || reflection.value === reflection.defaultValue) &&
    boxes.every((b) => !b || b.checked === b.defaultChecked);
  const fill = (d) => {
    wellbeing.forEach((r) => (r.checked = Number(r.value) === Number(d.wellbeing)));
    if (reflection) reflection.value = d.reflection || "";
    for (const [i, name] of ["wants_debrief_talk", "participant_follow_up"].entries()) if (boxes[i]) boxes[i].checked = !!d[name];
  };
  const record = await myDebrief();
  if (record) {
    form.dataset.debriefId = record.id;
    form._seenRev = record.rev;
    // the tablet's saved answers fill in only what the person has not changed here yet
    if (untouched()) fill(record.data);
  } else {
    let draft = null;
    try {
      draft = JSON.parse(localStorage.getItem(draftKey()) || "null");
    } catch {
      draft = null;
    }
    if (draft && untouched()) fill(draft);
  }
  const changed = () => saveDebrief(form, debriefArgs(form)).catch(() => {});
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
}

// The study's public key, kept on the tablet (it is public) and refreshed when online.
async function studyKey() {
  const kept = await store.getMeta("study_key").catch(() => null);
  if (kept) return kept;
  return refreshStudyKey();
}

function refreshStudyKey() {
  return seal.fetchKey((key) => store.setMeta("study_key", key)).catch(() => null);
}

// --- prepare for offline ----------------------------------------------------------------------

async function prepare(button) {
  const out = document.getElementById("prepare-status");
  button.disabled = true;
  out.textContent = strings.preparing;
  try {
    await syncNow();
    const response = await request("/api/v1/offline", { headers: { Accept: "application/json" } });
    if (response.status === 401) throw new Stop("login");
    if (!response.ok) throw new Stop("error");
    const manifest = await response.json();
    const pages = await caches.open(PAGES);
    const files = await caches.open(FILES);
    const keep = async (url) => {
      const isPage = !url.startsWith("/static/");
      const got = await request(url, { headers: isPage ? { "X-Offline-Copy": "1" } : {} }, 30000);
      if (!got.ok || got.redirected) throw new Stop("error");
      // the signed-out page names nobody: it stays when the pages go at logout
      await (isPage && url !== "/signed-out" ? pages : files).put(url, got);
    };
    await Promise.all([...manifest.shell, "/signed-out"].map(keep));
    const ready = [];
    for (const iv of manifest.interviews) {
      try {
        for (const url of iv.pages) await keep(url);
        ready.push({ id: iv.id, code: iv.code, planned_at: iv.planned_at, ok: true });
      } catch (error) {
        if (error && error.name === "QuotaExceededError") throw error;
        ready.push({ id: iv.id, code: iv.code, planned_at: iv.planned_at, ok: false });
      }
    }
    await refreshStudyKey();
    const keeping = await showKeeping(strings, { ask: true }).catch(() => null);
    const persisted = !keeping || keeping.persisted !== false;
    await store.setMeta(`prepared:${userId}`, { at: new Date().toISOString(), interviews: ready });
    // the list first, then "ready": whoever reads the status finds the list that goes with it
    await showPrepared();
    out.textContent = count("prepare_done", ready.filter((r) => r.ok).length) + (persisted ? "" : ` ${strings.persist_denied}`);
  } catch (error) {
    if (error && error.name === "QuotaExceededError") storageFailed(error);
    else if (error instanceof Stop && error.kind === "login") state.session = "login";
    out.textContent = strings.prepare_failed;
    updateStatus();
  } finally {
    button.disabled = false;
  }
}

async function showPrepared() {
  const list = document.getElementById("offline-list");
  const prepared = await store.getMeta(`prepared:${userId}`);
  if (!list || !prepared) return;
  const cache = await caches.open(PAGES);
  const items = [];
  for (const iv of prepared.interviews) {
    const kept = iv.ok && (await cache.match(`/interviews/${iv.id}/section/0`));
    const li = document.createElement("li");
    // the time as the list of interviews writes it (the server's words), so there is one form
    const card = document.querySelector(`a[href="/interviews/${CSS.escape(iv.id)}"] time`);
    const when = card
      ? card.textContent
      : new Intl.DateTimeFormat(document.documentElement.lang === "nb" ? "nb-NO" : "en-GB", {
          timeZone: "Europe/Oslo", dateStyle: "medium", timeStyle: "short",
        }).format(new Date(iv.planned_at));
    li.textContent = `${kept ? "✓" : "✗"} ${iv.code} · ${when} · ${kept ? strings.ready_offline : strings.not_offline}`;
    items.push(li);
    const mark = document.querySelector(`[data-offline-mark="${CSS.escape(iv.id)}"]`);
    if (mark) {
      mark.textContent = kept ? `✓ ${strings.ready_offline}` : "";
      mark.className = kept ? "badge badge-ready" : "";
    }
  }
  // at once, so two calls that overlap never leave a half or doubled list
  list.replaceChildren(...items);
}

// --- logging out -----------------------------------------------------------------------------

// Logging out signs the tablet out at once, with or without a network: the kept pages go,
// nothing of the peer's is shown again before a login, and the session at the case store is
// ended by the logout itself or, without a network, at the first contact (sw.js). Changes
// still waiting stay, for the same peer's next login.
function guardLogout() {
  const form = document.getElementById("logout-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    if (form.dataset.confirmed) return;
    event.preventDefault();
    if (form.dataset.busy) return; // a second tap while the first is asking
    form.dataset.busy = "1";
    try {
      await store.replayJournal(userId).catch(() => 0);
      await syncBriefly(4000);
      const waiting = (await store.outboxOf(userId)).length;
      // the changes stay on the tablet and are sent after the next login
      if (waiting > 0 && !window.confirm(count("logout_waiting", waiting))) return;
      await signOut();
      form.dataset.confirmed = "1";
      form.submit();
    } finally {
      delete form.dataset.busy;
    }
  });
}

async function signOut() {
  const sid = state.sid || (await store.getMeta(`sid:${userId}`).catch(() => null)) || null;
  await store.setMeta("signed_out", { user_id: String(userId), sid, at: Date.now(), server: "pending" });
  await store.clearAll();
  try {
    sessionStorage.clear();
  } catch {
    // nothing kept there
  }
  if ("caches" in window) {
    await caches.delete(PAGES);
    // the page shown while signed out, kept beside the files: it names nobody
    try {
      const page = await fetch("/signed-out", { credentials: "same-origin", cache: "no-store" });
      if (page.ok) await (await caches.open(FILES)).put("/signed-out", page);
    } catch {
      // without a network the copy kept at the last preparation is shown
    }
  }
}

// A page of a signed-out tablet that the case store still served as logged in (no service
// worker in charge, or one that could not reach the case store): hide it, end that session,
// and ask for a login. A session begun after the sign-out (a new login) is left alone.
async function checkSignedOut() {
  const mark = await store.getMeta("signed_out");
  if (!mark) return false;
  const old = typeof mark === "object" ? mark : { user_id: mark, server: "done" };
  if (old.server !== "pending") {
    await store.setMeta("signed_out", false);
    return false;
  }
  document.documentElement.classList.add("signed-out");
  try {
    const info = await (await request("/api/v1/session", { headers: { Accept: "application/json" }, cache: "no-store" })).json();
    const same = old.sid ? info.sid === old.sid : String(info.user_id) === String(old.user_id);
    if (!same) {
      await store.setMeta("signed_out", false);
      document.documentElement.classList.remove("signed-out");
      return false;
    }
    const body = new URLSearchParams({ csrf_token: info.csrf_token, deferred: "1" });
    await request("/logout", { method: "POST", body, headers: { "X-CSRFToken": info.csrf_token } });
    await store.setMeta("signed_out", { ...old, server: "done" });
  } catch {
    // the case store did not answer: the page stays hidden, the session ends next time
  }
  location.replace("/login");
  return true;
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  fillThemeChoices();
  if (!userId || !store.available()) return;
  try {
    await store.deviceId();
  } catch {
    return; // no IndexedDB (a private window): the plain forms work as before
  }
  if (await checkSignedOut()) return;
  state.ready = true;
  // what the last page typed but could not finish saving is saved before anything else
  await store.replayJournal(userId).catch(storageFailed);
  document.documentElement.classList.add("tablet");
  placeStatus();
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
  }
  guardLogout();
  document.getElementById("sync-now")?.addEventListener("click", () => {
    state.serverError = false;
    state.storage = null;
    state.session = state.session === "login" ? "unknown" : state.session;
    syncNow();
  });
  window.addEventListener("online", () => {
    state.network = "online";
    syncNow();
  });
  window.addEventListener("offline", () => {
    state.network = "offline";
    updateStatus();
  });
  setInterval(() => document.visibilityState === "visible" && syncNow(), SYNC_EVERY_MS);

  if (ctx) {
    const st = await localState();
    if (guard(st)) return;
    showState(st);
    const sectionForm = pageName === "section" && document.getElementById("section-form");
    if (sectionForm) await initSection(sectionForm);
    if (pageName === "debrief") {
      const form = document.querySelector("form[data-offline=debrief]");
      if (form) await initDebrief(form);
    }
    document.addEventListener("tablet:synced", async () => {
      showState(await localState());
      await showCheckIn();
    });
    await showCheckIn();
  }
  showNotices();
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.classList.contains("resolve-form") && !navigator.onLine) {
      // settling two versions is done with the case store itself: never post into the void
      event.preventDefault();
      formAlert(form, strings.settle_online);
      return;
    }
    const kind = form.dataset && form.dataset.offline;
    if (!kind || !ctx || !handlers[kind]) return;
    event.preventDefault();
    if (form.dataset.busy) return; // a second tap while the first is being saved
    form.dataset.busy = "1";
    const buttons = [...form.querySelectorAll("button, input[type=submit]")];
    buttons.forEach((b) => (b.disabled = true));
    let leaving = false;
    try {
      leaving = (await handlers[kind](form, submitterOf(event))) === LEAVING;
    } catch (error) {
      storageFailed(error);
    } finally {
      if (!leaving) {
        delete form.dataset.busy;
        buttons.forEach((b) => (b.disabled = false));
      }
    }
  });
  const prepareButton = document.getElementById("prepare-offline");
  if (prepareButton && "caches" in window) {
    document.getElementById("offline-card").hidden = false;
    prepareButton.addEventListener("click", () => prepare(prepareButton));
    showPrepared();
    showKeeping(strings).catch(() => {});
    const rescue = document.getElementById("rescue-copy");
    rescue?.addEventListener("click", async () => {
      if (rescue.dataset.busy) return;
      rescue.dataset.busy = "1";
      try {
        await rescueCopy(userId, strings, studyKey);
      } catch (error) {
        document.getElementById("rescue-status").textContent = fmt(strings.rescue_failed, { error: error.name || String(error) });
      } finally {
        delete rescue.dataset.busy;
      }
    });
  }
  store.getMeta("study_key").then((key) => key || refreshStudyKey()).catch(() => {});
  await updateStatus();
  // the page now shows the tablet's own state (tests and styles may wait for this)
  document.documentElement.classList.add("tablet-ready");
  syncNow();
}

start();
