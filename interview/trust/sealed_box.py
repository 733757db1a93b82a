"""Sealed boxes: JSON a tablet encrypted to the study key, opened only on the server.

What WebCrypto makes on the tablet, and `seal_box` makes here for the tests:

    {"v": 1, "kid": "<study key id>",
     "key": "<base64 of a fresh AES-256 key wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256,
             no label) to the study's public key>",
     "iv": "<base64 of 12 random bytes>",
     "data": "<base64 of the AES-256-GCM ciphertext of the UTF-8 JSON, the 16-byte tag
              appended, no associated data>"}

`open_box` returns the parsed JSON or raises `BoxError` saying what is wrong, never what the
box holds; it never fails otherwise on anything a client can send.
"""

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from interview.trust import study_key
from interview.trust.study_key import StudyKey

VERSION = 1
FIELDS = ("v", "kid", "key", "iv", "data")
# a consent's signature image and printed name fit well inside this (base64 text, all fields)
MAX_BOX_CHARS = 1_000_000
IV_BYTES = 12
TAG_BYTES = 16
AES_KEY_BYTES = 32


class BoxError(ValueError):
    """A sealed box that cannot be opened; the message says why, never what it holds."""


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _bytes(box: dict, name: str) -> bytes:
    try:
        # standard base64 with padding, as btoa() writes it; anything else is not a box
        return base64.b64decode(box[name], validate=True)
    except (binascii.Error, ValueError) as exc:  # non-ASCII text, lone surrogates included
        raise BoxError(f"{name} is not base64") from exc


def _check_frame(box: Any, max_chars: int) -> dict:
    if not isinstance(box, dict):
        raise BoxError("a sealed box must be an object")
    if set(box) != set(FIELDS):
        raise BoxError("a sealed box has exactly the fields " + ", ".join(FIELDS))
    version = box["v"]
    if not isinstance(version, int) or isinstance(version, bool) or version != VERSION:
        raise BoxError("unknown sealed box version")
    for name in FIELDS[1:]:
        if not isinstance(box[name], str):
            raise BoxError(f"{name} must be text")
    if sum(len(box[name]) for name in FIELDS[1:]) > max_chars:
        raise BoxError("the sealed box is too large")
    return box


def open_box(box: Any, key: StudyKey | None = None, max_chars: int = MAX_BOX_CHARS) -> Any:
    """Return the JSON a box holds; raise BoxError for anything that is not a box we can open.

    `key` defaults to the running app's study key (a missing key file raises StudyKeyError:
    the server's fault, not the box's).
    """
    box = _check_frame(box, max_chars)
    key = key or study_key.current()
    if box["kid"] != key.kid:
        raise BoxError("the box is sealed to another study key")
    wrapped, iv, data = _bytes(box, "key"), _bytes(box, "iv"), _bytes(box, "data")
    if len(wrapped) != key.wrapped_key_size:
        raise BoxError("key has the wrong size")
    if len(iv) != IV_BYTES:
        raise BoxError("iv has the wrong size")
    if len(data) < TAG_BYTES:
        raise BoxError("data is too short")
    try:
        aes_key = key.private_key.decrypt(wrapped, _oaep())
    except ValueError as exc:
        raise BoxError("the box's key does not open with the study key") from exc
    if len(aes_key) != AES_KEY_BYTES:
        raise BoxError("the box's key is not an AES-256 key")
    try:
        plain = AESGCM(aes_key).decrypt(iv, data, None)
    except InvalidTag as exc:
        raise BoxError("the box's data does not open: damaged or changed") from exc
    try:
        return json.loads(plain.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BoxError("the box does not hold JSON") from exc


def seal_box(obj: Any, key: StudyKey | None = None) -> dict[str, Any]:
    """Seal JSON-able data to the study key as the tablet does (for tests and tools)."""
    key = key or study_key.current()
    aes_key = AESGCM.generate_key(bit_length=256)
    iv = os.urandom(IV_BYTES)
    # ASCII escapes, so even text with a lone surrogate can be sealed (what reads it refuses it)
    plain = json.dumps(obj).encode("utf-8")
    data = AESGCM(aes_key).encrypt(iv, plain, None)
    wrapped = key.private_key.public_key().encrypt(aes_key, _oaep())
    return {
        "v": VERSION,
        "kid": key.kid,
        "key": base64.b64encode(wrapped).decode("ascii"),
        "iv": base64.b64encode(iv).decode("ascii"),
        "data": base64.b64encode(data).decode("ascii"),
    }


def unwrap_key(wrapped_b64: str, kid: str, key: StudyKey | None = None) -> bytes:
    """Return the AES-256 key a tablet wrapped to the study key (docs/recordings.md).

    Raises BoxError when it is not such a key or was wrapped to another study key.
    """
    key = key or study_key.current()
    if kid != key.kid:
        raise BoxError("the key is wrapped to another study key")
    try:
        wrapped = base64.b64decode(wrapped_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BoxError("the wrapped key is not base64") from exc
    if len(wrapped) != key.wrapped_key_size:
        raise BoxError("the wrapped key has the wrong size")
    try:
        aes_key = key.private_key.decrypt(wrapped, _oaep())
    except ValueError as exc:
        raise BoxError("the wrapped key does not open with the study key") from exc
    if len(aes_key) != AES_KEY_BYTES:
        raise BoxError("the wrapped key is not an AES-256 key")
    return aes_key


def wrap_key(aes_key: bytes, key: StudyKey | None = None) -> str:
    """Wrap an AES key to the study key as the tablet does (for tests and tools)."""
    key = key or study_key.current()
    return base64.b64encode(key.private_key.public_key().encrypt(aes_key, _oaep())).decode()
