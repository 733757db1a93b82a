"""Withdrawal (DESIGN §2, §7; issue 4): a new consent record, the data deleted or set aside,
the identity key kept or deleted, an audit row without content, and tablets told to drop it."""

import copy
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from interview.participants.withdrawal import WithdrawalError, today_in_oslo, withdraw
from interview.store.consent_form import validate_consent, withdrawal_data_choice
from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Consent,
    ConsentFormVersion,
    ConsentSignature,
    Debrief,
    IdentityEntry,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    SyncChange,
    Theme,
    User,
    note_themes,
)
from interview.sync import apply as sync_apply
from interview.sync.log import serialize
from tests.conftest import PASSWORD, get_row
from tests.helpers import note_change, park_change, post_sync, signature_data_url, start_interview
from tests.sync.test_openapi import assert_valid

SECRET = "Hemmelig notat om teamet"
REFLECTION = "Tung samtale, men viktig"


def _change(entity, record_id, data, base_rev=None):
    return {
        "change_id": str(uuid.uuid4()),
        "entity": entity,
        "id": record_id,
        "base_rev": base_rev,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": data,
    }


def _theme_key(app) -> str:
    with app.app_context():
        return db.session.scalars(select(Theme.key).order_by(Theme.key)).first()


def _client_as(app, username):
    other = app.test_client()
    other.post("/login", data={"username": username, "password": PASSWORD})
    return other


def _interview_with_data(app, world, client):
    """Interview pa: started, consent signed on the tablet, two notes, stopped, debriefed."""
    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    consent = _change(
        "consent",
        str(uuid.uuid4()),
        {
            "interview_id": iid,
            "form_version": _newest_form_version(app),
            "language": "nb",
            "answers": {"participate": True, "audio": False, "quotes": True, "recontact": False},
            "method": "tablet",
            "signature": signature_data_url(),
            "printed_name": "Test Person",
        },
    )
    notes = [
        note_change(iid, str(uuid.uuid4()), SECRET, themes=[_theme_key(app)]),
        note_change(iid, str(uuid.uuid4()), "Andre notat", polarity="promotes"),
    ]
    stop = _change(
        "event",
        str(uuid.uuid4()),
        {"interview_id": iid, "kind": "stop", "details": {"reason": "participant_wish"}},
    )
    debrief = _change(
        "debrief",
        str(uuid.uuid4()),
        {"interview_id": iid, "wellbeing": 3, "reflection": REFLECTION},
    )
    answer = post_sync(client, [consent, *notes, stop, debrief]).get_json()
    assert [r["status"] for r in answer["results"]] == ["applied"] * 5, answer
    return iid, answer["cursor"]


def _newest_form_version(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.max(ConsentFormVersion.version)))


def _add_form_with_choice(app) -> int:
    """Publish a consent form version whose withdrawal section lets the participant choose."""
    with app.app_context():
        v1 = db.session.scalars(select(ConsentFormVersion)).first()
        content = copy.deepcopy(v1.content)
        content["version"] = 2
        content["withdrawal"]["data_choice"] = True
        db.session.add(
            ConsentFormVersion(
                key=v1.key, version=2, published="2027-01-01", checksum="x" * 64, content=content
            )
        )
        db.session.commit()
        return 2


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


TOMORROW = object()  # stands for tomorrow's date in Oslo, worked out at sending


def _post_withdrawal(client, pid, lang="en", **form):
    data = {"withdrawn_on": today_in_oslo().isoformat(), "keep_identity": "keep", **form}
    if data["withdrawn_on"] is TOMORROW:
        data["withdrawn_on"] = (today_in_oslo() + timedelta(days=1)).isoformat()
    return client.post(f"/participants/{pid}/withdraw?lang={lang}", data=data)


# --- content -------------------------------------------------------------------------------


def test_consent_form_data_choice_is_optional_boolean_and_v1_gives_none(app, world):
    with app.app_context():
        v1 = db.session.scalars(select(ConsentFormVersion)).first()
        assert not withdrawal_data_choice(v1.content)
        content = copy.deepcopy(v1.content)
        content["withdrawal"]["data_choice"] = True
        assert validate_consent(content) == []
        assert withdrawal_data_choice(content)
        content["withdrawal"]["data_choice"] = "yes"
        assert any("data_choice" in e for e in validate_consent(content))


# --- deleting ------------------------------------------------------------------------------


