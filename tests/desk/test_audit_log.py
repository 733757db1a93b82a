"""The audit log screen: which rows each person sees (the team rule), the filters and their
refusals, pages, the CSV for a data protection officer, and that looking is itself audited."""

import csv
import io
import time
from datetime import date, datetime, timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import select, text

from interview.desk import audit_log
from interview.desk.audit_log import FilterError, Filters, parse_filters
from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Case,
    Consent,
    ConsentFormVersion,
    Device,
    Participant,
    User,
)
from tests.helpers import consented_interview

T0 = datetime(2026, 11, 20, 9, 0)


def _row(at, action, obj_type=None, obj_id=None, user_id=None, **detail) -> AuditEvent:
    row = AuditEvent(
        at=at,
        action=action,
        object_type=obj_type,
        object_id=None if obj_id is None else str(obj_id),
        user_id=user_id,
        detail=detail,
    )
    db.session.add(row)
    return row


@pytest.fixture
def log(app, world):
    """One row of every kind of object, about team A, team B, or no team."""
    with app.app_context():
        u = world.users
        pa, pb = world.participants["pa"], world.participants["pb"]
        ia, ib = world.interviews["pa"], world.interviews["pb"]
        db.session.add(Device(id="dev-a", user_id=u["peer_a"]))
        db.session.add(Device(id="dev-b", user_id=u["peer_b"]))
        rows = {
            "a_participant": _row(T0, "identity_viewed", "participant", pa, u["admin"]),
            "b_participant": _row(T0, "identity_viewed", "participant", pb, u["coord_b"]),
            "a_interview": _row(T0, "interview_planned", "interview", ia, u["coord_a"]),
            "b_interview": _row(T0, "interview_planned", "interview", ib, u["coord_b"]),
            "a_case": _row(T0, "progress_report_printed", "case", "A", u["admin"], language="nb"),
            "b_case": _row(T0, "progress_report_printed", "case", "B", u["coord_b"]),
            "a_login": _row(T0, "login", "user", u["peer_a"], u["peer_a"]),
            "b_login": _row(T0, "login", "user", u["peer_b"], u["peer_b"]),
            "admin_login": _row(T0, "login", "user", u["admin"], u["admin"]),
            "a_sync": _row(T0, "sync_batch", "device", "dev-a", u["peer_a"], applied=3),
            "b_sync": _row(T0, "sync_batch", "device", "dev-b", u["peer_b"], applied=1),
            "a_theme": _row(T0, "theme_added", "theme", 1, u["coord_a"], key="housing"),
            "b_export": _row(T0, "export", None, None, u["coord_b"], format="csv", cases=["B"]),
            "server": _row(T0, "backup_taken", None, None, None, backup="b1", keys_copied=False),
            # a coordinator of A looked at a participant of B: B's row, never A's
            "a_user_b_thing": _row(T0, "identity_viewed", "participant", pb, u["coord_a"]),
        }
        for i, row in enumerate(rows.values()):
            row.at = T0 + timedelta(minutes=i)
        db.session.commit()
        return {name: row.id for name, row in rows.items()}


def _visible(app, username: str) -> set[int]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        scope = None if user.role == "admin" else [c.id for c in user.cases]
        rows = db.session.execute(audit_log.query_rows(scope, Filters())).all()
        return {r.id for r in rows}


A_ROWS = {
    "a_participant",
    "a_interview",
    "a_case",
    "a_login",
    "a_sync",
    "a_theme",
}
B_ROWS = {
    "b_participant",
    "b_interview",
    "b_case",
    "b_login",
    "b_sync",
    "b_export",
    "a_user_b_thing",
}


def test_team_rule_a_coordinator_sees_their_teams_rows_only(app, log):
    assert _visible(app, "coord_a") == {log[n] for n in A_ROWS}
    assert _visible(app, "coord_b") == {log[n] for n in B_ROWS}
    # nothing is seen by both, and the admin sees every row, the server's included
    assert not (_visible(app, "coord_a") & _visible(app, "coord_b"))
    assert _visible(app, "admin") == set(log.values())


