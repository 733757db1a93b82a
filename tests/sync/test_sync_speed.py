"""The fast ways through the sync rules keep the rules: new notes written in one go, a batch's
look-ups read once, the updates read as rows and a page at a time, the guard's shortcuts.

Each test compares the fast way with the plain one, or checks the answers docs/sync.md names.
"""

import uuid

import pytest
from sqlalchemy import func, select

from interview.store.crypto import KeyRing, open_sealed, seal
from interview.store.extensions import db
from interview.store.identifiers import warning_kinds
from interview.store.models import Note, Participant, SyncChange, UpdateLog, User
from interview.sync import apply as sync_apply
from interview.sync import batch as sync_batch
from interview.sync import context as sync_context
from interview.sync import envelope as sync_envelope
from interview.sync import log as sync_log
from interview.trust import access
from tests.conftest import get_row
from tests.helpers import consented_interview, post_sync
from tests.helpers import note_change as _note_change


def _new_note(iid, text, **data):
    change = _note_change(iid, str(uuid.uuid4()), text, **data)
    change["recorded_at"] = "2026-11-23T10:15:00Z"
    return change


@pytest.fixture
def runs(monkeypatch):
    """Count the notes written in one go."""
    written = []
    original = sync_batch._create_notes

    def counting(session, user, device_id, plans):
        done = original(session, user, device_id, plans)
        written.append(None if done is None else len(done))
        return done

    monkeypatch.setattr(sync_batch, "_create_notes", counting)
    return written


def _one_by_one(monkeypatch):
    # another applier in place of apply_note: every change goes through it on its own
    monkeypatch.setitem(sync_apply.APPLIERS, "note", lambda s, u, c: sync_apply.apply_note(s, u, c))


def _stored(note_id: str, change_id: str) -> dict:
    note = get_row(Note, note_id)
    claim = db.session.get(SyncChange, change_id)
    logged = db.session.scalars(select(UpdateLog).where(UpdateLog.record_id == note_id)).all()
    return {
        "note": {
            "interview_id": note.interview_id,
            "question_key": note.question_key,
            "text": note.text,
            "identifier_kinds": note.identifier_kinds,
            "polarity": note.polarity,
            "possible_quote": note.possible_quote,
            "conflict": note.conflict,
            "field_revs": note.field_revs,
            "deleted_at": note.deleted_at,
            "rev": note.rev,
            "author_id": note.author_id,
            "created_at": note.created_at,
            "updated_at": note.updated_at,
            "themes": [t.key for t in note.themes],
        },
        "claim": {
            "user_id": claim.user_id,
            "device_id": claim.device_id,
            "entity": claim.entity,
            "record_id": claim.record_id == note_id,
            "status": claim.status,
            "rev": claim.rev,
            "reason": claim.reason,
            "waiting_for": claim.waiting_for,
            "payload": claim.payload,
        },
        "log": [(row.entity, row.participant_id) for row in logged],
    }


@pytest.mark.parametrize(
    "data",
    [
        {"polarity": "inhibits", "themes": ["poor_communication"], "possible_quote": True},
        {"polarity": None, "themes": [], "possible_quote": False},
        {"deleted": True},
        {},
    ],
)
def test_a_note_written_in_one_go_is_stored_as_one_written_on_its_own(
    app, world, auth, client, monkeypatch, runs, data
):
    iid = consented_interview(client, world)
    text = "Kari Nordmann ringte fra 912 34 567 om Storgata 12"
    device = str(uuid.uuid4())
    fast = _new_note(iid, text, **data)
    fast_answer = post_sync(client, [fast], device=device).get_json()["results"][0]
    assert runs == [1]
    _one_by_one(monkeypatch)
    plain = _new_note(iid, text, **data)
    plain_answer = post_sync(client, [plain], device=device).get_json()["results"][0]
    assert runs == [1]
    for answer, change in ((fast_answer, fast), (plain_answer, plain)):
        assert answer.pop("change_id") == change["change_id"]
    assert fast_answer == plain_answer
    assert fast_answer["warnings"] == ["phone", "address", "name"]
    with app.app_context():
        assert _stored(fast["id"], fast["change_id"]) == _stored(plain["id"], plain["change_id"])
        digest = sync_envelope.parse_change(fast).digest()
        assert db.session.get(SyncChange, fast["change_id"]).digest == digest


