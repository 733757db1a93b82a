"""Field encryption (AES-GCM) with keys kept outside the database, in key rings for rotation.

Two rings: the identity key store's (`IDENTITY_KEY` / `IDENTITY_KEY_FILE`) and the research
data's (`RESEARCH_KEY` / `RESEARCH_KEY_FILE`: note and debrief text, sync payloads). A key file
holds one base64 key per line; the last one seals, every one opens what it sealed (each sealed
value names its key by a 4-byte id). `flask keys rotate` adds a key, re-seals everything and
then drops the old keys.
"""

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

PREFIX = b"v1"


class KeyError_(Exception):
    """Raised when the field key is missing or cannot decrypt a value."""


class KeyRing:
    """Keys oldest first: the newest seals, and each value opens with the key that sealed it."""

    def __init__(self, keys: list[bytes], path: str | None = None):
        if not keys:
            raise KeyError_("a key ring needs at least one key")
        for key in keys:
            if len(key) != 32:
                raise KeyError_("every key must be 32 bytes")
        self.keys = list(keys)
        # where the ring lives; None when it came from the environment and cannot be rewritten
        self.path = path
        # AES-GCM set up per key once: that costs more than sealing a note. Kept on the ring,
        # so a key dropped by a rotation leaves memory with its ring.
        self._ciphers: dict[bytes, AESGCM] = {}
        self._ids: dict[bytes, bytes] | None = None  # key id -> key, made on first use

    @property
    def active(self) -> bytes:
        """Return the key new values are sealed with."""
        return self.keys[-1]

    def by_id(self, kid: bytes) -> bytes | None:
        """Return the key with this id, if the ring holds it."""
        if self._ids is None or len(self._ids) != len(self.keys):
            self._ids = {}
            for k in self.keys:
                self._ids.setdefault(key_id(k), k)  # the first, as a search from the oldest
        return self._ids.get(kid)

    def ids(self) -> list[str]:
        """Return the key ids, oldest first, as hex."""
        return [key_id(k).hex() for k in self.keys]

    def cipher(self, key: bytes) -> AESGCM:
        """Return AES-GCM for one of the ring's keys (set up once)."""
        found = self._ciphers.get(key)
        if found is None:
            found = self._ciphers[key] = AESGCM(key)
        return found


def _decode(line: bytes) -> bytes:
    key = base64.urlsafe_b64decode(line.strip())
    if len(key) != 32:
        raise KeyError_("a key file line does not hold a 32-byte key")
    return key


def write_ring(path: str, keys: list[bytes]) -> None:
    """Write a key file (one base64 key per line), readable by its owner only, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"".join(base64.urlsafe_b64encode(k) + b"\n" for k in keys))
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def load_ring(env_value: str | None, key_file: str) -> KeyRing:
    """Return the key ring from the environment or the key file, creating the file if absent."""
    if env_value:
        try:
            return KeyRing([_decode(env_value.encode())])
        except KeyError_:
            raise KeyError_("the key in the environment must be 32 bytes, base64-encoded") from None
    path = Path(key_file)
    if path.exists():
        lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
        if not lines:
            raise KeyError_(f"the key file {path.name} is empty")
        return KeyRing([_decode(ln) for ln in lines], str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.urlsafe_b64encode(key))
    os.chmod(path, 0o600)
    return KeyRing([key], str(path))


def load_key(env_value: str | None, key_file: str) -> bytes:
    """Return the sealing key from the environment or the key file, creating the file if absent."""
    try:
        return load_ring(env_value, key_file).active
    except KeyError_ as exc:
        if env_value:
            raise KeyError_("IDENTITY_KEY must be 32 bytes, base64-encoded") from exc
        raise KeyError_("the identity key file does not hold a 32-byte key") from exc


def key_id(key: bytes) -> bytes:
    """Return a short identifier of a key so a value names the key that sealed it."""
    return hashlib.sha256(key).digest()[:4]


def seal(key: "bytes | KeyRing", plaintext: str, context: str) -> bytes:
    """Encrypt text with a random nonce; table.column.row is bound as associated data."""
    if isinstance(key, KeyRing):
        cipher = key.cipher(key.active)
        key = key.active
    else:
        cipher = AESGCM(key)
    nonce = os.urandom(12)
    ct = cipher.encrypt(nonce, plaintext.encode("utf-8"), context.encode())
    return PREFIX + key_id(key) + nonce + ct


def sealed_with(blob: bytes) -> str:
    """Return the id (hex) of the key a sealed value names."""
    return bytes(blob[2:6]).hex()


def open_sealed(key: "bytes | KeyRing", blob: bytes, context: str) -> str:
    """Decrypt a value sealed by `seal`; raise KeyError_ when the key or context does not match."""
    blob = bytes(blob)
    ring = key if isinstance(key, KeyRing) else None
    if ring is not None:
        key = ring.by_id(blob[2:6]) or b""
        # a key the ring found by its id has that id
        named = len(key) == 32
    else:
        named = len(key) == 32 and blob[2:6] == key_id(key)
    if not blob.startswith(PREFIX) or not named:
        raise KeyError_("value was sealed with another key")
    nonce, ct = blob[6:18], blob[18:]
    try:
        cipher = ring.cipher(key) if ring is not None else AESGCM(key)
        return cipher.decrypt(nonce, ct, context.encode()).decode("utf-8")
    except Exception as exc:  # InvalidTag: tampered, moved or wrong key
        raise KeyError_("value cannot be decrypted") from exc


def seal_bytes(key: "bytes | KeyRing", data: bytes, context: str) -> bytes:
    """Encrypt binary data (a signature image) the same way as text."""
    return seal(key, base64.b64encode(data).decode(), context)


def open_bytes(key: "bytes | KeyRing", blob: bytes, context: str) -> bytes:
    """Decrypt binary data sealed by `seal_bytes`."""
    return base64.b64decode(open_sealed(key, blob, context))


class RingSource:
    """A key ring read from its file again whenever the file changes (after a rotation)."""

    def __init__(self, env_value: str | None, key_file: str):
        self._env = env_value
        self._file = key_file
        self._ring = load_ring(env_value, key_file)
        self._stamp = self._mtime()

    def _mtime(self) -> int | None:
        if self._env:
            return None
        try:
            return os.stat(self._file).st_mtime_ns
        except OSError:
            return None

    def get(self) -> KeyRing:
        """Return the ring, re-read if another process has rotated it since."""
        stamp = self._mtime()
        if stamp != self._stamp and stamp is not None:
            self._ring = load_ring(None, self._file)
            self._stamp = stamp
        return self._ring


def _ring(name: str):
    value = current_app.extensions[name]
    return value.get() if isinstance(value, RingSource) else value


def app_key() -> "KeyRing | bytes":
    """Return the identity key ring of the running app."""
    return _ring("identity_key")


def research_key() -> KeyRing:
    """Return the research data key ring of the running app."""
    return _ring("research_key")


def init_app(app) -> None:
    """Load (or create) the key rings once at start-up."""
    app.extensions["identity_key"] = RingSource(
        app.config.get("IDENTITY_KEY"), app.config["IDENTITY_KEY_FILE"]
    )
    app.extensions["research_key"] = RingSource(
        app.config.get("RESEARCH_KEY"), app.config["RESEARCH_KEY_FILE"]
    )
