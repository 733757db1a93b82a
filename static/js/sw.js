// The service worker: serves the pages and files kept by "Prepare for offline" when the
// network is gone. It never queues or replays writes (the page's outbox does that), and it
// does not rely on Background Sync, which Safari and Firefox lack.
// A classic script on purpose: module service workers are not in every tablet browser yet.

const CACHE = "fact-pages-v1";
const NETWORK_WAIT_MS = 6000;
const INTERVIEW_PAGE = /^\/interviews\/([0-9a-f-]{36})(\/|$)/;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // writes go to the network, or wait in the outbox
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(staticFile(request, event));
  } else if (request.mode === "navigate") {
    event.respondWith(page(request, url, event));
  }
});

// Static files: the kept copy at once, refreshed in the background.
async function staticFile(request, event) {
  const cache = await caches.open(CACHE);
  const url = new URL(request.url);
  const kept = await cache.match(url.pathname);
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

// Pages: the network first; the kept copy when the network fails or is too slow. While the
// tablet holds changes for an interview that the case store has not seen, the server's page
// would show an older state, so the kept copy (drawn from the tablet's own state) comes first.
async function page(request, url, event) {
  const cache = await caches.open(CACHE);
  const key = url.pathname;
  const match = key.match(INTERVIEW_PAGE);
  const tablet = await tabletState(match ? match[1] : null);
  if (match && tablet.pending && !tablet.signedOut) {
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
    // after logging out, kept pages (which may hold notes) are not shown to whoever holds it
    const kept = tablet.signedOut ? null : (await cache.match(key)) || (await cache.match("/offline"));
    return kept || new Response("Offline", { status: 503, headers: { "Content-Type": "text/plain; charset=utf-8" } });
  }
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

// Whether the outbox holds changes for this interview, and whether the person logged out
// (their waiting changes stay, but their pages are not shown). Opening the database must never
// create it: the page creates it with its stores, so an upgrade here is aborted.
function tabletState(interviewId) {
  const nothing = { pending: false, signedOut: false };
  // a navigation never waits on a storage that does not answer
  const timeout = new Promise((resolve) => setTimeout(() => resolve(nothing), 500));
  return Promise.race([timeout, readTabletState(interviewId, nothing)]);
}

function readTabletState(interviewId, nothing) {
  return new Promise((resolve) => {
    const request = indexedDB.open("fact-companion");
    request.onupgradeneeded = () => request.transaction.abort();
    request.onerror = () => resolve(nothing);
    request.onblocked = () => resolve(nothing);
    request.onsuccess = () => {
      const db = request.result;
      const done = (value) => {
        resolve(value);
        db.close();
      };
      try {
        const tx = db.transaction(["outbox", "meta"]);
        const state = { ...nothing };
        const flag = tx.objectStore("meta").get("signed_out");
        flag.onsuccess = () => (state.signedOut = !!(flag.result && flag.result.value));
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
    };
  });
}
