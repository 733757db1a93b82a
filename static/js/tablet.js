// The tablet's core, shared by the pages' scripts: the words, who is logged in and which
// interview the page is about, the status line, talking to the case store (the outbox drains to
// POST /api/v1/sync), confirmations for the next page, and the study's public key.

import * as store from "./store.js";
export const PAGES = "fact-pages-v1"; // kept pages: they hold the peer's notes
export const FILES = "fact-static-v1"; // styles, scripts, icons, the signed-out page: nobody's data
export const SYNC_EVERY_MS = 30000;
const BATCH = 200;
export const MAX_TEXT = 20000;

const stringsEl = document.getElementById("tablet-strings");
export const strings = stringsEl ? JSON.parse(stringsEl.textContent) : {};
export const userId = document.body.dataset.userId || null;
const ctxEl = document.getElementById("interview-context");
export const ctx = ctxEl ? { ...ctxEl.dataset } : null;
export const pageName = document.body.dataset.page || "";

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
export function submitterOf(event) {
  return event.submitter || (lastClicked && lastClicked.form === event.target ? lastClicked : null);
}

export const state = {
  ready: false,
  csrf: document.querySelector("meta[name=csrf-token]")?.content || "",
  role: null,
  session: "unknown", // ok | login
  network: navigator.onLine ? "online" : "offline", // online | offline | unreachable
  storage: null, // the last storage error, shown until a save works again
  serverError: false,
  syncing: null,
  again: null, // the sync that follows the one under way
  lastSyncOk: false,
  batch: BATCH,
  leave: false, // this page's interview was withdrawn and has left the tablet
};

// The singular form when there is one, where the words have one (`name_one`).
export function count(name, n, extra = {}) {
  const text = n === 1 && strings[`${name}_one`] ? strings[`${name}_one`] : strings[name];
  return fmt(text, { n, ...extra });
}

// A refusal the peer should read in their own words (a consent that does not cover quotes);
// any other reason as the case store gave it.
export const reasonText = (reason) => (strings.reasons && strings.reasons[reason]) || reason;

// The recording running on this page, if any (recording.js fills these in when it loads):
// `now()` gives {id, offset_ms} for a note begun now; `event(kind)` follows the interview's
// pause, resume and stop; `leave()` finishes the recording before the page is left.
export const recording = { now: null, event: null, leave: null };

// Recordings waiting on this tablet are sent by recording.js, loaded only when there are any.
export async function sendAudio() {
  const waiting = await store.audioWaiting(userId).catch(() => null);
  if (!waiting || !waiting.recordings || !navigator.onLine) return;
  const module = await import("./recording.js").catch(() => null);
  if (module) await module.upload();
}

