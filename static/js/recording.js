// The audio recording the participant agreed to (docs/recordings.md): MediaRecorder gives a
// chunk every few seconds, each is sealed at once (AES-256-GCM under the recording's own key,
// that key wrapped to the study's public key and the raw key forgotten) and kept in IndexedDB
// until the case store confirms its checksum. The tablet cannot play back what it recorded.
// Loaded only when the record control is used, a recording goes on from the page before, or
// recordings wait to be sent: a first visit to an interview page never carries it.

import * as store from "./store.js";
import { b64, unb64 } from "./seal.js";
import { localState, recordEvent, wishKey } from "./interview.js";
import { ctx, recording, refreshSession, request, say, state, Stop, storageFailed, strings, studyKey, syncSoon, updateStatus, userId } from "./tablet.js";

export const CHUNK_MS = 5000;

// The peer's wish to record this interview, kept for this tab while they move from section to
// section: {ms} recorded on the pages before, or null.
const recordingWish = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(wishKey()) || "null");
    } catch {
      return null;
    }
  },
  set(value) {
    try {
      if (value) sessionStorage.setItem(wishKey(), JSON.stringify(value));
      else sessionStorage.removeItem(wishKey());
    } catch {
      // no sessionStorage: the next page starts without recording
    }
  },
};
const IV_BYTES = 12;
const API = "/api/v1/recordings";

// --- small helpers --------------------------------------------------------------------------

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

function clock(ms) {
  const s = Math.floor(ms / 1000);
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  return h ? `${h}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${two(Math.floor(s / 60))}:${two(s % 60)}`;
}

export function supported() {
  return !!(window.MediaRecorder && navigator.mediaDevices && navigator.mediaDevices.getUserMedia && globalThis.crypto && crypto.subtle);
}

// Opus in WebM where the browser says it records it, else AAC in MP4 (Safari), else whatever
// the browser records by default: detected, never assumed.
export function pickMime() {
  const can = (type) => typeof MediaRecorder.isTypeSupported === "function" && MediaRecorder.isTypeSupported(type);
  return ["audio/webm;codecs=opus", "audio/mp4"].find(can) || "";
}

// --- the tablet's copy: recordings and their sealed chunks ----------------------------------

function patch(id, fields) {
  return store.transact(["recordings"], "readwrite", (tx, out) => {
    const os = tx.objectStore("recordings");
    store.on(os.get(id), (row) => {
      if (!row) return; // dropped meanwhile (a withdrawal, the case store said 410)
      out.value = { ...row, ...fields };
      os.put(out.value);
    });
  });
}

function recordingsOf(user) {
  return store.transact(["recordings"], "readonly", (tx, out) => {
    store.on(tx.objectStore("recordings").getAll(), (rows) => {
      out.value = rows.filter((r) => String(r.user_id) === String(user)).sort((a, b) => String(a.started_at).localeCompare(String(b.started_at)));
    });
  });
}

const range = (id) => IDBKeyRange.bound([id, 0], [id, Infinity]);

function chunkKeys(id) {
  return store.transact(["chunks"], "readonly", (tx, out) => {
    store.on(tx.objectStore("chunks").getAllKeys(range(id)), (keys) => (out.value = keys));
  });
}

function chunkAt(key) {
  return store.transact(["chunks"], "readonly", (tx, out) => {
    store.on(tx.objectStore("chunks").get(key), (row) => (out.value = row));
  });
}

function deleteChunk(key) {
  return store.transact(["chunks"], "readwrite", (tx) => tx.objectStore("chunks").delete(key));
}

// Everything recorded in one interview (consent to audio taken back).
function dropInterview(interviewId) {
  return store.transact(store.AUDIO, "readwrite", (tx) => store.forgetAudio(tx, [interviewId]));
}

export function dropRecording(id) {
  return store.transact(["chunks", "recordings"], "readwrite", (tx) => {
    tx.objectStore("chunks").delete(range(id));
    tx.objectStore("recordings").delete(id);
  });
}

// --- recording ------------------------------------------------------------------------------

