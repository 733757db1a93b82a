"""Argon2id password hashing, with parameters from the app config, and the password rules."""

import functools
import string
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_babel import gettext as _


def hasher() -> PasswordHasher:
    """Return an Argon2id hasher with the configured cost."""
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"],
        memory_cost=cfg["ARGON2_MEMORY_COST"],
        parallelism=cfg["ARGON2_PARALLELISM"],
    )


def hash_password(password: str) -> str:
    """Hash a password with Argon2id."""
    return hasher().hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against its stored hash without raising."""
    try:
        return hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Tell whether a hash was made with other parameters than the configured ones."""
    return hasher().check_needs_rehash(stored)


# a peer types the password on a tablet in the field; the staff roles guard the whole study
MIN_LENGTH = {"peer": 10, "coordinator": 12, "admin": 12}

# runs a password may not be a stretch of (forwards or backwards): counting, the alphabet and
# the rows of a Norwegian keyboard; doubled so that 123456789012 counts as a run
_RUNS = tuple(
    run * 2
    for run in (
        "0123456789",
        "abcdefghijklmnopqrstuvwxyzæøå",
        "qwertyuiopå",
        "asdfghjkløæ",
        "zxcvbnm,.-",
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0pø-",
    )
)
_EDGES = string.digits + string.punctuation + " "


@functools.cache
def common_passwords() -> frozenset[str]:
    """Return the shipped list of common passwords, lower-cased."""
    path = Path(__file__).with_name("common_passwords.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))


def _is_run(text: str) -> bool:
    return any(text in run or text[::-1] in run for run in _RUNS)


def _is_repeated(text: str) -> bool:
    # one character, or a short piece such as "ab" or "123", said over and over
    return any(
        len(text) % size == 0 and text == text[:size] * (len(text) // size)
        for size in range(1, 5)
        if len(text) > size
    )


def password_problem(password: str, username: str, role: str) -> str | None:
    """Return why a new password is refused, in the current language, or None if it is fine."""
    minimum = MIN_LENGTH.get(role, max(MIN_LENGTH.values()))
    if len(password) < minimum:
        return _("The password must be at least %(count)d characters.", count=minimum)
    lowered = password.lower()
    name = username.strip().lower()
    # "passord2024!" or "2024sommer" are the listed word with digits around it
    stem = lowered.strip(_EDGES)
    if name and name in (lowered, lowered[::-1], stem, stem[::-1]):
        return _("The password may not be the username, or the username backwards.")
    if _is_repeated(lowered):
        return _("The password may not be one character or a short piece repeated.")
    if _is_run(lowered):
        return _("The password may not be a simple sequence such as 123456 or qwerty.")
    if lowered in common_passwords() or stem in common_passwords():
        return _("This is one of the most common passwords. Please choose another one.")
    return None
