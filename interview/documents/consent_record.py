"""Consent records: every consent rendered once as a PDF, sealed in the identity key store.

The record shows what the participant saw and answered, in the language used: the consent
form's text and items of the version signed, each answer, the signature image or the paper
form's number, the printed name, the time, who took the consent, from which tablet, and the
form version with the SHA-256 of its content. Its own SHA-256 is stored beside it, on first
render; later downloads serve the stored PDF, so the hash never changes.

Rendering takes a good part of a second, so it never runs inside a sync batch (which holds the
store's write-order lock): the consents a request records are rendered after the request's
commit (`render_due`), and a record a render missed (a failure, a restart) is rendered when it
is first asked for (`record_pdf`).
"""

import hashlib
import logging

from flask import current_app, g
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from interview.documents.render import render_pdf
from interview.store.consent_form import consent_letter
from interview.store.crypto import app_key, open_bytes, open_sealed, seal_bytes
from interview.store.extensions import db
from interview.store.models import (
    Consent,
    ConsentRecord,
    ConsentSignature,
    SyncChange,
    User,
    utcnow,
)
from interview.sync.consents import DUE_KEY

# PDF/A-3a: archival and tagged (language, title, structure) for a screen reader
RECORD_VARIANT = "pdf/a-3a"
SIGNATURE_IMAGE = "signature.png"

log = logging.getLogger(__name__)


def _context(consent_id: str) -> str:
    return f"consent_record.pdf.{consent_id}"


def _signature(consent_id: str) -> tuple[str | None, bytes | None]:
    """Return the printed name and signature image of a consent, opened with the app key."""
    with Session(db.engines["identity"]) as session:
        sig = session.scalars(
            select(ConsentSignature).where(ConsentSignature.consent_id == consent_id)
        ).first()
        if sig is None:
            return None, None
        key = app_key()
        name = (
            open_sealed(key, sig.printed_name_enc, f"consent_signature.printed_name.{sig.id}")
            if sig.printed_name_enc
            else None
        )
        image = (
            open_bytes(key, sig.signature_enc, f"consent_signature.signature.{sig.id}")
            if sig.signature_enc
            else None
        )
    return name, image


def render_record(session: Session, consent: Consent) -> bytes:
    """Render the PDF of one consent as it was given."""
    form = consent.form_version
    content = form.content
    lang = consent.language
    printed_name, signature = _signature(consent.id)
    interviewer = (
        session.scalar(select(User.username).where(User.id == consent.obtained_by_id))
        if consent.obtained_by_id
        else None
    )
    # the tablet it came from: the sync change that created it (none for the consent page)
    device = session.scalar(
        select(SyncChange.device_id).where(
            SyncChange.entity == "consent", SyncChange.record_id == consent.id
        )
    )
    return render_pdf(
        "consent_record.html",
        lang,
        variant=RECORD_VARIANT,
        inline={SIGNATURE_IMAGE: signature} if signature else None,
        consent=consent,
        form=content,
        letter=consent_letter(content, lang),
        withdrawal_text=content["withdrawal"][lang],
        version=form.version,
        form_checksum=form.checksum,
        printed_name=printed_name,
        signature_url=SIGNATURE_IMAGE if signature else None,
        interviewer=interviewer,
        device=device,
        study=current_app.config["STUDY_NAME"],
    ).pdf


def _stored(consent_id: str) -> ConsentRecord | None:
    with Session(db.engines["identity"], expire_on_commit=False) as session:
        return session.get(ConsentRecord, consent_id)


def ensure_record(consent_id: str) -> ConsentRecord | None:
    """Return a consent's stored record, rendering and storing it first if there is none.

    Reads only what is committed (a session of its own), so a consent a request has not kept
    is never rendered. None where there is no such consent, or it is a withdrawal.
    """
    stored = _stored(consent_id)
    if stored is not None:
        return stored
    with Session(db.engine) as session:
        consent = session.get(Consent, consent_id)
        if consent is None or consent.kind != "consent":
            return None
        pdf = render_record(session, consent)
        participant_id = consent.participant_id
    record = ConsentRecord(
        consent_id=consent_id,
        participant_id=participant_id,
        sha256=hashlib.sha256(pdf).hexdigest(),
        pdf_enc=seal_bytes(app_key(), pdf, _context(consent_id)),
        created_at=utcnow(),
    )
    try:
        with Session(db.engines["identity"], expire_on_commit=False) as session, session.begin():
            session.add(record)
    except IntegrityError:
        # another request rendered it first: the first one stored is the record
        return _stored(consent_id)
    return record


def record_pdf(record: ConsentRecord) -> bytes:
    """Open a stored record's PDF."""
    return open_bytes(app_key(), record.pdf_enc, _context(record.consent_id))


def render_due(response):
    """After a request: render the records of the consents it recorded (once it committed)."""
    for consent_id in g.pop(DUE_KEY, ()):
        try:
            ensure_record(consent_id)
        except Exception as exc:  # noqa: BLE001 - the download renders it later
            # the class only: a message may quote the consent's words
            log.warning("consent record not rendered now: %s", type(exc).__name__)
    return response


def init_app(app) -> None:
    """Render the consent records a request made once the request is done."""
    app.after_request(render_due)
