"""The desk's points of issue 20: peers of the chosen team only, a withdrawn participant's page,
overdue interviews in the Interviews list, the open-alerts count in the nav, no tablet controls
for coordinators, dates written in the UI language's order, and language links that keep a
refused form."""

import html
import re
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Case,
    Interview,
    InterviewEvent,
    Participant,
    utcnow,
)
from interview.sync.merge import refold_interview
from interview.web.i18n import oslo_to_utc, parse_clock, parse_day

# --- registration: the chosen team's peers only ------------------------------------------------


def test_registration_offers_the_chosen_teams_peers_only(client, auth, world):
    auth.login("admin")  # an admin coordinates every team
    first = client.get("/participants/new?lang=en")
    assert first.status_code == 200
    # the team comes first: no peer is offered before it is chosen
    assert "peer_a" not in first.text and "peer_b" not in first.text
    assert 'name="case"' in first.text
    page = client.get("/participants/new?case=A&lang=en")
    assert page.status_code == 200
    assert "peer_a" in page.text and "peer_a2" in page.text
    assert "peer_b" not in page.text
    other = client.get("/participants/new?case=B&lang=en")
    assert "peer_b" in other.text and "peer_a" not in other.text


def test_a_coordinator_of_one_team_sees_its_peers_at_once(client, auth, world, app):
    auth.login("coord_a")
    page = client.get("/participants/new?lang=en")
    assert "peer_a2" in page.text and "peer_b" not in page.text
    with app.app_context():
        case_a = db.session.scalar(select(Case.id).where(Case.code == "A"))
    assert f'name="case_id" value="{case_a}"' in page.text


def test_a_peer_of_another_team_is_refused_with_the_teams_peers_offered(client, auth, world, app):
    auth.login("admin")
    with app.app_context():
        case_a = db.session.scalar(select(Case.id).where(Case.code == "A"))
        before = db.session.scalar(select(func.count()).select_from(Participant))
    answer = client.post(
        "/participants/new?lang=en",
        data={
            "case_id": str(case_a),
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_b"])],
        },
    )
    assert answer.status_code == 400
    assert "Choose peer co-researchers who work in this FACT team." in answer.text
    assert "peer_b" not in answer.text and "peer_a2" in answer.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Participant)) == before


# --- a withdrawn participant's page -----------------------------------------------------------


def _withdraw_directly(app, world, key="pa"):
    with app.app_context():
        db.session.get(Participant, world.participants[key]).status = "withdrawn"
        db.session.commit()


def test_a_withdrawn_participants_page_shows_no_planned_interview_nor_interviewer_form(
    client, auth, world, app
):
    pid = world.participants["pa"]
    auth.login("coord_a")
    page = client.get(f"/participants/{pid}?lang=en")
    assert "Save interviewers" in page.text and ">Planned<" in page.text  # while in the study
    _withdraw_directly(app, world)
    page = client.get(f"/participants/{pid}?lang=en")
    assert page.status_code == 200
    assert "Cancelled: the participant withdrew" in page.text
    assert ">Planned<" not in page.text
    assert f"/participants/{pid}/interviewers" not in page.text
    assert "Save interviewers" not in page.text
    # and the store refuses a change of interviewers too
    refused = client.post(
        f"/participants/{pid}/interviewers?lang=en",
        data={"assign-interviewers": [str(world.users["peer_a2"])]},
    )
    assert refused.status_code == 409
    assert "has withdrawn" in refused.text
    with app.app_context():
        p = db.session.get(Participant, pid)
        assert [u.username for u in p.interviewers] == ["peer_a"]


# --- overdue in the Interviews list -----------------------------------------------------------


def test_an_overdue_interview_is_flagged_in_the_coordinators_interviews_list(
    client, auth, world, app
):
    with app.app_context():
        late = db.session.get(Interview, world.interviews["pa"])
        late.planned_at = utcnow() - timedelta(days=2)
        db.session.commit()
        late_code = late.participant.code
        coming_code = db.session.get(Participant, world.participants["pa2"]).code
    auth.login("coord_a")
    page = client.get("/interviews/?lang=en").text
    cards = dict(re.findall(r'<span class="code">([^<]+)</span>(.*?)</li>', page, re.S))
    assert "Overdue" in cards[late_code]
    assert "Overdue" not in cards[coming_code] and "Planned" in cards[coming_code]
    # no one goes to interview a participant who has withdrawn: not overdue
    _withdraw_directly(app, world)
    page = client.get("/interviews/?lang=en").text
    assert "Overdue" not in page


# --- the open-alerts count in the nav ---------------------------------------------------------


def _distress(app, world, key="pa"):
    with app.app_context():
        iid = world.interviews[key]
        db.session.add(
            InterviewEvent(
                interview_id=iid,
                kind="distress_2",
                data={},
                recorded_at=utcnow(),
                recorded_by_id=world.users["peer_a"],
            )
        )
        refold_interview(db.session, db.session.get(Interview, iid))
        db.session.commit()
        return db.session.scalar(
            select(InterviewEvent.id).where(InterviewEvent.interview_id == iid)
        )


