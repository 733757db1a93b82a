"""The rules around recordings: withdrawal and the study's end delete them, the tablet is told
to drop what it holds; a note keeps its place in a recording; the recording events."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from interview.participants.withdrawal import data_choice_allowed, today_in_oslo, withdraw
from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Consent,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    Recording,
    RecordingChunk,
    User,
    utcnow,
)
from interview.store.recordings import delete_participant_recordings
from interview.sync.apply import APPLIERS, apply_note
from interview.sync.recordings import RecordingRefused, create_recording
from interview.trust.study_end import end_study, plan_end
from tests.helpers import note_change, post_sync
from tests.sync.recording_tablet import Tablet, audio_consented, log_in, recording_files


@pytest.fixture
def peer(app, world):
    """peer_a, logged in, in pa's interview under way with consent to audio."""
    client = log_in(app, "peer_a")
    audio_consented(client, world)
    return client


@pytest.fixture
def tablet(app, world, peer) -> Tablet:
    """A recording of pa's interview with two chunks stored."""
    made = Tablet(app, peer, world.interviews["pa"])
    assert made.create().status_code == 201
    for seq in range(2):
        assert made.send(seq)[0].status_code == 201
    return made


def _rows(app) -> tuple[int, int]:
    with app.app_context():
        return (
            len(db.session.scalars(select(Recording.id)).all()),
            len(db.session.scalars(select(RecordingChunk.seq)).all()),
        )


def _told_to_drop(tablet: Tablet) -> None:
    """Every request about the recording is answered 410 gone: the tablet drops it."""
    answers = [tablet.send(2)[0], tablet.status(), tablet.end(3), tablet.create()]
    assert [(a.status_code, a.get_json()["code"]) for a in answers] == [(410, "gone")] * 4


def _note_in_recording(client, world, tablet: Tablet, offset: int = 4000) -> str:
    note_id = str(uuid.uuid4())
    place = {"id": tablet.id, "offset_ms": offset}
    answer = post_sync(
        client, [note_change(world.interviews["pa"], note_id, "Under opptaket", recording=place)]
    )
    assert answer.get_json()["results"][0]["status"] == "applied"
    return note_id


# -- withdrawal ---------------------------------------------------------------------------------


def test_withdrawing_audio_deletes_the_recordings_and_the_tablet_drops_the_rest(
    app, world, peer, tablet
):
    note_id = _note_in_recording(peer, world, tablet)
    assert len(recording_files(app)) == 2
    coordinator = log_in(app, "coord_a")
    pid = world.participants["pa"]
    done = coordinator.post(
        f"/participants/{pid}/withdraw-items",
        data={"items": ["audio"], "withdrawn_on": today_in_oslo().isoformat()},
    )
    assert done.status_code == 302
    assert recording_files(app) == []
    assert _rows(app) == (0, 0)
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.text == "Under opptaket"  # the words stay, the place in the sound goes
        assert (note.recording_id, note.recording_offset_ms) == (None, None)
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "consent_items_withdrawn")
        ).one()
        assert audit.detail["recordings_deleted"] == 1
    _told_to_drop(tablet)
    # a new recording is refused the same way: the participant withdrew it, the tablet drops it
    fresh = Tablet(app, peer, world.interviews["pa"])
    answer = fresh.create()
    assert (answer.status_code, answer.get_json()["code"]) == (410, "gone")
    assert recording_files(app) == []


def test_sound_from_before_a_withdrawal_of_audio_never_comes_back(app, world, peer, tablet):
    pid = world.participants["pa"]
    with app.app_context():
        participant = db.session.get(Participant, pid)
        withdrawn_at = utcnow()
        consent = participant.consents[0]
        for kind, answers, at in (
            ("partial", {"audio": False}, withdrawn_at),
            # consent given again, with audio, a minute later
            ("consent", {**consent.answers, "audio": True}, withdrawn_at + timedelta(minutes=1)),
        ):
            db.session.add(
                Consent(
                    participant_id=pid,
                    form_version_id=consent.form_version_id,
                    kind=kind,
                    language="nb",
                    answers=answers,
                    method="paper" if kind == "consent" else "coordinator",
                    paper_form_number="P-2" if kind == "consent" else None,
                    obtained_at=at,
                    obtained_by_id=world.users["coord_a"],
                )
            )
        delete_participant_recordings(db.session, pid)
        db.session.commit()
    before = Tablet(app, peer, world.interviews["pa"])
    started = (withdrawn_at - timedelta(minutes=5)).isoformat() + "Z"
    refused = before.create(started_at=started)
    assert (refused.status_code, refused.get_json()["code"]) == (410, "gone")
    after = Tablet(app, peer, world.interviews["pa"])
    assert after.create(started_at=(withdrawn_at + timedelta(minutes=2)).isoformat()).status_code
    assert after.status().status_code == 200


