"""The study key pair (RSA-3072): the private half in the instance folder, the public on tablets.

What a tablet never needs to read back (signature images, printed names, rescue copies) is
sealed on the tablet to the public half at capture (interview/trust/sealed_box.py), so nothing of it
waits in plain form on the device; only the server, holding the private half, opens it. The
private half is a PKCS8 PEM file (`STUDY_KEY_FILE`, mode 0600, unencrypted, like the other key
files), made at start-up when missing, listed by `flask keys status` and copied apart by
`flask backup --keys-to`.
"""

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, current_app

KEY_BITS = 3072
# WebCrypto's name for RSA-OAEP with SHA-256 (and MGF1 with SHA-256), as the tablet imports it
ALG = "RSA-OAEP-256"


class StudyKeyError(Exception):
    """The study key file is missing or is not a key this app can use (the server's fault)."""


def kid_of(public_key: rsa.RSAPublicKey) -> str:
    """Return a key's id: the first 16 hex digits of the sha256 of its DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_of(public_key)).hexdigest()[:16]


def spki_of(public_key: rsa.RSAPublicKey) -> bytes:
    """Return a public key as DER SubjectPublicKeyInfo (what WebCrypto imports as "spki")."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class StudyKey:
    """The key pair read from the key file, with its id and its public half ready to send."""

    def __init__(self, private_key: rsa.RSAPrivateKey):
        self.private_key = private_key
        self.spki = spki_of(private_key.public_key())
        self.kid = hashlib.sha256(self.spki).hexdigest()[:16]

    @property
    def wrapped_key_size(self) -> int:
        """Return the size in bytes of an AES key wrapped with RSA-OAEP to this key."""
        return self.private_key.key_size // 8

    def public_info(self) -> dict[str, str]:
        """Return what `GET /api/v1/study-key` answers: key id, algorithm, base64 SPKI."""
        return {"kid": self.kid, "alg": ALG, "spki": base64.b64encode(self.spki).decode("ascii")}


def new_private_key() -> rsa.RSAPrivateKey:
    """Return a fresh RSA-3072 private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def pem_of(private_key: rsa.RSAPrivateKey) -> bytes:
    """Return a private key as unencrypted PKCS8 PEM (the key file's form)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_key_file(path: Path) -> bool:
    """Write a new key pair's private half (0600) unless the file exists; True when it made one."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    # created 0600 before a byte is written, so the key is never readable by others
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem_of(new_private_key()))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        try:
            # a link never replaces a file: of two workers starting at once, the first key
            # stands, and nobody ever reads a half-written one
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    return True


def load_key_file(path: Path) -> StudyKey:
    """Read the key file; raise StudyKeyError when it is missing or not an RSA private key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StudyKeyError(f"the study key file {path} cannot be read") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise StudyKeyError(f"{path.name} is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise StudyKeyError(f"{path.name} does not hold an RSA key of at least 2048 bits")
    return StudyKey(key)


class StudyKeySource:
    """The key file, read when first needed (parsing costs a tenth of a second) and again
    whenever the file changes (a restore put another one in place)."""

    def __init__(self, path: Path):
        self.path = path
        self._key: StudyKey | None = None
        self._stamp: tuple | None = None

    def get(self) -> StudyKey:
        """Return the study key; raise StudyKeyError when the file is gone or unusable."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StudyKeyError(f"the study key file {self.path} is missing") from exc
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._key is None or stamp != self._stamp:
            self._key = load_key_file(self.path)
            self._stamp = stamp
        return self._key


def current() -> StudyKey:
    """Return the running app's study key."""
    return current_app.extensions["study_key"].get()


def init_app(app: Flask) -> None:
    """Make the key pair at start-up when the file is missing (as the other key files are)."""
    path = Path(app.config["STUDY_KEY_FILE"])
    create_key_file(path)
    app.extensions["study_key"] = StudyKeySource(path)
