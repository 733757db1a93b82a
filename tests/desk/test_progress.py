"""Progress per case: exact counts from aggregate queries, the SVG charts, the desk pages."""

import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pypdf
import pytest
from sqlalchemy import event, select

from devdata.demo import seed_cases
from interview.desk import exports
from interview.desk.charts import Bar, bar_chart, share_chart
from interview.desk.progress import case_progress, oslo_week
from interview.participants.registry import register
from interview.store.content import load_all
from interview.store.extensions import db
from interview.store.models import (
    Case,
    Consent,
    ConsentFormVersion,
    GuideVersion,
    Interview,
    User,
    utcnow,
)
from interview.trust.passwords import hash_password
from tests.conftest import PASSWORD

SVG = "{http://www.w3.org/2000/svg}"
# Wednesday 25 March 2026, 11:00 in Oslo (CET, UTC+1); the week is Monday 23 to Sunday 29
NOW = datetime(2026, 3, 25, 10, 0)


class Store:
    """Builds participants, interviews and consents in a case, with the first guide and form."""

    def __init__(self):
        load_all(db.session)
        seed_cases()
        self.cases = {c.code: c for c in db.session.scalars(select(Case))}
        self.guide = db.session.scalars(select(GuideVersion)).first()
        self.form = db.session.scalars(select(ConsentFormVersion)).first()
        self.users: dict[str, User] = {}

    def user(self, username, role="peer", cases=("A",)):
        """Create a user working in the given cases."""
        user = User(
            username=username,
            role=role,
            cases=[self.cases[c] for c in cases],
            password_hash=hash_password(PASSWORD),
        )
        db.session.add(user)
        self.users[username] = user
        return user

    def participant(self, case, status, peers):
        """Register a participant with the given status and interviewers."""
        p = register(self.cases[case], "nb", [self.users[u] for u in peers], None)
        p.status = status
        return p

    def interview(self, p, status, planned_at, started=False):
        """Add an interview; a started one has started_at set as the events would fold it."""
        iv = Interview(
            participant=p,
            guide_version=self.guide,
            language="nb",
            status=status,
            planned_at=planned_at,
            started_at=planned_at if started else None,
        )
        db.session.add(iv)
        return iv

    def consent(self, p, at, kind="consent", **answers):
        """Add a consent (or withdrawal) record with the given item answers."""
        db.session.flush()
        db.session.add(
            Consent(
                participant_id=p.id,
                form_version_id=self.form.id,
                kind=kind,
                language="nb",
                answers={"participate": kind == "consent", **answers},
                method="paper",
                obtained_at=at,
            )
        )


def _build(app):
    """The store every count test reads; expected figures are written beside each record."""
    with app.app_context():
        s = Store()
        for name in ("peer1", "peer2"):
            s.user(name)
        s.user("peerb", cases=("B",))
        day = timedelta(days=1)
        yes = {"audio": True, "quotes": True, "recontact": True}

        a1 = s.participant("A", "invited", ["peer1"])
        s.interview(a1, "planned", NOW + day)  # Thursday: this week, not overdue

        a2 = s.participant("A", "consented", ["peer1", "peer2"])
        s.interview(a2, "in_progress", NOW - timedelta(hours=1), started=True)
        s.consent(a2, NOW - 2 * day, audio=True, quotes=False, recontact=True)

        a3 = s.participant("A", "interviewed", ["peer2"])
        s.interview(a3, "completed", NOW - 10 * day, started=True)
        s.consent(a3, NOW - 10 * day, audio=False, quotes=True, recontact=True)

        a4 = s.participant("A", "withdrawn", ["peer1"])
        s.interview(a4, "stopped", NOW - 5 * day, started=True)
        s.interview(a4, "planned", NOW - day)  # would be overdue, but the participant withdrew
        s.consent(a4, NOW - 6 * day, **yes)
        s.consent(a4, NOW - 4 * day, kind="withdrawal")

        a5 = s.participant("A", "consented", ["peer2"])
        s.interview(a5, "paused", NOW - 3 * day, started=True)
        s.consent(a5, NOW - 4 * day, **yes)  # superseded by the newer consent below
        s.consent(a5, NOW - 3 * day, audio=False, quotes=False, recontact=False)

        a6 = s.participant("A", "invited", ["peer1"])
        s.interview(a6, "planned", NOW - 2 * day)  # Monday this week: this week and overdue
        s.interview(a6, "planned", NOW - 10 * day)  # last week: overdue only

        b1 = s.participant("B", "consented", ["peerb"])
        s.interview(b1, "planned", NOW + timedelta(hours=2))
        s.consent(b1, NOW - day, **yes)
        db.session.commit()
        return {c: s.cases[c].id for c in s.cases}