let live = null; // the recording on this page: its recorder, key, place in time

function elapsed(l) {
  return l.ms + (l.since === null ? 0 : performance.now() - l.since);
}

function freeze(l) {
  l.ms = elapsed(l);
  l.since = null;
}

// A fresh AES-256-GCM key, wrapped with RSA-OAEP to the study key; from then on only a copy
// that WebCrypto never gives out again encrypts, and the raw bytes are overwritten.
async function newKey(studyPublic) {
  const aes = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", aes));
  const publicKey = await crypto.subtle.importKey("spki", unb64(studyPublic.spki), { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
  const wrapped = await crypto.subtle.encrypt({ name: "RSA-OAEP" }, publicKey, raw);
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
  raw.fill(0);
  return { key, wrapped: b64(wrapped), kid: studyPublic.kid };
}

async function begin(stream, before) {
  const studyPublic = await studyKey();
  if (!studyPublic) throw new Stop("no_key");
  const sealed = await newKey(studyPublic);
  const mime = pickMime();
  const recorder = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
  const l = { id: store.uuid(), recorder, stream, key: sealed.key, seq: 0, ms: 0, since: null, last: 0, before, stopping: null, dropped: false };
  const meta = {
    id: l.id, interview_id: ctx.interviewId, user_id: String(userId), kid: sealed.kid, wrapped_key: sealed.wrapped,
    started_at: new Date().toISOString(), chunks: 0, duration_ms: 0, ended: false, created: false, touched_at: Date.now(),
  };
  recorder.ondataavailable = (event) => {
    const end = elapsed(l);
    const start = l.last;
    l.last = end;
    l.queue = l.queue.then(() => keep(l, event.data, start, end - start));
  };
  recorder.onerror = () => stop("interrupted");
  stream.getTracks().forEach((t) => t.addEventListener("ended", () => stop("interrupted")));
  recorder.start(CHUNK_MS);
  l.since = performance.now();
  // the recorder's own type once it runs (a browser that chose its default says it now)
  meta.mime = recorder.mimeType || mime || "audio/webm";
  l.queue = store.transact(["recordings"], "readwrite", (tx) => tx.objectStore("recordings").put(meta));
  live = l;
  // held while this page records: a recording nobody holds was left by a closed page
  if (navigator.locks) navigator.locks.request(`fact-rec:${l.id}`, () => new Promise((resolve) => (l.release = resolve))).catch(() => {});
  try {
    await l.queue;
  } catch (error) {
    live = null;
    recorder.ondataavailable = null;
    recorder.stop();
    throw error;
  }
  return l;
}

// Seal one chunk at once and keep it with its recording's count, in one transaction.
async function keep(l, blob, start, duration) {
  // after a failed write nothing more is kept: the chunks stay a run without a gap
  if (!blob || !blob.size || l.dropped || l.failed) return;
  const seq = l.seq;
  l.seq += 1;
  try {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const additionalData = new TextEncoder().encode(`${l.id}:${seq}`);
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData }, l.key, await blob.arrayBuffer()));
    const data = new Uint8Array(IV_BYTES + sealed.length);
    data.set(iv);
    data.set(sealed, IV_BYTES);
    const sha256 = hex(await crypto.subtle.digest("SHA-256", data));
    const chunk = {
      recording_id: l.id, seq, interview_id: ctx.interviewId, user_id: String(userId), data: data.buffer, sha256,
      start_ms: Math.round(start), duration_ms: Math.max(0, Math.round(duration)),
    };
    await store.transact(["chunks", "recordings"], "readwrite", (tx) => {
      const recs = tx.objectStore("recordings");
      store.on(recs.get(l.id), (row) => {
        if (!row) return; // the recording was dropped: its chunks go with it
        tx.objectStore("chunks").add(chunk);
        recs.put({ ...row, chunks: seq + 1, duration_ms: chunk.start_ms + chunk.duration_ms, touched_at: Date.now() });
      });
    });
  } catch (error) {
    // the storage is full (or failing): said at once, and the recording stops cleanly with
    // everything kept so far
    if (!l.failed) {
      l.failed = true;
      storageFailed(error);
      say(strings.recording_full, "error");
      setTimeout(() => stop("storage"));
    }
    return;
  }
  updateStatus();
  upload();
}

