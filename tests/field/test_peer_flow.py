"""The peer's whole interview through the test client, asserting what lands in the store."""

import re
import uuid

from sqlalchemy import select

from interview.store.crypto import app_key, open_bytes, open_sealed
from interview.store.extensions import db
from interview.store.models import (
    Consent,
    ConsentSignature,
    Debrief,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    Theme,
)
from tests.conftest import get_row
from tests.helpers import (
    CONSENT_ALL_YES,
    blank_signature_data_url,
    give_paper_consent,
    new_note_on_page,
    signature_data_url,
    start_interview,
)


def _events(app, interview_id):
    with app.app_context():
        return [
            e.kind
            for e in db.session.scalars(
                select(InterviewEvent)
                .where(InterviewEvent.interview_id == interview_id)
                .order_by(InterviewEvent.recorded_at)
            )
        ]


def _theme_id(app, key):
    with app.app_context():
        return db.session.execute(select(Theme.id).where(Theme.key == key)).scalar_one()


def test_my_interviews_lists_only_assigned(client, auth, world):
    auth.login("peer_a")
    page = client.get("/interviews/?lang=en")
    assert page.status_code == 200
    assert world.interviews["pa"] in page.text
    assert world.interviews["pa2"] not in page.text
    assert world.interviews["pb"] not in page.text
    assert "Today" in page.text or "Coming" in page.text


