"""Object-level access: who may open and change which interview and participant."""

import uuid

import pytest
from sqlalchemy import func, select

from interview.store.extensions import db
from interview.store.models import AuditEvent, Interview, InterviewEvent, Participant
from tests.conftest import get_row
from tests.helpers import start_interview

PLAN = {
    "plan-day": "2031-03-04",
    "plan-at": "10:00",
    "plan-place_kind": "home",
    "plan-language": "nb",
}

# (method, path under /interviews/<id>, form data)
INTERVIEW_ROUTES = [
    ("GET", "", None),
    ("GET", "/capacity", None),
    ("GET", "/consent", None),
    ("GET", "/section/0", None),
    ("GET", "/debrief", None),
    ("POST", "/pause", {}),
    ("POST", "/check-in", {}),
    ("POST", "/distress", {}),
    ("POST", "/stop", {"reason": "practical", "comment": ""}),
]

# (method, path under /participants/<id>, form data); a function of the world for ids
PARTICIPANT_ROUTES = [
    ("GET", "", lambda w: None),
    ("POST", "/interviewers", lambda w: {"assign-interviewers": [str(w.users["peer_a2"])]}),
    ("POST", "/interviews", lambda w: PLAN),
    ("POST", "/identity", lambda w: {}),
]


def _ids(routes):
    return [f"{m} {p or '/'}" for m, p, _d in routes]


def _call(client, method, url, data=None):
    if method == "GET":
        return client.get(url)
    return client.post(url, data=data or {})


def _snapshot(app, world):
    """What a refused request must leave untouched: statuses, events, interviewers, audit."""
    with app.app_context():
        db.session.expire_all()
        iv = db.session.get(Interview, world.interviews["pa"])
        p = db.session.get(Participant, world.participants["pa"])
        return {
            "status": iv.status,
            "rev": iv.rev,
            "events": db.session.scalar(select(func.count()).select_from(InterviewEvent)),
            "interviews": db.session.scalar(select(func.count()).select_from(Interview)),
            "interviewers": sorted(u.username for u in p.interviewers),
            "participant_status": p.status,
            "identity_views": db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "identity_viewed")
            ),
        }


# --- interviews -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["peer_b", "peer_a2", "coord_b"])
@pytest.mark.parametrize(("method", "path", "data"), INTERVIEW_ROUTES, ids=_ids(INTERVIEW_ROUTES))
def test_others_get_404_on_an_interview(app, client, auth, world, who, method, path, data):
    before = _snapshot(app, world)
    auth.login(who)
    response = _call(client, method, f"/interviews/{world.interviews['pa']}{path}", data)
    assert response.status_code == 404
    assert _snapshot(app, world) == before


@pytest.mark.parametrize("who", ["peer_b", "peer_a2", "coord_b"])
@pytest.mark.parametrize(("method", "path", "data"), INTERVIEW_ROUTES, ids=_ids(INTERVIEW_ROUTES))
def test_others_get_404_on_a_running_interview(app, client, auth, world, who, method, path, data):
    """Refusals hold too when the interview is under way, where every action would succeed."""
    auth.login("peer_a")
    assert start_interview(client, world.interviews["pa"]).status_code == 302
    auth.logout()
    before = _snapshot(app, world)
    assert before["status"] == "in_progress"
    auth.login(who)
    response = _call(client, method, f"/interviews/{world.interviews['pa']}{path}", data)
    assert response.status_code == 404
    assert _snapshot(app, world) == before


@pytest.mark.parametrize(("method", "path", "data"), INTERVIEW_ROUTES, ids=_ids(INTERVIEW_ROUTES))
def test_anonymous_is_sent_to_login_on_interview_routes(app, client, world, method, path, data):
    before = _snapshot(app, world)
    response = _call(client, method, f"/interviews/{world.interviews['pa']}{path}", data)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert _snapshot(app, world) == before


@pytest.mark.parametrize(
    ("method", "path", "data"), INTERVIEW_ROUTES[:5], ids=_ids(INTERVIEW_ROUTES[:5])
)
def test_assigned_peer_is_let_in(client, auth, world, method, path, data):
    """Control for the refusals: the same pages open for the peer who was assigned."""
    auth.login("peer_a")
    response = _call(client, method, f"/interviews/{world.interviews['pa']}{path}", data)
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert "/login" not in response.headers["Location"]


def test_assigned_peer_can_pause_what_others_cannot(app, client, auth, world):
    iid = world.interviews["pa"]
    auth.login("peer_a")
    start_interview(client, iid)
    assert client.post(f"/interviews/{iid}/pause").status_code == 302
    with app.app_context():
        assert get_row(Interview, iid).status == "paused"