def test_team_rule_of_a_consent_and_of_a_user_in_two_teams(app, world, log):
    with app.app_context():
        case_b = db.session.scalar(select(Case).where(Case.code == "B"))
        peer_a = db.session.get(User, world.users["peer_a"])
        consent = Consent(
            participant_id=world.participants["pb"],
            form_version_id=db.session.scalar(select(ConsentFormVersion.id)),
            language="nb",
            answers={},
            method="paper",
        )
        db.session.add(consent)
        db.session.flush()
        row = _row(T0, "consent_record_downloaded", "consent", consent.id, None)
        db.session.commit()
        about_consent = row.id
        # the rule follows the teams a person works in now
        peer_a.cases = [*peer_a.cases, case_b]
        db.session.commit()
    assert about_consent in _visible(app, "coord_b") and about_consent not in _visible(
        app, "coord_a"
    )
    assert log["a_login"] in _visible(app, "coord_b")


def test_filters_by_who_what_when_and_participant(app, world, log):
    with app.app_context():
        code_b = db.session.get(Participant, world.participants["pb"]).code
        scope = None

        def ids(**kwargs) -> set[int]:
            filters = Filters(**kwargs)
            return {r.id for r in db.session.execute(audit_log.query_rows(scope, filters))}

        assert ids(who="coord_b") == {
            log[n] for n in ("b_participant", "b_interview", "b_case", "b_export")
        }
        assert ids(action="login") == {log["a_login"], log["b_login"], log["admin_login"]}
        assert ids(code=code_b) == {log["b_participant"], log["b_interview"], log["a_user_b_thing"]}
        assert ids(code="Z-ZZZZ") == set()
        # dates are Oslo days: 09:00 UTC on 20 November is that day in Oslo
        assert ids(date_from=date(2026, 11, 20), date_to=date(2026, 11, 20)) == set(log.values())
        assert ids(date_from=date(2026, 11, 21)) == set()
        assert ids(date_to=date(2026, 11, 19)) == set()
        # a coordinator's filter never reaches past their teams
        scope = [db.session.scalar(select(Case.id).where(Case.code == "A"))]
        assert ids(code=code_b) == set()
        assert ids(who="coord_a") == {log["a_interview"], log["a_theme"]}


def test_pages_are_newest_first_stable_and_bounded(app, world):
    with app.test_request_context():
        # 120 rows, many at the very same moment: ties are ordered by id
        for i in range(120):
            _row(T0 + timedelta(minutes=i // 7), "login", "user", world.users["admin"], None)
        db.session.commit()
        pages = [
            audit_log.page_of(db.session, None, Filters(action="login", page=n)) for n in (1, 2, 3)
        ]
        assert [p.pages for p in pages] == [3, 3, 3] and pages[0].total == 120
        assert [len(p.entries) for p in pages] == [50, 50, 20]
        order = [(e.at, e.id) for p in pages for e in p.entries]
        assert order == sorted(order, reverse=True) and len(set(order)) == 120
        with pytest.raises(FilterError):
            audit_log.page_of(db.session, None, Filters(action="login", page=4))


def test_the_dates_are_read_in_both_orders(app):
    with app.test_request_context():
        filters = parse_filters({"from": "20.11.2026", "to": "2026-11-21"})
    assert (filters.date_from, filters.date_to) == (date(2026, 11, 20), date(2026, 11, 21))


@pytest.mark.parametrize(
    "args",
    [
        {"from": "2026-13-01"},
        {"from": "20261101"},
        {"to": "2026-02-30"},
        {"from": "1999-12-31"},
        {"from": "11/20/2026"},  # slashes: 20 November or 11 February?
        {"from": "2026-11-20", "to": "2026-11-19"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "abc"},
        {"page": "9" * 40},
        {"who": "x" * 101},
        {"who": "kari nordmann"},
        {"code": "not a code"},
        {"action": "DROP TABLE"},
        {"who": "ab\ud800"},
        {"code": "A-\x00"},
        {"action": "login\ufffd"},
    ],
)
def test_bad_filters_are_refused_with_a_message(app, args):
    with app.test_request_context():
        for lang in ("en", "nb"):
            with force_locale(lang), pytest.raises(FilterError) as refused:
                parse_filters(args)
            assert refused.value.message.strip()


def test_good_filters_are_read(app):
    with app.test_request_context():
        filters = parse_filters(
            {
                "who": " Coord_A ",
                "action": "login",
                "from": "2026-11-01",
                "to": "2026-11-30",
                "code": "a-7k3q",
                "page": "2",
            }
        )
    assert filters == Filters(
        "coord_a", "login", date(2026, 11, 1), date(2026, 11, 30), "A-7K3Q", 2
    )
    assert filters.args(3)["page"] == "3" and "page" not in filters.args()


def test_detail_shows_only_named_keys_with_plain_values():
    assert audit_log.safe_detail("export", {"format": "csv", "cases": ["A"], "note": "x"}) == {
        "cases": ["A"],
        "format": "csv",
    }
    # a sentence is never shown, even under a named key; nor anything of an unknown action
    assert audit_log.safe_detail("theme_added", {"key": "Kari Nordmann 912 34 567"}) == {}
    assert audit_log.safe_detail("consent_record_downloaded", {"sha256": "ab"}) == {}
    assert audit_log.safe_detail("export", {"counts": {"notes": 3, "text": "x"}}) == {
        "counts": {"notes": 3}
    }


def test_audit_page_lists_rows_and_records_the_view(client, auth, app, world, log):
    auth.login("coord_a")
    page = client.get("/desk/audit/?lang=en")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Audit log</h1>" in html
    assert "Name and contact details viewed" in html and "Theme added" in html
    assert 'href="/desk/audit/"' in html  # the navigation names the screen
    with app.app_context():
        code_b = db.session.get(Participant, world.participants["pb"]).code
        code_a = db.session.get(Participant, world.participants["pa"]).code
        viewed = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "audit_log_viewed")
        ).one()
        assert viewed.user_id == world.users["coord_a"]
        assert viewed.detail["page"] == 1 and viewed.detail["filters"] == []
    assert code_a in html and code_b not in html
    assert "Backup taken</th>" not in html
    # nb: the same page in Bokmål, times in Oslo
    nb = client.get("/desk/audit/?lang=nb").text
    assert "<h1>Revisjonslogg</h1>" in nb
    assert "20. nov. 2026" in nb and "10:04" in nb


