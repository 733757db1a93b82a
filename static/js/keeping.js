// Keeping the work on a tablet the browser may clear: whether the app is installed, whether its
// storage is persistent and how much is used (shown on "Prepare for offline"), and the rescue
// copy, a file of the waiting changes sealed to the study's key that a coordinator can bring to
// the case store (docs/sync.md, "A copy of unsent work").

import * as seal from "./seal.js";
import * as store from "./store.js";

function fmt(text, values) {
  return String(text || "").replace(/%\((\w+)\)[sd]/g, (_, name) => String(values[name] ?? ""));
}

function size(bytes, lang) {
  const mb = bytes / (1024 * 1024);
  return `${new Intl.NumberFormat(lang === "nb" ? "nb-NO" : "en-GB", { maximumFractionDigits: mb < 10 ? 1 : 0 }).format(mb)} MB`;
}

export function installed() {
  return !!(navigator.standalone || (window.matchMedia && window.matchMedia("(display-mode: standalone)").matches));
}

// Ask for persistent storage (Safari honours it from iPadOS 17; Chromium decides by use) and
// show the answer, whether the app runs from the Home Screen, and how much is used.
export async function showKeeping(strings, { ask = false } = {}) {
  const box = document.getElementById("device-state");
  if (!box) return null;
  const lang = document.documentElement.lang;
  let persisted = null;
  if (navigator.storage && navigator.storage.persisted) {
    persisted = await navigator.storage.persisted();
    if (!persisted && ask && navigator.storage.persist) persisted = await navigator.storage.persist();
  }
  const isInstalled = installed();
  document.getElementById("device-installed").textContent = isInstalled ? strings.installed_yes : strings.installed_no;
  document.getElementById("device-persisted").textContent =
    persisted === null ? strings.persisted_unknown : persisted ? strings.persisted_yes : strings.persisted_no;
  let usage = strings.usage_unknown;
  if (navigator.storage && navigator.storage.estimate) {
    const estimate = await navigator.storage.estimate();
    if (estimate && estimate.usage != null) {
      usage = estimate.quota ? fmt(strings.usage, { used: size(estimate.usage, lang), quota: size(estimate.quota, lang) }) : size(estimate.usage, lang);
    }
  }
  document.getElementById("device-usage").textContent = usage;
  box.dataset.installed = String(isInstalled);
  box.dataset.persisted = String(persisted);
  box.hidden = false;
  return { installed: isInstalled, persisted };
}

// The waiting entries as the case store can take them in one go: an entry that waits for an
// earlier one's rev (an edit typed while the earlier one was being sent) builds on that one's
// rev (1 for a create), and a record's later waiting entries are merged into one, so nothing is
// taken for a second create.
export function foldForRescue(entries) {
  const byRecord = new Map();
  const out = [];
  for (const e of [...entries].sort((a, b) => a.seq - b.seq)) {
    const first = byRecord.get(e.record_key);
    if (!first) {
      byRecord.set(e.record_key, { first: e, later: null });
      out.push(e);
      continue;
    }
    if (!first.later) {
      const base = first.first.op === "create" ? 1 : first.first.base_rev;
      first.later = { ...e, op: "edit", base_rev: e.base_rev ?? base, data: { ...e.data } };
      out.push(first.later);
    } else {
      Object.assign(first.later.data, e.data);
      first.later.recorded_at = e.recorded_at;
    }
  }
  return out;
}

// Save the waiting changes of this person as a sealed file. Nothing of it can be read on the
// tablet or by whoever finds the file; the case store applies it by the usual sync rules, so a
// copy brought twice, or after the tablet synced after all, changes nothing.
export async function rescueCopy(userId, strings, studyKey) {
  const out = document.getElementById("rescue-status");
  const entries = await store.outboxOf(userId);
  if (!entries.length) {
    out.textContent = strings.rescue_none;
    return null;
  }
  const token = await store.getMeta(`rescue:${userId}`);
  const key = await studyKey();
  if (!token || !key || !seal.available()) {
    out.textContent = strings.rescue_no_key;
    return null;
  }
  const device = await store.deviceId(userId);
  const changes = foldForRescue(entries).map(store.asChange);
  const box = await seal.seal({ token, device_id: device, changes }, key);
  const madeAt = new Date().toISOString();
  const file = { format: "fact-rescue", v: 1, made_at: madeAt, store_id: device, count: changes.length, box };
  const name = `fact-unsent-${madeAt.slice(0, 10)}-${device.slice(0, 8)}.json`;
  const url = URL.createObjectURL(new Blob([JSON.stringify(file)], { type: "application/json" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  out.textContent = fmt(changes.length === 1 ? strings.rescue_done_one : strings.rescue_done, { n: changes.length, file: name });
  return name;
}