def test_counts_per_case_and_together(app):
    ids = _build(app)
    with app.app_context():
        result = case_progress(db.session, [ids["A"], ids["B"]], NOW)
    a, b = result.cases
    assert (a.code, b.code) == ("A", "B")
    # the withdrawn participant and their two interviews are not counted, only shown beside
    assert a.participants == {"invited": 2, "consented": 2, "interviewed": 1}
    assert (a.withdrawn, a.withdrawn_interviews) == (1, 2)
    assert a.interviews == {
        "planned": 3,
        "in_progress": 1,
        "paused": 1,
        "completed": 1,
        "stopped": 0,
    }
    assert a.by_interviewer == {
        "peer1": {"planned": 3, "in_progress": 1, "paused": 0, "completed": 0, "stopped": 0},
        "peer2": {"planned": 0, "in_progress": 1, "paused": 1, "completed": 1, "stopped": 0},
    }
    assert (a.planned_this_week, a.overdue) == (2, 2)
    assert a.consent_items.consents == 3
    assert a.consent_items.given == {"audio": 1, "quotes": 1, "recontact": 2}

    assert b.participants == {"invited": 0, "consented": 1, "interviewed": 0}
    assert (b.withdrawn, b.withdrawn_interviews) == (0, 0)
    assert b.interviews["planned"] == 1 and b.interview_total == 1
    assert b.by_interviewer == {
        "peerb": {"planned": 1, "in_progress": 0, "paused": 0, "completed": 0, "stopped": 0}
    }
    assert (b.planned_this_week, b.overdue) == (1, 0)
    assert (b.consent_items.consents, b.consent_items.given["audio"]) == (1, 1)

    total = result.total
    assert total.code is None
    assert total.participants == {"invited": 2, "consented": 3, "interviewed": 1}
    assert total.participant_total == 6 and total.interview_total == 7
    assert (total.withdrawn, total.withdrawn_interviews) == (1, 2)
    assert (total.planned_this_week, total.overdue) == (3, 2)
    assert total.consent_items.consents == 4
    assert total.consent_items.given == {"audio": 2, "quotes": 2, "recontact": 3}
    assert set(total.by_interviewer) == {"peer1", "peer2", "peerb"}

    # the list under the figures: this week's and overdue planned interviews, oldest first
    assert [(p.case_code, p.planned_at, p.overdue) for p in result.planned] == [
        ("A", NOW - timedelta(days=10), True),
        ("A", NOW - timedelta(days=2), True),
        ("B", NOW + timedelta(hours=2), False),
        ("A", NOW + timedelta(days=1), False),
    ]
    assert (result.week_start.isoformat(), result.week_end.isoformat()) == (
        "2026-03-23",
        "2026-03-29",
    )


def test_only_the_asked_cases_are_counted(app):
    ids = _build(app)
    with app.app_context():
        only_b = case_progress(db.session, [ids["B"]], NOW)
        nothing = case_progress(db.session, [ids["C"]], NOW)
    assert [c.code for c in only_b.cases] == ["B"]
    assert only_b.total.participant_total == 1
    assert {p.case_code for p in only_b.planned} == {"B"}
    assert nothing.total.participant_total == 0
    assert nothing.total.consent_items.consents == 0
    assert nothing.planned == []


def test_oslo_week_follows_oslo_midnight_and_the_clock_change():
    # Sunday 29 March 2026, 23:30 in Oslo (summer time began at 02:00 that night)
    monday, start, end = oslo_week(datetime(2026, 3, 29, 21, 30))
    assert monday.isoformat() == "2026-03-23"
    assert start == datetime(2026, 3, 22, 23, 0)  # Monday 00:00 CET
    assert end == datetime(2026, 3, 29, 22, 0)  # next Monday 00:00 CEST
    assert end - start == timedelta(hours=167)
    monday, start, _end = oslo_week(datetime(2026, 3, 29, 22, 0))
    assert monday.isoformat() == "2026-03-30" and start == datetime(2026, 3, 29, 22, 0)


