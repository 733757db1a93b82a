"""Consent records (issue 18): every consent, by form or by sync, rendered once as a PDF of what
the participant saw and answered, sealed in the identity key store, downloadable by the team's
coordinator (audited), gone with the identity entry."""

import hashlib
import io
import uuid
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask_babel import force_locale, gettext
from pypdf import PdfReader
from sqlalchemy import func, select, text
from sqlalchemy.orm import selectinload

from interview.documents.consent_record import ensure_record
from interview.store.extensions import db
from interview.store.models import AuditEvent, Consent, ConsentFormVersion, ConsentRecord
from tests.conftest import PASSWORD
from tests.helpers import (
    CONSENT_ALL_YES,
    consented_interview,
    post_sync,
    signature_data_url,
    start_interview,
)

DEVICE = "b7e1c3d2-0f4a-4b5c-9d8e-7f6a5b4c3d2e"


def _login(app, username):
    client = app.test_client()
    client.post("/login", data={"username": username, "password": PASSWORD})
    return client


def _text(pdf: bytes) -> str:
    return " ".join((page.extract_text() or "") for page in PdfReader(io.BytesIO(pdf)).pages)


def _nb(app, message: str, **values) -> str:
    """The Bokmål words of a message, as the catalogue has them (the test reads the same)."""
    with app.test_request_context(), force_locale("nb"):
        return gettext(message, **values)


def _flat(value: str) -> str:
    return " ".join(value.split())


def _consent_of(app, participant_id) -> Consent:
    with app.app_context():
        consent = db.session.scalars(
            select(Consent)
            .where(Consent.participant_id == participant_id)
            .options(selectinload(Consent.form_version))
        ).one()
        return consent


def _stored(app, consent_id) -> ConsentRecord | None:
    with app.app_context():
        return db.session.get(ConsentRecord, consent_id)


def _record_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ConsentRecord))


def _sync_tablet_consent(app, world, client):
    """Consent for pa2 (English) signed on the tablet and sent by sync."""
    iid = world.interviews["pa2"]
    client.post("/login", data={"username": "peer_a2", "password": PASSWORD})
    start_interview(client, iid)
    with app.app_context():
        version = db.session.scalar(select(func.max(ConsentFormVersion.version)))
    consent_id = str(uuid.uuid4())
    change = {
        "change_id": str(uuid.uuid4()),
        "entity": "consent",
        "id": consent_id,
        "base_rev": None,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {
            "interview_id": iid,
            "form_version": version,
            "language": "en",
            "answers": {"participate": True, "audio": False, "quotes": True, "recontact": False},
            "method": "tablet",
            "signature": signature_data_url(),
            "printed_name": "Per Testesen",
        },
    }
    answer = post_sync(client, [change], device=DEVICE).get_json()
    assert answer["results"][0]["status"] == "applied", answer
    return consent_id


def test_a_paper_consent_by_form_gets_its_record_in_bokmaal(app, world, client):
    consented_interview(client, world)  # pa, nb, paper form P-123
    consent = _consent_of(app, world.participants["pa"])
    stored = _stored(app, consent.id)
    assert stored is not None, "the record is rendered when the consent arrives"

    coord = _login(app, "coord_a")
    page = coord.get(f"/participants/{world.participants['pa']}?lang=nb").get_data(as_text=True)
    link = f"/desk/consents/{consent.id}/record.pdf"
    assert link in page and _nb(app, "Consent record (PDF)") in page

    response = coord.get(link)
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    pdf = response.data
    assert hashlib.sha256(pdf).hexdigest() == stored.sha256
    words = _flat(_text(pdf))
    assert _nb(app, "Consent record") in words
    assert _nb(app, "On a paper form, number %(number)s", number="P-123") in words
    assert "peer_a" in words  # who took the consent
    assert _nb(app, "version %(version)s", version=consent.form_version.version) in words
    assert consent.form_version.checksum in words.replace(" ", "")
    assert _nb(app, "Answer: yes") in words and _nb(app, "Answer: no") in words
    # the time in Oslo, in Bokmål
    when = format_datetime(consent.obtained_at, "long", tzinfo=ZoneInfo("Europe/Oslo"), locale="nb")
    assert _flat(when.split(" kl.")[0]) in words
    # the form's own text, as the participant read it in Bokmål
    item = consent.form_version.content["items"][1]["text"]["nb"]
    assert _flat(item) in words
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.trailer["/Root"].get("/Lang") == "nb"
    assert "/StructTreeRoot" in reader.trailer["/Root"]

    # a second download serves the same stored record
    assert hashlib.sha256(coord.get(link).data).hexdigest() == stored.sha256
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "consent_record_downloaded")
        ).all()
        assert [(r.object_type, r.object_id, r.detail) for r in rows] == [
            ("consent", consent.id, {})
        ] * 2


