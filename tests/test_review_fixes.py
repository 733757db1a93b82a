"""Regressions found in review: consent and finishing in the right order, no typed text lost."""

import re
import uuid

from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent, Debrief, Interview, InterviewEvent, Note, Participant
from tests.conftest import get_row
from tests.helpers import give_paper_consent, start_interview


def _kinds(app, iid):
    with app.app_context():
        return [
            e.kind
            for e in db.session.scalars(
                select(InterviewEvent)
                .where(InterviewEvent.interview_id == iid)
                .order_by(InterviewEvent.recorded_at)
            )
        ]


def test_no_finish_without_consent(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    response = client.post(f"/interviews/{iid}/finish")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}/consent")
    with app.app_context():
        assert get_row(Interview, iid).status == "in_progress"
        assert get_row(Participant, world.participants["pa"]).status == "invited"


def test_no_consent_after_a_stop(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    client.post(f"/interviews/{iid}/stop", data={"reason": "practical"})
    response = give_paper_consent(client, iid)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}")
    with app.app_context():
        assert db.session.scalars(select(Consent)).all() == []
    assert _kinds(app, iid) == ["capacity_check", "stop"]


def test_pause_from_the_guide_saves_what_was_typed(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    nid = str(uuid.uuid4())
    response = client.post(
        f"/interviews/{iid}/section/2",
        data={
            "new-inhibits.communication-id": nid,
            "new-inhibits.communication-text": "Halvskrevet notat før pausen",
            "go": "pause",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}/section/2")
    with app.app_context():
        assert get_row(Note, nid).text == "Halvskrevet notat før pausen"
        assert get_row(Interview, iid).status == "paused"
    # a section tab saves too, and resume from the guide returns to the same section
    client.post(
        f"/interviews/{iid}/section/2",
        data={
            f"note-{nid}-text": "Utvidet etter pausen",
            f"note-{nid}-rev": "1",
            "go": "section-4",
        },
    )
    with app.app_context():
        assert get_row(Note, nid).text == "Utvidet etter pausen"
    response = client.post(f"/interviews/{iid}/section/4", data={"go": "resume"})
    assert response.headers["Location"].endswith("/section/4")
    assert _kinds(app, iid)[-2:] == ["pause", "resume"]


def test_distress_from_the_guide_saves_first(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    nid = str(uuid.uuid4())
    response = client.post(
        f"/interviews/{iid}/section/0",
        data={
            "new-context.services-id": nid,
            "new-context.services-text": "Ord som må bli",
            "go": "distress",
        },
    )
    assert response.headers["Location"].endswith(f"/interviews/{iid}/distress")
    with app.app_context():
        assert get_row(Note, nid).text == "Ord som må bli"
    assert _kinds(app, iid)[-1] == "distress_1"


def test_a_second_tap_on_pause_is_not_an_error(client, auth, world):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    assert client.post(f"/interviews/{iid}/pause").status_code == 302
    assert client.post(f"/interviews/{iid}/pause").status_code == 302


def test_each_interviewer_writes_their_own_debrief(client, auth, world, app):
    # pa2 gets a second interviewer; both write a debrief and neither sees the other's
    with app.app_context():
        from interview.store.models import User

        p = get_row(Participant, world.participants["pa"])
        p.interviewers.append(db.session.get(User, world.users["peer_a2"]))
        db.session.commit()
    iid = world.interviews["pa"]
    auth.login("peer_a")
    start_interview(client, iid)
    give_paper_consent(client, iid)
    client.post(f"/interviews/{iid}/finish")
    client.post(
        f"/interviews/{iid}/debrief",
        data={"wellbeing": "1", "reflection": "Privat refleksjon", "wants_debrief_talk": "y"},
    )
    client.post("/logout")
    auth.login("peer_a2")
    page = client.get(f"/interviews/{iid}/debrief")
    assert "Privat refleksjon" not in page.text
    client.post(f"/interviews/{iid}/debrief", data={"wellbeing": "5", "reflection": "fint"})
    with app.app_context():
        rows = {
            d.author_id: d
            for d in db.session.scalars(select(Debrief).where(Debrief.interview_id == iid))
        }
        assert rows[world.users["peer_a"]].wants_debrief_talk is True
        assert rows[world.users["peer_a"]].reflection == "Privat refleksjon"
        assert rows[world.users["peer_a2"]].wellbeing == 5


def test_bad_dates_nul_bytes_and_missing_fields_are_400_not_500(client, auth, world, app):
    auth.login("coord_a")
    pid = world.participants["pa"]
    response = client.post(
        f"/participants/{pid}/interviews?lang=en",
        data={
            "plan-day": "0001-01-01",
            "plan-at": "10:00",
            "plan-place_kind": "home",
            "plan-language": "nb",
        },
    )
    assert response.status_code == 400
    assert "between the years 2000 and 2100" in response.text
    response = client.post(
        f"/participants/{pid}/interviews?lang=nb",
        data={
            "plan-day": "2030-01-01",
            "plan-at": "99:99",
            "plan-place_kind": "home",
            "plan-language": "nb",
        },
    )
    assert response.status_code == 400
    assert "Not a valid time value" not in response.text
    response = client.post("/login", data={"username": "a\x00b", "password": "x"})
    assert response.status_code == 400
    with app.app_context():
        from interview.store.models import Case

        case_a = db.session.execute(select(Case.id).where(Case.code == "A")).scalar_one()
    response = client.post(
        "/participants/new",
        data={
            "case_id": str(case_a),
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_a"])],
        },
    )
    assert response.status_code == 302


def test_stop_needs_a_chosen_reason(client, auth, world, app):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    page = client.get(f"/interviews/{iid}/stop?lang=en")
    select_html = re.search(r'<select[^>]*id="reason".*?</select>', page.text, re.S).group(0)
    # the first option asks for a reason, and nothing is chosen for the peer
    assert '<option value="">Choose a reason</option>' in select_html
    assert "selected" not in select_html
    response = client.post(f"/interviews/{iid}/stop?lang=en", data={"reason": ""})
    assert response.status_code == 400
    assert "Choose a reason." in response.text
    with app.app_context():
        assert get_row(Interview, iid).status == "in_progress"


def test_consent_words_the_participant_reads_follow_the_interview_language(client, auth, world):
    auth.login("peer_a2")
    iid = world.interviews["pa2"]  # an English interview
    start_interview(client, iid)
    page = client.get(f"/interviews/{iid}/consent?lang=nb").text
    assert '<html lang="nb">' in page
    assert '<label for="item-participate-yes">Yes</label>' in page
    # the answers come under the form's own consent statement (REK's order), in its language
    assert "Consent statement" in page and "Samtykkeerklæring" not in page
    assert "I agree to what I answer yes to below." in page
    assert "Sign with a finger" in page
    # the peer's own controls stay in the peer's language
    assert "Hvordan gir deltakeren samtykke?" in page
