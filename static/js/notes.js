// The notes on a guide section: each note saved on every keystroke (journal first, then the
// tablet's store), the tablet's notes laid over the server's page, a fresh box under each saved
// note, themes offered from the page's one list, and the section's buttons.

import { ctx, formAlert, MAX_TEXT, recording, saveTyped, storageFailed, strings, submitterOf, updateStatus, userId } from "./tablet.js";
import { go, safetyEvent, saveSection } from "./interview.js";
import * as store from "./store.js";

// --- notes on a guide section ----------------------------------------------------------------

function noteValues(el) {
  const checked = el.querySelector("input[type=radio]:checked");
  return {
    text: el.querySelector("textarea").value.replace(/\r\n/g, "\n"),
    polarity: checked && checked.value ? checked.value : null,
    themes: [...el.querySelectorAll("input[data-key]:checked")].map((i) => i.dataset.key).sort(),
    possible_quote: quoteMark(el),
  };
}

// a box held off (no consent to quotes) marks nothing, whatever it held before
function quoteMark(el) {
  const box = el.querySelector("input[type=checkbox][name$='-quote']");
  return box.checked && !box.disabled;
}

// what the server put in the box, before anyone typed: the base of an edit
function noteDefaults(el) {
  const checked = [...el.querySelectorAll("input[type=radio]")].find((r) => r.defaultChecked);
  return {
    text: el.querySelector("textarea").defaultValue.replace(/\r\n/g, "\n"),
    polarity: checked && checked.value ? checked.value : null,
    themes: [...el.querySelectorAll("input[data-key]")].filter((i) => i.defaultChecked).map((i) => i.dataset.key).sort(),
    possible_quote: el.querySelector("input[type=checkbox][name$='-quote']").defaultChecked,
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
  const box = el.querySelector("input[type=checkbox][name$='-quote']");
  box.checked = !!data.possible_quote && !box.disabled;
}

// Each note comes with its chosen themes only; the other choices are copied from the page's
// one list, named for the note and in the server's order (the question's suggested themes
// first, then the page's order), the chosen boxes kept as they are. Done before anything
// else reads the notes, with or without this tablet's storage.
export function fillThemeChoices() {
  const source = document.getElementById("theme-choices");
  if (!source) return;
  document.querySelectorAll("details.themes[data-choices]").forEach((details) => {
    const first = (details.closest("[data-first]")?.dataset.first || "").split(" ").filter(Boolean);
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

export function initSection(form) {
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

  // No quote mark where the participant's consent does not cover quotes. The page says it as
  // the server knew it; the tablet's copy of the interview, when as new, as it heard it since
  // (its consent_items, docs/sync.md).
  const noQuotes = document.getElementById("no-quotes");
  async function holdQuotes() {
    const record = await store.getRecord("interview", ctx.interviewId);
    const items = record && Number(record.rev) >= Number(ctx.rev || 0) ? record.data.consent_items : undefined;
    const refused = items === undefined ? !!noQuotes && !noQuotes.hidden : !!items && items.quotes === false;
    if (noQuotes) noQuotes.hidden = !refused;
    const boxes = [...noteEls(), ...Object.values(templates)].map((el) => el.querySelector("input[name$='-quote']"));
    for (const box of boxes) {
      box.disabled = refused;
      if (refused) box.checked = false;
    }
  }
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
    // a note begun while recording says where in the recording (docs/recordings.md); fixed at
    // its first word, so every later save of the create carries the same place
    if (isNew && !el.dataset.recording) el.dataset.recording = JSON.stringify((recording.now && recording.now()) || null);
    const place = el.dataset.recording ? JSON.parse(el.dataset.recording) : null;
    const args = {
      entity: "note",
      id: el.dataset.noteId,
      interviewId: ctx.interviewId,
      userId,
      values: { ...values, deleted },
      createData: { interview_id: ctx.interviewId, question_key: el.dataset.question, ...(place ? { recording: place } : {}) },
      seenRev: seen,
      known: isNew || seen === null ? null : { rev: seen, base: { ...base.get(el), deleted: false } },
    };
    const done = saveTyped(args);
    lastSaved.set(el, JSON.stringify(values));
    // from its first saved word the box is a note (the next keystroke edits it)
    if (isNew) markSaved(el);
    if (deleted && seen === null) markEmpty(el); // never sent: it is an empty box again
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
        if (await safetyEvent("distress_1", ["in_progress", "paused"])) return leave(`${base}/distress`);
        return;
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
  document.addEventListener("tablet:synced", () =>
    holdQuotes()
      .catch(() => {})
      .then(() => overlay({ initial: false }))
      .then(checkIdentifiers)
      .catch(() => {}),
  );
  ready = holdQuotes()
    .catch(() => {})
    .then(() => overlay({ initial: true }))
    .then(saveEarly)
    .catch(() => {}); // a storage error is on screen, and the words stay in the boxes
  ready.then(checkIdentifiers);
  return ready;
}
