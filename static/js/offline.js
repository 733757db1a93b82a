// The tablet side of the interview: every change is saved in IndexedDB with its outbox entry
// (store.js), the outbox drains to POST /api/v1/sync (tablet.js), and the pages are shown from
// the tablet's own state (interview.js, notes.js), so an interview runs the same with or
// without a network. This module starts it all, prepares for offline and logs out. Without
// IndexedDB the plain forms post to the server as before.

import { guard, handlers, initDebrief, initRecording, LEAVING, localState, showCheckIn, showState } from "./interview.js";
import { fillThemeChoices, initSection } from "./notes.js";
import * as store from "./store.js";
import {
  count,
  ctx,
  FILES,
  fmt,
  formAlert,
  PAGES,
  pageName,
  placeStatus,
  recording,
  refreshStudyKey,
  request,
  sendAudio,
  sleep,
  showNotices,
  state,
  storageFailed,
  strings,
  studyKey,
  submitterOf,
  SYNC_EVERY_MS,
  syncBriefly,
  syncNow,
  Stop,
  updateStatus,
  userId,
} from "./tablet.js";

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
    const keeping = await import("./keeping.js").then((m) => m.showKeeping(strings, { ask: true })).catch(() => null);
    const persisted = !keeping || keeping.persisted !== false;
    await store.setMeta(`prepared:${userId}`, { at: new Date().toISOString(), interviews: ready });
    await store.setMeta("pages_owner", String(userId));
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
// and recordings still waiting stay, for the same peer's next login.
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
      // a recording under way ends with its last chunk sealed and kept, like leaving the page
      if (recording.leave) await recording.leave().catch(() => {});
      // and does not start again by itself at the next login: a new one takes the peer's tap
      forgetRecordingWishes();
      await syncBriefly(4000);
      if (navigator.onLine) await Promise.race([sendAudio().catch(() => {}), sleep(4000)]);
      const waiting = (await store.outboxOf(userId)).length;
      const audio = await store.audioWaiting(userId).catch(() => ({ ms: 0 }));
      const minutes = Math.ceil(audio.ms / 60000);
      // the changes and the recordings stay on the tablet and are sent after the next login
      const told = [];
      if (waiting > 0) told.push(count("logout_waiting", waiting));
      if (minutes > 0) told.push(count(waiting > 0 ? "logout_audio_too" : "logout_audio_waiting", minutes));
      if (told.length && !window.confirm(told.join("\n\n"))) return;
      try {
        await signOut();
      } catch (error) {
        // the tablet could not be cleared: say so; the case store still ends the session
        storageFailed(error);
        if (!navigator.onLine) return;
      }
      form.dataset.confirmed = "1";
      form.submit();
    } finally {
      delete form.dataset.busy;
    }
  });
}

function forgetRecordingWishes() {
  try {
    Object.keys(sessionStorage).filter((k) => k.startsWith("fact-recording:")).forEach((k) => sessionStorage.removeItem(k));
  } catch {
    // no sessionStorage: no wish was kept
  }
}

async function signOut() {
  const sid = state.sid || (await store.getMeta(`sid:${userId}`).catch(() => null)) || null;
  await store.setMeta("signed_out", { user_id: String(userId), sid, at: Date.now(), server: "pending" });
  try {
    // the peer's other open tabs leave their pages too (the "storage" event)
    localStorage.setItem(SIGNED_OUT_SIGNAL, String(Date.now()));
  } catch {
    // no localStorage: other tabs find the mark at their next page
  }
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
      const page = await fetch("/signed-out", { credentials: "same-origin", cache: "no-store", headers: { "X-Offline-Copy": "1" } });
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
    // done only when the case store confirms that nobody is logged in any more
    const after = await request("/api/v1/session", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (after.status === 401) await store.setMeta("signed_out", { ...old, server: "done" });
  } catch {
    // the case store did not answer: the page stays hidden, the session ends next time
  }
  location.replace("/login");
  return true;
}

// --- start ----------------------------------------------------------------------------------

const SIGNED_OUT_SIGNAL = "fact-signed-out";

// Another tab logged out, or this page comes back from the back/forward cache after a logout:
// it shows nothing more of the peer.
function leaveWhenSignedOut() {
  window.addEventListener("storage", (event) => {
    if (event.key === SIGNED_OUT_SIGNAL) location.replace("/signed-out");
  });
  window.addEventListener("pageshow", async (event) => {
    if (!event.persisted) return;
    const mark = await store.getMeta("signed_out").catch(() => null);
    if (mark) location.replace("/signed-out");
  });
}

// Kept pages belong to the peer who prepared them: another peer who logs in on this tablet
// never gets them (a session that ended without a logout leaves them behind).
async function dropOthersPages() {
  const owner = await store.getMeta("pages_owner").catch(() => null);
  if (owner && String(owner) !== String(userId) && "caches" in window) {
    await caches.delete(PAGES);
    await store.setMeta("pages_owner", null);
  }
}

async function start() {
  fillThemeChoices();
  // the identifier guard watches a page's free-text fields with or without the tablet's store;
  // loaded on its own: should it fail, the form is sent as ever
  const fieldGuard = document.querySelector("[data-identifier-field]")
    ? import("./identifiers.js").then((m) => m.attachFieldGuard(document)).catch(() => null)
    : Promise.resolve(null);
  if (!userId || !store.available()) return;
  try {
    await store.deviceId(userId);
  } catch {
    return; // no IndexedDB (a private window): the plain forms work as before
  }
  if (await checkSignedOut()) return;
  leaveWhenSignedOut();
  await dropOthersPages();
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
    await initRecording(st).catch(() => {});
    if (pageName === "debrief") {
      const form = document.querySelector("form[data-offline=debrief]");
      if (form) await initDebrief(form);
      // the words kept on this tablet may have been laid over the page's: look at them again
      fieldGuard.then((g) => g && g.checkAll()).catch(() => {});
    }
    document.addEventListener("tablet:synced", async () => {
      const now = await localState();
      showState(now);
      await showCheckIn();
      // the consent in force may have changed: the record control follows it
      await initRecording(now).catch(() => {});
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
    // only My interviews prepares and keeps: the other pages never load keeping.js
    import("./keeping.js").then((m) => m.showKeeping(strings)).catch(() => {});
    const rescue = document.getElementById("rescue-copy");
    rescue?.addEventListener("click", async () => {
      if (rescue.dataset.busy) return;
      rescue.dataset.busy = "1";
      try {
        const { rescueCopy } = await import("./keeping.js");
        await rescueCopy(userId, strings, studyKey);
      } catch (error) {
        document.getElementById("rescue-status").textContent = fmt(strings.rescue_failed, { error: error.name || String(error) });
      } finally {
        delete rescue.dataset.busy;
      }
    });
  }
  await updateStatus();
  // the page now shows the tablet's own state (tests and styles may wait for this)
  document.documentElement.classList.add("tablet-ready");
  syncNow();
}

start();
