// The tablet's own copy of the work, in IndexedDB: records, and the outbox of changes that
// still have to reach the case store. A record and its outbox entry are always written in one
// transaction, so a change is never saved without being queued, or queued without being saved.
// An entry leaves the outbox only when the server names its change_id as applied, duplicate
// or conflict (docs/sync.md).

const DB_NAME = "fact-companion";
// 2: the audio recordings' stores (recording.js, docs/recordings.md)
const DB_VERSION = 2;
export const NOTE_FIELDS = ["text", "polarity", "themes", "possible_quote", "deleted"];
const DEBRIEF_FIELDS = ["wellbeing", "reflection", "wants_debrief_talk", "participant_follow_up"];
const EDITABLE = { note: NOTE_FIELDS, debrief: DEBRIEF_FIELDS, interview: ["current_section"] };

let opened = null;

export function available() {
  return typeof indexedDB !== "undefined";
}

function openDb() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = (event) => {
        const db = request.result;
        if (event.oldVersion < 1) {
          const records = db.createObjectStore("records", { keyPath: "key" });
          records.createIndex("interview", "interview_id");
          const outbox = db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
          outbox.createIndex("record", "record_key");
          outbox.createIndex("interview", "interview_id");
          outbox.createIndex("change_id", "change_id", { unique: true });
          db.createObjectStore("rejected", { keyPath: "change_id" });
          db.createObjectStore("meta", { keyPath: "key" });
        }
        if (event.oldVersion < 2) {
          // a recording's sealed chunks ({recording_id, seq, data: IV || ciphertext, ...}) and
          // the recording itself (its wrapped key, never the key): waiting work like the outbox
          const chunks = db.createObjectStore("chunks", { keyPath: ["recording_id", "seq"] });
          chunks.createIndex("interview", "interview_id");
          // the sound waiting per person, read from the index's keys alone (never the sound)
          chunks.createIndex("waiting", ["user_id", "duration_ms"]);
          db.createObjectStore("recordings", { keyPath: "id" }).createIndex("interview", "interview_id");
        }
      };
      request.onsuccess = () => {
        const db = request.result;
        // another tab upgrading the schema: let it, and open again next time
        db.onversionchange = () => {
          db.close();
          opened = null;
        };
        resolve(db);
      };
      request.onerror = () => {
        opened = null;
        reject(request.error);
      };
    });
  }
  return opened;
}

// Run `body(tx)` in one transaction; resolves with what body put in `out.value` once the
// transaction has committed, rejects with the transaction's error (QuotaExceededError too).
export async function transact(names, mode, body) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(names, mode);
    const out = { value: undefined };
    tx.oncomplete = () => resolve(out.value);
    tx.onerror = (event) => {
      // a failed request fails the whole change: never a record without its outbox entry
      if (!tx.cause) tx.cause = event.target.error;
      try {
        tx.abort();
      } catch {
        // already aborting
      }
    };
    tx.onabort = () => reject(tx.cause || tx.error || new DOMException("The transaction was aborted", "AbortError"));
    try {
      body(tx, out);
    } catch (error) {
      tx.abort();
      reject(error);
    }
  });
}

// An error inside a callback aborts the transaction; the caller gets that error, not a bare
// AbortError, so a full storage is named as such.
export function on(request, callback) {
  request.onsuccess = () => {
    try {
      callback(request.result);
    } catch (error) {
      request.transaction.cause = error;
      request.transaction.abort();
    }
  };
}

