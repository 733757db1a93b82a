"""Research text sealed at rest (AES-GCM, row-bound) and key rotation with `flask keys rotate`."""

import base64
import uuid

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import inspect, select, text

from interview import create_app
from interview.store.crypto import KeyError_, RingSource, load_ring, sealed_with, write_ring
from interview.store.extensions import db
from interview.store.identity import get_identity, set_identity
from interview.store.models import AuditEvent, Debrief, Note, SyncChange
from interview.sync import apply as sync_apply
from tests.conftest import get_row, make_config
from tests.helpers import give_paper_consent, note_change, start_interview

WORDS = "Får hjelp med bolig – æøå og mye mer 🙂"
REFLECTION = "Det var en sterk samtale om rus og hjelp."
OTHER = "Den andre versjonen fra et annet nettbrett."


def _raw(app, sql: str, **params):
    with app.app_context():
        return db.session.execute(text(sql), params).all()


def _fail(*_args):
    raise RuntimeError("the store failed on this change")


@pytest.fixture
def stored(app, client, auth, world):
    """A note with a conflict, a debrief and a waiting sync change, made through the real API."""
    iid = world.interviews["pa"]
    auth.login("peer_a")
    assert start_interview(client, iid).status_code == 302
    assert give_paper_consent(client, iid).status_code == 302
    device = str(uuid.uuid4())
    note_id = str(uuid.uuid4())
    answer = client.post(
        "/api/v1/sync",
        json={"device_id": device, "changes": [note_change(iid, note_id, WORDS)]},
    )
    assert answer.get_json()["results"][0]["status"] == "applied"
    # two edits from the same base: the second is a conflict, both texts kept
    for words in ("Første versjon.", OTHER):
        client.post(
            "/api/v1/sync",
            json={"device_id": device, "changes": [note_change(iid, note_id, words, base_rev=1)]},
        )
    # a note for an interview whose create the store failed on (answered retry) waits, with
    # its words in the sync log
    waiting_note, planned = str(uuid.uuid4()), str(uuid.uuid4())
    plan = {
        "change_id": str(uuid.uuid4()),
        "entity": "interview",
        "id": planned,
        "base_rev": None,
        "recorded_at": "2026-11-23T09:00:00Z",
        "data": {
            "participant_id": world.participants["pa"],
            "language": "nb",
            "planned_at": "2026-12-01T10:00:00Z",
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sync_apply.APPLIERS, "interview", _fail)
        client.post(
            "/api/v1/sync",
            json={
                "device_id": device,
                "changes": [note_change(planned, waiting_note, "Venter på notatet sitt."), plan],
            },
        )
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.conflict, "the fixture needs a conflict"
        debrief = Debrief(
            interview_id=iid, wellbeing=3, reflection=REFLECTION, author_id=world.users["peer_a"]
        )
        db.session.add(debrief)
        db.session.commit()
        waiting = db.session.scalars(
            select(SyncChange).where(SyncChange.record_id == waiting_note)
        ).one()
        assert waiting.payload["data"]["text"] == "Venter på notatet sitt."
        return {"note": note_id, "debrief": debrief.id, "waiting": waiting.change_id}


def test_the_store_holds_no_research_words_in_plain_text(app, stored):
    with app.app_context():
        columns = {c["name"] for c in inspect(db.engine).get_columns("note")}
    assert "text" not in columns and "conflict" not in columns
    blobs = [bytes(r[0]) for r in _raw(app, "SELECT text_enc FROM note")]
    blobs += [
        bytes(r[0])
        for r in _raw(app, "SELECT conflict_enc FROM note WHERE conflict_enc IS NOT NULL")
    ]
    blobs += [bytes(r[0]) for r in _raw(app, "SELECT reflection_enc FROM debrief")]
    blobs += [
        bytes(r[0])
        for r in _raw(app, "SELECT payload_enc FROM sync_change WHERE payload_enc IS NOT NULL")
    ]
    assert len(blobs) >= 4
    for blob in blobs:
        for words in (WORDS, OTHER, REFLECTION, "Venter på notatet sitt.", "bolig", "samtale"):
            assert words.encode() not in blob
            assert base64.b64encode(words.encode()) not in blob
    # and yet every one of them reads back
    with app.app_context():
        note = get_row(Note, stored["note"])
        assert note.text in (WORDS, "Første versjon.")
        assert OTHER in (note.text, note.conflict.get("text"))
        assert get_row(Debrief, stored["debrief"]).reflection == REFLECTION


def test_stop_and_distress_comments_are_sealed_and_still_exported(app, client, auth, world):
    comment = "Deltakeren gråt og ville hjem til søsteren"
    iid = world.interviews["pa"]
    auth.login("peer_a")
    assert start_interview(client, iid).status_code == 302
    stop = client.post(f"/interviews/{iid}/stop", data={"reason": "other", "comment": comment})
    assert stop.status_code == 302
    for row in _raw(app, "SELECT data, comment_enc FROM interview_event"):
        assert "gråt" not in str(row[0])
        assert row[1] is None or comment.encode() not in bytes(row[1])
    with app.app_context():
        from interview.store.models import InterviewEvent

        (event,) = [e for e in db.session.scalars(select(InterviewEvent)) if e.kind == "stop"]
        assert event.comment == comment
        assert event.details == {"reason": "other", "comment": comment}
        assert "comment" not in event.data
    auth.logout()
    auth.login("coord_a")
    exported = client.get("/desk/exports/export.json").get_data(as_text=True)
    assert comment in exported


def test_a_sealed_value_moved_to_another_row_does_not_open(app, world, stored):
    with app.app_context():
        other = Note(interview_id=world.interviews["pb"], question_key="context.services", text="x")
        db.session.add(other)
        db.session.commit()
        other_id = other.id
        moved = db.session.get(Note, stored["note"]).text_enc
        db.session.execute(
            text("UPDATE note SET text_enc = :b WHERE id = :i"), {"b": moved, "i": other_id}
        )
        db.session.commit()
        db.session.expire_all()
        with pytest.raises(KeyError_):
            _ = db.session.get(Note, other_id).text
        # nor into another column of the same row
        note = db.session.get(Note, stored["note"])
        db.session.execute(
            text("UPDATE note SET conflict_enc = text_enc WHERE id = :i"), {"i": stored["note"]}
        )
        db.session.commit()
        db.session.expire_all()
        with pytest.raises(KeyError_):
            _ = db.session.get(Note, note.id).conflict


def test_a_tampered_value_does_not_open(app, stored):
    with app.app_context():
        blob = bytearray(db.session.get(Note, stored["note"]).text_enc)
        blob[-1] ^= 1
        db.session.execute(
            text("UPDATE note SET text_enc = :b WHERE id = :i"),
            {"b": bytes(blob), "i": stored["note"]},
        )
        db.session.commit()
        db.session.expire_all()
        with pytest.raises(KeyError_):
            _ = db.session.get(Note, stored["note"]).text


def test_new_rows_get_their_key_before_their_words(app, world):
    with app.app_context():
        note = Note(
            text=WORDS, question_key="context.services", interview_id=world.interviews["pa"]
        )
        assert note.id  # fixed at once: the key is part of the sealed value
        db.session.add(note)
        db.session.commit()
        given = Note(
            text=WORDS,
            id="11111111-2222-4333-8444-555555555555",
            question_key="context.services",
            interview_id=world.interviews["pa"],
        )
        db.session.add(given)
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Note, given.id).text == WORDS
        assert db.session.get(Note, note.id).text == WORDS


