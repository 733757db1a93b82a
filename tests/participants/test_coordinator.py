"""The coordinator's flow: register, assign, plan, look up identity; rows in the store."""

import re

from sqlalchemy import select

from interview.store.extensions import db
from interview.store.identity import get_identity
from interview.store.models import AuditEvent, IdentityEntry, Interview, Participant, User
from tests.conftest import get_row


def _peer_id(app, name):
    with app.app_context():
        return db.session.execute(select(User.id).where(User.username == name)).scalar_one()


def _case_a(app):
    from interview.store.models import Case

    with app.app_context():
        return db.session.execute(select(Case.id).where(Case.code == "A")).scalar_one()


def test_register_participant_with_identity_kept_apart(client, auth, world, app):
    auth.login("coord_a")
    response = client.post(
        "/participants/new",
        data={
            "case_id": str(_case_a(app)),
            "preferred_language": "en",
            "interviewers": [str(_peer_id(app, "peer_a")), str(_peer_id(app, "peer_a2"))],
            "name": "Nora Nordkvist",
            "phone": "000 12 345",
        },
    )
    assert response.status_code == 302
    pid = response.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        p = get_row(Participant, pid)
        assert re.fullmatch(r"A-[2-9A-HJ-NP-Z]{4}", p.code)
        assert p.preferred_language == "en"
        assert p.status == "invited"
        assert sorted(u.username for u in p.interviewers) == ["peer_a", "peer_a2"]
        entry = db.session.scalars(
            select(IdentityEntry).where(IdentityEntry.participant_id == pid)
        ).one()
        assert b"Nordkvist" not in entry.name_enc
        assert get_identity(pid) == {"name": "Nora Nordkvist", "contact": "000 12 345"}
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant_registered")
        ).one()
        assert "Nordkvist" not in str(audit.detail)
    page = client.get(f"/participants/{pid}?lang=en")
    assert page.status_code == 200
    assert p.code in page.text
    assert "Nordkvist" not in page.text  # identity only on deliberate look-up


def test_register_rejects_bad_input_and_keeps_it(client, auth, world, app):
    auth.login("coord_a")
    response = client.post(
        "/participants/new?lang=en",
        data={
            "case_id": str(_case_a(app)),
            "preferred_language": "nb",
            "interviewers": [],
            "name": "Navn Som Beholdes",
            "phone": "abc",
        },
    )
    assert response.status_code == 400
    assert "Choose one or two interviewers." in response.text
    assert "Write the phone number with digits only." in response.text
    assert 'value="Navn Som Beholdes"' in response.text
    with app.app_context():
        assert len(db.session.scalars(select(Participant)).all()) == 3


def test_cannot_assign_peer_of_another_team(client, auth, world, app):
    auth.login("coord_a")
    response = client.post(
        "/participants/new?lang=en",
        data={
            "case_id": str(_case_a(app)),
            "preferred_language": "nb",
            "interviewers": [str(_peer_id(app, "peer_b"))],
        },
    )
    assert response.status_code == 400
    with app.app_context():
        assert len(db.session.scalars(select(Participant)).all()) == 3


def test_cannot_register_in_a_case_not_mine(client, auth, world, app):
    from interview.store.models import Case

    with app.app_context():
        case_b = db.session.execute(select(Case.id).where(Case.code == "B")).scalar_one()
    auth.login("coord_a")
    response = client.post(
        "/participants/new",
        data={
            "case_id": str(case_b),
            "preferred_language": "nb",
            "interviewers": [str(_peer_id(app, "peer_b"))],
        },
    )
    assert response.status_code == 400
    with app.app_context():
        assert len(db.session.scalars(select(Participant)).all()) == 3


def test_assign_and_plan_interview(client, auth, world, app):
    auth.login("coord_a")
    pid = world.participants["pa"]
    response = client.post(
        f"/participants/{pid}/interviewers",
        data={"assign-interviewers": [str(_peer_id(app, "peer_a2"))]},
    )
    assert response.status_code == 302
    response = client.post(
        f"/participants/{pid}/interviews",
        data={
            "plan-day": "2030-06-03",
            "plan-at": "10:00",
            "plan-place_kind": "cafe",
            "plan-language": "en",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        p = get_row(Participant, pid)
        assert [u.username for u in p.interviewers] == ["peer_a2"]
        planned = db.session.scalars(
            select(Interview).where(Interview.participant_id == pid, Interview.language == "en")
        ).one()
        # 10:00 in Oslo in summer is 08:00 UTC
        assert planned.planned_at.isoformat() == "2030-06-03T08:00:00"
        assert planned.place_kind == "cafe"
        assert planned.status == "planned"
        assert planned.guide_version.version == 1
    # the newly assigned peer now sees it; the former one no longer does
    client.post("/logout")
    auth.login("peer_a2")
    assert planned.id in client.get("/interviews/").text
    client.post("/logout")
    auth.login("peer_a")
    assert client.get(f"/interviews/{planned.id}").status_code == 404


def test_plan_interview_rejects_bad_dates(client, auth, world, app):
    auth.login("coord_a")
    pid = world.participants["pa"]
    response = client.post(
        f"/participants/{pid}/interviews?lang=en",
        data={
            "plan-day": "2030-02-31",
            "plan-at": "25:00",
            "plan-place_kind": "moon",
            "plan-language": "fr",
        },
    )
    assert response.status_code == 400
    assert "Not a valid choice" in response.text or "not a valid" in response.text.lower()
    with app.app_context():
        assert (
            len(db.session.scalars(select(Interview).where(Interview.participant_id == pid)).all())
            == 1
        )


def test_identity_lookup_is_audited(client, auth, world, app):
    auth.login("coord_a")
    pid = world.participants["pa"]
    response = client.post(f"/participants/{pid}/identity")
    assert response.status_code == 200
    assert "Test Person" in response.text
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "identity_viewed")
        ).one()
        assert event.object_id == pid
        assert "Test Person" not in str(event.detail)


def test_participant_list_shows_only_my_cases(client, auth, world):
    auth.login("coord_b")
    page = client.get("/participants/")
    assert page.status_code == 200
    assert world.participants["pb"] in page.text
    assert world.participants["pa"] not in page.text
    client.post("/logout")
    auth.login("admin")
    page = client.get("/participants/")
    assert world.participants["pa"] in page.text and world.participants["pb"] in page.text