export function recordKey(entity, id) {
  return `${entity}:${id}`;
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function same(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

function pick(values, names) {
  const out = {};
  for (const name of names) if (name in values) out[name] = values[name];
  return out;
}

// --- meta ---------------------------------------------------------------------------------

export function getMeta(key) {
  return transact(["meta"], "readonly", (tx, out) => {
    on(tx.objectStore("meta").get(key), (row) => (out.value = row ? row.value : undefined));
  });
}

export function setMeta(key, value) {
  return transact(["meta"], "readwrite", (tx) => {
    tx.objectStore("meta").put({ key, value });
  });
}

// The store's id for one person, made the first time they use the store and sent with every
// sync they make (the server's device id). A device id belongs to the first user who synced
// with it, so on a tablet shared by two peers each keeps an id of their own (`device_id:<user>`).
// A marker in localStorage per person remembers it, so a store made anew where one was before
// (the browser cleared it) can say which one it replaced (`replaces:<user>`), and the case
// store can warn that waiting work may be lost. Where a browser clears both, the server's own
// cookie tells it instead.
//
// A store from before kept one id for everyone (`device_id`, marker `fact-store-id`). It is
// never adopted: whoever synced last owns it on the server, perhaps another peer of this
// tablet. It is only named as the store a person's new id replaced (the server marks a store
// replaced only for its own user), and goes at the next logout.
const STORE_MARK = "fact-store-id";

function readMark(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function mark(userId, id) {
  try {
    localStorage.setItem(`${STORE_MARK}:${userId}`, id);
  } catch {
    // no localStorage: the server's cookie still tells a replaced store
  }
}

export async function deviceId(userId) {
  if (userId === undefined || userId === null || userId === "") throw new Error("deviceId needs the user");
  const key = `device_id:${userId}`;
  let id = await getMeta(key);
  if (!id) {
    const legacy = await getMeta("device_id");
    const before = readMark(`${STORE_MARK}:${userId}`) || legacy || readMark(STORE_MARK);
    id = uuid();
    await transact(["meta"], "readwrite", (tx) => {
      const meta = tx.objectStore("meta");
      meta.put({ key, value: id });
      if (before && before !== id) meta.put({ key: `replaces:${userId}`, value: before });
    });
  }
  mark(userId, id);
  return id;
}

// The case store said this person's id belongs to someone else (409 "device": an old store,
// or one id handed on): make a fresh one and keep what it replaced as it was.
export async function newDeviceId(userId) {
  const id = uuid();
  await setMeta(`device_id:${userId}`, id);
  mark(userId, id);
  return id;
}

// --- records ------------------------------------------------------------------------------

export function getRecord(entity, id) {
  return transact(["records"], "readonly", (tx, out) => {
    on(tx.objectStore("records").get(recordKey(entity, id)), (row) => (out.value = row));
  });
}

// A record belongs to the person it was saved or received for: on a tablet shared by two
// peers, one never sees what the other wrote and has not sent yet.
const theirs = (userId) => (r) => userId === undefined || String(r.user_id) === String(userId);

export function recordsOf(interviewId, userId) {
  return transact(["records"], "readonly", (tx, out) => {
    on(tx.objectStore("records").index("interview").getAll(interviewId), (rows) => (out.value = rows.filter(theirs(userId))));
  });
}

export function allRecords(userId) {
  return transact(["records"], "readonly", (tx, out) => {
    on(tx.objectStore("records").getAll(), (rows) => (out.value = rows.filter(theirs(userId))));
  });
}

// Save an editable record (note, debrief, interview) and queue the change, in one transaction.
// `createData` holds the fields a create needs besides the editable ones (interview_id, …);
// `seenRev` is the server rev the person was looking at when they made the change.
// `known` ({rev, base}) describes a record the server rendered on the page but that the tablet
// has not stored yet, so the first change is an edit of it, not a second create.
export function saveEditable({ entity, id, interviewId, userId, values, createData, seenRev, known }) {
  const key = recordKey(entity, id);
  const fields = EDITABLE[entity];
  const now = new Date().toISOString();
  return transact(["records", "outbox"], "readwrite", (tx) => {
    const records = tx.objectStore("records");
    const outbox = tx.objectStore("outbox");
    on(records.get(key), (existing) => {
      on(outbox.index("record").getAll(key), (all) => {
        // only this person's entries: another peer's waiting change is never written into
        const entries = all.filter((e) => String(e.user_id) === String(userId)).sort((a, b) => a.seq - b.seq);
        const record = existing || {
          key, entity, id, interview_id: interviewId, rev: known ? known.rev : null,
          base: known ? { ...known.base } : null, data: { ...createData, ...(known ? known.base : {}) },
        };
        record.data = { ...record.data, ...values };
        record.user_id = userId;
        record.local_at = now;
        if (!existing) record.created_local = now;
        const unsent = entries.find((e) => !e.sent);
        const sent = entries.filter((e) => e.sent);
        const createAcked = record.rev !== null;
        const createQueued = entries.some((e) => e.op === "create");
        if (!createAcked && !createQueued) {
          // a record the tablet made: the first change creates it
          if (entity === "note" && values.deleted) {
            records.delete(key);
            return;
          }
          outbox.add(entry({ entity, id, interviewId, userId, op: "create", baseRev: null, data: createPayload(entity, record.data, fields, createData), now }));
          records.put(record);
          return;
        }
        if (unsent && unsent.op === "create") {
          if (entity === "note" && values.deleted) {
            outbox.delete(unsent.seq);
            records.delete(key);
            return;
          }
          unsent.data = createPayload(entity, record.data, fields, createData);
          unsent.recorded_at = now;
          outbox.put(unsent);
          records.put(record);
          return;
        }
        // an edit: only the fields that differ from what the store has (or is being sent)
        let reference = { ...(record.base || {}) };
        for (const e of sent) reference = { ...reference, ...pick(e.data, fields) };
        const diff = {};
        for (const name of fields) {
          if (!(name in record.data)) continue;
          if (!same(record.data[name], reference[name] ?? defaults(entity)[name])) diff[name] = record.data[name];
        }
        if (entity === "note" && diff.deleted) delete diff.text; // keep the store's words
        if (unsent) {
          if (Object.keys(diff).length === 0) outbox.delete(unsent.seq);
          else {
            unsent.data = diff;
            unsent.recorded_at = now;
            outbox.put(unsent);
          }
        } else if (Object.keys(diff).length) {
          // the rev the person's words build on: the store's rev when it holds exactly what this
          // tablet last sent, otherwise the later of the rev on screen and the last rev this
          // tablet made (so another's change is never written over unseen: it becomes a
          // conflict with both texts kept, and the tablet never conflicts with itself)
          const ownCurrent = record.own_rev != null && record.rev === record.own_rev;
          const seenOrOwn = Math.max(seenRev ?? 0, record.own_rev ?? 0) || record.rev;
          const base = sent.length ? null : ownCurrent ? record.rev : seenOrOwn;
          outbox.add(entry({ entity, id, interviewId, userId, op: "edit", baseRev: base, data: diff, now }));
        }
        records.put(record);
      });
    });
  });
}

function defaults(entity) {
  if (entity === "note") return { polarity: null, themes: [], possible_quote: false, deleted: false };
  return {};
}

function createPayload(entity, data, fields, createData) {
  const payload = { ...createData, ...pick(data, fields) };
  if (entity === "note") delete payload.deleted;
  return payload;
}

function entry({ entity, id, interviewId, userId, op, baseRev, data, now }) {
  return {
    change_id: uuid(),
    entity,
    id,
    record_key: recordKey(entity, id),
    interview_id: interviewId,
    user_id: userId,
    op,
    base_rev: baseRev,
    recorded_at: now,
    data,
    sent: false,
  };
}

// Save an immutable record (event, consent) with its create change, in one transaction.
// What the record keeps on the tablet (`keep`) may be less than what is sent (a signature).
export function saveImmutable({ entity, id, interviewId, userId, data, keep }) {
  const now = new Date().toISOString();
  return transact(["records", "outbox"], "readwrite", (tx) => {
    tx.objectStore("records").put({
      key: recordKey(entity, id), entity, id, interview_id: interviewId, rev: null, base: null,
      data: keep || data, user_id: userId, local_at: now,
    });
    tx.objectStore("outbox").add(entry({ entity, id, interviewId, userId, op: "create", baseRev: null, data, now }));
  });
}

// --- the outbox ---------------------------------------------------------------------------

export function outboxOf(userId) {
  return transact(["outbox"], "readonly", (tx, out) => {
    on(tx.objectStore("outbox").getAll(), (rows) => (out.value = rows.filter((e) => e.user_id === userId)));
  });
}

export function pendingFor(interviewId, userId) {
  return transact(["outbox"], "readonly", (tx, out) => {
    on(tx.objectStore("outbox").index("interview").getAll(interviewId), (rows) => (out.value = rows.filter(theirs(userId)).sort((a, b) => a.seq - b.seq)));
  });
}

// How many changes wait on this tablet for each person: the status line names other people's
// waiting work without showing it.
export function waitingByUser() {
  return transact(["outbox"], "readonly", (tx, out) => {
    on(tx.objectStore("outbox").getAll(), (rows) => {
      const counts = new Map();
      for (const e of rows) counts.set(String(e.user_id), (counts.get(String(e.user_id)) || 0) + 1);
      out.value = counts;
    });
  });
}

// Take the next batch to send and mark it sent, in one transaction: from then on its payload is
// frozen (a resend must carry exactly the same change), and new typing goes to a new entry.
// One entry per record; an edit that waits for an earlier change's rev stays behind.
export function takeBatch(userId, limit) {
  return transact(["outbox"], "readwrite", (tx, out) => {
    const outbox = tx.objectStore("outbox");
    on(outbox.getAll(), (rows) => {
      const seen = new Set();
      const batch = [];
      for (const e of rows.sort((a, b) => a.seq - b.seq)) {
        if (e.user_id !== userId) continue;
        if (seen.has(e.record_key)) continue;
        seen.add(e.record_key);
        if (e.op === "edit" && e.base_rev === null) continue;
        if (batch.length >= limit) break;
        if (!e.sent) {
          e.sent = true;
          outbox.put(e);
        }
        batch.push(e);
      }
      const taken = new Set(batch.map((e) => e.seq));
      const rest = rows.filter((e) => e.user_id === userId && !taken.has(e.seq));
      // which interviews the rest belongs to: if this store is lost, the coordinator is told
      const interviews = [...new Set(rest.map((e) => e.interview_id).filter(Boolean))].slice(0, 200);
      out.value = { batch, total: rest.length + batch.length, interviews };
    });
  });
}

export function asChange(e) {
  return { change_id: e.change_id, entity: e.entity, id: e.id, base_rev: e.base_rev, recorded_at: e.recorded_at, data: e.data };
}

// Apply the server's answer in one transaction: drop the entries it names as applied,
// duplicate or conflict; keep refused ones aside with the reason; then take in the updates
// for records with nothing waiting, drop every interview whose participant has withdrawn,
// and move the cursor. `summary.withdrawn` names the interviews dropped now (for their pages).
export function applyAnswer({ userId, batch, results, updates, cursor, refused = [] }) {
  const byId = new Map(batch.map((e) => [e.change_id, e]));
  const withdrawnNow = updates.filter((u) => u.entity === "interview" && u.data && u.data.withdrawn).map((u) => u.id);
  return transact(["records", "outbox", "rejected", "meta", ...AUDIO], "readwrite", (tx, out) => {
    const records = tx.objectStore("records");
    const outbox = tx.objectStore("outbox");
    const summary = { done: 0, conflicts: 0, rejected: 0, touched: new Set(), withdrawn: withdrawnNow };
    out.value = summary;
    for (const result of results) {
      const e = byId.get(result.change_id);
      if (!e) continue;
      // a replay of a change that conflicted is no apply (docs/sync.md)
      const status = result.status === "duplicate" && result.reason === "conflict" ? "conflict" : result.status;
      if (status === "applied" || status === "duplicate") {
        outbox.delete(e.seq);
        summary.done += 1;
        summary.touched.add(e.record_key);
        on(records.get(e.record_key), (record) => {
          if (!record) return;
          // never lower the rev: a late answer from another tab may arrive after a newer one
          if (result.rev !== null && result.rev !== undefined && result.rev >= (record.rev ?? 0)) {
            record.base = { ...(record.base || {}), ...pick(e.data, EDITABLE[e.entity] || []) };
            record.rev = result.rev;
            record.own_rev = result.rev;
          }
          if (e.entity === "consent") delete record.data.signature;
          records.put(record);
        });
        on(outbox.index("record").getAll(e.record_key), (later) => {
          for (const next of later) {
            if (next.op === "edit" && next.base_rev === null && result.rev != null) {
              next.base_rev = result.rev;
              outbox.put(next);
            }
          }
        });
      } else if (status === "conflict") {
        // both texts are in the store now; the later entries keep their own base, so any
        // further typing is kept beside the other version too, never written over it
        outbox.delete(e.seq);
        summary.done += 1;
        summary.conflicts += 1;
        summary.touched.add(e.record_key);
        on(outbox.index("record").getAll(e.record_key), (later) => {
          for (const next of later) {
            if (next.op === "edit" && next.base_rev === null) {
              next.base_rev = e.base_rev ?? result.rev;
              outbox.put(next);
            }
          }
        });
      } else if (status === "rejected") {
        // kept aside with the reason, never silently dropped; edits waiting on a refused
        // create can never apply, so they go aside with it
        const aside = (x) => {
          outbox.delete(x.seq);
          summary.rejected += 1;
          tx.objectStore("rejected").put({
            change_id: x.change_id, user_id: userId, entity: x.entity, id: x.id,
            interview_id: x.interview_id, data: x.data, reason: result.reason || "", at: new Date().toISOString(),
          });
        };
        aside(e);
        on(outbox.index("record").getAll(e.record_key), (later) => {
          for (const x of later) {
            if (x.seq === e.seq) continue;
            if (e.op === "create") aside(x);
            else if (x.op === "edit" && x.base_rev === null) {
              // the refused edit changed nothing: what comes after builds on the same rev
              x.base_rev = e.base_rev;
              outbox.put(x);
            }
          }
        });
      }
    }
    // changes answered applied while they waited on the server and refused since (expired,
    // withdrawn): set aside with the words the tablet still holds, and said to be held here
    for (const late of refused) {
      summary.rejected += 1;
      on(records.get(recordKey(late.entity, late.id)), (record) => {
        tx.objectStore("rejected").put({
          change_id: late.change_id, user_id: userId, entity: late.entity, id: late.id,
          interview_id: record ? record.interview_id : null, data: record ? record.data : {},
          reason: late.reason || "", at: new Date().toISOString(),
        });
      });
    }
    tx.objectStore("meta").put({ key: `refused_seen:${userId}`, value: refused.map((r) => r.change_id) });
    for (const update of updates) {
      if (withdrawnNow.includes(update.id)) continue; // dropped below, never stored again
      const key = recordKey(update.entity, update.id);
      // consent to audio taken back: what was recorded goes, unless a consent given on this
      // tablet still waits to be sent (docs/recordings.md)
      if (update.entity === "interview" && update.data && update.data.consent_items && update.data.consent_items.audio === false) {
        on(outbox.index("interview").getAll(update.id), (rows) => rows.some((e) => e.entity === "consent") || forgetAudio(tx, [update.id]));
      }
      on(outbox.index("record").count(key), (waiting) => {
        const data = update.data || {};
        if (waiting > 0 && update.entity === "interview") {
          // the interview's state comes from the store; only the place in the guide is ours
          on(records.get(key), (mine) => {
            const section = mine ? mine.data.current_section : data.current_section;
            records.put({
              key, entity: "interview", id: update.id, interview_id: update.id, rev: update.rev,
              base: {}, data: { ...data, current_section: section }, user_id: userId, from_server: true,
            });
          });
          return;
        }
        if (waiting > 0) return; // the tablet's newer words stay until they are sent
        if (data.gone) {
          records.delete(key);
          return;
        }
        const interviewId = update.entity === "interview" ? update.id : data.interview_id || null;
        on(records.get(key), (mine) => {
          // never back to an older rev: an answer read from an earlier state of the store
          if (mine && mine.from_server && Number(mine.rev) > Number(update.rev)) return;
          records.put({
            key, entity: update.entity, id: update.id, interview_id: interviewId, rev: update.rev,
            base: pick(data, EDITABLE[update.entity] || []), data, user_id: userId, from_server: true,
            own_rev: mine ? mine.own_rev ?? null : null,
            created_local: mine ? mine.created_local : undefined,
          });
        });
      });
    }
    // Requests in one transaction run in order, so this runs after everything above: the
    // refusals just put aside and any record just written for these interviews go too. The
    // interviews dropped before are dropped again, for changes typed on a page still open.
    const meta = tx.objectStore("meta");
    on(meta.get("withdrawn"), (row) => {
      const ids = [...new Set([...((row && row.value) || []), ...withdrawnNow])].slice(-500);
      forget(tx, ids);
      if (withdrawnNow.length) meta.put({ key: "withdrawn", value: ids });
    });
    meta.put({ key: `cursor:${userId}`, value: cursor });
  });
}

// Everything of these interviews leaves the tablet: their records, their outbox entries (the case
// store refuses them: the participant has withdrawn) and their refused changes. Inside a
// transaction on records, outbox and rejected; the refused ones are read once for all.
function forget(tx, interviewIds) {
  if (!interviewIds.length) return;
  const records = tx.objectStore("records");
  const outbox = tx.objectStore("outbox");
  const rejected = tx.objectStore("rejected");
  for (const id of interviewIds) {
    on(records.index("interview").getAllKeys(id), (keys) => keys.forEach((k) => records.delete(k)));
    on(outbox.index("interview").getAllKeys(id), (keys) => keys.forEach((k) => outbox.delete(k)));
  }
  forgetAudio(tx, interviewIds);
  const gone = new Set(interviewIds);
  on(rejected.getAll(), (rows) => rows.forEach((r) => gone.has(r.interview_id) && rejected.delete(r.change_id)));
}

// --- recordings (the rest is in recording.js, loaded only where there is one) -----------------
// Everything recorded in these interviews leaves the tablet (a withdrawal, consent to audio
// taken back): the sealed chunks and the recordings they belong to.
export const AUDIO = ["chunks", "recordings"];
export function forgetAudio(tx, interviewIds) {
  for (const name of AUDIO) {
    const os = tx.objectStore(name);
    for (const id of interviewIds) on(os.index("interview").getAllKeys(id), (keys) => keys.forEach((k) => os.delete(k)));
  }
}

// How much recording waits on this tablet for one person: recordings not yet finished with the
// case store, and the sound in their chunks (ms), for the status line.
export function audioWaiting(userId) {
  return transact(AUDIO, "readonly", (tx, out) => {
    out.value = { recordings: 0, ms: 0 };
    on(tx.objectStore("recordings").getAll(), (rows) => (out.value.recordings = rows.filter(theirs(userId)).length));
    const cursor = tx.objectStore("chunks").index("waiting").openKeyCursor(IDBKeyRange.bound([String(userId), 0], [String(userId), Infinity]));
    on(cursor, (at) => {
      if (!at) return;
      out.value.ms += at.key[1];
      at.continue();
    });
  });
}

export function rejectedOf(userId) {
  return transact(["rejected"], "readonly", (tx, out) => {
    on(tx.objectStore("rejected").getAll(), (rows) => (out.value = rows.filter((r) => r.user_id === userId)));
  });
}

// Remove everything the tablet holds about one interview (its pages are dropped by the caller).
export function dropInterview(interviewId) {
  return transact(["records"], "readwrite", (tx) => {
    const records = tx.objectStore("records");
    on(records.index("interview").getAllKeys(interviewId), (keys) => keys.forEach((k) => records.delete(k)));
  });
}

// At logout: the tablet keeps nothing of what was read or written but the changes still
// waiting to be sent (anyone's) and the records they belong to. Each person's store id (and
// the store it replaced), their rescue token and the sign-out marks stay; a store's single id
// from before ids were kept per person does not.
const KEEP_META = new Set(["signed_out", "study_key"]);
const KEEP_META_PREFIXES = ["device_id:", "replaces:", "rescue:"];
const kept = (key) => KEEP_META.has(key) || KEEP_META_PREFIXES.some((prefix) => String(key).startsWith(prefix));
export function clearAll() {
  return transact(["records", "outbox", "rejected", "meta"], "readwrite", (tx) => {
    const records = tx.objectStore("records");
    const outbox = tx.objectStore("outbox");
    on(outbox.getAll(), (entries) => {
      const waiting = new Set(entries.map((e) => e.record_key));
      on(records.getAllKeys(), (keys) => keys.forEach((k) => waiting.has(k) || records.delete(k)));
    });
    tx.objectStore("rejected").clear();
    const meta = tx.objectStore("meta");
    on(meta.getAll(), (rows) => rows.forEach((r) => kept(r.key) || meta.delete(r.key)));
  });
}

// --- the journal ----------------------------------------------------------------------------
// IndexedDB writes finish after the event that asked for them, and a reload, a Back swipe or a
// closed tab can come first. So every keystroke is also written, synchronously, to a small
// journal in localStorage, and taken out again once IndexedDB holds it; a page that starts
// finds what the last one could not finish and saves it (replayJournal). One entry per record,
// named for the person who typed it, so nobody else's page ever replays it.

const JOURNAL = "fact-journal:";

export function journal(userId, args) {
  const key = `${JOURNAL}${userId}:${recordKey(args.entity, args.id)}`;
  const stamp = `${Date.now()}-${Math.random()}`;
  try {
    localStorage.setItem(key, JSON.stringify({ stamp, args }));
  } catch {
    return null; // no localStorage (private mode, full): IndexedDB alone, as before
  }
  return { key, stamp };
}

export function unjournal(mark) {
  if (!mark) return;
  try {
    const row = JSON.parse(localStorage.getItem(mark.key) || "null");
    // only the entry this save wrote: a later keystroke's entry waits for its own save
    if (row && row.stamp === mark.stamp) localStorage.removeItem(mark.key);
  } catch {
    // nothing to take out
  }
}

function journalKeys(prefix) {
  const keys = [];
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (key && key.startsWith(prefix)) keys.push(key);
    }
  } catch {
    // no localStorage
  }
  return keys;
}

// Save what an earlier page of this person typed but could not finish saving.
export async function replayJournal(userId) {
  let count = 0;
  for (const key of journalKeys(`${JOURNAL}${userId}:`)) {
    let row = null;
    try {
      row = JSON.parse(localStorage.getItem(key) || "null");
    } catch {
      row = null;
    }
    if (row && row.args) {
      await saveEditable(row.args);
      count += 1;
    }
    unjournal({ key, stamp: row && row.stamp });
    if (!row) localStorage.removeItem(key);
  }
  return count;
}

// The words waiting in the journal for one record, if any (a page that starts shows them).
export function journaled(userId, entity, id) {
  try {
    const row = JSON.parse(localStorage.getItem(`${JOURNAL}${userId}:${recordKey(entity, id)}`) || "null");
    return row ? row.args : null;
  } catch {
    return null;
  }
}
