"""`flask seed-scale`: fictional data at benchmark size, as the models and the flow write it."""

import json
import re
from datetime import datetime, timedelta

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import func, select

from devdata.scale import ScaleError, seed_scale
from devdata.words import SENTENCES, _Texts
from interview import create_app
from interview.store.content import guide_of, load_all
from interview.store.extensions import db
from interview.store.identifiers import warning_kinds
from interview.store.models import (
    AlertAck,
    Case,
    CaseStaffTheme,
    Consent,
    Debrief,
    Device,
    GuideVersion,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    UpdateLog,
    User,
    note_themes,
    participant_interviewers,
    user_cases,
    utcnow,
)
from interview.sync.merge import fold_events
from tests.conftest import make_config

SMALL = dict(cases=3, participants=30, notes=500)
# a Wednesday noon in Oslo: fixed, so that two runs can be compared row for row
NOW = datetime(2026, 11, 25, 11, 0)
TABLES = {
    "cases": Case,
    "staff_themes": CaseStaffTheme,
    "peers": User,
    "participants": Participant,
    "interviews": Interview,
    "consents": Consent,
    "events": InterviewEvent,
    "debriefs": Debrief,
    "notes": Note,
    "note_themes": note_themes,
    "devices": Device,
    "alert_acks": AlertAck,
    "update_log": UpdateLog,
}


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def seeded(app, world):
    """The world (teams A-C, coord_a, peer_a) plus three generated teams; the counts returned."""
    with app.app_context():
        before = {name: _count(model) for name, model in TABLES.items()}
        counts = seed_scale(
            db.session, **SMALL, coordinator="coord_a", peer="peer_a", peer_participants=5
        )
        db.session.commit()
        after = {name: _count(model) for name, model in TABLES.items()}
    return counts, before, after


def _generated(stmt):
    """Limit a select over participants to the generated teams."""
    return stmt.where(Participant.code.like("S%"))


def test_counts_are_what_the_store_holds(seeded):
    counts, before, after = seeded
    assert counts["cases"] == 3
    assert counts["participants"] == 30
    assert counts["notes"] == 500
    assert counts["peers"] == 3 * 4
    for name in TABLES:
        assert after[name] - before[name] == counts.get(name, 0), name
    for name in ("interviews", "consents", "events", "debriefs", "note_themes", "update_log"):
        assert counts[name] > 0, name


def test_sealed_words_open_through_the_models(app, seeded):
    with app.app_context():
        notes = list(
            db.session.scalars(
                select(Note).join(Interview).join(Participant).where(Participant.code.like("S%"))
            )
        )
        assert len(notes) == 500
        for note in notes:
            assert note.text.strip()
            # what the model's hook would have stored for these words
            assert note.identifier_kinds == (" ".join(warning_kinds(note.text)) or None)
        in_conflict = [n for n in notes if n.conflict_enc is not None]
        assert in_conflict and all(n.conflict_text for n in in_conflict)
        comments = [e.comment for e in db.session.scalars(select(InterviewEvent)) if e.comment_enc]
        assert all(c.strip() for c in comments)
        reflections = [d.reflection for d in db.session.scalars(select(Debrief))]
        assert reflections and all(r.strip() for r in reflections)


def test_the_everyday_words_do_not_trip_the_identifier_guard():
    texts = _Texts(1)
    for (lang, bucket), pool in texts.pools.items():
        for text, kinds in pool:
            assert kinds == (" ".join(warning_kinds(text)) or None)
            if bucket == "flagged":
                assert kinds, text
            else:
                assert kinds is None, (lang, text)
    for lang in SENTENCES:
        for bucket in ("comment", "reflection"):
            for text in SENTENCES[lang][bucket]:
                assert warning_kinds(text) == [], text


def test_notes_belong_to_started_interviews_of_the_guide(app, seeded):
    with app.app_context():
        guide = guide_of(db.session.scalars(select(GuideVersion)).first())
        rows = db.session.execute(
            _generated(
                select(Note, Interview, Participant.status)
                .join(Interview, Interview.id == Note.interview_id)
                .join(Participant, Participant.id == Interview.participant_id)
            )
        ).all()
        for note, interview, status in rows:
            assert interview.started_at is not None
            assert interview.status in ("in_progress", "paused", "completed", "stopped")
            assert status != "withdrawn"
            assert interview.started_at <= note.created_at <= note.updated_at
            if interview.ended_at:
                assert note.created_at <= interview.ended_at
            question = guide.question(note.question_key)
            assert question is not None
            assert question.section_index <= interview.current_section
            assert note.polarity in (None, "inhibits", "promotes")
        tagged = db.session.scalar(select(func.count()).select_from(note_themes))
        assert tagged > 0