def test_a_whole_withdrawal_deletes_the_recordings_whatever_is_kept(app, world, tablet):
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        coordinator = db.session.get(User, world.users["coord_a"])
        keep = True if data_choice_allowed(db.session, participant) else None
        summary = withdraw(
            db.session,
            participant,
            withdrawn_on=today_in_oslo(),
            keep_data=keep,
            keep_identity=False,
            user=coordinator,
        )
        db.session.commit()
        assert summary.recordings_deleted == 1
        assert summary.as_detail()["recordings_deleted"] == 1
    assert recording_files(app) == []
    assert _rows(app) == (0, 0)
    _told_to_drop(tablet)


def test_a_withdrawal_rolled_back_keeps_the_recordings(app, world, tablet):
    files = {p: p.read_bytes() for p in recording_files(app)}
    with app.app_context():
        assert delete_participant_recordings(db.session, world.participants["pa"]) == 1
        # set aside at once: nothing can open them now
        assert not (Path(app.config["RECORDINGS_DIR"]) / tablet.id).exists()
        db.session.rollback()
    assert {p: p.read_bytes() for p in recording_files(app)} == files
    assert _rows(app) == (1, 2)
    assert tablet.send(2)[0].status_code == 201


def test_another_participants_recordings_stay(app, world, tablet):
    other = log_in(app, "peer_a2")
    audio_consented(other, world, key="pa2")
    theirs = Tablet(app, other, world.interviews["pa2"])
    assert theirs.create().status_code == 201
    assert theirs.send(0)[0].status_code == 201
    with app.app_context():
        assert delete_participant_recordings(db.session, world.participants["pa"]) == 1
        db.session.commit()
    assert [p.parent.name for p in recording_files(app)] == [theirs.id]
    assert theirs.status().get_json()["chunks"][0]["seq"] == 0


def test_the_end_of_the_study_deletes_every_recording(app, world, tablet):
    with app.app_context():
        plan = plan_end(db.session)
        assert plan.recordings == 1 and plan.work_left
        admin = db.session.get(User, world.users["admin"])
        done = end_study(db.session, admin, plan)
        assert done.recordings == 1
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "study_ended")
        ).one()
        assert audit.detail["recordings_deleted"] == 1
        assert plan_end(db.session).recordings == 0
    assert recording_files(app) == []
    assert _rows(app) == (0, 0)
    _told_to_drop(tablet)


# -- a note's place in a recording ------------------------------------------------------------


@pytest.fixture(params=["in one go", "one by one"])
def path(request, monkeypatch):
    """The run of new notes written in one go, or each through apply_note (docs/sync.md)."""
    if request.param == "one by one":
        monkeypatch.setitem(APPLIERS, "note", lambda *args: apply_note(*args))
    return request.param


def test_a_note_keeps_its_place_in_the_recording(app, world, peer, tablet, path):
    iid = world.interviews["pa"]
    ids = [str(uuid.uuid4()) for _ in range(3)]
    later = str(uuid.uuid4())  # a recording sent after the notes: kept by its id
    changes = [
        note_change(iid, ids[0], "a", recording={"id": tablet.id, "offset_ms": 0}),
        note_change(iid, ids[1], "b", recording={"id": later.upper(), "offset_ms": 86_400_000}),
        note_change(iid, ids[2], "c"),
    ]
    results = post_sync(peer, changes).get_json()["results"]
    assert [r["status"] for r in results] == ["applied"] * 3
    with app.app_context():
        places = [
            (n.recording_id, n.recording_offset_ms) for n in (db.session.get(Note, i) for i in ids)
        ]
    assert places == [(tablet.id, 0), (later, 86_400_000), (None, None)]


@pytest.mark.parametrize(
    "place",
    [
        {"id": "x", "offset_ms": 1},
        {"id": str(uuid.uuid4())},
        {"id": str(uuid.uuid4()), "offset_ms": -1},
        {"id": str(uuid.uuid4()), "offset_ms": 86_400_001},
        {"id": str(uuid.uuid4()), "offset_ms": 1.5},
        {"id": str(uuid.uuid4()), "offset_ms": True},
        {"id": str(uuid.uuid4()), "offset_ms": 1, "extra": 1},
        "🎙️",
        [1],
    ],
)
def test_a_malformed_place_is_rejected(app, world, peer, place, path):
    note_id = str(uuid.uuid4())
    answer = post_sync(peer, [note_change(world.interviews["pa"], note_id, "x", recording=place)])
    result = answer.get_json()["results"][0]
    assert result["status"] == "rejected" and "recording" in result["reason"]
    with app.app_context():
        assert db.session.get(Note, note_id) is None


def test_a_recording_of_another_interview_is_rejected(app, world, peer, tablet, path):
    # a second interview of the same participant, which peer_a may write in too
    with app.app_context():
        first = db.session.get(Interview, world.interviews["pa"])
        second = Interview(
            participant_id=first.participant_id,
            guide_version_id=first.guide_version_id,
            language="nb",
            place_kind="home",
            planned_at=utcnow() + timedelta(days=3),
        )
        db.session.add(second)
        db.session.commit()
        second_id = second.id
    note_id = str(uuid.uuid4())
    place = {"id": tablet.id, "offset_ms": 10}
    answer = post_sync(peer, [note_change(second_id, note_id, "x", recording=place)]).get_json()
    assert answer["results"][0]["status"] == "rejected"
    assert "another interview" in answer["results"][0]["reason"]
    with app.app_context():
        assert db.session.get(Note, note_id) is None