@pytest.mark.parametrize(
    ("now", "this_week", "overdue"),
    [
        # Sunday 23:30 in Oslo: the week still runs until 22:00 UTC
        (datetime(2026, 3, 29, 21, 30), {"sun_late", "mon_first"}, {"sun_prev", "mon_first"}),
        # Monday 00:30 in Oslo: a new week; Sunday's late interview is now overdue only
        (
            datetime(2026, 3, 29, 22, 30),
            {"mon_next"},
            {"sun_prev", "mon_first", "sun_late", "mon_next"},
        ),
    ],
)
def test_this_week_and_overdue_around_the_oslo_week_boundary(app, now, this_week, overdue):
    planned = {
        "sun_prev": datetime(2026, 3, 22, 22, 59),  # Sunday 22 March 23:59 in Oslo
        "mon_first": datetime(2026, 3, 22, 23, 0),  # Monday 23 March 00:00 in Oslo
        "sun_late": datetime(2026, 3, 29, 21, 45),  # Sunday 29 March 23:45 in Oslo
        "mon_next": datetime(2026, 3, 29, 22, 0),  # Monday 30 March 00:00 in Oslo
    }
    with app.app_context():
        s = Store()
        s.user("peer1")
        codes = {}
        for key, at in planned.items():
            p = s.participant("A", "invited", ["peer1"])
            s.interview(p, "planned", at)
            codes[p.code] = key
        db.session.commit()
        result = case_progress(db.session, [s.cases["A"].id], now)
    assert result.total.planned_this_week == len(this_week)
    assert result.total.overdue == len(overdue)
    listed = {codes[p.participant_code]: p.overdue for p in result.planned}
    assert set(listed) == this_week | overdue
    assert {k for k, late in listed.items() if late} == overdue


# --- the charts, as pure functions ---------------------------------------------------------


def test_bar_chart_is_well_formed_labelled_and_escaped():
    svg = bar_chart(
        [Bar("invited", 'Invited <&> "x"', 3), Bar("withdrawn", "Withdrawn", 0)],
        title="Participants & status",
        id_prefix="t1",
    )
    root = ET.fromstring(str(svg))
    assert root.tag == SVG + "svg"
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "t1-title t1-desc"
    assert root.find(SVG + "title").get("id") == "t1-title"
    assert root.find(SVG + "title").text == "Participants & status"
    assert root.find(SVG + "desc").text == 'Invited <&> "x": 3; Withdrawn: 0'
    texts = [t.text for t in root.iter(SVG + "text")]
    assert texts == ['Invited <&> "x"', "3", "Withdrawn", "0"]
    # a zero draws no bar, only its number
    assert len(list(root.iter(SVG + "rect"))) == 1
    assert "<&>" not in str(svg)


def test_small_multiples_share_one_scale():
    def width(svg):
        return float(ET.fromstring(str(svg)).find(SVG + "rect").get("width"))

    alone = bar_chart([Bar("invited", "Invited", 2)], title="t", id_prefix="a")
    shared = bar_chart([Bar("invited", "Invited", 2)], title="t", id_prefix="b", scale_max=4)
    assert width(shared) == pytest.approx(width(alone) / 2)


def test_share_chart_shows_given_of_total():
    svg = share_chart(
        [("Audio", 2), ("Quotes", 0)],
        5,
        title="Consent items",
        id_prefix="t2",
        value_text=lambda given, total: f"{given} of {total}",
    )
    root = ET.fromstring(str(svg))
    texts = [t.text for t in root.iter(SVG + "text")]
    assert texts == ["Audio", "2 of 5", "Quotes", "0 of 5"]
    # one track per item and one filled part for the non-zero item
    rects = list(root.iter(SVG + "rect"))
    assert len(rects) == 3
    track, filled = float(rects[0].get("width")), float(rects[1].get("width"))
    assert filled == pytest.approx(track * 2 / 5)


def test_share_chart_with_no_consents_draws_empty_tracks():
    svg = share_chart(
        [("Audio", 0)], 0, title="t", id_prefix="t3", value_text=lambda g, t: f"{g}/{t}"
    )
    root = ET.fromstring(str(svg))
    assert [t.text for t in root.iter(SVG + "text")] == ["Audio", "0/0"]


# --- the pages ---------------------------------------------------------------------------------


