// Sealing to the study's public key: what the tablet never needs to read back (a signature, a
// printed name, a rescue copy of waiting work) is encrypted the moment it is made, so it never
// waits on the tablet in plain form. Only the case store, which holds the private key, opens it.
//
// The box: a fresh AES-256-GCM key encrypts the JSON; RSA-OAEP with SHA-256 wraps that key
// (docs/sync.md, "Sealed boxes"); {"v": 1, "kid", "key", "iv", "data"}, each part base64.

export function b64(bytes) {
  let text = "";
  const view = new Uint8Array(bytes);
  for (let i = 0; i < view.length; i += 0x8000) text += String.fromCharCode(...view.subarray(i, i + 0x8000));
  return btoa(text);
}

export function unb64(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
  return out;
}

export function available() {
  return !!(globalThis.crypto && crypto.subtle);
}

export async function seal(value, key) {
  const publicKey = await crypto.subtle.importKey("spki", unb64(key.spki), { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
  const aes = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = new TextEncoder().encode(JSON.stringify(value));
  const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aes, plain);
  const raw = await crypto.subtle.exportKey("raw", aes);
  const wrapped = await crypto.subtle.encrypt({ name: "RSA-OAEP" }, publicKey, raw);
  return { v: 1, kid: key.kid, key: b64(wrapped), iv: b64(iv), data: b64(data) };
}