def _nav_alerts(page: str) -> str:
    match = re.search(r'<a href="[^"]*" id="nav-alerts">(.*?)</a>', page, re.S)
    assert match, "the nav has no Alerts link"
    return match.group(1)


def test_the_nav_counts_open_alerts_of_the_teams_one_may_see(client, auth, world, app):
    key = _distress(app, world)
    auth.login("coord_a")
    link = _nav_alerts(client.get("/participants/?lang=en").text)
    assert '<span class="nav-count" aria-hidden="true">1</span>' in link
    assert '<span class="visually-hidden">1 open alert</span>' in link
    # the Alerts page itself counts the same
    assert "1 open alert" in _nav_alerts(client.get("/desk/alerts/?lang=en").text)
    auth.logout()
    auth.login("coord_b")  # team B: not their alert
    assert "nav-count" not in _nav_alerts(client.get("/participants/?lang=en").text)
    auth.logout()
    auth.login("admin")
    assert "1 open alert" in _nav_alerts(client.get("/participants/?lang=en").text)
    client.post("/desk/alerts/ack", data={"kind": "distress_2", "key": key})
    assert "nav-count" not in _nav_alerts(client.get("/participants/?lang=en").text)


def test_the_count_is_plural_and_in_norwegian(client, auth, world, app):
    _distress(app, world, "pa")
    _distress(app, world, "pa2")
    auth.login("coord_a")
    assert "2 open alerts" in _nav_alerts(client.get("/participants/?lang=en").text)
    link = _nav_alerts(client.get("/participants/?lang=nb").text)
    assert 'aria-hidden="true">2</span>' in link and "Varsler" in link


# --- no tablet controls for coordinators ------------------------------------------------------


def test_a_coordinator_sees_no_tablet_controls_and_a_peer_keeps_them(client, auth, world):
    controls = ('id="sync-bar"', 'id="sync-now"', 'id="prepare-offline"')
    auth.login("coord_a")
    for path in ("/interviews/", "/participants/", "/desk/"):
        page = client.get(path + "?lang=en").text
        assert not [c for c in (*controls, "Sync now", "Prepare for offline") if c in page]
    auth.logout()
    auth.login("peer_a")
    page = client.get("/interviews/?lang=en").text
    assert all(c in page for c in controls)


# --- dates in the UI language's order ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("23.11.2026", date(2026, 11, 23)),
        ("1.2.2027", date(2027, 2, 1)),
        (" 2026-11-23 ", date(2026, 11, 23)),
        ("2026-1-5", date(2026, 1, 5)),
    ],
)
def test_both_ways_of_writing_a_date_are_read(text, day):
    assert parse_day(text) == day


@pytest.mark.parametrize(
    "text",
    ["12/05/2026", "05/12/2026", "23.11.26", "31.02.2026", "2026-13-01", "soon", "٢٠٢٦-١١-٢٣"],
)
def test_an_ambiguous_or_wrong_date_is_refused(text):
    with pytest.raises(ValueError):
        parse_day(text)


def test_times_on_the_24_hour_clock():
    assert parse_clock("13:30").hour == 13 and parse_clock("9.05").minute == 5
    for text in ("1:30 PM", "25:00", "1330"):
        with pytest.raises(ValueError):
            parse_clock(text)


def _plan(client, pid, lang, day, at="13:30", **extra):
    return client.post(
        f"/participants/{pid}/interviews?lang={lang}",
        data={
            "plan-day": day,
            "plan-at": at,
            "plan-place_kind": "home",
            "plan-language": "nb",
            **extra,
        },
    )


def _planned_at(app, pid):
    with app.app_context():
        return set(
            db.session.scalars(select(Interview.planned_at).where(Interview.participant_id == pid))
        )


@pytest.mark.parametrize(
    ("lang", "day", "other"),
    [("nb", "23.11.2030", "2030-11-23"), ("en", "2030-11-23", "23.11.2030")],
)
def test_a_date_is_planned_from_either_format_on_either_page(
    client, auth, world, app, lang, day, other
):
    pid = world.participants["pa"]
    auth.login("coord_a")
    for text in (day, other):
        assert _plan(client, pid, lang, text).status_code == 302
    wanted = oslo_to_utc(date(2030, 11, 23), datetime(2030, 1, 1, 13, 30).time())
    assert wanted in _planned_at(app, pid)


@pytest.mark.parametrize(
    ("lang", "message"),
    [
        ("en", "Write the date as yyyy-mm-dd, for example 2026-11-23."),
        ("nb", "dd.mm.åååå"),
    ],
)
def test_a_date_with_slashes_is_refused_in_the_users_language(
    client, auth, world, app, lang, message
):
    pid = world.participants["pa"]
    auth.login("coord_a")
    before = _planned_at(app, pid)
    answer = _plan(client, pid, lang, "12/05/2030")
    assert answer.status_code == 400
    assert message in html.unescape(answer.text)
    assert 'value="12/05/2030"' in answer.text  # what was typed stays
    assert _planned_at(app, pid) == before