def _svg_texts(html: str, prefix: str) -> list[str]:
    match = re.search(rf'<svg [^>]*aria-labelledby="{prefix}-title[^"]*".*?</svg>', html, re.S)
    assert match, f"no chart {prefix} on the page"
    root = ET.fromstring(match.group(0))
    return [t.text for t in root.iter(SVG + "text")]


def _add_to_b(app, n):
    with app.app_context():
        case_b = db.session.scalars(select(Case).where(Case.code == "B")).one()
        guide = db.session.scalars(select(GuideVersion)).first()
        for _ in range(n):
            p = register(case_b, "nb", [], None)
            p.status = "withdrawn"
            db.session.add(
                Interview(participant=p, guide_version=guide, language="nb", planned_at=utcnow())
            )
        db.session.commit()


def test_coordinator_sees_own_case_figures_only(client, auth, world, app):
    _add_to_b(app, 7)
    auth.login("coord_a")
    page = client.get("/desk/?lang=en")
    assert page.status_code == 200
    html = page.text
    assert "Progress per FACT team" in html
    # the world's case A: two invited participants, two planned interviews; nothing of B
    assert _svg_texts(html, "all-participants") == [
        "Invited",
        "2",
        "Consented",
        "0",
        "Interviewed",
        "0",
    ]
    assert _svg_texts(html, "all-interviews")[:2] == ["Planned", "2"]
    with app.app_context():
        case_b = db.session.scalars(select(Case).where(Case.code == "B")).one()
        case_a = db.session.scalars(select(Case).where(Case.code == "A")).one()
        assert case_b.name_en not in html
        assert case_a.name_en in html
    assert "/desk/cases/B" not in html
    one = client.get("/desk/cases/A?lang=en")
    assert one.status_code == 200
    assert _svg_texts(one.text, "all-participants")[:2] == ["Invited", "2"]


def test_case_of_another_coordinator_or_unknown_is_404_with_a_message(client, auth, world):
    auth.login("coord_a")
    for path in ("/desk/cases/B", "/desk/cases/ZZ"):
        page = client.get(path + "?lang=en")
        assert page.status_code == 404
        assert "There is no FACT team with that code among the teams you coordinate." in page.text


def test_admin_sees_every_case(client, auth, world, app):
    _add_to_b(app, 7)
    auth.login("admin")
    html = client.get("/desk/?lang=en").text
    # A: 2 invited; B: 1 invited + 7 withdrawn, who are not counted but said beside
    assert _svg_texts(html, "all-participants") == [
        "Invited",
        "3",
        "Consented",
        "0",
        "Interviewed",
        "0",
    ]
    assert "7 participants have withdrawn, with 7 interviews." in " ".join(html.split())
    for code in ("A", "B", "C"):
        assert f"/desk/cases/{code}" in html
    assert _svg_texts(html, "case-B-participants")[-2:] == ["Interviewed", "0"]
    assert re.search(r'<title id="case-B-participants-title">FACT team B: Participants by', html)
    assert client.get("/desk/cases/C").status_code == 200


def test_peer_is_refused_and_anonymous_sent_to_login(client, auth, world):
    assert client.get("/desk/").status_code == 302
    assert "/login" in client.get("/desk/cases/A").headers["Location"]
    auth.login("peer_a")
    assert client.get("/desk/").status_code == 403
    assert client.get("/desk/cases/A").status_code == 403


def test_page_in_norwegian_with_tables_and_svg(client, auth, world):
    auth.login("coord_a")
    html = client.get("/desk/?lang=nb").text
    assert '<html lang="nb">' in html
    assert re.search(r"<h2[^>]*>Deltakere</h2>", html)
    assert re.search(r"<h2[^>]*>Intervjuer</h2>", html)
    assert "Planlagt" in html
    assert "Deltakere som har trukket seg, telles ikke" in " ".join(html.split())
    assert _svg_texts(html, "all-participants")[:2] == ["Invitert", "2"]
    assert html.count('role="img"') == 3
    assert '<th scope="row">Invitert</th>' in html
    assert "<caption>" in html


def test_nav_link_for_coordinators_only(client, auth, world):
    auth.login("coord_a")
    assert 'href="/desk/"' in client.get("/participants/").text
    auth.logout()
    auth.login("peer_a")
    assert 'href="/desk/"' not in client.get("/interviews/").text


