"""The sync rules (DESIGN §4): pure merge functions and POST /api/v1/sync."""

import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select

from interview.store.extensions import db
from interview.store.models import Debrief, Interview, Note, Participant, SyncChange
from interview.sync.merge import fold_events, merge_fields
from tests.conftest import get_row
from tests.helpers import consented_interview, post_sync
from tests.helpers import note_change as _note_change


def test_merge_applies_one_sided_fields_and_flags_two_sided_ones():
    current = {"text": "server", "polarity": "inhibits", "possible_quote": False}
    revs = {"text": 3, "polarity": 1}
    applied, conflicts = merge_fields(
        current, revs, 2, {"text": "tablet", "polarity": "promotes", "possible_quote": False}
    )
    assert applied == {"polarity": "promotes"}
    assert conflicts == {"text": "tablet"}


def test_fold_is_order_independent():
    t = datetime(2030, 1, 1, 10, 0)
    events = [
        (t.replace(minute=0), "a", "capacity_check", {"outcome": "ok", "minutes": 60}),
        (t.replace(minute=10), "b", "pause", {}),
        (t.replace(minute=20), "c", "resume", {}),
        (t.replace(minute=50), "d", "complete", {}),
    ]
    forward = fold_events(events, t)
    backward = fold_events(list(reversed(events)), t)
    assert forward == backward
    assert forward.status == "completed"
    assert forward.expected_end_at == t.replace(hour=11)


def test_replay_is_duplicate_with_the_same_rev_and_reuse_is_rejected(client, auth, world, app):
    iid = consented_interview(client, world)
    change = _note_change(iid, str(uuid.uuid4()), "Første notat")
    first = post_sync(client, [change]).get_json()["results"][0]
    again = post_sync(client, [change]).get_json()["results"][0]
    assert first["status"] == "applied" and first["rev"] == 1
    assert again == {"change_id": change["change_id"], "status": "duplicate", "rev": 1}
    reused = dict(change, data=dict(change["data"], text="Noe annet"))
    answer = post_sync(client, [reused]).get_json()["results"][0]
    assert answer["status"] == "rejected" and "reused" in answer["reason"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 1


def test_stale_edit_keeps_both_texts_and_one_bad_change_blocks_nothing(client, auth, world, app):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    post_sync(client, [_note_change(iid, nid, "A")])
    results = post_sync(
        client,
        [
            _note_change(iid, nid, "B fra nettbrett 1", base_rev=1),
            {"change_id": "not-a-uuid", "entity": "note"},
            _note_change(iid, nid, "C fra nettbrett 2", base_rev=1),
        ],
    ).get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "conflict"]
    with app.app_context():
        note = get_row(Note, nid)
        assert note.text == "B fra nettbrett 1"
        assert note.conflict["text"] == "C fra nettbrett 2"
    assert "C fra nettbrett 2" in client.get("/interviews/conflicts").text
    # resolving is itself a change: keep the other version
    response = client.post(f"/interviews/conflicts/{nid}", data={"choice": "other", "rev": "3"})
    assert response.status_code == 302
    with app.app_context():
        note = get_row(Note, nid)
        assert note.text == "C fra nettbrett 2" and note.conflict is None


def test_edit_before_create_and_note_before_interview_converge(client, auth, world, app):
    auth.login("peer_a")
    nid, new_iid = str(uuid.uuid4()), str(uuid.uuid4())
    edit = _note_change(new_iid, nid, "redigert", base_rev=1)
    create = _note_change(new_iid, nid, "opprettet")
    interview = {
        "change_id": str(uuid.uuid4()),
        "entity": "interview",
        "id": new_iid,
        "base_rev": None,
        "recorded_at": "2026-11-23T09:00:00Z",
        "data": {
            "participant_id": world.participants["pa"],
            "language": "nb",
            "planned_at": "2026-11-23T09:00:00Z",
            "place_kind": "cafe",
        },
    }
    statuses = [
        r["status"] for r in post_sync(client, [edit, create, interview]).get_json()["results"]
    ]
    assert statuses == ["applied", "applied", "applied"]
    with app.app_context():
        note = get_row(Note, nid)
        assert note.interview_id == new_iid
        assert note.text == "redigert" and note.rev == 2
        assert (
            db.session.scalars(select(SyncChange).where(SyncChange.waiting_for.is_not(None))).all()
            == []
        )