def test_capacity_check_must_be_confirmed(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    response = client.post(
        f"/interviews/{iid}/capacity?lang=en",
        data={"understands": "y", "minutes": "60", "go": "ok"},
    )
    assert response.status_code == 400
    assert "All three must be true" in response.text
    with app.app_context():
        assert get_row(Interview, iid).status == "planned"


def test_capacity_reschedule_path_is_recorded(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    response = client.post(
        f"/interviews/{iid}/capacity", data={"minutes": "60", "go": "reschedule"}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}/reschedule")
    response = client.post(
        f"/interviews/{iid}/reschedule",
        data={"reason": "capacity", "day": "2030-01-15", "at": "13:30"},
    )
    assert response.status_code == 302
    with app.app_context():
        iv = get_row(Interview, iid)
        assert iv.status == "planned"
        # 13:30 in Oslo in winter is 12:30 UTC
        assert iv.planned_at.isoformat() == "2030-01-15T12:30:00"
        events = db.session.scalars(
            select(InterviewEvent).where(InterviewEvent.interview_id == iid)
        ).all()
        kinds = {e.kind: e.data for e in events}
        assert kinds["capacity_check"]["outcome"] == "reschedule"
        assert kinds["reschedule"]["reason"] == "capacity"


def test_no_consent_no_interview(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    assert start_interview(client, iid).status_code == 302
    # the guide is out of reach until consent is given
    response = client.get(f"/interviews/{iid}/section/0")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}/consent")
    response = client.post(
        f"/interviews/{iid}/consent?lang=en",
        data={
            **CONSENT_ALL_YES,
            "item-participate": "no",
            "method": "paper",
            "paper_form_number": "P-1",
        },
    )
    assert response.status_code == 400
    assert "Without consent to take part" in response.text
    response = client.post(
        f"/interviews/{iid}/consent?lang=en",
        data={"item-participate": "yes", "method": "paper", "paper_form_number": "P-1"},
    )
    assert response.status_code == 400
    assert "Answer yes or no." in response.text
    with app.app_context():
        assert db.session.scalars(select(Consent)).all() == []


def test_consent_signed_on_tablet_goes_to_identity_store(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    response = client.post(
        f"/interviews/{iid}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "printed_name": "Test Person",
            "signature": blank_signature_data_url(),
        },
    )
    assert response.status_code == 400, "an empty canvas is no signature"
    response = client.post(
        f"/interviews/{iid}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "printed_name": "Test Person",
            "signature": signature_data_url(),
        },
    )
    assert response.status_code == 302
    with app.app_context():
        consent = db.session.scalars(select(Consent)).one()
        assert consent.method == "tablet"
        assert consent.language == "nb"
        assert consent.answers == {
            "participate": True,
            "audio": False,
            "quotes": True,
            "recontact": True,
        }
        assert get_row(Participant, world.participants["pa"]).status == "consented"
        sig = db.session.scalars(select(ConsentSignature)).one()
        assert sig.consent_id == consent.id
        assert b"Test Person" not in sig.printed_name_enc
        key = app_key()
        assert (
            open_sealed(key, sig.printed_name_enc, f"consent_signature.printed_name.{sig.id}")
            == "Test Person"
        )
        png = open_bytes(key, sig.signature_enc, f"consent_signature.signature.{sig.id}")
        assert png.startswith(b"\x89PNG")


def test_whole_interview_with_notes_tags_pause_and_debrief(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    assert start_interview(client, iid, minutes=90).status_code == 302
    assert give_paper_consent(client, iid).status_code == 302

    page = client.get(f"/interviews/{iid}/section/0")
    assert page.status_code == 200
    # the guide is shown in the interview language (Bokmål here)
    assert "Introduksjon" in page.text or 'lang="nb"' in page.text
    new_id, fields = new_note_on_page(page.text, "context.services")

    communication = _theme_id(app, "communication")
    response = client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": "Får hjelp med bolig og medisiner.",
            "new-context.services-polarity": "promotes",
            "new-context.services-theme": [str(communication)],
            "new-context.services-quote": "1",
            "go": "next",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}/section/1")

    # going back shows the note as saved, with its tags
    back = client.get(f"/interviews/{iid}/section/0")
    assert "Får hjelp med bolig og medisiner." in back.text

    # a double submit of the same new note creates it once
    client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": "Får hjelp med bolig og medisiner.",
            "go": "stay",
        },
    )
    with app.app_context():
        notes = db.session.scalars(select(Note).where(Note.interview_id == iid)).all()
        assert len(notes) == 1
        note = notes[0]
        assert note.id == new_id
        assert note.question_key == "context.services"
        assert note.polarity == "promotes"
        assert [t.key for t in note.themes] == ["communication"]
        assert note.possible_quote is True
        note_id, rev = note.id, note.rev

    # edit the note and add a second one under the same question
    second_id = str(uuid.uuid4())
    client.post(
        f"/interviews/{iid}/section/0",
        data={
            f"note-{note_id}-text": "Får hjelp med bolig, medisiner og jobb.",
            f"note-{note_id}-rev": str(rev),
            f"note-{note_id}-polarity": "promotes",
            "new-context.services-id": second_id,
            "new-context.services-text": "Savner mer kontakt på kveldstid.",
            "new-context.services-polarity": "inhibits",
            "go": "stay",
        },
    )
    with app.app_context():
        edited = get_row(Note, note_id)
        assert edited.text == "Får hjelp med bolig, medisiner og jobb."
        assert edited.rev == rev + 1
        assert edited.themes == []  # the theme box was unticked
        assert get_row(Note, second_id).polarity == "inhibits"

    # pause and resume are events
    assert client.post(f"/interviews/{iid}/pause").status_code == 302
    with app.app_context():
        assert get_row(Interview, iid).status == "paused"
    assert client.post(f"/interviews/{iid}/resume").status_code == 302
    assert client.post(f"/interviews/{iid}/check-in").status_code == 302

    # finish from the last section, then debrief
    last = client.post(f"/interviews/{iid}/section/5", data={"go": "finish"})
    assert last.headers["Location"].endswith(f"/interviews/{iid}/finish")
    assert client.post(f"/interviews/{iid}/finish").status_code == 302
    response = client.post(
        f"/interviews/{iid}/debrief",
        data={"wellbeing": "2", "reflection": "Tungt tema, men godt.", "wants_debrief_talk": "y"},
    )
    assert response.status_code == 302
    with app.app_context():
        iv = get_row(Interview, iid)
        assert iv.status == "completed"
        assert iv.ended_at is not None and iv.started_at is not None
        assert (iv.expected_end_at - iv.started_at).total_seconds() == 90 * 60
        assert get_row(Participant, world.participants["pa"]).status == "interviewed"
        debrief = db.session.scalars(select(Debrief).where(Debrief.interview_id == iid)).one()
        assert debrief.wellbeing == 2
        assert debrief.wants_debrief_talk is True
        assert debrief.participant_follow_up is False
    assert _events(app, iid) == [
        "capacity_check",
        "start",
        "pause",
        "resume",
        "check_in",
        "complete",
    ]