def test_a_batch_of_new_notes_keeps_every_rule_for_each_change(app, world, auth, client, runs):
    iid = consented_interview(client, world)
    later_interview = str(uuid.uuid4())
    a = _new_note(iid, "A")
    edit_a = _note_change(iid, a["id"], "A2", base_rev=1)
    again_a = dict(_new_note(iid, "A fra et annet skjema"), id=a["id"])
    waits = _new_note(later_interview, "Før intervjuet")
    bad_theme = _new_note(iid, "C", themes=["no.such.theme"])
    d = _new_note(iid, "D")
    not_mine = _new_note(world.interviews["pb"], "Ikke min")
    reused = dict(d, data=dict(d["data"], text="D igjen"))
    e = _new_note(iid, "E")
    never = _new_note(str(uuid.uuid4()), "For et intervju som aldri kommer")
    # the interview `waits` belongs to comes later in the same request
    plan = {
        "change_id": str(uuid.uuid4()),
        "entity": "interview",
        "id": later_interview,
        "base_rev": None,
        "recorded_at": "2026-11-23T11:00:00Z",
        "data": {
            "participant_id": world.participants["pa"],
            "language": "nb",
            "planned_at": "2026-12-01T10:00:00Z",
            "place_kind": "home",
        },
    }
    batch = [a, a, edit_a, waits, bad_theme, d, again_a, not_mine, reused, e, never, plan]
    results = post_sync(client, batch).get_json()["results"]
    statuses = [(r["status"], r["rev"]) for r in results]
    assert statuses == [
        ("applied", 1),
        ("duplicate", 1),
        ("applied", 2),
        ("applied", 1),  # kept until its interview came, then written: the answer says so
        ("rejected", None),
        ("applied", 1),
        ("conflict", 3),
        ("rejected", None),
        ("rejected", None),
        ("applied", 1),
        ("rejected", None),
        ("applied", 1),
    ]
    assert "codebook" in results[4]["reason"]
    assert "not allowed" in results[7]["reason"]
    assert "reused" in results[8]["reason"]
    assert "not in the case store" in results[10]["reason"]
    assert runs == [1, 1, 1]  # a; d; e: the rest went one by one
    with app.app_context():
        note = get_row(Note, a["id"])
        assert note.text == "A2" and note.conflict_text == "A fra et annet skjema"
        assert get_row(Note, d["id"]).text == "D"
        assert get_row(Note, e["id"]).text == "E"
        assert get_row(Note, waits["id"]).text == "Før intervjuet"
        for missing in (bad_theme, not_mine, never):
            assert db.session.get(Note, missing["id"]) is None
        held = db.session.get(SyncChange, waits["change_id"])
        assert (held.rev, held.waiting_for, held.payload) == (1, None, None)
        refused = db.session.get(SyncChange, bad_theme["change_id"])
        assert refused.status == "rejected"
    # and every change of the batch replays as it was answered
    replayed = post_sync(client, batch).get_json()["results"]
    assert [r["status"] for r in replayed] == [
        "duplicate",
        "duplicate",
        "duplicate",
        "duplicate",
        "rejected",
        "duplicate",
        "duplicate",
        "rejected",
        "rejected",
        "duplicate",
        "rejected",
        "duplicate",
    ]


def test_when_the_store_refuses_a_run_each_change_goes_on_its_own(
    app, world, auth, client, monkeypatch, runs
):
    iid = consented_interview(client, world)
    first = _new_note(iid, "Sendt før")
    assert post_sync(client, [first]).get_json()["results"][0]["status"] == "applied"
    # another connection claimed `first` after this batch looked: the run's claims clash
    read_ahead = sync_context._Batch.read_ahead

    def blind(batch, raw_changes):
        read_ahead(batch, raw_changes)
        batch.claims[first["change_id"]] = None
        batch.notes_present.discard(first["id"])

    monkeypatch.setattr(sync_context._Batch, "read_ahead", blind)
    one, two = _new_note(iid, "En"), _new_note(iid, "To")
    results = post_sync(client, [one, first, two]).get_json()["results"]
    assert [(r["status"], r["rev"]) for r in results] == [
        ("applied", 1),
        ("duplicate", 1),
        ("applied", 1),
    ]
    assert runs == [1, None]  # the run was refused whole, then each went alone
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 3
        for change in (one, first, two):
            logged = db.session.scalar(
                select(func.count())
                .select_from(UpdateLog)
                .where(UpdateLog.record_id == change["id"])
            )
            assert logged == 1


def test_a_failing_applier_still_answers_retry_and_writes_nothing(
    app, world, auth, client, monkeypatch
):
    iid = consented_interview(client, world)
    change = _new_note(iid, "Sendes på nytt")

    def broken(*_args):
        raise RuntimeError("the disk hiccuped")

    monkeypatch.setitem(sync_apply.APPLIERS, "note", broken)
    assert post_sync(client, [change, _new_note(iid, "Også")]).status_code == 503
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0
        assert db.session.scalar(select(func.count()).select_from(SyncChange)) == 0


def _reference_updates(session, user, cursor):
    """The updates as the rules define them: one log query, each record read as an object."""
    stmt = select(UpdateLog).order_by(UpdateLog.seq)
    if cursor:
        stmt = stmt.where(UpdateLog.seq > cursor)
    rows = list(session.scalars(stmt.limit(sync_log.MAX_UPDATES * 4)))
    new_cursor = rows[-1].seq if rows else (cursor or sync_log._current_seq(session))
    seen, visible, withdrawn = {}, {}, set()
    for row in rows:
        if row.participant_id is None:
            continue
        if row.participant_id not in visible:
            participant = session.get(Participant, row.participant_id)
            visible[row.participant_id] = bool(
                participant and access.can_see_participant(user, participant)
            )
            if participant is not None and participant.status == "withdrawn":
                withdrawn.add(participant.id)
        if row.participant_id in withdrawn and row.entity not in ("interview", "participant"):
            continue
        if visible[row.participant_id]:
            seen[(row.entity, row.record_id)] = row
        if len(seen) >= sync_log.MAX_UPDATES:
            new_cursor = row.seq
            break
    out = []
    for (entity, record_id), _row in sorted(seen.items(), key=lambda kv: kv[1].seq):
        record = session.get(sync_log.MODELS[entity], record_id)
        if record is None:
            out.append({"entity": entity, "id": record_id, "rev": None, "data": {"gone": True}})
            continue
        if entity == "debrief" and user.role == "peer" and record.author_id != user.id:
            continue
        out.append(sync_log.serialize(entity, record))
    return out, new_cursor