def test_no_access_and_withdrawn_are_rejected_and_create_nothing(client, auth, world, app):
    auth.login("peer_b")
    iid = world.interviews["pa"]
    answer = post_sync(client, [_note_change(iid, str(uuid.uuid4()), "fremmed")]).get_json()
    assert answer["results"][0]["status"] == "rejected"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0
        get_row(Participant, world.participants["pb"]).status = "withdrawn"
        db.session.commit()
    answer = post_sync(
        client, [_note_change(world.interviews["pb"], str(uuid.uuid4()), "sent")]
    ).get_json()
    assert answer["results"][0]["status"] == "rejected"
    assert "withdrawn" in answer["results"][0]["reason"]


def test_updates_since_cursor_show_another_tablets_notes(app, world, auth, client):
    iid = consented_interview(client, world)
    cursor = post_sync(client, []).get_json()["cursor"]
    other = app.test_client()
    other.post("/login", data={"username": "coord_a", "password": "correct horse battery"})
    nid = str(uuid.uuid4())
    assert post_sync(other, [_note_change(iid, nid, "fra koordinator")]).status_code == 200
    body = post_sync(client, [], cursor=cursor).get_json()
    assert body["cursor"] > cursor
    assert any(u["id"] == nid and u["data"]["text"] == "fra koordinator" for u in body["updates"])
    # peer_b sees none of it
    stranger = app.test_client()
    stranger.post("/login", data={"username": "peer_b", "password": "correct horse battery"})
    assert all(u["id"] != nid for u in post_sync(stranger, [], cursor=cursor).get_json()["updates"])


def test_bad_requests_get_json_answers_never_500(client, auth, world):
    assert post_sync(client, []).status_code == 401
    assert post_sync(client, []).get_json()["code"] == "login"
    auth.login("peer_a")
    bad = client.post("/api/v1/sync", data="{nope", content_type="application/json")
    assert bad.status_code == 400 and bad.get_json()["code"] == "envelope"
    assert client.post("/api/v1/sync", json={"device_id": "x"}).status_code == 400
    assert client.post("/api/v1/sync", json=[1, 2]).status_code == 400
    huge = "x" * (3 * 1024 * 1024)
    assert (
        client.post("/api/v1/sync", data=huge, content_type="application/json").status_code == 413
    )


def test_a_co_peers_debrief_is_not_sent_to_my_tablet(app, world, auth, client):
    with app.app_context():
        from interview.store.models import User

        participant = get_row(Participant, world.participants["pa"])
        participant.interviewers.append(db.session.get(User, world.users["peer_a2"]))
        db.session.commit()
    iid = consented_interview(client, world)
    client.post(f"/interviews/{iid}/finish")
    client.post(f"/interviews/{iid}/debrief", data={"wellbeing": "1", "reflection": "Privat"})
    other = app.test_client()
    other.post("/login", data={"username": "peer_a2", "password": "correct horse battery"})
    updates = post_sync(other, []).get_json()["updates"]
    assert any(u["entity"] == "interview" for u in updates)  # control: they do get updates
    assert all(u["entity"] != "debrief" for u in updates)
    coordinator = app.test_client()
    coordinator.post("/login", data={"username": "coord_a", "password": "correct horse battery"})
    assert any(u["entity"] == "debrief" for u in post_sync(coordinator, []).get_json()["updates"])


def _conflicted(client, app, iid, note_id, device=None):
    """A note edited on two sides from rev 1; returns the second, conflicting change."""
    post_sync(client, [_note_change(iid, note_id, "Start")])
    post_sync(client, [_note_change(iid, note_id, "Fra nettbrett A", base_rev=1)])
    stale = _note_change(iid, note_id, "Fra nettbrett B", base_rev=1)
    assert (
        post_sync(client, [stale], device=device).get_json()["results"][0]["status"] == "conflict"
    )
    return stale