def test_interview_state_is_folded_from_its_events(app, seeded):
    with app.app_context():
        interviews = list(
            db.session.scalars(
                _generated(
                    select(Interview).join(Participant, Participant.id == Interview.participant_id)
                )
            )
        )
        by_status = {}
        for interview in interviews:
            by_status[interview.status] = by_status.get(interview.status, 0) + 1
            events = [(e.recorded_at, e.id, e.kind, e.data) for e in interview.events]
            if interview.participant.status == "withdrawn":
                assert not events and not interview.notes and not interview.debriefs
                continue
            if not events:
                assert interview.status == "planned" and interview.first_planned_at is None
                continue
            state = fold_events(events, interview.first_planned_at)
            assert state.status == interview.status
            assert state.started_at == interview.started_at
            assert state.ended_at == interview.ended_at
            assert state.expected_end_at == interview.expected_end_at
            assert state.planned_at == interview.planned_at
        assert {"planned", "completed"} <= set(by_status)

        participants = list(db.session.scalars(_generated(select(Participant))))
        statuses = {p.status for p in participants}
        assert {"invited", "interviewed"} <= statuses
        for p in participants:
            kinds = sorted(c.kind for c in p.consents)
            if p.status == "interviewed":
                assert any(i.status == "completed" for i in p.interviews)
                assert kinds == ["consent"]
            elif p.status == "consented":
                assert kinds == ["consent"] and p.consents[0].answers["participate"]
            elif p.status == "withdrawn":
                assert kinds == ["consent", "withdrawal"]
            else:
                assert kinds == []
            assert 1 <= len(p.interviewers) <= 2


def test_the_named_coordinator_and_peer_see_the_generated_data(app, seeded):
    with app.app_context():
        coord = db.session.scalar(select(User).where(User.username == "coord_a"))
        assert {"A", "S001", "S002", "S003"} <= {c.code for c in coord.cases}
        peer = db.session.scalar(select(User).where(User.username == "peer_a"))
        theirs = db.session.scalar(
            select(func.count())
            .select_from(participant_interviewers)
            .join(Participant, Participant.id == participant_interviewers.c.participant_id)
            .where(participant_interviewers.c.user_id == peer.id, Participant.code.like("S%"))
        )
        assert theirs == 5
        # generated peers have no usable password
        generated = db.session.scalars(select(User).where(User.username.like("s00%"))).all()
        assert len(generated) == 12 and all(u.role == "peer" for u in generated)
        assert all(not u.password_hash.startswith("$argon2") for u in generated)


def test_desk_pages_and_export_answer_after_seeding(app, client, auth, seeded):
    assert auth.login("coord_a").status_code == 302
    desk = client.get("/desk/")
    assert desk.status_code == 200
    assert "S001" in desk.get_data(as_text=True)
    assert client.get("/desk/cases/S002").status_code == 200
    assert client.get("/desk/alerts/").status_code == 200
    matrix = client.get("/desk/themes/matrix")
    assert matrix.status_code == 200
    assert "S003" in matrix.get_data(as_text=True)
    export = client.get("/desk/exports/export.json")
    assert export.status_code == 200
    body = export.get_data(as_text=True)
    json.loads(body)
    with app.app_context():
        live = db.session.scalars(
            _generated(
                select(Note.id)
                .join(Interview, Interview.id == Note.interview_id)
                .join(Participant, Participant.id == Interview.participant_id)
                .where(Note.deleted_at.is_(None))
            ).limit(20)
        ).all()
        withdrawn = db.session.scalars(
            _generated(select(Participant.code).where(Participant.status == "withdrawn"))
        ).all()
        one = db.session.scalar(_generated(select(Participant.id)).limit(1))
    assert live and all(note_id in body for note_id in live)
    assert all(code not in body for code in withdrawn)
    assert client.get(f"/participants/{one}").status_code == 200
    auth.logout()

    assert auth.login("peer_a").status_code == 302
    mine = client.get("/interviews/")
    assert mine.status_code == 200
    assert re.search(r"S00\d-[2-9A-HJ-NP-Z]{4}", mine.get_data(as_text=True))


def _dump(application) -> dict:
    """Every generated row in plain values (sealed words opened), for comparing two runs."""
    with application.app_context():
        out = {}
        out["participants"] = [
            (p.id, p.code, p.status, p.preferred_language, p.created_at)
            for p in db.session.scalars(select(Participant).order_by(Participant.id))
        ]
        out["interviews"] = [
            (i.id, i.participant_id, i.status, i.planned_at, i.started_at, i.ended_at, i.rev)
            for i in db.session.scalars(select(Interview).order_by(Interview.id))
        ]
        out["consents"] = [
            (c.id, c.kind, c.answers, c.obtained_at)
            for c in db.session.scalars(select(Consent).order_by(Consent.id))
        ]
        out["notes"] = [
            (n.id, n.interview_id, n.question_key, n.text, n.polarity, n.rev, n.created_at)
            for n in db.session.scalars(select(Note).order_by(Note.id))
        ]
        out["themes"] = sorted(db.session.execute(select(note_themes)).all())
        out["events"] = [
            (e.id, e.kind, e.data, e.comment, e.recorded_at)
            for e in db.session.scalars(select(InterviewEvent).order_by(InterviewEvent.id))
        ]
        out["debriefs"] = [
            (d.id, d.reflection, d.wellbeing, d.updated_at)
            for d in db.session.scalars(select(Debrief).order_by(Debrief.id))
        ]
        out["log"] = [
            tuple(r) for r in db.session.execute(select(UpdateLog.__table__).order_by("seq"))
        ]
        out["members"] = sorted(db.session.execute(select(user_cases)).all())
        return out


