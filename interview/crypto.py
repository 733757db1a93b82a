"""Field encryption for the identity key store (AES-GCM, key kept outside the database)."""

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

PREFIX = b"v1"


class KeyError_(Exception):
    """Raised when the field key is missing or cannot decrypt a value."""


def load_key(env_value: str | None, key_file: str) -> bytes:
    """Return the 32-byte key from the environment or the key file, creating the file if absent."""
    if env_value:
        key = base64.urlsafe_b64decode(env_value.encode())
        if len(key) != 32:
            raise KeyError_("IDENTITY_KEY must be 32 bytes, base64-encoded")
        return key
    path = Path(key_file)
    if path.exists():
        key = base64.urlsafe_b64decode(path.read_bytes().strip())
        if len(key) != 32:
            raise KeyError_("the identity key file does not hold a 32-byte key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.urlsafe_b64encode(key))
    os.chmod(path, 0o600)
    return key


def key_id(key: bytes) -> bytes:
    """Return a short identifier of a key so a value names the key that sealed it."""
    return hashlib.sha256(key).digest()[:4]


def seal(key: bytes, plaintext: str, context: str) -> bytes:
    """Encrypt text with a random nonce; table.column.row is bound as associated data."""
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), context.encode())
    return PREFIX + key_id(key) + nonce + ct


def open_sealed(key: bytes, blob: bytes, context: str) -> str:
    """Decrypt a value sealed by `seal`; raise KeyError_ when the key or context does not match."""
    if not blob.startswith(PREFIX) or blob[2:6] != key_id(key):
        raise KeyError_("value was sealed with another key")
    nonce, ct = blob[6:18], blob[18:]
    try:
        return AESGCM(key).decrypt(nonce, ct, context.encode()).decode("utf-8")
    except Exception as exc:  # InvalidTag: tampered, moved or wrong key
        raise KeyError_("value cannot be decrypted") from exc


def seal_bytes(key: bytes, data: bytes, context: str) -> bytes:
    """Encrypt binary data (a signature image) the same way as text."""
    return seal(key, base64.b64encode(data).decode(), context)


def open_bytes(key: bytes, blob: bytes, context: str) -> bytes:
    """Decrypt binary data sealed by `seal_bytes`."""
    return base64.b64decode(open_sealed(key, blob, context))


def app_key() -> bytes:
    """Return the identity key of the running app."""
    return current_app.extensions["identity_key"]


def init_app(app) -> None:
    """Load (or create) the identity key once at start-up."""
    app.extensions["identity_key"] = load_key(
        app.config.get("IDENTITY_KEY"), app.config["IDENTITY_KEY_FILE"]
    )
