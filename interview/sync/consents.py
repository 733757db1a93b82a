"""Consent records: the signature check and writing a consent with its identity data apart."""

import base64
import binascii
import io
from datetime import datetime

from flask import g
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from interview.store.consents import participant_consent
from interview.store.crypto import app_key, seal, seal_bytes
from interview.store.extensions import db
from interview.store.models import (
    Consent,
    ConsentFormVersion,
    ConsentSignature,
    Interview,
    User,
    new_uuid,
)
from interview.sync.log import move_interviews_on
from interview.trust import audit

MAX_SIGNATURE_BYTES = 500_000
PNG_PREFIX = "data:image/png;base64,"
# the consents a request recorded, whose PDF records are rendered once it has committed
# (interview/documents/consent_record.py): never inside a sync batch's write lock
DUE_KEY = "consent_records_due"


def decode_signature(data_url: str) -> bytes | None:
    """Return the PNG bytes of a drawn signature, or None when it is not a real drawing."""
    if not data_url.startswith(PNG_PREFIX):
        return None
    try:
        raw = base64.b64decode(data_url[len(PNG_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) > MAX_SIGNATURE_BYTES or not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > 4_000_000:
                return None
            img.load()
            if img.convert("RGBA").getchannel("A").getbbox() is None:
                return None  # an empty canvas is no signature
    except Exception:
        return None
    return raw


def store_signature(
    consent_id: str, participant_id: str, printed_name: str | None, signature: bytes | None
) -> None:
    """Commit a consent's printed name and signature to the identity store, before the consent.

    The two stores cannot commit together. Committing the identity half first means a crash
    in between leaves a signature waiting for its consent, never a consent whose signature is
    lost; the tablet sends the consent again and this reuses the waiting row.
    """
    engine = db.engines["identity"]
    with Session(engine) as session, session.begin():
        sig = session.scalars(
            select(ConsentSignature).where(ConsentSignature.consent_id == consent_id)
        ).first()
        if sig is None:
            sig = ConsentSignature(
                id=new_uuid(), consent_id=consent_id, participant_id=participant_id
            )
            session.add(sig)
        key = app_key()
        sig.participant_id = participant_id
        sig.printed_name_enc = (
            seal(key, printed_name, f"consent_signature.printed_name.{sig.id}")
            if printed_name
            else None
        )
        sig.signature_enc = (
            seal_bytes(key, signature, f"consent_signature.signature.{sig.id}")
            if signature is not None
            else None
        )


def record_consent(
    interview: Interview,
    user: User,
    *,
    consent_id: str,
    form_version: ConsentFormVersion,
    language: str,
    answers: dict[str, bool],
    method: str,
    paper_form_number: str | None,
    printed_name: str | None,
    signature: bytes | None,
    obtained_at: datetime,
) -> Consent:
    """Write an immutable consent; printed name and signature go sealed to the identity store."""
    record = Consent(
        id=consent_id,
        participant_id=interview.participant_id,
        interview_id=interview.id,
        form_version_id=form_version.id,
        language=language,
        answers=answers,
        method=method,
        paper_form_number=paper_form_number,
        obtained_at=obtained_at,
        obtained_by_id=user.id,
        rev=1,
    )
    if signature is not None or printed_name:
        store_signature(record.id, record.participant_id, printed_name, signature)
    renews = participant_consent(interview.participant) is not None
    db.session.add(record)
    interview.participant.consents.append(record)
    if renews:
        # renewed consent: every tablet holding one of the participant's interviews hears that
        # no renewal is due any more, and the items as now given
        move_interviews_on(db.session, interview.participant)
    if interview.participant.status == "invited":
        interview.participant.status = "consented"
    audit.record("consent_recorded", "participant", interview.participant_id, user_id=user.id)
    db.session.flush()
    g.setdefault(DUE_KEY, []).append(record.id)
    return record