def test_a_replayed_conflict_is_never_taken_for_an_apply(client, auth, world, app):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    stale = _conflicted(client, app, iid, note_id)
    again = post_sync(client, [stale]).get_json()["results"][0]
    assert again["status"] == "duplicate"
    assert again["reason"] == "conflict"  # the tablet treats it as the conflict it was


def test_one_tablet_typing_on_after_a_conflict_leaves_one_version_of_its_own(
    client, auth, world, app
):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    tablet_b = str(uuid.uuid4())
    _conflicted(client, app, iid, note_id, device=tablet_b)
    for minute, text in ((1, "Fra nettbrett B, mer"), (2, "Fra nettbrett B, mer og mer")):
        change = _note_change(iid, note_id, text, base_rev=1)
        change["recorded_at"] = f"2026-11-23T10:0{minute}:00Z"
        result = post_sync(client, [change], device=tablet_b).get_json()
        assert result["results"][0]["status"] == "conflict"
    with app.app_context():
        note = get_row(Note, note_id)
        assert note.text == "Fra nettbrett A"
        assert note.conflict["text"] == "Fra nettbrett B, mer og mer"
    # an older version of theirs arriving late is kept beside, never over, the newer one
    late = _note_change(iid, note_id, "Fra nettbrett B, tidlig", base_rev=1)
    late["recorded_at"] = "2026-11-23T09:59:00Z"
    post_sync(client, [late], device=tablet_b)
    # and the same person's version from another tablet is kept too
    other = _note_change(iid, note_id, "Fra telefonen", base_rev=1)
    other["recorded_at"] = "2026-11-23T10:05:00Z"
    post_sync(client, [other])
    with app.app_context():
        versions = get_row(Note, note_id).conflict["text"].split("\n\n———\n\n")
        assert versions == [
            "Fra nettbrett B, mer og mer",
            "Fra nettbrett B, tidlig",
            "Fra telefonen",
        ]


def test_a_third_person_version_is_kept_beside_the_others(client, auth, world, app):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    _conflicted(client, app, iid, note_id)
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        from interview.store.models import User

        participant.interviewers.append(db.session.get(User, world.users["peer_a2"]))
        db.session.commit()
    client.post("/logout")
    auth.login("peer_a2")
    result = post_sync(client, [_note_change(iid, note_id, "Fra nettbrett C", base_rev=1)])
    assert result.get_json()["results"][0]["status"] == "conflict"
    with app.app_context():
        versions = get_row(Note, note_id).conflict["text"].split("\n\n———\n\n")
        assert versions == ["Fra nettbrett B", "Fra nettbrett C"]


def test_a_change_the_server_fails_on_is_kept_for_another_try(
    client, auth, world, app, monkeypatch
):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    change = _note_change(iid, note_id, "Sendes på nytt")
    from interview.sync import apply as sync_apply

    def broken(*_args):
        raise RuntimeError("the disk hiccuped")

    monkeypatch.setitem(sync_apply.APPLIERS, "note", broken)
    response = post_sync(client, [change])
    assert response.status_code == 503
    assert response.get_json()["code"] == "retry"
    monkeypatch.undo()
    result = post_sync(client, [change]).get_json()["results"][0]
    assert result["status"] == "applied"
    with app.app_context():
        assert get_row(Note, note_id).text == "Sendes på nytt"


