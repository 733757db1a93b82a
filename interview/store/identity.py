"""The identity key store's entries: a participant's name and contact, sealed with the app key.

Kept in a database of its own (the `identity` bind), never with the research data.
"""

from sqlalchemy import select

from interview.store.crypto import app_key, open_sealed, seal
from interview.store.extensions import db
from interview.store.models import IdentityEntry


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
