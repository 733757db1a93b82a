// The interview's steps on the tablet: its state as the tablet knows it (the store's copy plus
// the events waiting), the page that state calls for, the safety bar's events (recorded once
// however often tapped), and the interview's forms saved on the tablet (capacity, consent with
// the signature sealed, stop, finish, the debrief saved as it is written).

import * as store from "./store.js";
import {
  count,
  ctx,
  fmt,
  formAlert,
  notice,
  pageName,
  recording,
  say,
  saveTyped,
  strings,
  studyKey,
  syncBriefly,
  syncNow,
  syncSoon,
  userId,
} from "./tablet.js";

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

export async function localState() {
  const record = await store.getRecord("interview", ctx.interviewId);
  const fromStore = record && Number(record.rev) >= Number(ctx.rev || 0);
  let status = (fromStore && record.data.status) || ctx.status;
  let section = Number(ctx.currentSection || 0);
  if (record && record.data.current_section != null) section = Number(record.data.current_section);
  const records = await store.recordsOf(ctx.interviewId, userId);
  // Consent comes first where none is in force, or where the case store asks for it again on
  // a newer form (consent_renewal, docs/sync.md). The tablet's copy of the interview speaks
  // for the store when it is newer than the page, else the page does.
  const newer = record && Number(record.rev) > Number(ctx.rev || 0);
  const renewal = Number(fromStore ? record.data.consent_renewal : ctx.renewal) || 0;
  const inForce = newer ? record.data.consent_items != null : ctx.consented === "1";
  const consentedHere = records.some(
    (r) => r.entity === "consent" && r.data.kind !== "withdrawal" && r.data.answers && r.data.answers.participate && Number(r.data.form_version || 0) >= renewal,
  );
  const consented = consentedHere || (inForce && !renewal);
  for (const entry of await store.pendingFor(ctx.interviewId, userId)) {
    if (entry.entity === "event") status = fold(status, entry.data);
  }
  return { status, section, consented, renewal: consentedHere ? 0 : renewal };
}

function phaseOf(st) {
  if (st.status === "planned") return "planned";
  if (st.status === "completed" || st.status === "stopped") return "over";
  return st.consented ? "running" : "consent";
}