def test_a_tablet_consent_by_sync_gets_its_record_in_english(app, world, client):
    consent_id = _sync_tablet_consent(app, world, client)
    stored = _stored(app, consent_id)
    assert stored is not None
    # sealed at rest: the raw column is no PDF
    with app.app_context(), db.engines["identity"].connect() as conn:
        raw = conn.execute(
            text("SELECT pdf_enc FROM consent_record WHERE consent_id = :id"), {"id": consent_id}
        ).scalar()
    assert b"%PDF" not in bytes(raw)

    pdf = _login(app, "coord_a").get(f"/desk/consents/{consent_id}/record.pdf").data
    assert hashlib.sha256(pdf).hexdigest() == stored.sha256
    words = _flat(_text(pdf))
    assert "Consent record" in words
    assert "Signed on the tablet" in words
    assert "Per Testesen" in words
    assert DEVICE in words.replace(" ", "")
    assert "peer_a2" in words
    assert "Answer: yes" in words and "Answer: no" in words
    assert "November 23, 2026" in words and "11:00:00" in words  # 10:00 UTC, 11:00 in Oslo
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.trailer["/Root"].get("/Lang") == "en"
    images = [img for page in reader.pages for img in page.images]
    assert images, "the signature image is in the record"


def test_only_the_teams_coordinator_downloads_it(app, world, client):
    consent_id = _sync_tablet_consent(app, world, client)
    path = f"/desk/consents/{consent_id}/record.pdf"
    assert _login(app, "coord_b").get(path).status_code == 404
    assert _login(app, "peer_a2").get(path).status_code == 403
    assert (
        _login(app, "coord_a").get(f"/desk/consents/{uuid.uuid4()}/record.pdf").status_code == 404
    )
    with app.app_context():
        assert not db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "consent_record_downloaded")
        ).all()


def test_a_missing_record_is_rendered_when_asked_for_and_then_stays(app, world, client):
    consent_id = _sync_tablet_consent(app, world, client)
    with app.app_context():
        db.session.execute(db.delete(ConsentRecord))
        db.session.commit()
    coord = _login(app, "coord_a")
    first = coord.get(f"/desk/consents/{consent_id}/record.pdf").data
    stored = _stored(app, consent_id)
    assert hashlib.sha256(first).hexdigest() == stored.sha256
    with app.test_request_context():
        assert ensure_record(consent_id).sha256 == stored.sha256
    assert coord.get(f"/desk/consents/{consent_id}/record.pdf").data == first


def test_the_record_goes_with_the_identity_entry_on_withdrawal(app, world, client):
    consented_interview(client, world)
    assert _record_count(app) == 1
    coord = _login(app, "coord_a")
    from interview.participants.withdrawal import today_in_oslo

    answer = coord.post(
        f"/participants/{world.participants['pa']}/withdraw?lang=en",
        data={"withdrawn_on": today_in_oslo().isoformat(), "keep_identity": "delete"},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    assert _record_count(app) == 0
    with app.app_context():
        row = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant_withdrawn")
        ).one()
        assert row.detail["consent_records_deleted"] == 1


def test_the_record_stays_when_the_identity_entry_is_kept(app, world, client):
    consented_interview(client, world)
    coord = _login(app, "coord_a")
    from interview.participants.withdrawal import today_in_oslo

    coord.post(
        f"/participants/{world.participants['pa']}/withdraw?lang=en",
        data={"withdrawn_on": today_in_oslo().isoformat(), "keep_identity": "keep"},
    )
    assert _record_count(app) == 1


def test_a_form_consent_in_english_signed_on_the_tablet(app, world):
    signer = _login(app, "peer_a2")
    start_interview(signer, world.interviews["pa2"])
    signed = signer.post(
        f"/interviews/{world.interviews['pa2']}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "signature": signature_data_url(),
            "printed_name": "Per Testesen",
        },
    )
    assert signed.status_code == 302
    consent = _consent_of(app, world.participants["pa2"])
    pdf = _login(app, "coord_a").get(f"/desk/consents/{consent.id}/record.pdf").data
    words = _flat(_text(pdf))
    assert "none: recorded on the consent page in the browser" in words
    assert "Per Testesen" in words and "Signed on the tablet" in words