def test_rejected_section_keeps_typed_text(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    response = client.post(
        f"/interviews/{iid}/section/1?lang=en",
        data={
            "new-promotes.cooperation-id": str(uuid.uuid4()),
            "new-promotes.cooperation-text": "Tekst som ikke må forsvinne",
            "new-promotes.cooperation-polarity": "sideways",
            "go": "next",
        },
    )
    assert response.status_code == 400
    assert "Tekst som ikke må forsvinne" in response.text
    assert "Choose inhibits, promotes or neither." in response.text
    with app.app_context():
        assert db.session.scalars(select(Note)).all() == []


def test_unknown_theme_or_damaged_id_is_a_400_not_a_500(client, auth, world):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    bad_theme = client.post(
        f"/interviews/{iid}/section/0",
        data={
            "new-context.services-id": str(uuid.uuid4()),
            "new-context.services-text": "x",
            "new-context.services-theme": "99999",
        },
    )
    assert bad_theme.status_code == 400
    bad_id = client.post(
        f"/interviews/{iid}/section/0",
        data={"new-context.services-id": "not-a-uuid", "new-context.services-text": "x"},
    )
    assert bad_id.status_code == 400
    assert client.get(f"/interviews/{iid}/section/99").status_code == 404


def test_stale_edit_keeps_both_texts(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    nid = str(uuid.uuid4())
    client.post(
        f"/interviews/{iid}/section/0",
        data={"new-context.services-id": nid, "new-context.services-text": "Første"},
    )
    client.post(
        f"/interviews/{iid}/section/0", data={f"note-{nid}-text": "Andre", f"note-{nid}-rev": "1"}
    )
    # a form opened before the edit above still says rev 1
    client.post(
        f"/interviews/{iid}/section/0", data={f"note-{nid}-text": "Tredje", f"note-{nid}-rev": "1"}
    )
    with app.app_context():
        note = get_row(Note, nid)
        assert note.text == "Andre"
        assert note.conflict_text == "Tredje"


def test_distress_stage_one_then_two_stops_and_flags_follow_up(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    assert client.post(f"/interviews/{iid}/distress").status_code == 302
    with app.app_context():
        assert get_row(Interview, iid).status == "paused"
    page = client.get(f"/interviews/{iid}/distress?lang=en")
    assert "stage 1" in page.text
    response = client.post(
        f"/interviews/{iid}/distress/stage-2",
        data={"contact_team": "y", "comment": "Ble svært urolig."},
    )
    assert response.status_code == 302
    assert "follow_up=1" in response.headers["Location"]
    debrief_page = client.get(response.headers["Location"])
    follow_up_box = re.search(r'<input[^>]*id="participant_follow_up"[^>]*>', debrief_page.text)
    assert follow_up_box and "checked" in follow_up_box.group(0)
    with app.app_context():
        iv = get_row(Interview, iid)
        assert iv.status == "stopped"
        events = {
            e.kind: e.data
            for e in db.session.scalars(
                select(InterviewEvent).where(InterviewEvent.interview_id == iid)
            )
        }
        assert events["distress_2"]["contact_team"] is True
        assert events["stop"]["reason"] == "distress"
    assert _events(app, iid) == ["capacity_check", "start", "distress_1", "distress_2", "stop"]


def test_stop_with_reason(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    bad = client.post(f"/interviews/{iid}/stop", data={"reason": "bored"})
    assert bad.status_code == 400
    response = client.post(
        f"/interviews/{iid}/stop", data={"reason": "participant_wish", "comment": ""}
    )
    assert response.status_code == 302
    with app.app_context():
        assert get_row(Interview, iid).status == "stopped"
    # the interview is over: pausing it is refused with a clear answer, not a 500
    assert client.post(f"/interviews/{iid}/pause").status_code == 409


def test_english_interview_shows_english_guide_in_bokmal_ui(client, auth, world):
    auth.login("peer_a2")
    iid = world.interviews["pa2"]
    start_interview(client, iid)
    consent_page = client.get(f"/interviews/{iid}/consent")
    assert '<html lang="nb">' in consent_page.text
    assert '<div lang="en">' in consent_page.text
    give_paper_consent(client, iid)
    page = client.get(f"/interviews/{iid}/section/0")
    assert '<div lang="en">' in page.text
    assert "Lagre" in page.text or "Save" in page.text


def test_a_debrief_and_a_stop_comment_keep_one_kind_of_line_break(client, auth, world, app):
    # as notes do: CR LF from a Windows browser and a bare CR become LF
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    stopped = client.post(
        f"/interviews/{iid}/stop", data={"reason": "other", "comment": "Ble sliten\r\nfor dagen"}
    )
    assert stopped.status_code == 302
    answer = client.post(
        f"/interviews/{iid}/debrief", data={"wellbeing": "3", "reflection": "En\r\nto\rtre"}
    )
    assert answer.status_code == 302
    with app.app_context():
        debrief = db.session.scalars(select(Debrief).where(Debrief.interview_id == iid)).one()
        assert debrief.reflection == "En\nto\ntre"
        stop = db.session.scalars(
            select(InterviewEvent).where(
                InterviewEvent.interview_id == iid, InterviewEvent.kind == "stop"
            )
        ).one()
        assert stop.details["comment"] == "Ble sliten\nfor dagen"