def test_pause_by_peer_b_leaves_the_interview_as_it_was(app, client, auth, world):
    iid = world.interviews["pa"]
    auth.login("peer_b")
    assert client.post(f"/interviews/{iid}/pause").status_code == 404
    with app.app_context():
        assert get_row(Interview, iid).status == "planned"
        events = db.session.scalars(
            select(InterviewEvent).where(InterviewEvent.interview_id == iid)
        ).all()
        assert events == []


def test_stop_by_same_case_peer_leaves_the_interview_running(app, client, auth, world):
    iid = world.interviews["pa"]
    auth.login("peer_a")
    start_interview(client, iid)
    auth.logout()
    auth.login("peer_a2")
    response = client.post(f"/interviews/{iid}/stop", data={"reason": "practical"})
    assert response.status_code == 404
    with app.app_context():
        iv = get_row(Interview, iid)
        assert iv.status == "in_progress"
        assert iv.ended_at is None


@pytest.mark.parametrize("who", ["peer_a", "peer_b", "coord_a", "admin"])
def test_unknown_interview_is_404(client, auth, world, who):
    auth.login(who)
    assert client.get(f"/interviews/{uuid.uuid4()}").status_code == 404
    assert client.post(f"/interviews/{uuid.uuid4()}/pause").status_code == 404


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "..%2f..%2fetc", "' OR 1=1 --"])
def test_non_uuid_interview_id_is_404(client, auth, world, bad):
    auth.login("peer_a")
    assert client.get(f"/interviews/{bad}").status_code == 404
    assert client.post(f"/interviews/{bad}/pause").status_code == 404


def test_interview_list_shows_only_own(client, auth, world):
    auth.login("peer_b")
    page = client.get("/interviews/")
    assert page.status_code == 200
    assert world.interviews["pb"] in page.text
    assert world.interviews["pa"] not in page.text
    assert world.interviews["pa2"] not in page.text


# --- participants -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "data"), PARTICIPANT_ROUTES, ids=_ids(PARTICIPANT_ROUTES)
)
def test_other_case_coordinator_gets_404_on_a_participant(
    app, client, auth, world, method, path, data
):
    before = _snapshot(app, world)
    auth.login("coord_b")
    url = f"/participants/{world.participants['pa']}{path}"
    response = _call(client, method, url, data(world))
    assert response.status_code == 404
    assert _snapshot(app, world) == before


@pytest.mark.parametrize("who", ["peer_a", "peer_a2", "peer_b"])
@pytest.mark.parametrize(
    ("method", "path", "data"), PARTICIPANT_ROUTES, ids=_ids(PARTICIPANT_ROUTES)
)
def test_peers_get_403_on_participant_routes(app, client, auth, world, who, method, path, data):
    before = _snapshot(app, world)
    auth.login(who)
    url = f"/participants/{world.participants['pa']}{path}"
    response = _call(client, method, url, data(world))
    assert response.status_code == 403
    assert _snapshot(app, world) == before


@pytest.mark.parametrize(
    ("method", "path", "data"), PARTICIPANT_ROUTES, ids=_ids(PARTICIPANT_ROUTES)
)
def test_anonymous_is_sent_to_login_on_participant_routes(app, client, world, method, path, data):
    before = _snapshot(app, world)
    url = f"/participants/{world.participants['pa']}{path}"
    response = _call(client, method, url, data(world))
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert _snapshot(app, world) == before


@pytest.mark.parametrize("path", ["/participants/", "/participants/new"])
def test_peer_gets_403_on_coordinator_pages(client, auth, world, path):
    auth.login("peer_a")
    response = client.get(path + "?lang=en")
    assert response.status_code == 403
    assert "You do not have access to this page." in response.text


def test_peer_cannot_register_a_participant(app, client, auth, world):
    auth.login("peer_a")
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Participant))
    response = client.post(
        "/participants/new",
        data={
            "case_id": "1",
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_a"])],
        },
    )
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Participant)) == count


@pytest.mark.parametrize("who", ["coord_a", "admin"])
def test_coordinator_of_the_case_and_admin_see_the_participant(app, client, auth, world, who):
    auth.login(who)
    response = client.get(f"/participants/{world.participants['pa']}")
    assert response.status_code == 200
    with app.app_context():
        code = get_row(Participant, world.participants["pa"]).code
    assert code in response.text