def test_withdrawal_deletes_the_data_and_scrubs_the_sync_log(app, world, client):
    iid, _cursor = _interview_with_data(app, world, client)
    pid = world.participants["pa"]
    # a change stuck waiting for the interview (its release failed) still holds words
    park_change(app, world.users["peer_a"], iid, SECRET, digest="d" * 64)
    with app.app_context():
        assert _count(Note) == 2 and _count(note_themes) == 1
        assert _count(InterviewEvent) == 2 and _count(Debrief) == 1
        consents_before = _count(Consent)

    coord = _client_as(app, "coord_a")
    page = coord.get(f"/participants/{pid}/withdraw?lang=en")
    assert page.status_code == 200
    assert "gives no choice" in page.text  # form v1: the data is deleted
    assert 'name="keep_data"' not in page.text
    # a "keep" sent anyway changes nothing: version 1 of the form gives no choice
    response = _post_withdrawal(coord, pid, keep_data="keep", keep_identity="keep")
    assert response.status_code == 302

    with app.app_context():
        assert get_row(Participant, pid).status == "withdrawn"
        assert _count(Note) == 0 and _count(note_themes) == 0
        assert _count(InterviewEvent) == 0 and _count(Debrief) == 0
        assert _count(Interview) == 3  # the interview rows hold no content and stay
        assert _count(Consent) == consents_before + 1
        record = db.session.scalars(select(Consent).where(Consent.kind == "withdrawal")).one()
        assert record.answers == {"keep_data": False, "keep_identity": True}
        assert record.method == "coordinator" and record.form_version.version == 1
        assert record.obtained_by_id == world.users["coord_a"]
        assert record.participant_id == pid
        # no payload in the sync log mentions the participant's words any more
        for row in db.session.scalars(select(SyncChange)):
            assert row.payload is None or SECRET not in str(row.payload)
            assert row.waiting_for is None
        held = db.session.scalars(select(SyncChange).where(SyncChange.digest == "d" * 64)).one()
        assert held.status == "rejected" and "withdrawn" in held.reason
        # identity kept, as chosen
        assert _count(ConsentSignature) == 1
        assert db.session.scalars(
            select(IdentityEntry).where(IdentityEntry.participant_id == pid)
        ).one()
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant_withdrawn")
        ).one()
        assert audit.object_id == pid and audit.user_id == world.users["coord_a"]
        assert audit.detail["notes_deleted"] == 2
        assert audit.detail["note_themes_deleted"] == 1
        assert audit.detail["events_deleted"] == 2
        assert audit.detail["debriefs_deleted"] == 1
        assert audit.detail["keep_data"] is False and audit.detail["keep_identity"] is True
        assert audit.detail["sync_changes_scrubbed"] == 1
        assert SECRET not in str(audit.detail) and REFLECTION not in str(audit.detail)
        assert "Test Person" not in str(audit.detail)
    detail = coord.get(f"/participants/{pid}?lang=en")
    assert "has withdrawn" in detail.text and "Record a withdrawal" not in detail.text


def test_identity_entry_and_signature_deleted_when_chosen(app, world, client):
    _interview_with_data(app, world, client)
    pid = world.participants["pa"]
    coord = _client_as(app, "coord_a")
    assert _post_withdrawal(coord, pid, keep_identity="delete").status_code == 302
    with app.app_context():
        assert (
            db.session.scalars(
                select(IdentityEntry).where(IdentityEntry.participant_id == pid)
            ).all()
            == []
        )
        assert _count(ConsentSignature) == 0
        record = db.session.scalars(select(Consent).where(Consent.kind == "withdrawal")).one()
        assert record.answers["keep_identity"] is False
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant_withdrawn")
        ).one()
        assert audit.detail["identity_deleted"] is True
        assert audit.detail["signatures_deleted"] == 1