def _add_participants(app, n):
    """Add n participants to case A, each with two interviewers, an interview and a consent."""
    with app.app_context():
        case_a = db.session.scalars(select(Case).where(Case.code == "A")).one()
        guide = db.session.scalars(select(GuideVersion)).first()
        form = db.session.scalars(select(ConsentFormVersion)).first()
        peers = list(
            db.session.scalars(select(User).where(User.username.in_(["peer_a", "peer_a2"])))
        )
        statuses = ("planned", "in_progress", "paused", "completed", "stopped")
        for i in range(n):
            p = register(case_a, "nb", peers, None)
            p.status = ("invited", "consented", "interviewed", "withdrawn")[i % 4]
            db.session.add(
                Interview(
                    participant=p,
                    guide_version=guide,
                    language="nb",
                    status=statuses[i % 5],
                    planned_at=utcnow() + timedelta(hours=i - n // 2),
                )
            )
            db.session.flush()
            db.session.add(
                Consent(
                    participant_id=p.id,
                    form_version_id=form.id,
                    language="nb",
                    answers={"participate": True, "audio": i % 2 == 0, "quotes": True},
                    method="paper",
                )
            )
        db.session.commit()


def _statements(app, client, path) -> int:
    count = 0

    def _count(*_args):
        nonlocal count
        count += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", _count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", _count)
    return count


@pytest.mark.parametrize("path", ["/desk/", "/desk/cases/A"])
def test_statements_do_not_grow_with_participants(client, auth, world, app, path):
    auth.login("coord_a")
    client.get(path)  # the first page after login may remember the language, and so on
    _add_participants(app, 3)
    few = _statements(app, client, path)
    _add_participants(app, 37)
    many = _statements(app, client, path)
    assert few == many, (few, many)
    assert few < 20


@pytest.mark.parametrize("path", ["/desk/?lang=en", "/desk/cases/A?lang=en"])
def test_a_one_team_coordinator_sees_this_week_and_overdue_with_the_interview(
    client, auth, world, app, path
):
    with app.app_context():
        interview = db.session.get(Interview, world.interviews["pa"])
        interview.planned_at = utcnow() - timedelta(hours=2)
        db.session.commit()
        code = interview.participant.code
    auth.login("coord_a")
    html = client.get(path).text
    week = html.split('id="h-week"', 1)[1]
    assert "Planned this week" in week and "Overdue" in week
    assert code in week
    assert '<span class="badge badge-overdue">Overdue</span>' in week


# --- one definition of who is counted, across the desk, the report and the exports ----------


def _totals(text: str) -> list[int]:
    """Return the numbers after "Total" in the participants' and interviews' tables."""
    return [int(n) for n in re.findall(r"Total\s*(\d+)", text)[:2]]


@pytest.mark.parametrize("path", ["/desk/", "/desk/cases/A"])
def test_desk_report_and_exports_count_the_same(client, auth, world, app, path):
    with app.app_context():
        case_a = db.session.scalars(select(Case).where(Case.code == "A")).one()
        guide = db.session.scalars(select(GuideVersion)).first()
        for n in range(2):
            p = register(case_a, "nb", [], None)
            p.status = "withdrawn"
            for _ in range(n + 1):
                db.session.add(
                    Interview(participant=p, guide_version=guide, language="nb", planned_at=NOW)
                )
        db.session.commit()
        counted = exports.store_counts(db.session, [case_a.id])
    # the world's case A: two participants (pa, pa2) with one interview each are counted
    assert (counted["participants"], counted["interviews"]) == (2, 2)
    withdrawn = "2 participants have withdrawn, with 3 interviews."

    auth.login("coord_a")
    page = client.get(f"{path}?lang=en").text
    words = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert _totals(words) == [2, 2]
    assert "Participants who have withdrawn are not counted" in words and withdrawn in words

    report = path.rstrip("/") + "/report/en.pdf"
    pdf = client.get(report)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = " ".join(
        " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.data)).pages).split()
    )
    assert _totals(text) == [2, 2]
    assert "Participants who have withdrawn are not counted" in text and withdrawn in text
    # the withdrawn are never inside a total: no "Withdrawn" row in the status tables
    assert not re.search(r"Withdrawn \d", text.replace("Withdrawn, not counted", ""))

    body = json.loads(client.get("/desk/exports/export.json?case=A").data)
    (case,) = body["cases"]
    interviews = sum(len(p["interviews"]) for p in case["participants"])
    assert (len(case["participants"]), interviews) == (2, 2)