function pause() {
  if (!live || live.stopping || live.recorder.state !== "recording") return;
  freeze(live);
  live.recorder.pause();
  show();
}

function resume() {
  if (!live || live.stopping || live.recorder.state !== "paused") return;
  live.since = performance.now();
  live.recorder.resume();
  show();
}

// Stop: the last chunk is sealed and kept before this resolves.
export function stop(reason) {
  const l = live;
  if (!l) return Promise.resolve();
  if (!l.stopping) {
    l.stopping = (async () => {
      freeze(l);
      if (l.recorder.state !== "inactive") {
        const stopped = new Promise((resolve) => {
          l.recorder.addEventListener("stop", resolve, { once: true });
          setTimeout(resolve, 3000); // a recorder that never says it stopped holds nothing up
        });
        l.recorder.stop();
        await stopped;
      }
      l.stream.getTracks().forEach((t) => t.stop());
      await l.queue.catch(() => {});
      l.key = null;
      if (live === l) live = null;
      if (!l.dropped) await patch(l.id, { ended: true, ended_at: new Date().toISOString(), reason }).catch(() => {});
      if (l.release) l.release();
      show();
      updateStatus();
      upload();
    })();
  }
  return l.stopping;
}

// The consent no longer covers audio, or the participant withdrew: stop, and nothing of this
// interview's recordings stays on the tablet.
async function dropAll() {
  recordingWish.set(null);
  const l = live;
  if (l) {
    l.dropped = true;
    await stop("consent");
  }
  await dropInterview(ctx.interviewId);
  if (l) say(strings.recording_consent_gone, "warning");
  updateStatus();
}

// --- what the peer sees and taps ------------------------------------------------------------

let timer = null;

function show() {
  const box = document.querySelector(".recording");
  if (!box) return;
  const l = live && !live.stopping ? live : null;
  let on = box.querySelector(".rec-live");
  if (!l) {
    delete box.dataset.live;
    on?.remove();
    clearInterval(timer);
    timer = null;
    return;
  }
  box.dataset.live = "";
  if (!on) {
    on = document.createElement("div");
    on.className = "rec-live";
    const said = document.createElement("span");
    said.className = "rec-indicator";
    said.setAttribute("role", "status");
    const time = document.createElement("span");
    time.className = "rec-time";
    const button = (label, data, action) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "button";
      b.dataset[data] = "";
      b.textContent = label;
      b.addEventListener("click", action);
      return b;
    };
    on.append(said, time, button(strings.recording_stop, "recordStop", peerStops), button(strings.recording_participant_stop, "recordParticipantStop", participantStops));
    box.append(on);
  }
  const paused = l.recorder.state === "paused";
  const said = on.querySelector(".rec-indicator");
  const text = paused ? strings.recording_paused : strings.recording_on;
  if (said.textContent !== text) said.textContent = text;
  on.dataset.state = paused ? "paused" : "recording";
  const tick = () => {
    if (live) on.querySelector(".rec-time").textContent = clock(live.before + elapsed(live));
  };
  tick();
  if (!timer) timer = setInterval(tick, 1000);
}

// What recording means, said plainly before the microphone is asked for.
function explain() {
  const dialog = document.createElement("dialog");
  if (typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(`${strings.record}\n\n${strings.recording_explain}`));
  dialog.className = "rec-dialog";
  dialog.setAttribute("aria-labelledby", "rec-dialog-title");
  const title = document.createElement("h2");
  title.id = "rec-dialog-title";
  title.textContent = strings.record;
  const paragraphs = String(strings.recording_explain).split("\n\n").map((text) => {
    const p = document.createElement("p");
    p.textContent = text;
    return p;
  });
  const actions = document.createElement("div");
  actions.className = "actions";
  const yes = document.createElement("button");
  yes.className = "button primary";
  yes.value = "yes";
  yes.dataset.recordConfirm = "";
  yes.textContent = strings.recording_begin;
  const no = document.createElement("button");
  no.className = "button";
  no.value = "no";
  no.textContent = strings.recording_not_now;
  actions.append(yes, no);
  const form = document.createElement("form");
  form.method = "dialog";
  form.append(title, ...paragraphs, actions);
  dialog.append(form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
      document.querySelector("[data-record]")?.focus();
    });
    dialog.showModal();
  });
}

