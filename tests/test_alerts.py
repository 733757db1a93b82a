"""Coordinator alerts: what raises one, who sees it, and acknowledging it (audited)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from interview import alerts
from interview.extensions import db
from interview.models import (
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
from interview.sync import refold_interview

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