let stateShown = false;
export function showState(st) {
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
  // why a participant who consented is asked again (consent page): shown when renewal is due
  document.querySelectorAll("[data-renewal-note]").forEach((el) => {
    el.hidden = !st.renewal;
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
export function guard(st) {
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

export const LEAVING = Symbol("leaving");

// Go on to the next page once the change had its moment to reach the case store. `said` names
// a confirmation ({sent, kept}): the next page shows "sent" when nothing of this interview is
// waiting any more, else "kept" (saved on this tablet, sent when there is a network).
export async function go(url, said = null) {
  // the recording on this page ends with its last chunk sealed and kept; the next page of the
  // interview goes on with a new one (docs/recordings.md)
  if (recording.leave) await recording.leave().catch(() => {});
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

// still waiting on this tablet.
function clock(iso) {
  // the page's language decides the form ("14:05", "2:05 PM"), as it does for the server's words
  return new Intl.DateTimeFormat(document.documentElement.lang || "nb", {
    timeZone: "Europe/Oslo", hour: "numeric", minute: "2-digit",
  }).format(new Date(iso));
}

export async function showCheckIn() {
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
// when each kind was last tapped: a second tap of the same kind within a second does nothing
const lastTap = new Map();
const SAME_TAP_MS = 1000;
const SETTLE_MS = 700;
export async function safetyEvent(kind, allowed) {
  if (Date.now() - (lastTap.get(kind) || 0) < SAME_TAP_MS) return false;
  lastTap.set(kind, Date.now());
  {
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
        // a check-in the case store refused is never shown as seen by the coordinator
        const refused = (await store.rejectedOf(userId)).find((r) => r.id === recorded);
        if (refused) say(count("rejected", 1, { reason: refused.reason }), "warning");
        else say(fmt(strings[waiting ? "checked_in_kept" : "checked_in_sent"], { time }), waiting ? "info" : "success");
      });
    } else {
      syncSoon(200);
    }
    return true;
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

export async function recordEvent(kind, details = {}) {
  const id = store.uuid();
  await store.saveImmutable({
    entity: "event",
    id,
    interviewId: ctx.interviewId,
    userId,
    data: { interview_id: ctx.interviewId, kind, details },
  });
  // a recording follows the interview: paused, resumed and stopped with it
  if (recording.event) await recording.event(kind).catch(() => {});
  return id;
}

// --- the record control ---------------------------------------------------------------------
// Only where the consent in force says yes to audio; recording.js is loaded when the control is
// used or the page before was recording this interview (docs/recordings.md).

const loadRecording = () => import("./recording.js");
export const wishKey = () => `fact-recording:${userId}:${ctx.interviewId}`;

// Whether the consent in force says yes to audio: a consent recorded here and not yet sent,
// else the tablet's copy of the interview when as new as the page (consent_items, docs/sync.md),
// else a consent recorded here, else the page.
export async function audioConsent() {
  const pending = new Set((await store.pendingFor(ctx.interviewId, userId)).map((e) => e.record_key));
  const mine = (await store.recordsOf(ctx.interviewId, userId))
    .filter((r) => r.entity === "consent" && !r.from_server && r.data.answers)
    .sort((a, b) => String(a.local_at).localeCompare(String(b.local_at)));
  const said = (r) => r.data.answers.audio === true;
  const waiting = mine.filter((r) => pending.has(r.key)).pop();
  if (waiting) return said(waiting);
  const record = await store.getRecord("interview", ctx.interviewId);
  const items = record && Number(record.rev) >= Number(ctx.rev || 0) && record.data.consent_items;
  if (items) return items.audio === true;
  return mine.length ? said(mine.pop()) : ctx.audio === "1";
}

export async function initRecording(st) {
  if (pageName !== "section") return;
  let box = document.querySelector(".recording");
  if (!(await audioConsent().catch(() => false))) {
    // no consent (or no longer): no control at all, and a recording under way stops
    sessionStorage.removeItem(wishKey());
    if (recording.event) await recording.event("no_audio").catch(() => {});
    box?.remove();
    return;
  }
  if (!box) {
    box = document.createElement("div");
    box.className = "recording";
    box.innerHTML = '<button type="button" class="button" data-record data-show-when="in_progress"></button>';
    const button = box.firstChild;
    button.hidden = st.status !== "in_progress";
    button.textContent = strings.record;
    button.onclick = () => loadRecording().then((m) => m.askAndStart());
    document.querySelector(".safety-actions")?.after(box);
  }
  if (sessionStorage.getItem(wishKey()) && !recording.event) await loadRecording().then((m) => m.goOn());
}

export function saveSection(index) {
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


// --- the other interview forms ----------------------------------------------------------------

// The form's date is text in the page language's order (never the browser's date picker):
// 23.11.2026 or 2026-11-23 on either page, as the case store reads it; slashes are ambiguous.
function dayParts(text) {
  const t = String(text || "").trim();
  let m = t.match(/^(\d{4})-(\d{1,2})-(\d{1,2})$/);
  const ymd = m ? [m[1], m[2], m[3]] : (m = t.match(/^(\d{1,2})\.(\d{1,2})\.(\d{4})$/)) && [m[3], m[2], m[1]];
  if (!ymd) return null;
  const [y, mo, d] = ymd.map(Number);
  const check = new Date(Date.UTC(y, mo - 1, d));
  const real = check.getUTCFullYear() === y && check.getUTCMonth() === mo - 1 && check.getUTCDate() === d;
  return real && y >= 2000 && y <= 2100 ? [y, mo, d] : null;
}

function clockParts(text) {
  const m = String(text || "").trim().match(/^(\d{1,2})[:.](\d{2})$/);
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) return null;
  return [Number(m[1]), Number(m[2])];
}

function osloToUtc(day, time) {
  // the form's date and time are Oslo wall-clock time; find the UTC instant that shows them
  const [y, m, d] = day;
  const [hh, mm] = time;
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

export const handlers = {
  async event(form) {
    const kind = form.dataset.kind;
    const allowed = { pause: ["in_progress"], resume: ["paused"], check_in: ["in_progress", "paused"], distress_1: ["in_progress", "paused"] };
    const recorded = await safetyEvent(kind, allowed[kind] || []);
    const st = await localState();
    // the first tap goes to the distress page; a second one (not recorded) has nowhere to go
    if (kind === "distress_1") return recorded || st.status !== "paused" ? go(`${ctx.base}/distress`) : undefined;
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
    const ymd = day ? dayParts(day) : null;
    const hm = at ? clockParts(at) : null;
    if (day && !ymd) return formAlert(form, strings.bad_date);
    if (at && !hm) return formAlert(form, strings.bad_time);
    await recordEvent("reschedule", { reason, new_time: ymd ? osloToUtc(ymd, hm) : null });
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
    // a page kept before the study asked for consent on a newer form cannot record it
    const st = await localState();
    if (st.renewal && Number(form.dataset.formVersion) < st.renewal) return formAlert(form, strings.old_consent_form);
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
      // loaded here: only a consent (and a rescue copy) seals anything
      const seal = await import("./seal.js").catch(() => null);
      if (!key || !seal || !seal.available()) return formAlert(form, strings.no_study_key);
      payload.sealed = await seal.seal(identity, key);
    }
    await store.saveImmutable({
      entity: "consent",
      id: store.uuid(),
      interviewId: ctx.interviewId,
      userId,
      data: payload,
      keep: { interview_id: ctx.interviewId, participant_id: ctx.participantId, kind: "consent", answers, form_version: payload.form_version },
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
  return records.find((r) => r.entity === "debrief" && (r.data.mine === true || String(r.data.author_id) === String(userId) || !r.from_server)) || null;
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
  const saved = saveTyped(args);
  try {
    localStorage.removeItem(draftKey());
  } catch {
    // nothing kept
  }
  return saved;
}

export async function initDebrief(form) {
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
  // words typed before this script woke up are the person's: saved now
  const now = debriefArgs(form).values;
  const base = form._base;
  const typed = now.reflection.trim() !== base.reflection || (now.wellbeing && now.wellbeing !== base.wellbeing);
  if (!record && typed) changed();
}
