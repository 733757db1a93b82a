"""What the sync API keeps is bounded: waiting changes, conflict versions, nesting, late events.

Each test names the finding of issue 16 it answers; the numbers come from config, so the tests
set small limits rather than sending thousands of changes.
"""

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from interview.desk.alerts import conflicts
from interview.store.extensions import db
from interview.store.models import Debrief, InterviewEvent, Note, SyncChange, utcnow
from interview.sync import apply as sync_apply
from interview.sync import envelope as sync_envelope
from interview.sync import merge as sync_merge
from tests.conftest import PASSWORD, get_row
from tests.helpers import consented_interview, note_change, post_sync

PLANNED = {"language": "nb", "planned_at": "2026-12-01T10:00:00Z", "place_kind": "home"}


def _interview_create(world, iid: str, key: str = "pa") -> dict:
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "interview",
        "id": iid,
        "base_rev": None,
        "recorded_at": "2026-11-23T09:00:00Z",
        "data": {"participant_id": world.participants[key], **PLANNED},
    }


def _event(iid: str, kind: str, at: str, **details) -> dict:
    data = {"interview_id": iid, "kind": kind}
    if details:
        data["details"] = details
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "event",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": at,
        "data": data,
    }


@pytest.fixture
def broken_interview_create(monkeypatch):
    """The store fails on an interview's create (answered retry), so what needs it waits."""
    monkeypatch.setitem(sync_apply.APPLIERS, "interview", _fail)


def _fail(*_args):
    raise RuntimeError("the store hiccuped")


def _waiting_count(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(SyncChange).where(SyncChange.waiting_for.is_not(None))
        )


# --- 1, 2: nothing waits that is not on its way -------------------------------------------