let asking = false;

export async function askAndStart() {
  if (live || asking) return;
  if (!supported()) {
    say(strings.recording_cannot, "warning");
    return;
  }
  asking = true;
  try {
    if (await explain()) await startNow(true);
  } finally {
    asking = false;
  }
}

// The microphone is asked for now, when the peer has said to start (or the page before was
// recording); the interview must still be under way once it answers.
async function startNow(explicit) {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch {
    recordingWish.set(null);
    say(strings.recording_cannot, "warning");
    return;
  }
  const st = await localState();
  if (live || st.status !== "in_progress" || !document.querySelector(".recording")) {
    stream.getTracks().forEach((t) => t.stop());
    return;
  }
  const wish = recordingWish.get();
  try {
    await begin(stream, wish ? Number(wish.ms) || 0 : 0);
  } catch (error) {
    stream.getTracks().forEach((t) => t.stop());
    recordingWish.set(null);
    if (error instanceof Stop) say(strings.no_study_key_recording, "warning");
    else {
      storageFailed(error);
      say(strings.recording_full, "error");
    }
    return;
  }
  recordingWish.set({ ms: live.before });
  if (explicit) {
    await recordEvent("recording_started", { recording_id: live.id });
    syncSoon(200);
  }
  show();
  upload();
}

// The page before was recording this interview: go on, with a new recording, as soon as the
// interview is under way (at once, or when it is resumed).
export async function goOn() {
  if (!supported() || live) return;
  const st = await localState();
  if (st.status === "in_progress") await startNow(false);
}

async function peerStops() {
  if (!live || live.stopping) return;
  const id = live.id;
  recordingWish.set(null);
  const stopping = stop("peer");
  await recordEvent("recording_stopped", { reason: "peer", recording_id: id });
  await stopping;
  syncSoon(200);
}

// One tap: the recording stops and the event says why (recorded once however often tapped).
async function participantStops() {
  if (!live || live.stopping) return;
  recordingWish.set(null);
  const id = live.id;
  const stopping = stop("participant_asked");
  await recordEvent("recording_stopped", { reason: "participant_asked", recording_id: id });
  await stopping;
  say(strings.recording_participant_stopped, "info");
  syncSoon(200);
}

recording.now = () => (live && !live.stopping ? { id: live.id, offset_ms: Math.round(elapsed(live)) } : null);

recording.event = async (kind) => {
  if (kind === "pause" || kind === "distress_1") pause();
  else if (kind === "resume") {
    if (live) resume();
    else if (recordingWish.get()) await startNow(false);
  } else if (["stop", "complete", "distress_2"].includes(kind)) {
    recordingWish.set(null);
    await stop(kind === "distress_2" ? "distress" : "interview_ended");
  } else if (kind === "no_audio") await dropAll();
};

// Leaving for another page: this recording ends with its last chunk kept; the wish (and the
// time recorded so far) goes with the tab to the next page.
recording.leave = async () => {
  const l = live;
  if (!l || l.stopping) return;
  const wish = recordingWish.get();
  await stop("interrupted");
  if (wish) recordingWish.set({ ms: l.before + l.ms });
};

document.addEventListener("tablet:no-audio", (event) => {
  if (ctx && (event.detail || []).includes(ctx.interviewId)) dropAll().catch(() => {});
});

// --- sending: resumable and idempotent, one chunk at a time, in order ------------------------

class Gone extends Error {}
class Later extends Error {}