def test_audit_filters_by_participant_and_records_it(client, auth, app, world, log):
    with app.app_context():
        code_a = db.session.get(Participant, world.participants["pa"]).code
        code_b = db.session.get(Participant, world.participants["pb"]).code
    auth.login("coord_a")
    page = client.get(f"/desk/audit/?lang=en&code={code_a}")
    assert page.status_code == 200 and "2 entries" in page.text
    other = client.get(f"/desk/audit/?lang=en&code={code_b}")
    assert other.status_code == 200 and "0 entries" in other.text
    with app.app_context():
        views = list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "audit_log_viewed")
                .order_by(AuditEvent.id)
            )
        )
    assert views[0].detail["code"] == code_a and views[0].detail["filters"] == ["code"]
    # a code of another team is not written down: the row would tell that it exists
    assert "code" not in views[1].detail


@pytest.mark.parametrize(
    ("query", "lang", "words"),
    [
        ("from=2026-02-30", "en", "Write the from date as yyyy-mm-dd, for example 2026-11-23."),
        ("from=2026-02-30", "nb", "Skriv fra-datoen som dd.mm.åååå, for eksempel 23.11.2026."),
        ("page=99", "en", "There is no such page."),
        ("page=99", "nb", "Den siden finnes ikke."),
        ("who=" + "x" * 5000, "en", "A filter is too long."),
        # bytes that are no UTF-8 (a lone surrogate's) stay as they were sent, and are no name
        ("who=%ED%A0%80", "en", "A username has only letters a-z, digits, dots, dashes"),
        ("code=%C2%80", "nb", "Et filter inneholder tegn som ikke kan brukes."),
        ("who=%ED%A0%80", "nb", "Et brukernavn har bare bokstavene a–z, sifre"),
        ("code=%ED%A0%80", "en", "Write a participant code like A-7K3Q."),
        # a NUL is refused before any view, as everywhere in the app
        ("code=%00", "nb", "Noe i forespørselen var ikke riktig."),
    ],
)
def test_bad_filters_answer_400_in_the_users_language(client, auth, world, query, lang, words):
    auth.login("coord_a")
    client.get(f"/?lang={lang}")
    page = client.get(f"/desk/audit/?{query}")
    assert page.status_code == 400
    assert words in page.text
    assert (
        client.get(f"/desk/audit/audit-log.csv?{query.replace('page=99', 'to=x')}").status_code
        == 400
    )


