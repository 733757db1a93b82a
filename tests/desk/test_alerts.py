"""Coordinator alerts: what raises one, who sees it, and acknowledging it (audited)."""

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from interview.desk import alerts
from interview.store.extensions import db
from interview.store.models import (
    AlertAck,
    AuditEvent,
    Case,
    Debrief,
    Device,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    utcnow,
)
from interview.sync.merge import refold_interview
from interview.web.i18n import when_text
from tests.conftest import PASSWORD
from tests.helpers import give_paper_consent, note_change, start_interview

GRACE = timedelta(minutes=30)
SILENT = timedelta(hours=24)


def _codes():
    return {c.id: c.code for c in db.session.scalars(select(Case))}


def _case_id(code):
    return db.session.scalar(select(Case.id).where(Case.code == code))


def _start(iid, user_id, started, minutes=60):
    """An interview under way since `started`, expected to last `minutes`."""
    interview = db.session.get(Interview, iid)
    db.session.add(
        InterviewEvent(
            interview_id=iid,
            kind="capacity_check",
            data={"outcome": "ok", "minutes": minutes},
            recorded_at=started,
            recorded_by_id=user_id,
        )
    )
    refold_interview(db.session, interview)
    db.session.commit()
    return interview


def _event(iid, kind, at, user_id, **data):
    db.session.add(
        InterviewEvent(
            interview_id=iid, kind=kind, data=data, recorded_at=at, recorded_by_id=user_id
        )
    )
    refold_interview(db.session, db.session.get(Interview, iid))
    db.session.commit()


def _collect(case_codes, now=None, **kw):
    ids = {_case_id(c) for c in case_codes}
    return alerts.collect(db.session, ids, _codes(), now or utcnow(), GRACE, SILENT, **kw)


def _kinds(found):
    return sorted((a.kind, a.participant_code) for a in found)


def test_overdue_only_after_the_grace_and_a_late_check_in_starts_it_again(app, world):
    with app.app_context():
        t0 = utcnow() - timedelta(hours=3)
        _start(world.interviews["pa"], world.users["peer_a"], t0, minutes=60)
        end = t0 + timedelta(minutes=60)
        assert _collect("A", now=end + GRACE - timedelta(minutes=1)) == []
        late = _collect("A", now=end + GRACE + timedelta(minutes=1))
        assert [a.kind for a in late] == ["overdue"]
        assert late[0].interview_id == world.interviews["pa"]
        # the peer checks in 40 minutes after the expected end: calm until grace after that
        _event(
            world.interviews["pa"], "check_in", end + timedelta(minutes=40), world.users["peer_a"]
        )
        assert _collect("A", now=end + timedelta(minutes=69)) == []
        again = _collect("A", now=end + timedelta(minutes=71))
        assert [a.kind for a in again] == ["overdue"]
        assert again[0].key != late[0].key  # a new occurrence, not the one already seen
        # a check-in before the expected end does not stretch it
        _event(
            world.interviews["pa"], "complete", end + timedelta(minutes=75), world.users["peer_a"]
        )
        assert _collect("A", now=end + timedelta(hours=5)) == []


def test_each_kind_is_raised_for_its_own_case_only(app, world):
    with app.app_context():
        now = utcnow()
        pa, pb = world.interviews["pa"], world.interviews["pb"]
        _start(pa, world.users["peer_a"], now - timedelta(minutes=20))
        _start(pb, world.users["peer_b"], now - timedelta(minutes=20))
        _event(
            pa, "distress_2", now - timedelta(minutes=5), world.users["peer_a"], contact_team=True
        )
        _event(pb, "stop", now - timedelta(minutes=4), world.users["peer_b"], reason="other")
        db.session.add_all(
            [
                Debrief(
                    interview_id=pa,
                    wellbeing=2,
                    wants_debrief_talk=True,
                    participant_follow_up=True,
                    author_id=world.users["peer_a"],
                ),
                Debrief(interview_id=pb, wellbeing=4, author_id=world.users["peer_b"]),
                Note(
                    interview_id=pa,
                    question_key="context.services",
                    text="a",
                    conflict={"text": "b"},
                ),
                Note(
                    interview_id=pa, question_key="context.services", text="settled", conflict=None
                ),
                Device(
                    id="tablet-a",
                    user_id=world.users["peer_a"],
                    pending=3,
                    last_sync_at=now - timedelta(hours=30),
                ),
                Device(id="tablet-a-fresh", user_id=world.users["peer_a2"], pending=2),
                Device(
                    id="tablet-a-empty",
                    user_id=world.users["peer_a2"],
                    pending=0,
                    last_sync_at=now - timedelta(hours=50),
                ),
            ]
        )
        db.session.commit()
        code_a = db.session.get(Participant, world.participants["pa"]).code
        found = _collect("A", now=now)
        assert _kinds(found) == sorted(
            [
                ("conflict", code_a),
                ("debrief_talk", code_a),
                ("distress_2", code_a),
                ("follow_up", code_a),
                ("stale_tablet", None),
            ]
        )
        stale = next(a for a in found if a.kind == "stale_tablet")
        assert (stale.username, stale.count) == ("peer_a", 3)
        # safety first: distress before the rest
        assert found[0].kind == "distress_2"
        assert _collect("B", now=now) == []