def _cli(app):
    return FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)


def test_keys_rotate_reseals_everything_and_drops_the_old_key(app, runner, stored, world, tmp_path):
    # the identity key moves from the environment into a key file, as rotation needs
    env_key = app.config["IDENTITY_KEY"]
    write_ring(app.config["IDENTITY_KEY_FILE"], [load_ring(env_key, "unused").active])
    app.config["IDENTITY_KEY"] = None
    app.extensions["identity_key"] = RingSource(None, app.config["IDENTITY_KEY_FILE"])
    # another process (a second worker) that started before the rotation
    other = create_app(make_config(tmp_path, IDENTITY_KEY=None))
    with other.app_context():
        assert db.session.get(Debrief, stored["debrief"]).reflection == REFLECTION
    with app.app_context():
        set_identity(world.participants["pa2"], "Kari Nordmann", "+47 912 34 567")
        db.session.commit()
        old_research = load_ring(None, app.config["RESEARCH_KEY_FILE"]).ids()
        old_identity = load_ring(None, app.config["IDENTITY_KEY_FILE"]).ids()
    result = runner.invoke(cli=_cli(app), args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "research: key" in result.output and "identity: key" in result.output
    with app.app_context():
        research = load_ring(None, app.config["RESEARCH_KEY_FILE"])
        identity = load_ring(None, app.config["IDENTITY_KEY_FILE"])
        assert len(research.keys) == 1 and research.ids() != old_research
        assert len(identity.keys) == 1 and identity.ids() != old_identity
        for row in _raw(app, "SELECT text_enc FROM note") + _raw(
            app, "SELECT reflection_enc FROM debrief"
        ):
            assert sealed_with(row[0]) == research.ids()[0]
        db.session.expire_all()
        note = db.session.get(Note, stored["note"])
        assert OTHER in (note.text, note.conflict.get("text"))
        assert db.session.get(Debrief, stored["debrief"]).reflection == REFLECTION
        assert db.session.get(SyncChange, stored["waiting"]).payload["data"]["text"]
        assert get_identity(world.participants["pa"]) == {"name": "Test Person", "contact": ""}
        assert get_identity(world.participants["pa2"])["name"] == "Kari Nordmann"
        rotated = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "keys_rotated")
        ).all()
        assert {e.object_id for e in rotated} == {"research", "identity"}
        assert all(e.detail["resealed"] >= 1 for e in rotated)
    # the other process reads the new ring from the file and opens the re-sealed values
    with other.app_context():
        assert db.session.get(Debrief, stored["debrief"]).reflection == REFLECTION