def test_csv_export_for_the_dpo(client, auth, app, world, log):
    auth.login("coord_b")
    response = client.get("/desk/audit/audit-log.csv?action=identity_viewed")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "text/csv"
    assert 'filename="audit-log-' in response.headers["Content-Disposition"]
    body = response.data
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == list(audit_log.CSV_COLUMNS)
    with app.app_context():
        code_b = db.session.get(Participant, world.participants["pb"]).code
    assert [r[3] for r in rows[1:]] == ["identity_viewed", "identity_viewed"]
    assert {r[6] for r in rows[1:]} == {code_b}
    assert rows[1][1].endswith("Z")  # UTC, as the other exports write times
    with app.app_context():
        exported = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "audit_log_exported")
        ).one()
        assert exported.detail["rows"] == 2 and exported.detail["what"] == "identity_viewed"
        assert exported.user_id == world.users["coord_b"]


def test_csv_export_reads_past_one_batch(app, world):
    with app.app_context():
        for i in range(audit_log.EXPORT_BATCH + 30):
            _row(T0 + timedelta(seconds=i // 3), "login", "user", world.users["peer_a"], None)
        db.session.commit()
        case_a = db.session.scalar(select(Case.id).where(Case.code == "A"))
        body = b"".join(audit_log.csv_chunks(db.session, [case_a], Filters()))
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[1:]
    assert len(rows) == audit_log.EXPORT_BATCH + 30
    assert len({r[0] for r in rows}) == len(rows)


def test_peers_have_no_audit_log(client, auth, world):
    auth.login("peer_a")
    assert client.get("/desk/audit/").status_code == 403
    assert client.get("/desk/audit/audit-log.csv").status_code == 403
    assert 'href="/desk/audit/"' not in client.get("/interviews/").text


def test_no_content_reaches_the_page(client, auth, app, world):
    iid = consented_interview(client, world)
    client.post(f"/interviews/{iid}/stop", data={"reason": "other", "comment": "Rolig nå."})
    auth.logout()
    auth.login("admin")
    html = client.get("/desk/audit/?lang=en").text
    assert "Rolig" not in html and "P-123" not in html
    assert "Consent recorded" in html


def test_coordinator_query_walks_the_index_on_at(app, world):
    """At the benchmark's scale the page reads down the index on `at` (SQLite's plan)."""
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("the plan is SQLite's")
        case_a = db.session.scalar(select(Case.id).where(Case.code == "A"))
        statement = audit_log.query_rows([case_a], Filters()).limit(audit_log.PAGE_SIZE)
        compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
        plan = " | ".join(
            str(r[-1]) for r in db.session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
        assert "USING INDEX ix_audit_event_at" in plan, plan
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
        # a participant's rows are found by their object, never by reading the whole log
        code = db.session.get(Participant, world.participants["pa"]).code
        by_code = audit_log.query_rows(None, Filters(code=code))
        compiled = by_code.compile(db.engine, compile_kwargs={"literal_binds": True})
        plan = " | ".join(
            str(r[-1]) for r in db.session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
        assert "ix_audit_event_object" in plan, plan


def test_a_page_of_a_large_log_is_quick(app, world):
    """100,000 rows, most about other teams: a coordinator's first and a deep page."""
    with app.app_context():
        users = list(world.users.values())
        pids = list(world.participants.values())
        table = AuditEvent.__table__
        rows = []
        for i in range(100_000):
            kind = i % 4
            rows.append(
                {
                    "at": T0 - timedelta(seconds=i),
                    "user_id": users[i % len(users)],
                    "action": ("login", "identity_viewed", "sync_batch", "export")[kind],
                    "object_type": ("user", "participant", "device", None)[kind],
                    "object_id": (str(users[i % len(users)]), pids[i % 3], "dev-x", None)[kind],
                    "detail": {},
                }
            )
        db.session.execute(table.insert(), rows)
        db.session.commit()
        case_a = db.session.scalar(select(Case.id).where(Case.code == "A"))
        started = time.perf_counter()
        first = audit_log.page_of(db.session, [case_a], Filters())
        deep = audit_log.page_of(db.session, [case_a], Filters(page=first.pages))
        spent = time.perf_counter() - started
    assert len(first.entries) == 50 and deep.entries
    assert spent < 5, spent