export function fmt(text, values) {
  return String(text || "").replace(/%\((\w+)\)[sd]/g, (_, name) => String(values[name] ?? ""));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// --- the status line ------------------------------------------------------------------------

const bar = document.getElementById("sync-bar");
const statusEl = document.getElementById("sync-status");

export function placeStatus() {
  // in the interview the status sits in the sticky safety bar, so it is always in sight
  const safety = document.querySelector(".safety-bar");
  if (bar && safety) {
    bar.classList.add("in-safety-bar");
    safety.appendChild(bar);
  }
  if (bar) bar.hidden = false;
  keepFocusClearOfBars(safety, document.querySelector(".sticky-actions"));
}

// The sticky bars grow (a recording's indicator, a long status, buttons on two lines):
// whatever takes focus is scrolled into view between them, never under one (WCAG 2.4.11).
function keepFocusClearOfBars(top, bottom) {
  if (!window.ResizeObserver) return;
  const room = (el) => (el && getComputedStyle(el).position === "sticky" ? `${el.offsetHeight + 8}px` : "");
  const style = document.documentElement.style;
  const observer = new ResizeObserver(() => {
    if (top) style.scrollPaddingTop = room(top);
    if (bottom) style.scrollPaddingBottom = room(bottom);
  });
  for (const el of [top, bottom]) if (el) observer.observe(el);
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
export async function updateStatus() {
  if (!state.ready || !userId) return;
  let waiting = 0;
  let others = 0;
  let conflicts = 0;
  let rejected = [];
  let audio = { ms: 0 };
  try {
    audio = await store.audioWaiting(userId);
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
    text = count("rejected", rejected.length, { reason: reasonText(rejected[0].reason) });
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
  // the sound still on this tablet, in whole minutes begun ("1 minute" for a few seconds)
  if (audio.ms) text = `${text} ${count("audio_waiting", Math.ceil(audio.ms / 60000))}`;
  if (others) text = `${text} ${count("others_waiting", others)}`;
  showStatus(kind, text, href);
}

export function storageFailed(error) {
  state.storage = error;
  updateStatus();
}

// --- talking to the case store ---------------------------------------------------------------

export class Stop extends Error {
  constructor(kind, detail) {
    super(kind);
    this.kind = kind;
    this.detail = detail;
  }
}

// A fetch that fails is "offline" when the tablet has no network, and "unreachable" when it
// has one but the case store does not answer (down, or silent past the wait).
export async function request(url, options = {}, ms = 20000) {
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

export async function refreshSession() {
  const response = await request("/api/v1/session", { headers: { Accept: "application/json" } });
  if (response.status === 401) throw new Stop("login");
  if ([502, 503, 504].includes(response.status)) throw new Stop("unreachable");
  if (!response.ok) throw new Stop("error");
  const info = await response.json();
  state.csrf = info.csrf_token;
  state.role = info.role;
  if (String(info.user_id) !== String(userId)) throw new Stop("login");
  state.session = "ok";
  state.sid = info.sid || null;
  if (info.sid) await store.setMeta(`sid:${userId}`, info.sid).catch(() => {});
  if (info.rescue_token) await store.setMeta(`rescue:${userId}`, info.rescue_token).catch(() => {});
  // the study's public key comes with the session: kept for sealing while offline
  if (info.study_key && info.study_key.kid && info.study_key.spki) await store.setMeta("study_key", info.study_key).catch(() => {});
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
  // a proxy in front of a case store that is down or silent
  if ([502, 503, 504].includes(response.status) && !(await response.clone().json().catch(() => null))?.code) throw new Stop("unreachable");
  if (response.status === 400 || response.status === 403) {
    const answer = await response.json().catch(() => ({}));
    if (answer.code === "csrf" && !retried) {
      await refreshSession();
      return post(body, true);
    }
    throw new Stop(answer.code === "csrf" ? "login" : "error", answer.error);
  }
  if (response.status === 409) {
    // this person's device id belongs to another user of the case store: nothing was applied
    const answer = await response.json().catch(() => ({}));
    throw new Stop(answer.code === "device" ? "device" : "error", answer.error);
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
  let device = await store.deviceId(userId);
  const replaces = (await store.getMeta(`replaces:${userId}`)) || null;
  let renewed = false;
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
      // refusals told in an earlier answer and kept here since: the server stops telling them
      const seen = (await store.getMeta(`refused_seen:${userId}`)) || [];
      if (seen.length) body.refused_seen = seen;
      answer = await post(body);
    } catch (error) {
      if (error.kind === "device" && !renewed) {
        // an id from an old store, or one another person synced with first: make this person
        // a fresh one and send the same batch again (once a sync; a second refusal stops it)
        renewed = true;
        device = await store.newDeviceId(userId);
        continue;
      }
      if (error.kind === "too_large" && state.batch > 1) {
        state.batch = Math.max(1, Math.floor(state.batch / 2));
        continue;
      }
      throw error;
    }
    state.network = "online";
    state.batch = BATCH;
    const summary = await store.applyAnswer({ userId, batch, results: answer.results, updates: answer.updates, cursor: answer.cursor, refused: answer.refused || [] });
    announceWarnings(batch, answer.results);
    if (summary && summary.withdrawn.length) await dropWithdrawn(summary.withdrawn);
    const renewals = answer.updates.filter((u) => u.entity === "interview" && u.data && u.data.consent_renewal).map((u) => u.id);
    if (renewals.length) await keepConsentPagesAgain(renewals);
    // the server answers updates in pages: ask again while the cursor still moves
    const more = answer.cursor !== (cursor ?? null) && answer.updates.length > 0;
    if (!batch.length && !more) break;
  }
  state.lastSyncOk = true;
  state.serverError = false;
  await dropFinished();
}

// Renewed consent the tablet has just heard of: a consent page kept before the new form was
// published shows the older one, so it is kept again while the network is here (the consent
// handler refuses an older form all the same: interview.js).
async function keepConsentPagesAgain(interviewIds) {
  if (!("caches" in window)) return;
  const pages = await caches.open(PAGES);
  for (const id of interviewIds) {
    const path = `/interviews/${id}/consent`;
    if (!(await pages.match(path))) continue;
    try {
      const got = await fetch(path, { credentials: "same-origin", headers: { "X-Offline-Copy": "1" } });
      if (got.ok && !got.redirected) await pages.put(path, got);
    } catch {
      // the network went away again: the older copy stays
    }
  }
}

// The identifier guard: tell the page which kinds the case store found in each kept note or
// debrief (kinds only; identifiers.js shows the warning under the text box). An event's
// comment was warned about while it was typed, and its page is left once it is recorded.
const FREE_TEXT = { note: "text", debrief: "reflection" };
function announceWarnings(batch, results) {
  const byId = new Map(batch.map((e) => [e.change_id, e]));
  const texts = [];
  for (const result of results) {
    const e = byId.get(result.change_id);
    if (!e || !FREE_TEXT[e.entity] || !["applied", "duplicate", "conflict"].includes(result.status)) continue;
    texts.push({ id: e.id, kinds: result.warnings || [], text: e.data ? e.data[FREE_TEXT[e.entity]] : undefined });
  }
  if (texts.length) document.dispatchEvent(new CustomEvent("tablet:warnings", { detail: texts }));
}

export function syncNow() {
  if (!state.ready || !userId) return Promise.resolve();
  if (state.syncing) {
    // a change saved while a sync is under way may have missed that sync's batch: one more
    // sync follows it, and whoever asked waits for that one (go() waits to see it sent)
    if (!state.again) {
      state.again = state.syncing.then(() => {
        state.again = null;
        return syncNow();
      });
    }
    return state.again;
  }
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
    sendAudio().catch(() => {});
  });
  return state.syncing;
}

let soon = null;
export function syncSoon(ms = 1500) {
  // at most one waiting: steady typing still reaches the case store every moment or two
  if (soon) return;
  soon = setTimeout(() => {
    soon = null;
    syncNow();
  }, ms);
}

// Wait for a sync at most `ms`, so a page change never hangs on a weak network.
export async function syncBriefly(ms = 2500) {
  if (!navigator.onLine) return;
  await Promise.race([syncNow(), sleep(ms)]);
}

// Synced data of finished interviews leaves the tablet (nothing waiting, debrief written).
async function dropFinished() {
  const records = await store.allRecords(userId);
  // author_id: a debrief kept before the server stopped sending user ids
  const mine = (r) => r.entity === "debrief" && r.data && (r.data.mine === true || String(r.data.author_id) === String(userId) || !r.from_server);
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
  document.dispatchEvent(new CustomEvent("tablet:no-audio", { detail: interviewIds }));
}

export async function dropPages(interviewId) {
  if (!("caches" in window)) return;
  const cache = await caches.open(PAGES);
  for (const req of await cache.keys()) {
    if (new URL(req.url).pathname.startsWith(`/interviews/${interviewId}`)) await cache.delete(req);
  }
}


// Save what a person typed: to the journal at once (synchronously, so a reload or a Back swipe
// right after the keystroke cannot beat it), then with its outbox entry into the tablet's store;
// the journal entry goes once the store holds it. Must be called in the input's own event.
export function saveTyped(args) {
  const mark = store.journal(userId, args);
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

// --- confirmations --------------------------------------------------------------------------

const NOTICE = "fact-notice";
export function notice(text) {
  try {
    sessionStorage.setItem(NOTICE, JSON.stringify({ text, user: userId, at: Date.now() }));
  } catch {
    // no sessionStorage: the page itself shows the state
  }
}

export function showNotices() {
  let row = null;
  try {
    row = JSON.parse(sessionStorage.getItem(NOTICE) || "null");
    sessionStorage.removeItem(NOTICE);
  } catch {
    row = null;
  }
  if (row && String(row.user) === String(userId) && Date.now() - row.at < 60000) say(row.text);
}

export function say(text, kind = "success") {
  const box = document.getElementById("tablet-notices");
  if (!box || !text) return;
  const p = document.createElement("p");
  p.className = `flash flash-${kind}`;
  p.textContent = text;
  box.replaceChildren(p);
}

// "Checked in at 14:05" in the safety bar: the last check-in the case store has, or a newer one

export function formAlert(form, message) {
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

// The study's public key, kept on the tablet (it is public) and refreshed when online.
export async function studyKey() {
  const kept = await store.getMeta("study_key").catch(() => null);
  if (kept) return kept;
  return refreshStudyKey();
}

// The key as the case store gives it ({kid, alg, spki}); kept for offline use (it is public:
// nothing personal). Fetched here, not in seal.js: every tablet needs the key before it goes
// offline, but only the consent page and the rescue copy need the sealing.
export async function refreshStudyKey() {
  try {
    const response = await fetch("/api/v1/study-key", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    const key = await response.json();
    if (!key || !key.kid || !key.spki) return null;
    await store.setMeta("study_key", key);
    return key;
  } catch {
    return null;
  }
}