def test_a_withdrawn_participant_raises_no_alert(app, world):
    with app.app_context():
        _event(world.interviews["pa"], "distress_2", utcnow(), world.users["peer_a"])
        assert len(_collect("A")) == 1
        db.session.get(Participant, world.participants["pa"]).status = "withdrawn"
        db.session.commit()
        assert _collect("A") == []


@pytest.fixture
def distressed(app, world):
    with app.app_context():
        _event(world.interviews["pa"], "distress_2", utcnow(), world.users["peer_a"])
        event = db.session.scalars(select(InterviewEvent)).one()
        return event.id


def test_coordinator_sees_and_acknowledges_an_alert_and_it_is_audited(
    app, client, auth, world, distressed
):
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en")
    assert page.status_code == 200
    assert "Distress protocol, stage 2" in page.text
    answer = client.post("/desk/alerts/ack", data={"kind": "distress_2", "key": distressed})
    assert answer.status_code == 302
    page = client.get("/desk/alerts/?lang=en")
    assert "Distress protocol, stage 2" not in page.text
    assert "No open alerts" in page.text
    seen = client.get("/desk/alerts/?all=1&lang=en")
    assert "Distress protocol, stage 2" in seen.text and "Seen by coord_a" in seen.text
    with app.app_context():
        ack = db.session.scalars(select(AlertAck)).one()
        assert (ack.kind, ack.key, ack.acknowledged_by_id) == (
            "distress_2",
            distressed,
            world.users["coord_a"],
        )
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert_acknowledged")
        ).one()
        assert audit.detail == {"kind": "distress_2", "key": distressed}
    # a second tap: the alert is no longer open, and nothing more is recorded
    again = client.post("/desk/alerts/ack?lang=en", data={"kind": "distress_2", "key": distressed})
    assert again.status_code == 404
    assert "no longer open" in again.text
    with app.app_context():
        assert len(db.session.scalars(select(AlertAck)).all()) == 1


def test_alerts_page_in_norwegian(client, auth, world, distressed):
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=nb")
    assert page.status_code == 200
    assert 'lang="nb"' in page.text
    assert "Varsler" in page.text


def test_no_one_else_sees_or_acknowledges_the_alert(app, client, auth, world, distressed):
    assert client.get("/desk/alerts/").status_code == 302  # to the login page
    auth.login("coord_b")
    assert "stage 2" not in client.get("/desk/alerts/?lang=en").text
    refused = client.post("/desk/alerts/ack", data={"kind": "distress_2", "key": distressed})
    assert refused.status_code == 404
    auth.logout()
    auth.login("peer_a")
    assert client.get("/desk/alerts/").status_code == 403
    assert (
        client.post("/desk/alerts/ack", data={"kind": "distress_2", "key": distressed}).status_code
        == 403
    )
    with app.app_context():
        assert db.session.scalars(select(AlertAck)).all() == []


@pytest.mark.parametrize(
    "form",
    [{}, {"kind": "fire", "key": "x"}, {"kind": "overdue"}, {"kind": "overdue", "key": "k" * 500}],
)
def test_a_malformed_acknowledgement_is_a_clear_400(client, auth, world, form):
    auth.login("coord_a")
    answer = client.post("/desk/alerts/ack?lang=en", data=form)
    assert answer.status_code == 400
    assert "not one we know" in answer.text


def test_a_debrief_in_conflict_is_an_alert_too(app, client, auth, world):
    with app.app_context():
        db.session.add(
            Debrief(
                interview_id=world.interviews["pa"],
                wellbeing=3,
                reflection="kept",
                conflict={"reflection": "the other tablet's words"},
                author_id=world.users["peer_a"],
            )
        )
        db.session.commit()
        found = _collect("A")
        assert [(a.kind, a.entity, a.username) for a in found] == [
            ("conflict", "debrief", "peer_a")
        ]
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en").text
    assert "A debrief has two versions" in page
    assert "the other tablet" not in page  # the alert names it; the words stay in the debrief