def test_assign_by_other_case_coordinator_changes_nothing(app, client, auth, world):
    pid = world.participants["pa"]
    auth.login("coord_b")
    response = client.post(
        f"/participants/{pid}/interviewers",
        data={"assign-interviewers": [str(world.users["peer_b"])]},
    )
    assert response.status_code == 404
    with app.app_context():
        assert [u.username for u in get_row(Participant, pid).interviewers] == ["peer_a"]


def test_assign_by_own_coordinator_works(app, client, auth, world):
    """Control: the same request from the case's coordinator is accepted."""
    pid = world.participants["pa"]
    auth.login("coord_a")
    response = client.post(
        f"/participants/{pid}/interviewers",
        data={"assign-interviewers": [str(world.users["peer_a2"])]},
    )
    assert response.status_code == 302
    with app.app_context():
        assert [u.username for u in get_row(Participant, pid).interviewers] == ["peer_a2"]


def test_coordinator_cannot_assign_a_peer_of_another_case(app, client, auth, world):
    pid = world.participants["pa"]
    auth.login("coord_a")
    response = client.post(
        f"/participants/{pid}/interviewers",
        data={"assign-interviewers": [str(world.users["peer_b"])]},
    )
    assert response.status_code == 400
    with app.app_context():
        assert [u.username for u in get_row(Participant, pid).interviewers] == ["peer_a"]


def test_identity_by_other_case_coordinator_shows_nothing(app, client, auth, world):
    auth.login("coord_b")
    response = client.post(f"/participants/{world.participants['pa']}/identity")
    assert response.status_code == 404
    assert "Test Person" not in response.text


def test_identity_by_own_coordinator_is_shown_and_audited(app, client, auth, world):
    auth.login("coord_a")
    response = client.post(f"/participants/{world.participants['pa']}/identity")
    assert response.status_code == 200
    assert "Test Person" in response.text
    assert _snapshot(app, world)["identity_views"] == 1


def test_identity_is_not_a_get(client, auth, world):
    auth.login("coord_a")
    response = client.get(f"/participants/{world.participants['pa']}/identity")
    assert response.status_code == 405
    assert "Test Person" not in response.text


@pytest.mark.parametrize("who", ["coord_a", "admin"])
def test_unknown_participant_is_404(client, auth, world, who):
    auth.login(who)
    assert client.get(f"/participants/{uuid.uuid4()}").status_code == 404
    assert client.post(f"/participants/{uuid.uuid4()}/identity").status_code == 404


@pytest.mark.parametrize("bad", ["not-a-uuid", "42", "A-7K3Q"])
def test_non_uuid_participant_id_is_404(client, auth, world, bad):
    auth.login("coord_a")
    assert client.get(f"/participants/{bad}").status_code == 404
    assert client.post(f"/participants/{bad}/identity").status_code == 404


def test_participant_list_shows_only_own_cases(app, client, auth, world):
    with app.app_context():
        codes = {k: get_row(Participant, v).code for k, v in world.participants.items()}
    auth.login("coord_b")
    page = client.get("/participants/")
    assert page.status_code == 200
    assert codes["pb"] in page.text
    assert codes["pa"] not in page.text
    assert codes["pa2"] not in page.text
    # asking for another case by its code shows nothing of it either
    page = client.get("/participants/?case=A")
    assert page.status_code == 200
    assert codes["pa"] not in page.text


def test_admin_sees_every_case(app, client, auth, world):
    with app.app_context():
        codes = [get_row(Participant, v).code for v in world.participants.values()]
    auth.login("admin")
    page = client.get("/participants/")
    assert page.status_code == 200
    for code in codes:
        assert code in page.text


def test_coordinator_cannot_register_into_another_case(app, client, auth, world):
    from interview.store.models import Case

    with app.app_context():
        case_a = db.session.execute(select(Case.id).where(Case.code == "A")).scalar_one()
        count = db.session.scalar(select(func.count()).select_from(Participant))
    auth.login("coord_b")
    response = client.post(
        "/participants/new",
        data={
            "case_id": str(case_a),
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_a"])],
        },
    )
    assert response.status_code in (400, 404)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Participant)) == count


def test_reassigning_moves_access_with_it(app, client, auth, world):
    iid = world.interviews["pa"]
    auth.login("coord_a")
    response = client.post(
        f"/participants/{world.participants['pa']}/interviewers",
        data={"assign-interviewers": [str(world.users["peer_a2"])]},
    )
    assert response.status_code == 302
    auth.logout()
    auth.login("peer_a")
    assert client.get(f"/interviews/{iid}").status_code == 404
    assert iid not in client.get("/interviews/").text
    auth.logout()
    auth.login("peer_a2")
    assert client.get(f"/interviews/{iid}").status_code == 200
    assert iid in client.get("/interviews/").text