def test_an_interview_a_coordinator_plans_reaches_the_peers_tablet_in_updates(
    app, client, auth, world
):
    """Records made through relationships (participant=...) are logged with their ids."""
    auth.login("peer_a")
    device = str(uuid.uuid4())
    first = post_sync(client, [], device=device).get_json()
    auth.logout()
    auth.login("coord_a")
    answer = client.post(
        f"/participants/{world.participants['pa']}/interviews",
        data={
            "plan-day": "2030-01-15",
            "plan-at": "10:30",
            "plan-place_kind": "home",
            "plan-language": "nb",
        },
    )
    assert answer.status_code == 302
    auth.logout()
    auth.login("peer_a")
    later = post_sync(client, [], cursor=first["cursor"], device=device).get_json()
    planned = [
        u
        for u in later["updates"]
        if u["entity"] == "interview" and u["data"]["planned_at"].startswith("2030-01-15")
    ]
    assert len(planned) == 1
    assert planned[0]["id"] != "None"
    with app.app_context():
        assert db.session.get(Interview, planned[0]["id"]) is not None


@pytest.mark.parametrize(
    ("field", "value"), [("pending", 10**30), ("pending", 2**31), ("cursor", 10**30)]
)
def test_numbers_past_what_the_store_holds_are_a_400_not_a_crash(auth, client, world, field, value):
    auth.login("peer_a")
    body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": [], field: value}
    answer = client.post("/api/v1/sync", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["code"] == "envelope"


def test_a_huge_base_rev_is_refused_for_that_change_only(auth, client, world):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    change = _note_change(iid, str(uuid.uuid4()), "text", base_rev=10**30)
    answer = post_sync(client, [change])
    assert answer.status_code == 200
    assert answer.get_json()["results"][0]["status"] == "rejected"


def test_line_breaks_from_any_device_are_kept_as_the_forms_keep_them(client, auth, world, app):
    # a note written on Windows (CR LF) or an old Mac (CR) is stored with LF only, as a form
    # post is: otherwise every later coding of the interview's REFI-QDA export is shifted
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    created = post_sync(client, [_note_change(iid, note_id, "Linje 1\r\nLinje 2\rLinje 3")])
    assert created.get_json()["results"][0]["status"] == "applied"
    edited = post_sync(client, [_note_change(iid, note_id, "Ny 1\r\nNy 2", base_rev=1)])
    assert edited.get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.text == "Ny 1\nNy 2"
    resent = post_sync(client, [_note_change(iid, note_id, "Ny 1\nNy 2", base_rev=2)])
    assert resent.get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.text == "Ny 1\nNy 2" and note.conflict is None


def test_a_conflict_reaches_tablets_without_anyones_device_or_user_id(client, auth, world, app):
    iid = consented_interview(client, world)
    note_id = str(uuid.uuid4())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    post_sync(client, [_note_change(iid, note_id, "Tekst fra A")], device=first)
    post_sync(client, [_note_change(iid, note_id, "Tekst A, endret", base_rev=1)], device=first)
    late = _note_change(iid, note_id, "Tekst fra B", base_rev=1)
    stale = post_sync(client, [late], device=second)
    assert stale.get_json()["results"][0]["status"] == "conflict"
    answer = post_sync(client, [], device=str(uuid.uuid4()))
    body = answer.get_data(as_text=True)
    note = next(u for u in answer.get_json()["updates"] if u["id"] == note_id)
    assert note["data"]["conflict"]["text"]  # the other version's words are there
    assert first not in body and second not in body
    assert not {"by", "device"} & set(note["data"]["conflict"])


def _debrief_create(iid, debrief_id, reflection):
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "debrief",
        "id": debrief_id,
        "base_rev": None,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {"interview_id": iid, "wellbeing": 3, "reflection": reflection},
    }


def test_two_debrief_creates_in_one_batch_keep_the_first_and_refuse_the_second(
    client, auth, world, app
):
    # they once broke the whole batch (503 "retry", for ever)
    iid = consented_interview(client, world)
    assert client.post(f"/interviews/{iid}/stop", data={"reason": "other"}).status_code == 302
    one, two = (
        _debrief_create(iid, str(uuid.uuid4()), "en"),
        _debrief_create(iid, str(uuid.uuid4()), "to"),
    )
    answer = post_sync(client, [one, two])
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert "already wrote a debrief" in results[1]["reason"]
    with app.app_context():
        assert [d.reflection for d in db.session.scalars(select(Debrief))] == ["en"]
