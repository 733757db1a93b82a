// The service worker: serves the pages and files kept by "Prepare for offline" when the
// network is gone. It never queues or replays writes (the page's outbox does that), and it
// does not rely on Background Sync, which Safari and Firefox lack.
// A classic script on purpose: module service workers are not in every tablet browser yet.
//
// Logging out is real without a network too: the page marks the tablet signed out and drops
// the kept pages before it posts /logout. While the mark is there, no kept page is shown to
// anyone, and the first time the case store answers, the old session is ended before any page
// is fetched (docs/sync.md, "Logging out").

const PAGES = "fact-pages-v1"; // kept interview pages: they hold a peer's notes
const FILES = "fact-static-v1"; // styles, scripts, icons and the signed-out page: nobody's data
const NETWORK_WAIT_MS = 6000;
const INTERVIEW_PAGE = /^\/interviews\/([0-9a-f-]{36})(\/|$)/;
const SIGNED_OUT_PAGE = "/signed-out";

self.addEventListener("install", (event) => {
  // the page a signed-out tablet shows without a network; it names nobody
  event.waitUntil(keepSignedOutPage().finally(() => self.skipWaiting()));
});

async function keepSignedOutPage() {
  try {
    const response = await fetch(SIGNED_OUT_PAGE, { credentials: "same-origin", cache: "no-store", headers: { "X-Offline-Copy": "1" } });
    if (response.ok) await (await caches.open(FILES)).put(SIGNED_OUT_PAGE, response);
  } catch {
    // kept at the next preparation or logout
  }
}
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  if (request.method === "POST" && request.mode === "navigate" && url.pathname === "/logout") {
    event.respondWith(logout(request));
    return;
  }
  if (request.method !== "GET") return; // writes go to the network, or wait in the outbox
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(staticFile(request, event));
  } else if (request.mode === "navigate") {
    event.respondWith(page(request, url, event));
  }
});

// Static files: the kept copy at once, refreshed in the background.
async function staticFile(request, event) {
  const cache = await caches.open(FILES);
  const url = new URL(request.url);
  const kept = (await cache.match(url.pathname)) || (await oldCopy(url.pathname));
  const fresh = fetch(request)
    .then(async (response) => {
      if (response.ok && kept) await cache.put(url.pathname, response.clone());
      return response;
    })
    .catch(() => null);
  if (kept) {
    event.waitUntil(fresh);
    return kept;
  }
  return (await fresh) || new Response("", { status: 504 });
}

// A tablet prepared before the files had a cache of their own keeps them with the pages.
async function oldCopy(path) {
  const pages = await caches.open(PAGES);
  return pages.match(path);
}

// Pages: the network first; the kept copy when the network fails or is too slow. While the
// tablet holds changes for an interview that the case store has not seen, the server's page
// would show an older state, so the kept copy (drawn from the tablet's own state) comes first.
async function page(request, url, event) {
  const key = url.pathname;
  const match = key.match(INTERVIEW_PAGE);
  const tablet = await tabletState(match ? match[1] : null);
  if (tablet.signedOut) return signedOutNavigation(request, tablet);
  const cache = await caches.open(PAGES);
  if (match && tablet.pending) {
    const kept = await cache.match(key);
    if (kept) return kept;
  }
  try {
    const response = await withTimeout(fetch(request), NETWORK_WAIT_MS);
    if (response.ok && response.type === "basic" && !response.redirected) {
      event.waitUntil(refreshKept(cache, key));
    }
    return response;
  } catch {
    const kept = (await cache.match(key)) || (await cache.match("/offline"));
    return kept || notReachable();
  }
}

// Signed out: the old session ends first; then the case store answers (it asks for a login),
// or, without it, the signed-out page. Never a kept page.
async function signedOutNavigation(request, tablet) {
  if (tablet.serverPending) {
    const ended = await endSession(tablet.mark).catch(() => false);
    if (!ended) return signedOutPage();
    await markServerDone();
  }
  try {
    return await withTimeout(fetch(request), NETWORK_WAIT_MS);
  } catch {
    return signedOutPage();
  }
}

// The logout form: to the case store when it answers, else the tablet is signed out all the
// same and the session is ended at the next contact.
async function logout(request) {
  try {
    const response = await withTimeout(fetch(request), NETWORK_WAIT_MS);
    const tablet = await tabletState(null);
    if (tablet.mark && (await sessionGone(tablet.mark).catch(() => false))) await markServerDone();
    return response;
  } catch {
    return signedOutPage();
  }
}

