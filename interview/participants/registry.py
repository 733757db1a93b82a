"""Participants: pseudonymous codes and the identity key store."""

import secrets

from sqlalchemy import select

from interview.store.crypto import app_key, open_sealed, seal
from interview.store.extensions import db
from interview.store.models import Case, IdentityEntry, Participant, User

# No 0/O, 1/I/L: codes are read aloud and written by hand.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_code(case_code: str, taken: set[str] | None = None) -> str:
    """Return a random code like A-7K3Q that no participant has yet; never derived from a person."""
    for _attempt in range(50):
        code = f"{case_code}-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(4))
        if taken is not None and code in taken:
            continue
        exists = db.session.execute(select(Participant.id).where(Participant.code == code)).first()
        if not exists:
            return code
    raise RuntimeError("could not find a free participant code")


def register(
    case: Case,
    language: str,
    interviewers: list[User],
    created_by: User | None,
    name: str | None = None,
    phone: str | None = None,
) -> Participant:
    """Create a participant with a fresh code; name and phone go to the identity key store only."""
    participant = Participant(
        code=new_code(case.code),
        case=case,
        preferred_language=language,
        interviewers=interviewers,
        created_by_id=created_by.id if created_by else None,
    )
    db.session.add(participant)
    db.session.flush()
    if name or phone:
        set_identity(participant.id, name, phone)
    return participant


def _context(entry_id: str, column: str) -> str:
    return f"identity_entry.{column}.{entry_id}"


def set_identity(participant_id: str, name: str | None, phone: str | None) -> IdentityEntry:
    """Store the participant's name and contact encrypted in the identity key store."""
    key = app_key()
    entry = db.session.execute(
        select(IdentityEntry).where(IdentityEntry.participant_id == participant_id)
    ).scalar_one_or_none()
    if entry is None:
        entry = IdentityEntry(participant_id=participant_id)
        db.session.add(entry)
        db.session.flush()
    entry.name_enc = seal(key, name, _context(entry.id, "name")) if name else None
    entry.contact_enc = seal(key, phone, _context(entry.id, "contact")) if phone else None
    return entry


def get_identity(participant_id: str) -> dict[str, str] | None:
    """Return the decrypted name and contact of a participant, or None."""
    entry = db.session.execute(
        select(IdentityEntry).where(IdentityEntry.participant_id == participant_id)
    ).scalar_one_or_none()
    if entry is None:
        return None
    key = app_key()
    return {
        "name": open_sealed(key, entry.name_enc, _context(entry.id, "name"))
        if entry.name_enc
        else "",
        "contact": open_sealed(key, entry.contact_enc, _context(entry.id, "contact"))
        if entry.contact_enc
        else "",
    }