def test_a_place_is_only_given_when_the_note_is_created(app, world, peer, tablet):
    note_id = _note_in_recording(peer, world, tablet)
    edit = note_change(
        world.interviews["pa"],
        note_id,
        "y",
        base_rev=1,
        recording={"id": tablet.id, "offset_ms": 1},
    )
    result = post_sync(peer, [edit]).get_json()["results"][0]
    assert result["status"] == "rejected" and "recording" in result["reason"]


def test_a_recording_created_later_takes_no_note_of_another_interview(app, world, peer):
    other = log_in(app, "peer_a2")
    audio_consented(other, world, key="pa2")
    made = Tablet(app, peer, world.interviews["pa"])
    note_id = str(uuid.uuid4())
    place = {"id": made.id, "offset_ms": 5}
    answer = post_sync(other, [note_change(world.interviews["pa2"], note_id, "x", recording=place)])
    assert answer.get_json()["results"][0]["status"] == "applied"
    assert made.create().status_code == 201
    with app.app_context():
        assert db.session.get(Note, note_id).recording_id is None


def test_without_consent_to_audio_a_note_keeps_its_words_not_the_place(app, world, path):
    client = log_in(app, "peer_a")
    audio_consented(client, world, audio="no")
    note_id = str(uuid.uuid4())
    place = {"id": str(uuid.uuid4()), "offset_ms": 5}
    change = note_change(world.interviews["pa"], note_id, "Ord", recording=place)
    assert post_sync(client, [change]).get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert (note.text, note.recording_id) == ("Ord", None)


# -- the recording events ------------------------------------------------------------------------


def _event(iid: str, kind: str, details, minutes: int = 0) -> dict:
    at = utcnow() + timedelta(minutes=minutes)
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "event",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": at.isoformat() + "Z",
        "data": {"interview_id": iid, "kind": kind, "details": details},
    }


def test_the_recording_events_are_kept_with_their_details(app, world, peer):
    iid = world.interviews["pa"]
    rid = str(uuid.uuid4())
    changes = [
        _event(iid, "recording_started", {"recording_id": rid.upper()}),
        _event(iid, "recording_stopped", {"reason": "participant_asked", "recording_id": rid}),
        _event(iid, "recording_stopped", {"reason": "storage"}),
    ]
    results = post_sync(peer, changes).get_json()["results"]
    assert [r["status"] for r in results] == ["applied"] * 3
    with app.app_context():
        kept = {e.id: e.data for e in db.session.scalars(select(InterviewEvent))}
    assert kept[changes[0]["id"]] == {"recording_id": rid}
    assert kept[changes[1]["id"]] == {"reason": "participant_asked", "recording_id": rid}
    assert kept[changes[2]["id"]] == {"reason": "storage"}


@pytest.mark.parametrize(
    ("kind", "details"),
    [
        ("recording_started", {}),
        ("recording_started", {"recording_id": "x"}),
        ("recording_started", {"recording_id": str(uuid.uuid4()), "reason": "peer"}),
        ("recording_stopped", {}),
        ("recording_stopped", {"reason": "paused"}),
        ("recording_stopped", {"reason": ["peer"]}),
        ("recording_stopped", {"reason": "peer", "recording_id": 7}),
        ("recording_stopped", {"reason": "peer", "comment": "x"}),
    ],
)
def test_malformed_recording_events_are_rejected(app, world, peer, kind, details):
    result = post_sync(peer, [_event(world.interviews["pa"], kind, details)]).get_json()
    assert result["results"][0]["status"] == "rejected"


def test_a_recording_stops_after_the_interview_ended_but_none_starts(app, world, peer):
    iid = world.interviews["pa"]
    assert peer.post(f"/interviews/{iid}/finish").status_code == 302
    stopped = _event(iid, "recording_stopped", {"reason": "interview_ended"}, minutes=1)
    started = _event(iid, "recording_started", {"recording_id": str(uuid.uuid4())}, minutes=1)
    results = post_sync(peer, [stopped, started]).get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]


def test_no_recording_starts_without_consent_to_audio(app, world):
    client = log_in(app, "peer_a")
    audio_consented(client, world, audio="no")
    started = _event(
        world.interviews["pa"], "recording_started", {"recording_id": str(uuid.uuid4())}
    )
    result = post_sync(client, [started]).get_json()["results"][0]
    assert result["status"] == "rejected" and "audio" in result["reason"]


# -- the domain, without HTTP ------------------------------------------------------------------


def test_the_rules_answer_without_http(app, world, peer, tablet):
    with app.test_request_context():
        peer_b = db.session.get(User, world.users["peer_b"])
        body = tablet.body()
        with pytest.raises(RecordingRefused) as hidden:
            create_recording(db.session, peer_b, str(uuid.uuid4()), body)
        assert (hidden.value.status, hidden.value.code) == (404, "not_found")
        db.session.rollback()
        peer_a = db.session.get(User, world.users["peer_a"])
        again = create_recording(db.session, peer_a, tablet.id.upper(), body)
        assert not again.created and again.recording.id == tablet.id
        db.session.rollback()