@pytest.mark.parametrize(("page", "most"), [(500, 1000), (3, 5), (2, 7), (1, 4)])
def test_updates_read_a_page_at_a_time_are_the_updates_the_rules_name(
    app, world, auth, client, monkeypatch, page, most
):
    iid = consented_interview(client, world)
    tagged = _new_note(iid, "Med tema", themes=["poor_communication", "culture_attitude"])
    quote = _new_note(iid, "Et sitat", possible_quote=True, polarity="promotes")
    gone = _new_note(iid, "Slettes")
    both = _new_note(iid, "Fra nettbrett A")
    post_sync(client, [tagged, quote, gone, both])
    post_sync(client, [_note_change(iid, gone["id"], "", base_rev=1, deleted=True)])
    post_sync(client, [_note_change(iid, both["id"], "Nettbrett B", base_rev=1)])
    post_sync(client, [_note_change(iid, both["id"], "Nettbrett C", base_rev=1)])  # a conflict
    auth.logout()
    auth.login("peer_a2")
    post_sync(client, [_new_note(world.interviews["pa2"], "Ikke for peer_a")])
    with app.app_context():
        db.session.get(Participant, world.participants["pa2"]).status = "withdrawn"
        db.session.commit()
    monkeypatch.setattr(sync_log, "LOG_PAGE", page)
    monkeypatch.setattr(sync_log, "MAX_UPDATES", most)
    with app.test_request_context():
        for name in ("peer_a", "peer_a2", "coord_a", "admin"):
            user = db.session.scalars(select(User).where(User.username == name)).one()
            last = db.session.scalar(select(func.max(UpdateLog.seq)))
            for cursor in (None, 0, 1, 5, last - 2, last, last + 3):
                db.session.expire_all()
                expected = _reference_updates(db.session, user, cursor)
                db.session.expire_all()
                assert sync_log.updates_since(db.session, user, cursor) == expected, (name, cursor)
        peer = db.session.scalars(select(User).where(User.username == "peer_a")).one()
        notes = {u["id"]: u["data"] for u in sync_log.updates_since(db.session, peer, None)[0]}
        if most >= 10:  # all of them fit in one answer
            assert notes[tagged["id"]]["themes"] == ["culture_attitude", "poor_communication"]
            assert notes[gone["id"]]["deleted"] is True
            assert notes[both["id"]]["conflict"]["text"] == "Nettbrett C"


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("Vi møttes i Storgata\u00a012 i går", ["address"]),
        ("Hun bor i Karl Johans gate 22B", ["address"]),
        ("Møt meg i Kongens gate 5", ["address"]),
        ("Fra Øvre Slottsgate 3 til Brygga 2", ["address"]),
        ("He lives at 12 Baker Street now", ["address"]),
        ("Vi gikk 3 ganger rundt Storgata", []),
        ("Kirkeveien-3", []),
        ("Ring +4 7 1 2 3 4 5 6 7 i kveld", ["phone"]),
        ("Ta 91 23 45 67 eller 9123 4567", ["phone"]),
        ("Det kostet 91234567 kr", []),
        ("Jan-Erik Olsen kom", ["name"]),
        ("Hun heter Kari", ["name"]),
        ("Kari sa at det gikk bra", []),
        ("Teamet kom hjem til meg (5)", []),
    ],
)
def test_the_guards_shortcuts_find_what_the_full_rules_find(text, kinds):
    assert warning_kinds(text) == kinds
    # asked again (the answer comes from what was kept): the same, and a list of its own
    again = warning_kinds(text)
    assert again == kinds
    again.append("changed")
    assert warning_kinds(text) == kinds


def test_a_ring_opens_what_each_of_its_keys_sealed():
    old, new = bytes(range(32)), bytes(range(1, 33))
    sealed_old = seal(KeyRing([old]), "gammel", "note.text.1")
    sealed_new = seal(KeyRing([old, new]), "ny", "note.text.2")
    ring = KeyRing([old, new])
    assert open_sealed(ring, sealed_old, "note.text.1") == "gammel"
    assert open_sealed(ring, sealed_new, "note.text.2") == "ny"
    assert open_sealed(new, sealed_new, "note.text.2") == "ny"
    with pytest.raises(Exception, match="another key"):
        open_sealed(KeyRing([new]), sealed_old, "note.text.1")
    with pytest.raises(Exception, match="cannot be decrypted"):
        open_sealed(ring, sealed_old, "note.text.2")