def test_a_deeply_nested_edit_for_an_unknown_note_is_refused_and_withdrawal_still_works(
    app, world, client
):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    edit = note_change(None, str(uuid.uuid4()), "ord", base_rev=1)
    edit["data"]["nested"] = "DEEP"
    # built as text: Python's own encoder stops short of what a client may send
    body = json.dumps({"device_id": str(uuid.uuid4()), "cursor": None, "changes": [edit]})
    deep = body.replace('"DEEP"', '{"x": ' * 5_000 + "{}" + "}" * 5_000)
    body = body.replace('"DEEP"', '{"x": ' * 500 + "{}" + "}" * 500)
    # deeper than the JSON reader goes: the whole body is refused, and says why
    refused = client.post("/api/v1/sync", data=deep, content_type="application/json")
    assert refused.status_code == 400 and "nested too deeply" in refused.get_json()["error"]
    answer = client.post("/api/v1/sync", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()["results"][0]
    assert result["status"] == "rejected" and "nested too deeply" in result["reason"]
    assert _waiting_count(app) == 0
    coord = app.test_client()
    coord.post("/login", data={"username": "coord_a", "password": PASSWORD})
    pid = world.participants["pa2"]
    page = coord.get(f"/participants/{pid}/withdraw")
    assert page.status_code == 200


def test_changes_for_records_nobody_is_creating_are_refused_not_kept(app, world, client):
    """A peer assigned to nobody sent 500 edits per request for random ids: all were kept."""
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    edits = [note_change(None, str(uuid.uuid4()), f"tekst {n}", base_rev=1) for n in range(50)]
    creates = [note_change(str(uuid.uuid4()), str(uuid.uuid4()), "ny") for _ in range(50)]
    results = post_sync(client, edits + creates).get_json()["results"]
    assert {r["status"] for r in results} == {"rejected"}
    assert all("not in the case store" in r["reason"] for r in results)
    assert _waiting_count(app) == 0


def test_a_change_is_checked_in_full_before_it_waits(app, world, client):
    """An edit sent before its create in the same request is still checked field by field."""
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = str(uuid.uuid4())
    note_id = str(uuid.uuid4())
    bad = note_change(None, note_id, "x" * (sync_envelope.MAX_TEXT + 1), base_rev=1)
    bad_tag = note_change(None, note_id, "ok", base_rev=1, polarity="sideways")
    good = note_change(None, note_id, "rettet", base_rev=1)
    batch = [bad, bad_tag, good, note_change(iid, note_id, "først"), _interview_create(world, iid)]
    results = post_sync(client, batch).get_json()["results"]
    assert [r["status"] for r in results] == [
        "rejected",
        "rejected",
        "applied",
        "applied",
        "applied",
    ]
    assert [r["rev"] for r in results[2:]] == [2, 1, 1]
    with app.app_context():
        assert get_row(Note, note_id).text == "rettet"


def test_what_waits_on_a_refused_create_is_refused_in_the_same_answer(app, world, client):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = str(uuid.uuid4())
    note = note_change(iid, str(uuid.uuid4()), "venter")
    # peer_a may not plan interviews for pb: the create is refused, and the note with it
    plan = _interview_create(world, iid, key="pb")
    results = post_sync(client, [note, plan]).get_json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected"]
    assert "not allowed" in results[0]["reason"]
    assert _waiting_count(app) == 0


# --- 2: waiting changes are accountable: participant, limits, expiry -----------------------


def test_a_waiting_change_names_its_participant(app, world, client, broken_interview_create):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = str(uuid.uuid4())
    note = note_change(iid, str(uuid.uuid4()), "venter på intervjuet")
    assert post_sync(client, [note, _interview_create(world, iid)]).status_code == 503
    with app.app_context():
        held = get_row(SyncChange, note["change_id"])
        assert held.waiting_for == iid and held.participant_id == world.participants["pa"]


def test_a_peer_may_keep_only_so_many_changes_waiting(app, world, client, broken_interview_create):
    app.config["SYNC_WAITING_MAX"] = 3
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = str(uuid.uuid4())
    notes = [note_change(iid, str(uuid.uuid4()), f"notat {n}") for n in range(5)]
    device = str(uuid.uuid4())
    assert post_sync(client, [*notes, _interview_create(world, iid)], device=device).status_code
    with app.app_context():
        rows = [get_row(SyncChange, n["change_id"]) for n in notes]
        assert [r.status for r in rows] == ["applied"] * 3 + ["rejected"] * 2
        assert "at most 3 changes" in rows[3].reason
    assert _waiting_count(app) == 3


def test_bytes_waiting_are_limited_too(app, world, client, broken_interview_create):
    app.config["SYNC_WAITING_MAX_BYTES"] = 30_000
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = str(uuid.uuid4())
    notes = [note_change(iid, str(uuid.uuid4()), "ord " * 3_000) for _ in range(4)]
    post_sync(client, [*notes, _interview_create(world, iid)])
    with app.app_context():
        statuses = [get_row(SyncChange, n["change_id"]).status for n in notes]
    assert statuses == ["applied", "applied", "rejected", "rejected"]


def test_a_change_waiting_too_long_is_refused_and_its_tablet_told_until_it_says_so(
    app, world, client, monkeypatch
):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    device = str(uuid.uuid4())
    iid = str(uuid.uuid4())
    note = note_change(iid, str(uuid.uuid4()), "glemt på serveren")
    monkeypatch.setitem(sync_apply.APPLIERS, "interview", _fail)
    post_sync(client, [note, _interview_create(world, iid)], device=device)
    monkeypatch.undo()
    with app.app_context():
        held = get_row(SyncChange, note["change_id"])
        held.received_at = utcnow() - timedelta(days=15)
        db.session.commit()
    # any sync refuses it; only its own tablet hears of it, in every answer until it says so
    other = app.test_client()
    other.post("/login", data={"username": "peer_b", "password": PASSWORD})
    assert "refused" not in post_sync(other, []).get_json()
    with app.app_context():
        held = get_row(SyncChange, note["change_id"])
        assert held.status == "rejected" and held.payload is None and held.waiting_for is None
        assert "14 days" in held.reason
    for _ in range(2):
        told = post_sync(client, [], device=device).get_json()["refused"]
        assert [r["change_id"] for r in told] == [note["change_id"]]
        assert told[0]["entity"] == "note" and "14 days" in told[0]["reason"]
    assert "refused" not in post_sync(client, []).get_json()  # another tablet of hers
    body = {
        "device_id": device,
        "cursor": None,
        "changes": [],
        "refused_seen": [note["change_id"]],
    }
    assert "refused" not in client.post("/api/v1/sync", json=body).get_json()
    assert "refused" not in post_sync(client, [], device=device).get_json()
    replay = post_sync(client, [note], device=device).get_json()["results"][0]
    assert replay["status"] == "rejected" and "14 days" in replay["reason"]


def test_refused_seen_is_checked(client, world):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    for bad in ("x", ["not a uuid"], [str(uuid.uuid4())] * 501, {"a": 1}):
        body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": [], "refused_seen": bad}
        answer = client.post("/api/v1/sync", json=body)
        assert answer.status_code == 400 and "refused_seen" in answer.get_json()["error"]


# --- 3: conflicts are bounded ----------------------------------------------------------------


def test_conflict_versions_are_capped_and_the_same_words_add_none(app, world, client):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    assert post_sync(client, [note_change(iid, note_id, "første")]).status_code == 200
    assert post_sync(client, [note_change(iid, note_id, "andre", base_rev=1)]).status_code == 200
    statuses = []
    for n in range(sync_merge.MAX_CONFLICT_VERSIONS + 2):
        # a stale base each time, from a different tablet: a new version every time
        stale = note_change(iid, note_id, f"versjon {n}", base_rev=1)
        answer = post_sync(client, [stale]).get_json()["results"][0]
        statuses.append(answer["status"])
    assert statuses == ["conflict"] * sync_merge.MAX_CONFLICT_VERSIONS + ["rejected"] * 2
    assert "already has 10 versions" in answer["reason"]
    # the same words again, under a new change id and another tablet: no new version
    again = post_sync(client, [note_change(iid, note_id, "versjon 3", base_rev=1)])
    assert again.get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        note = get_row(Note, note_id)
        versions = sync_merge.conflict_versions(note.conflict, "text")
        assert len(versions) == sync_merge.MAX_CONFLICT_VERSIONS
        assert versions == [f"versjon {n}" for n in range(sync_merge.MAX_CONFLICT_VERSIONS)]
        shown = [a for a in conflicts(db.session, {1, 2}, {}) if a.interview_id == iid]
        assert shown and shown[0].full


def test_the_alert_says_when_a_note_takes_no_more_versions(app, world, client):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    post_sync(client, [note_change(iid, note_id, "første")])
    post_sync(client, [note_change(iid, note_id, "andre", base_rev=1)])
    post_sync(client, [note_change(iid, note_id, "tredje", base_rev=1)])
    coord = app.test_client()
    coord.post("/login", data={"username": "coord_a", "password": PASSWORD})
    full = "further versions from the tablets are refused"
    assert full not in coord.get("/desk/alerts/?lang=en").text
    for n in range(sync_merge.MAX_CONFLICT_VERSIONS):
        post_sync(client, [note_change(iid, note_id, f"v{n}", base_rev=1)])
    page = coord.get("/desk/alerts/?lang=en").text
    assert full in page
    assert "videre versjoner fra nettbrettene" in coord.get("/desk/alerts/?lang=nb").text


def test_a_debrief_reflection_sent_again_adds_no_version(app, world, client):
    iid = consented_interview(client, world)
    stop = _event(iid, "stop", "2026-11-23T10:30:00Z", reason="participant_wish")
    debrief_id = str(uuid.uuid4())
    create = {
        "change_id": str(uuid.uuid4()),
        "entity": "debrief",
        "id": debrief_id,
        "base_rev": None,
        "recorded_at": "2026-11-23T11:00:00Z",
        "data": {"interview_id": iid, "wellbeing": 3, "reflection": "først"},
    }
    assert [r["status"] for r in post_sync(client, [stop, create]).get_json()["results"]] == [
        "applied",
        "applied",
    ]

    def edit(text, base):
        return dict(
            create,
            change_id=str(uuid.uuid4()),
            base_rev=base,
            data={"reflection": text},
        )

    post_sync(client, [edit("så", 1)])
    assert post_sync(client, [edit("annen", 1)]).get_json()["results"][0]["status"] == "conflict"
    assert post_sync(client, [edit("annen", 1)]).get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        assert sync_merge.conflict_versions(
            get_row(Debrief, debrief_id).conflict, "reflection"
        ) == ["annen"]


# --- 7: sync keeps the rules of the forms for events ----------------------------------------


def test_no_event_after_the_interview_has_ended(app, world, client):
    iid = consented_interview(client, world)
    with app.app_context():
        started = get_row(InterviewEvent, _first_event(iid)).recorded_at
    during = (started + timedelta(minutes=5)).isoformat() + "Z"
    stopped = (started + timedelta(minutes=10)).isoformat() + "Z"
    after = (started + timedelta(minutes=20)).isoformat() + "Z"
    # the tablet's distress stage 2 sends the distress event and then a stop
    distress = _event(iid, "distress_2", stopped, contact_team=False, comment="")
    then_stop = _event(iid, "stop", stopped, reason="distress")
    results = post_sync(client, [distress, then_stop]).get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    late = [
        _event(iid, "distress_2", after, contact_team=True, comment="igjen"),
        _event(iid, "check_in", after),
        _event(iid, "complete", after),
        _event(iid, "check_in", during),  # made while it ran, arriving late: it counts
    ]
    results = post_sync(client, late).get_json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "applied"]
    assert "has ended" in results[0]["reason"]
    with app.app_context():
        kinds = db.session.scalars(
            select(InterviewEvent.kind).where(InterviewEvent.interview_id == iid)
        ).all()
        assert kinds.count("distress_2") == 1 and "complete" not in kinds


def _first_event(iid: str) -> str:
    return db.session.scalars(
        select(InterviewEvent.id)
        .where(InterviewEvent.interview_id == iid)
        .order_by(InterviewEvent.recorded_at)
    ).first()


def test_a_change_id_sent_twice_while_the_first_waits_keeps_each_answer(app, world, client):
    """Found by the fuzzer: the second use of a change id (another payload) took the waiting
    first one's answer when that one was settled at the end of the request."""
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = str(uuid.uuid4())
    note = note_change(iid, str(uuid.uuid4()), "venter på intervjuet")
    again = {**_event(iid, "pause", "2026-11-23T10:00:00Z"), "change_id": note["change_id"]}
    del again["data"]
    batch = [note, again, _interview_create(world, iid)]
    first = [(r["status"], r["rev"]) for r in post_sync(client, batch).get_json()["results"]]
    assert first == [("applied", 1), ("rejected", None), ("applied", 1)]
    replay = [(r["status"], r["rev"]) for r in post_sync(client, batch).get_json()["results"]]
    assert replay == [("duplicate", 1), ("rejected", None), ("duplicate", 1)]