def test_keep_is_possible_only_when_the_form_allows_it_and_hides_everything(app, world, client):
    _add_form_with_choice(app)
    iid, _cursor = _interview_with_data(app, world, client)  # consented under version 2
    pid = world.participants["pa"]
    coord = _client_as(app, "coord_a")
    page = coord.get(f"/participants/{pid}/withdraw?lang=en")
    assert 'name="keep_data"' in page.text
    # the choice must be made when the form gives one
    missing = _post_withdrawal(coord, pid)
    assert missing.status_code == 400
    assert "Choose what happens to the data already collected." in missing.text
    assert _post_withdrawal(coord, pid, keep_data="keep").status_code == 302
    with app.app_context():
        assert _count(Note) == 2 and _count(Debrief) == 1  # kept in the store…
        record = db.session.scalars(select(Consent).where(Consent.kind == "withdrawal")).one()
        assert record.answers["keep_data"] is True and record.form_version.version == 2
    # …but shown to nobody
    peer = client  # still logged in as peer_a
    assert iid not in peer.get("/interviews/").text
    for path in ("", "/section/0", "/debrief"):
        assert peer.get(f"/interviews/{iid}{path}").status_code == 404
        assert coord.get(f"/interviews/{iid}{path}").status_code == 404
    assert SECRET not in peer.get("/interviews/conflicts").text
    assert SECRET not in coord.get(f"/participants/{pid}").text
    offline = peer.get("/api/v1/offline").get_json()
    assert all(iv["id"] != iid for iv in offline["interviews"])
    # and never sent to a tablet again
    updates = post_sync(peer, [], cursor=0).get_json()["updates"]
    assert all(u["entity"] in ("interview", "participant") for u in updates if u["id"] != pid)
    assert not any(u["entity"] in ("note", "debrief", "event", "consent") for u in updates)


def test_planned_interviews_are_no_longer_work_to_do(app, world, client):
    pid = world.participants["pa"]
    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    assert iid in client.get("/interviews/").text
    coord = _client_as(app, "coord_a")
    assert _post_withdrawal(coord, pid).status_code == 302
    assert iid not in client.get("/interviews/").text
    assert iid not in coord.get("/interviews/").text
    with app.app_context():
        code = db.session.get(Participant, pid).code
    rows = coord.get("/participants/?lang=en").text.split("<tr>")
    row = next(r for r in rows if code in r)
    assert "badge-planned" not in row and "badge-withdrawn" in row


# --- the tablets ---------------------------------------------------------------------------


def test_tablet_gets_the_drop_signal_and_later_changes_are_rejected(app, world, client):
    iid, cursor = _interview_with_data(app, world, client)
    pid = world.participants["pa"]
    coord = _client_as(app, "coord_a")
    assert _post_withdrawal(coord, pid).status_code == 302

    late_note = note_change(iid, str(uuid.uuid4()), "skrevet etter tilbaketrekking")
    response = post_sync(client, [late_note], cursor=cursor)
    assert response.status_code == 200
    body = response.get_json()
    assert_valid("SyncResponse", body)
    result = body["results"][0]
    assert result["status"] == "rejected" and "withdrawn" in result["reason"]
    drops = [u for u in body["updates"] if u["entity"] == "interview" and u["id"] == iid]
    assert len(drops) == 1 and drops[0]["data"]["withdrawn"] is True
    assert not any(u["entity"] in ("note", "event", "debrief", "consent") for u in body["updates"])
    with app.app_context():
        assert _count(Note) == 0
        assert db.session.get(SyncChange, late_note["change_id"]).payload is None
    # a replay answers the same, and still creates nothing
    again = post_sync(client, [late_note]).get_json()["results"][0]
    assert again["status"] == "rejected" and "withdrawn" in again["reason"]
    # another participant's interview carries withdrawn: false
    with app.app_context():
        other = serialize("interview", db.session.get(Interview, world.interviews["pa2"]))
        assert other["data"]["withdrawn"] is False
        assert_valid("Update", other)


def test_a_note_waiting_for_a_refused_interview_is_refused_and_forgotten(
    app, world, client, monkeypatch
):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    pid = world.participants["pa"]
    device = str(uuid.uuid4())
    new_iid, nid = str(uuid.uuid4()), str(uuid.uuid4())
    waiting = note_change(new_iid, nid, SECRET)
    create = _change(
        "interview",
        new_iid,
        {
            "participant_id": pid,
            "language": "nb",
            "planned_at": "2026-11-23T09:00:00Z",
            "place_kind": "cafe",
        },
    )
    # the interview's create fails on the server (answered retry): the note sent before it in
    # the same request is kept waiting for it, under the participant the create names
    appliers = dict(sync_apply.APPLIERS)

    def broken(*_args):
        raise RuntimeError("the store hiccuped")

    monkeypatch.setitem(sync_apply.APPLIERS, "interview", broken)
    assert post_sync(client, [waiting, create], device=device).status_code == 503
    monkeypatch.setitem(sync_apply.APPLIERS, "interview", appliers["interview"])
    with app.app_context():
        held = get_row(SyncChange, waiting["change_id"])
        assert held.waiting_for == new_iid and held.participant_id == pid
    coord = _client_as(app, "coord_a")
    assert _post_withdrawal(coord, pid).status_code == 302
    answer = post_sync(client, [waiting, create], device=device).get_json()
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["rejected", "rejected"]
    assert "withdrawn" in answer["results"][0]["reason"]
    with app.app_context():
        held = get_row(SyncChange, waiting["change_id"])
        assert held.status == "rejected" and held.payload is None and held.waiting_for is None
        assert db.session.get(Interview, new_iid) is None