# --- a tablet store that lost its waiting work (interview/sync/devices.py) -----------------------


def _sync(client, device, pending=None, changes=(), **extra):
    body = {"device_id": device, "cursor": None, "changes": list(changes), **extra}
    if pending is not None:
        body["pending"] = pending
    answer = client.post("/api/v1/sync", json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


def _lost(case="A", now=None):
    return [a for a in _collect(case, now=now) if a.kind == "lost_work"]


def _old_store_with_work(client, world, username="peer_a") -> str:
    """A peer's tablet store that last said three changes of two interviews still wait."""
    client.post("/login", data={"username": username, "password": PASSWORD})
    old = str(uuid.uuid4())
    waiting = [world.interviews["pa"], world.interviews["pb"]]
    _sync(client, old, pending=3, pending_interviews=waiting)
    return old


def test_a_new_store_in_the_same_browser_raises_lost_work_once(app, client, auth, world):
    old = _old_store_with_work(client, world)
    new = str(uuid.uuid4())
    # Safari deleted the store: the tablet starts a new one, with nothing waiting
    _sync(client, new)
    with app.app_context():
        code_a = db.session.get(Participant, world.participants["pa"]).code
        code_b = db.session.get(Participant, world.participants["pb"]).code
        (alert,) = _lost("A")
        assert (alert.username, alert.count, alert.store) == ("peer_a", 3, old[:8])
        # the interviews concerned, only those the coordinator may see
        assert alert.codes == (code_a,)
        assert alert.last_sync_at is not None and alert.key == f"{old}>{new}"
        assert _lost("B") == []
        # the replaced store never raises stale_tablet, however long it stays silent
        later = utcnow() + timedelta(days=3)
        assert [a.kind for a in _collect("A", now=later)] == ["lost_work"]
    # the new store syncs on: still the one alert
    _sync(client, new)
    _sync(client, new, pending=0)
    with app.app_context():
        assert len(_lost("A")) == 1
    auth.logout()
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en").text
    assert "A tablet may have lost unsent work" in page
    assert "peer_a" in page and f"Earlier tablet store {old[:8]}, last synced" in page
    assert code_a in page and code_b not in page
    assert 'href="/desk/rescue/"' in page
    answer = client.post("/desk/alerts/ack", data={"kind": "lost_work", "key": alert.key})
    assert answer.status_code == 302
    assert "may have lost unsent work" not in client.get("/desk/alerts/?lang=en").text
    auth.logout()
    auth.login("coord_b")
    assert "may have lost unsent work" not in client.get("/desk/alerts/?lang=en").text


def test_replaces_names_the_old_store_where_the_cookie_is_gone(app, client, world):
    old = _old_store_with_work(client, world)
    fresh = app.test_client()  # no fact_browser cookie: only the tablet's marker tells
    fresh.post("/login", data={"username": "peer_a", "password": PASSWORD})
    new = str(uuid.uuid4())
    _sync(fresh, new, replaces=old.upper())
    with app.app_context():
        (alert,) = _lost("A")
        assert alert.key == f"{old}>{new}"


@pytest.mark.parametrize(
    "how",
    [
        "new store has waiting work",
        "new store brings new changes",
        "old store held nothing",
        "another person's store",
        "unrelated browser",
    ],
)
def test_no_lost_work_alert_when_nothing_was_lost(app, client, world, how):
    if how == "old store held nothing":
        client.post("/login", data={"username": "peer_a", "password": PASSWORD})
        _sync(client, str(uuid.uuid4()), pending=0)
    else:
        _old_store_with_work(client, world)
    new = str(uuid.uuid4())
    if how == "new store has waiting work":
        _sync(client, new, pending=2)
    elif how == "new store brings new changes":
        iid = world.interviews["pa"]
        start_interview(client, iid)
        give_paper_consent(client, iid)
        _sync(client, new, changes=[note_change(iid, str(uuid.uuid4()), "moved over")])
    elif how == "another person's store":
        client.post("/logout")
        client.post("/login", data={"username": "peer_a2", "password": PASSWORD})
        _sync(client, new)
    elif how == "unrelated browser":
        other = app.test_client()
        other.post("/login", data={"username": "peer_a", "password": PASSWORD})
        _sync(other, new)
    else:
        _sync(client, new)
    with app.app_context():
        assert _lost("A") == []


def test_a_store_that_syncs_again_was_not_lost(app, client, world):
    old = _old_store_with_work(client, world)
    _sync(client, str(uuid.uuid4()))
    with app.app_context():
        assert len(_lost("A")) == 1
    _sync(client, old, pending=3)
    with app.app_context():
        assert _lost("A") == []
        # and silent too long with work waiting, it is a stale tablet again
        later = [a.kind for a in _collect("A", now=utcnow() + timedelta(days=2))]
        assert later == ["stale_tablet"]


def test_the_browser_cookie_is_long_lived_http_only_and_set_once(app, client, world):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    first = _sync(client, str(uuid.uuid4()))
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("fact_browser=")
    browser = cookie.split(";")[0].split("=", 1)[1]
    assert str(uuid.UUID(browser)) == browser
    parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= parts and "secure" not in parts
    assert "Max-Age=34560000" in cookie and "SameSite=Lax" in cookie
    again = _sync(client, str(uuid.uuid4()))
    assert "fact_browser" not in again.headers.get("Set-Cookie", "")
    with app.app_context():
        assert {d.browser_id for d in db.session.scalars(select(Device))} == {browser}
    # a cookie that is not ours is replaced; behind HTTPS the cookie is Secure
    app.config["SESSION_COOKIE_SECURE"] = True
    client.set_cookie("fact_browser", "not-a-uuid")
    replaced = _sync(client, str(uuid.uuid4()))
    assert "Secure" in replaced.headers["Set-Cookie"]
    assert browser not in replaced.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "extra",
    [
        {"replaces": "not-a-uuid"},
        {"replaces": 7},
        {"pending_interviews": "x"},
        {"pending_interviews": [7]},
        {"pending_interviews": ["\ud800"]},
        {"pending_interviews": [None]},
        {"pending_interviews": [str(uuid.uuid4()) for _ in range(201)]},
    ],
)
def test_a_malformed_store_field_is_an_envelope_error(client, auth, world, extra):
    auth.login("peer_a")
    body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": [], **extra}
    answer = client.post("/api/v1/sync", data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["code"] == "envelope"


def test_the_store_fields_are_kept(app, client, auth, world):
    auth.login("peer_a")
    device = str(uuid.uuid4())
    waiting = [str(uuid.uuid4()) for _ in range(197)]
    # 200 in the list, three of them twice (a change each): kept once each
    _sync(client, device, pending=5, pending_interviews=waiting + waiting[:3], replaces=None)
    with app.app_context():
        row = db.session.get(Device, device)
        assert row.pending == 5 and sorted(row.pending_interviews) == sorted(waiting)
        assert row.first_sync_at is not None and row.replaced_by is None
    _sync(client, device, pending=0)
    with app.app_context():
        db.session.expire_all()
        assert db.session.get(Device, device).pending_interviews is None


# --- interviews under way, with their last check-in -----------------------------------------


def test_the_alerts_page_lists_interviews_under_way_with_the_last_check_in(
    app, client, auth, world
):
    iid = world.interviews["pa"]
    auth.login("peer_a")
    assert start_interview(client, iid, minutes=60).status_code == 302
    auth.logout()
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en").text
    table = page.split('id="under-way-title"', 1)[1].split("</table>", 1)[0]
    with app.app_context():
        interview = db.session.get(Interview, iid)
        code = interview.participant.code
        expected_end = interview.expected_end_at
    assert "Interviews under way" in page
    assert f'<th scope="row"><a href="/interviews/{iid}"><span class="code">{code}</span>' in table
    assert 'scope="col"' in table
    assert "no check-in yet" in table
    with app.test_request_context("/?lang=en"):
        assert when_text(expected_end) in table
    auth.logout()
    auth.login("peer_a")
    assert client.post(f"/interviews/{iid}/check-in").status_code in (302, 200)
    auth.logout()
    auth.login("coord_a")
    with app.app_context():
        checked = db.session.scalars(
            select(InterviewEvent.recorded_at).where(InterviewEvent.kind == "check_in")
        ).one()
    table = client.get("/desk/alerts/?lang=nb").text.split('id="under-way-title"', 1)[1]
    assert "no check-in yet" not in table
    with app.test_request_context("/?lang=nb"):
        shown = when_text(checked)
    assert shown in table
    # another team's coordinator does not see it
    auth.logout()
    auth.login("coord_b")
    assert code not in client.get("/desk/alerts/?lang=en").text


def test_no_interview_under_way_says_so(client, auth, world):
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en").text
    assert "No interview is under way just now." in page