async function api(method, url, body, headers = {}, retried = false) {
  const json = body !== undefined && !(body instanceof ArrayBuffer);
  const response = await request(url, {
    method,
    headers: { Accept: "application/json", "X-CSRFToken": state.csrf, ...(json ? { "Content-Type": "application/json" } : {}), ...headers },
    body: json ? JSON.stringify(body) : body,
  }, 60000);
  if (response.ok) return response.json().catch(() => ({}));
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) throw new Stop("login");
  if (response.status === 400 && answer.code === "csrf" && !retried) {
    await refreshSession();
    return api(method, url, body, headers, true);
  }
  if (response.status === 410) throw new Gone();
  if (response.status === 413) {
    say(strings.recording_store_full, "warning");
    throw new Later();
  }
  // 403 (the case store has not heard of the consent yet), 409, 400: kept, and tried again
  // at the next sync; 5xx: the case store is not answering
  if (response.status >= 500) throw new Stop("unreachable");
  throw new Later();
}

// A recording a closed page left unfinished is finished here with what it kept.
async function abandoned(meta) {
  if (meta.ended || (live && live.id === meta.id)) return false;
  if (navigator.locks) return navigator.locks.request(`fact-rec:${meta.id}`, { ifAvailable: true }, (lock) => !!lock);
  return Date.now() - (meta.touched_at || 0) > 3 * CHUNK_MS;
}

async function send(meta) {
  const url = `${API}/${encodeURIComponent(meta.id)}`;
  if (await abandoned(meta)) meta = (await patch(meta.id, { ended: true, ended_at: new Date(meta.touched_at || Date.now()).toISOString(), reason: "interrupted" })) || meta;
  if (!meta.created) {
    const { interview_id, mime, kid, wrapped_key, started_at } = meta;
    await api("PUT", url, { interview_id, mime, kid, wrapped_key, started_at });
    meta = (await patch(meta.id, { created: true })) || meta;
  }
  const held = new Map(((await api("GET", url)).chunks || []).map((c) => [Number(c.seq), c.sha256]));
  for (const key of await chunkKeys(meta.id)) {
    const chunk = await chunkAt(key);
    if (!chunk) continue;
    // a chunk leaves the tablet only when the case store names the same checksum
    if (held.get(chunk.seq) === chunk.sha256) {
      await deleteChunk(key);
      continue;
    }
    if (held.has(chunk.seq)) continue; // other bytes under that number: kept, never overwritten
    const answer = await api("PUT", `${url}/chunks/${chunk.seq}`, chunk.data, {
      "Content-Type": "application/octet-stream",
      "X-Chunk-SHA256": chunk.sha256,
      "X-Chunk-Start-Ms": String(chunk.start_ms),
      "X-Chunk-Duration-Ms": String(chunk.duration_ms),
    });
    if (answer && answer.sha256 === chunk.sha256) await deleteChunk(key);
    updateStatus();
  }
  const latest = (await recordingsOf(userId)).find((r) => r.id === meta.id);
  if (latest && latest.ended && !(await chunkKeys(meta.id)).length) {
    await api("POST", `${url}/end`, { chunks: latest.chunks, duration_ms: latest.duration_ms, ended_at: latest.ended_at, reason: latest.reason });
    await dropRecording(meta.id);
  }
}

async function sendAll() {
  if (!navigator.onLine || !userId) return;
  if (state.session !== "ok") await refreshSession();
  for (const meta of await recordingsOf(userId)) {
    try {
      await send(meta);
    } catch (error) {
      if (error instanceof Gone) await dropRecording(meta.id); // deleted by a withdrawal
      else if (!(error instanceof Later)) throw error;
    }
  }
}

let sending = null;
let again = false;

// Send what waits; a call while sending makes one more round after it.
export function upload() {
  if (sending) {
    again = true;
    return sending;
  }
  const run = async () => {
    do {
      again = false;
      try {
        await (navigator.locks ? navigator.locks.request("fact-rec-upload", sendAll) : sendAll());
      } catch (error) {
        if (error instanceof Stop && error.kind === "login") state.session = "login";
        return; // offline, or the case store is not answering: the next sync tries again
      }
    } while (again);
  };
  sending = run().finally(() => {
    sending = null;
    updateStatus();
  });
  return sending;
}