// Whether the session that was signed out has really ended: the case store says nobody is
// logged in, or names another session. A redirect from a proxy or a captive portal proves
// nothing.
async function sessionGone(mark) {
  const info = await withTimeout(
    fetch("/api/v1/session", { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" }),
    NETWORK_WAIT_MS,
  );
  if (info.status === 401) return true;
  if (!info.ok) return false;
  const session = await info.json().catch(() => null);
  if (!session || !session.user_id) return false;
  return mark.sid ? session.sid !== mark.sid : String(session.user_id) !== String(mark.user_id);
}

// End the session that was open when the tablet was signed out, and only that one: a newer
// login (another peer, or the same peer again) is left alone.
async function endSession(mark) {
  const info = await withTimeout(
    fetch("/api/v1/session", { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" }),
    NETWORK_WAIT_MS,
  );
  if (info.status === 401) return true; // no session left
  if (!info.ok) return false;
  const session = await info.json();
  const same = mark.sid ? session.sid === mark.sid : String(session.user_id) === String(mark.user_id);
  if (!same) return true;
  const body = new URLSearchParams({ csrf_token: session.csrf_token, deferred: "1" });
  await withTimeout(
    fetch("/logout", { method: "POST", credentials: "same-origin", body, redirect: "manual", headers: { "X-CSRFToken": session.csrf_token } }),
    NETWORK_WAIT_MS,
  );
  return sessionGone(mark);
}

async function signedOutPage() {
  const files = await caches.open(FILES);
  const kept = await files.match(SIGNED_OUT_PAGE);
  return kept || notReachable();
}

function notReachable() {
  return new Response("Offline", { status: 503, headers: { "Content-Type": "text/plain; charset=utf-8" } });
}

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

// Keep an offline copy fresh after the page was seen online (only pages already kept).
async function refreshKept(cache, key) {
  if (!(await cache.match(key))) return;
  try {
    const response = await fetch(key, { credentials: "same-origin", headers: { "X-Offline-Copy": "1" } });
    if (response.ok && !response.redirected) await cache.put(key, response);
  } catch {
    // the network went away again: the older copy stays
  }
}

// --- the tablet's store -----------------------------------------------------------------------
// Opening the database must never create it: the page creates it with its stores, so an
// upgrade here is aborted.

function openStore() {
  return new Promise((resolve) => {
    const request = indexedDB.open("fact-companion");
    request.onupgradeneeded = () => request.transaction.abort();
    request.onerror = () => resolve(null);
    request.onblocked = () => resolve(null);
    request.onsuccess = () => resolve(request.result);
  });
}

// The sign-out mark: {user_id, sid, at, server: "pending" | "done"}; an older tablet kept
// the user id alone.
function readMark(row) {
  const value = row && row.value;
  if (!value) return null;
  if (typeof value === "object") return value;
  return { user_id: value, sid: null, server: "done" };
}

// Whether the outbox holds changes for this interview, and whether the tablet is signed out.
function tabletState(interviewId) {
  const nothing = { pending: false, signedOut: false, serverPending: false, mark: null };
  // a navigation never waits long on a storage that does not answer; the kept pages were
  // deleted at logout, so a sign-out mark read too late shows nobody anything
  const timeout = new Promise((resolve) => setTimeout(() => resolve(nothing), 1500));
  return Promise.race([timeout, readTabletState(interviewId, nothing)]);
}

async function readTabletState(interviewId, nothing) {
  const db = await openStore();
  if (!db) return nothing;
  return new Promise((resolve) => {
    const done = (value) => {
      resolve(value);
      db.close();
    };
    try {
      const tx = db.transaction(["outbox", "meta"]);
      const state = { ...nothing };
      const flag = tx.objectStore("meta").get("signed_out");
      flag.onsuccess = () => {
        const mark = readMark(flag.result);
        state.mark = mark;
        state.signedOut = !!mark;
        state.serverPending = !!mark && mark.server === "pending";
      };
      if (interviewId) {
        const count = tx.objectStore("outbox").index("interview").count(interviewId);
        count.onsuccess = () => (state.pending = count.result > 0);
      }
      tx.oncomplete = () => done(state);
      tx.onerror = () => done(nothing);
      tx.onabort = () => done(nothing);
    } catch {
      done(nothing);
    }
  });
}

async function markServerDone() {
  const db = await openStore();
  if (!db) return;
  await new Promise((resolve) => {
    try {
      const tx = db.transaction(["meta"], "readwrite");
      const meta = tx.objectStore("meta");
      const get = meta.get("signed_out");
      get.onsuccess = () => {
        const mark = readMark(get.result);
        if (mark) meta.put({ key: "signed_out", value: { ...mark, server: "done" } });
      };
      tx.oncomplete = resolve;
      tx.onerror = resolve;
      tx.onabort = resolve;
    } catch {
      resolve();
    }
  });
  db.close();
}