def _fresh_app(path, seed: int):
    path.mkdir()
    config = make_config(path)
    # three stores side by side: each its own SQLite files, also on CI's PostgreSQL pass, where
    # DATABASE_URL would give all three the one shared database (the last seed would win)
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path / 'casestore.db'}"
    config["SQLALCHEMY_BINDS"] = {"identity": f"sqlite:///{path / 'identity.db'}"}
    application = create_app(config)
    with application.app_context():
        db.drop_all()
        db.create_all()
        load_all(db.session)
        seed_scale(db.session, **SMALL, seed=seed, now=NOW)
        db.session.commit()
    return application


def _dispose(application) -> None:
    with application.app_context():
        db.session.remove()
        db.drop_all()
        for engine in db.engines.values():
            engine.dispose()


def test_the_same_seed_gives_the_same_data(tmp_path):
    first = _fresh_app(tmp_path / "first", seed=7)
    second = _fresh_app(tmp_path / "second", seed=7)
    other = _fresh_app(tmp_path / "other", seed=8)
    try:
        a, b, c = _dump(first), _dump(second), _dump(other)
        assert len(a["notes"]) == 500
        assert a == b
        assert a["notes"] != c["notes"]
    finally:
        for application in (first, second, other):
            _dispose(application)


def test_it_needs_the_guides_and_refuses_bad_numbers(app):
    with app.app_context():
        with pytest.raises(ScaleError, match="guides load"):
            seed_scale(db.session, **SMALL)
        load_all(db.session)
        with pytest.raises(ScaleError, match="prefix"):
            seed_scale(db.session, **SMALL, prefix="S1")
        with pytest.raises(ScaleError, match="8 characters"):
            seed_scale(db.session, cases=100_000, participants=0, notes=0, prefix="ABCD")
        with pytest.raises(ScaleError, match="participants"):
            seed_scale(db.session, cases=1, participants=0, notes=10)


def test_a_single_participant_still_holds_the_notes(app):
    with app.app_context():
        load_all(db.session)
        counts = seed_scale(db.session, cases=1, participants=1, notes=40, now=NOW)
        db.session.commit()
        assert counts["notes"] == 40
        assert _count(Note) == 40


# --- the command ------------------------------------------------------------------------


@pytest.fixture
def cli(app, runner):
    """Run a command the way `flask ...` runs it (FlaskGroup pushes the app context)."""
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def invoke(args):
        return runner.invoke(cli=group, args=args)

    return invoke


def _passwords(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("admin", "koordinator", "kari", "jonas", "amina"):
            found[parts[0]] = parts[1]
    return found


def test_the_command_adds_beside_the_demo_and_demo_logins_see_it(app, cli):
    demo = cli(["seed-demo"])
    assert demo.exit_code == 0, demo.output
    passwords = _passwords(demo.output)
    args = ["seed-scale", "--cases", "2", "--participants", "20", "--notes", "200"]
    result = cli([*args, "--peer-participants", "4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^Seeded 2 cases, .*200 notes, .* in \d+\.\d s\.$", result.output, re.M)

    again = cli(args)
    assert again.exit_code != 0
    assert "--prefix" in again.output
    more = cli([*args, "--prefix", "T", "--coordinator", "", "--peer", ""])
    assert more.exit_code == 0, more.output

    with app.app_context():
        codes = set(db.session.scalars(select(Case.code)))
        assert {"A", "B", "C", "S001", "S002", "T001", "T002"} <= codes
        assert _count(Note) == 200 + 200 + 2  # the demo's completed interview has two notes

    client = app.test_client()
    login = {"username": "koordinator", "password": passwords["koordinator"]}
    assert client.post("/login", data=login).status_code == 302
    desk = client.get("/desk/").get_data(as_text=True)
    assert "S002" in desk and "T001" not in desk
    client.post("/logout")
    login = {"username": "kari", "password": passwords["kari"]}
    assert client.post("/login", data=login).status_code == 302
    mine = client.get("/interviews/").get_data(as_text=True)
    assert re.search(r"S001-[2-9A-HJ-NP-Z]{4}", mine)


def test_the_command_help_says_who_sees_the_data(cli):
    result = cli(["seed-scale", "--help"])
    assert result.exit_code == 0
    for word in ("koordinator", "kari", "--prefix", "--peers-per-case", "--seed"):
        assert word in result.output


def test_planned_times_reach_the_coming_weeks(app, seeded):
    with app.app_context():
        planned = db.session.scalars(
            _generated(
                select(Interview.planned_at)
                .join(Participant, Participant.id == Interview.participant_id)
                .where(Interview.status == "planned")
            )
        ).all()
    now = utcnow()
    assert any(at > now for at in planned)
    assert all(at < now + timedelta(days=60) for at in planned)