# --- who may, and what is refused ----------------------------------------------------------


def test_access_rules(app, world, client, auth):
    pid = world.participants["pa"]
    auth.login("peer_a")
    assert client.get(f"/participants/{pid}/withdraw").status_code == 403
    assert _post_withdrawal(client, pid).status_code == 403
    coord_b = _client_as(app, "coord_b")
    assert coord_b.get(f"/participants/{pid}/withdraw").status_code == 404
    assert _post_withdrawal(coord_b, pid).status_code == 404
    with app.app_context():
        assert get_row(Participant, pid).status == "invited"
    admin = _client_as(app, "admin")
    assert _post_withdrawal(admin, pid).status_code == 302
    with app.app_context():
        assert get_row(Participant, pid).status == "withdrawn"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        # worked out when the test runs, not when it is collected: across Oslo's midnight
        # a date taken at collection would be today by the time it is sent
        ({"withdrawn_on": TOMORROW}, "in the future"),
        ({"withdrawn_on": "2999-01-01"}, "between the years"),
        ({"withdrawn_on": "yesterday"}, "Write the date as"),
        ({"withdrawn_on": ""}, "Choose a date."),
        ({"withdrawn_on": "2001-01-01"}, "cannot be earlier than"),
        ({"keep_identity": ""}, "identity key entry"),
        ({"keep_identity": "maybe"}, "identity key entry"),
    ],
)
def test_invalid_input_is_refused_in_the_users_language_and_changes_nothing(
    app, world, form, message
):
    pid = world.participants["pa"]
    coord = _client_as(app, "coord_a")
    response = _post_withdrawal(coord, pid, **form)
    assert response.status_code == 400
    assert message in response.text
    with app.app_context():
        assert get_row(Participant, pid).status == "invited"
        assert _count(Consent) == 0
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "participant_withdrawn")
            )
            == 0
        )


def test_a_second_withdrawal_is_refused_and_changes_nothing(app, world):
    pid = world.participants["pa"]
    coord = _client_as(app, "coord_a")
    assert _post_withdrawal(coord, pid).status_code == 302
    again = _post_withdrawal(coord, pid, keep_identity="delete")
    assert again.status_code == 409
    assert "already withdrawn" in again.text
    with app.app_context():
        assert _count(Consent) == 1
        assert _count(IdentityEntry) == 1  # the second post asked to delete it: not done
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "participant_withdrawn")
            )
            == 1
        )
    page = coord.get(f"/participants/{pid}/withdraw?lang=en")
    assert page.status_code == 200 and "already withdrawn" in page.text


def test_withdraw_function_returns_a_summary_and_refuses_a_second_time(app, world):
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa2"])
        user = db.session.get(User, world.users["coord_a"])
        summary = withdraw(
            db.session,
            participant,
            withdrawn_on=today_in_oslo(),
            keep_data=None,
            keep_identity=True,
            user=user,
        )
        db.session.commit()
        assert summary.keep_data is False and summary.data_choice is False
        assert summary.interviews == 1 and summary.notes_deleted == 0
        participant = db.session.get(Participant, world.participants["pa2"])
        with pytest.raises(WithdrawalError) as refused:
            withdraw(
                db.session,
                participant,
                withdrawn_on=today_in_oslo() - timedelta(days=0),
                keep_data=None,
                keep_identity=False,
                user=user,
            )
        assert refused.value.code == "already"


def test_every_problem_is_named_at_once_and_the_hint_is_linked(app, world):
    coord = _client_as(app, "coord_a")
    pid = world.participants["pa"]
    page = coord.get(f"/participants/{pid}/withdraw?lang=en")
    assert 'aria-describedby="withdrawn_on-hint"' in page.text
    response = _post_withdrawal(coord, pid, withdrawn_on="2001-01-01", keep_identity="")
    assert response.status_code == 400
    assert "cannot be earlier than" in response.text
    assert "keep or delete the identity key entry" in response.text
