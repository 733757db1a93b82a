"""Participants: pseudonymous codes, registration and assignment to peers."""

import secrets

from sqlalchemy import select

from interview.store.extensions import db
from interview.store.identity import set_identity
from interview.store.models import Case, Participant, User

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