@pytest.mark.parametrize(("lang", "hint"), [("nb", "dd.mm.åååå"), ("en", "yyyy-mm-dd")])
def test_date_fields_are_text_with_the_format_as_their_hint(client, auth, world, lang, hint):
    pid = world.participants["pa"]
    auth.login("coord_a")
    page = html.unescape(client.get(f"/participants/{pid}?lang={lang}").text)
    assert 'type="date"' not in page and 'type="time"' not in page
    day = re.search(r'<input[^>]*id="plan-day"[^>]*>', page).group(0)
    assert 'type="text"' in day and 'aria-describedby="plan-day-hint"' in day
    assert re.search(r'<p class="hint" id="plan-day-hint">[^<]*' + hint, page)
    withdraw = html.unescape(client.get(f"/participants/{pid}/withdraw?lang={lang}").text)
    field = re.search(r'<input[^>]*id="withdrawn_on"[^>]*>', withdraw).group(0)
    assert 'type="text"' in field
    today = re.search(r'value="([^"]+)"', field).group(1)
    assert parse_day(today)  # today's date, written the page's way
    assert ("." in today) == (lang == "nb")


# --- the language link after a refused form ---------------------------------------------------


def _switch(client, page: str):
    """Use the page's language control as a browser would: follow the link or send the form."""
    form = re.search(
        r'<form method="post" action="([^"]+)"[^>]*id="language-switch"[^>]*>(.*?)</form>',
        page,
        re.S,
    )
    if form is None:
        link = re.search(r'<a href="([^"]*)" hreflang="(?:en|nb)"', page)
        return client.get(html.unescape(link.group(1)) or "/")
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2))
    button = re.search(r'name="switch_language" value="(\w+)"', form.group(2))
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(html.unescape(name), []).append(html.unescape(value))
    data["switch_language"] = [button.group(1)]
    return client.post(html.unescape(form.group(1)), data=data)


def test_the_language_link_after_a_refused_plan_keeps_the_form(client, auth, world, app):
    pid = world.participants["pa"]
    auth.login("coord_a")
    before = _planned_at(app, pid)
    refused = _plan(client, pid, "nb", "31.02.2030", "13:30", **{"plan-place_kind": "cafe"})
    assert refused.status_code == 400
    switched = _switch(client, refused.text)
    assert switched.status_code != 405
    assert '<html lang="en">' in switched.text
    page = html.unescape(switched.text)
    assert 'value="31.02.2030"' in page and 'value="13:30"' in page
    assert re.search(r'<option selected value="cafe">|<option value="cafe" selected>', page)
    assert "Write the date as yyyy-mm-dd" in page  # the error, now in English
    # and back again, still nothing planned
    back = _switch(client, switched.text)
    assert '<html lang="nb">' in back.text and 'value="31.02.2030"' in back.text
    assert _planned_at(app, pid) == before


def test_a_language_switch_never_acts_on_the_form(client, auth, world, app):
    pid = world.participants["pa"]
    auth.login("coord_a")
    before = _planned_at(app, pid)
    # a valid plan sent with the switch button only shows the form again
    answer = _plan(client, pid, "en", "2030-11-23", switch_language="en")
    assert answer.status_code in (200, 400)
    assert 'value="2030-11-23"' in answer.text
    assert _planned_at(app, pid) == before


def test_the_language_link_after_a_refused_registration_keeps_what_was_typed(
    client, auth, world, app
):
    auth.login("coord_a")
    with app.app_context():
        case_a = db.session.scalar(select(Case.id).where(Case.code == "A"))
    refused = client.post(
        "/participants/new?lang=nb",
        data={
            "case_id": str(case_a),
            "preferred_language": "en",
            "interviewers": [],
            "name": "Ola Testmann",
            "phone": "abc",
        },
    )
    assert refused.status_code == 400
    switched = _switch(client, refused.text)
    assert switched.status_code == 400 and '<html lang="en">' in switched.text
    assert 'value="Ola Testmann"' in switched.text and 'value="abc"' in switched.text
    assert "Write the phone number with digits only." in switched.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Participant)) == 3


def test_the_language_link_on_the_identity_page_shows_it_again(client, auth, world, app):
    pid = world.participants["pa"]
    auth.login("coord_a")
    shown = client.post(f"/participants/{pid}/identity?lang=nb")
    assert shown.status_code == 200 and "Test Person" in shown.text
    switched = _switch(client, shown.text)
    assert switched.status_code == 200
    assert '<html lang="en">' in switched.text and "Test Person" in switched.text
    with app.app_context():
        looks = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "identity_viewed")
        )
    assert looks == 2  # each showing is a look, and audited


def test_an_error_page_answered_to_a_post_links_back_not_to_a_405(client, auth, world):
    auth.login("coord_a")
    refused = client.post(
        "/desk/alerts/ack?lang=nb",
        data={"kind": "distress_2", "key": "nothing"},
        headers={"Referer": "http://localhost/desk/alerts/?lang=nb"},
    )
    assert refused.status_code == 404
    switched = _switch(client, refused.text)
    assert switched.status_code == 200 and '<html lang="en">' in switched.text