def test_an_interrupted_rotation_is_finished_by_running_it_again(app, runner, stored, monkeypatch):
    from interview.trust import keys

    calls = {"n": 0}
    real = keys.reseal

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(keys, "reseal", crash_once)
    first = runner.invoke(cli=_cli(app), args=["keys", "rotate", "--ring", "research"])
    assert first.exit_code != 0
    with app.app_context():
        assert len(load_ring(None, app.config["RESEARCH_KEY_FILE"]).keys) == 2
        db.session.expire_all()
        # both keys open: the store reads as before
        assert db.session.get(Debrief, stored["debrief"]).reflection == REFLECTION
    again = runner.invoke(cli=_cli(app), args=["keys", "rotate", "--ring", "research"])
    assert again.exit_code == 0, again.output
    assert "interrupted rotation finished" in again.output
    with app.app_context():
        assert len(load_ring(None, app.config["RESEARCH_KEY_FILE"]).keys) == 1
        db.session.expire_all()
        assert db.session.get(Debrief, stored["debrief"]).reflection == REFLECTION


def test_a_key_from_the_environment_is_not_rotated(tmp_path, world):
    key = base64.urlsafe_b64encode(b"k" * 32).decode()
    app = create_app(make_config(tmp_path, RESEARCH_KEY=key))
    result = app.test_cli_runner().invoke(
        cli=_cli(app), args=["keys", "rotate", "--ring", "research"]
    )
    assert result.exit_code != 0
    assert "RESEARCH_KEY_FILE" in result.output


def test_keys_status_counts_values_per_key(app, runner, stored):
    result = runner.invoke(cli=_cli(app), args=["keys", "status"])
    assert result.exit_code == 0, result.output
    assert "research: 1 key(s)" in result.output
    assert "(seals new values)" in result.output
