"""The study's end (issue 18): the desk reminds coordinators and admins as STUDY_END_DATE
nears, and `flask study end` (an admin, the study's name typed) destroys the identity key
store, paper form numbers and the identity key, audits it, leaves the research data under its
codes, and finds nothing left to do a second time. The raw tables are read afterwards."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from babel.dates import format_date
from flask.cli import FlaskGroup
from sqlalchemy import select, text

from interview.store.crypto import RingSource, load_ring
from interview.store.extensions import db
from interview.store.models import AuditEvent, Note, Participant, SyncChange, User
from interview.trust.study_end import (
    StudyEndError,
    check_admin,
    check_date,
    end_study,
    plan_end,
    reminder,
)
from interview.web.i18n import today_in_oslo
from tests.conftest import PASSWORD, app_on_empty_store, get_row
from tests.helpers import (
    CONSENT_ALL_YES,
    consented_interview,
    note_change,
    post_sync,
    signature_data_url,
    start_interview,
)

NAME = "INNOFACT"


@pytest.fixture
def app(tmp_path):
    """The identity key in its file, as on a server (the other tests give it in the setting)."""
    yield from app_on_empty_store(tmp_path, IDENTITY_KEY=None)


@pytest.fixture
def cli(app, runner, monkeypatch):
    """Run a command the way `flask ...` runs it, in English unless a test says otherwise."""
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def invoke(args, input=None):
        return runner.invoke(cli=group, args=args, input=input)

    return invoke


def _identity_count(table: str) -> int:
    with db.engines["identity"].connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def _case(sql: str) -> list:
    return list(db.session.execute(text(sql)))


@pytest.fixture
def study(app, world, client):
    """Identity data in every place the end reaches, and research data that must stay."""
    iid = consented_interview(client, world)  # paper consent P-123, pa has a name
    note_id = str(uuid.uuid4())
    post_sync(client, [note_change(iid, note_id, "Bussen går for sjelden.")])
    signer = app.test_client()
    signer.post("/login", data={"username": "peer_a2", "password": PASSWORD})
    start_interview(signer, world.interviews["pa2"])
    signed = signer.post(
        f"/interviews/{world.interviews['pa2']}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "signature": signature_data_url(),
            "printed_name": "Per Testesen",
        },
    )
    assert signed.status_code == 302
    waiting = str(uuid.uuid4())
    with app.app_context():
        peer = db.session.scalar(select(User).where(User.username == "peer_b"))
        # a consent still waiting for its interview: a printed name and a paper form number
        db.session.add(
            SyncChange(
                change_id=waiting,
                user_id=peer.id,
                device_id=str(uuid.uuid4()),
                entity="consent",
                record_id=str(uuid.uuid4()),
                digest="0" * 64,
                status="applied",
                waiting_for=str(uuid.uuid4()),
                payload={"data": {"printed_name": "Ola Venter", "paper_form_number": "P-777"}},
                participant_id=world.participants["pb"],
            )
        )
        db.session.commit()
        assert _identity_count("identity_entry") == 1
        assert _identity_count("consent_signature") == 1
        # both consents' signed records, rendered as they arrived
        assert _identity_count("consent_record") == 2
    app.config["STUDY_END_DATE"] = (today_in_oslo() - timedelta(days=1)).isoformat()
    return {"note": note_id, "waiting": waiting}


def _key_file(app) -> Path:
    return Path(app.config["IDENTITY_KEY_FILE"])


# --- the command ---------------------------------------------------------------------------


def test_the_end_destroys_the_identity_data_and_leaves_the_research_data(app, study, cli):
    with app.app_context():
        key_ids = load_ring(None, str(_key_file(app))).ids()
    result = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n{NAME}\n")
    assert result.exit_code == 0, result.output
    assert "1 identity entry (name and contact details)" in result.output
    assert "1 consent signature (printed name and signature image)" in result.output
    assert "2 consent records (the signed consents as PDFs)" in result.output
    assert "1 paper form number on consents" in result.output
    assert "1 consent waiting in the sync log" in result.output
    assert "0 audio recordings (their files and rows)" in result.output
    assert "The end of the study is carried out" in result.output
    assert "flask backup --keys-to" in result.output
    assert "Per Testesen" not in result.output and "Test Person" not in result.output

    with app.app_context():
        assert _identity_count("identity_entry") == 0
        assert _identity_count("consent_signature") == 0
        assert _identity_count("consent_record") == 0
        assert _case("SELECT paper_form_number FROM consent") == [(None,), (None,)]
        waiting = _case(
            "SELECT status, payload_enc, waiting_for, refused_at FROM sync_change "
            "WHERE entity = 'consent'"
        )
        assert len(waiting) == 1
        status, payload, waiting_for, refused_at = waiting[0]
        assert status == "rejected" and payload is None and waiting_for is None
        assert refused_at is not None
        assert not _key_file(app).exists()
        # the research data stays, under its codes
        assert get_row(Note, study["note"]).text == "Bussen går for sjelden."
        assert len(db.session.scalars(select(Participant)).all()) == 3
        row = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "study_ended")).one()
        admin = db.session.scalar(select(User.id).where(User.username == "admin"))
        assert row.user_id == admin
        assert row.detail == {
            "identity_entry_deleted": 1,
            "consent_signature_deleted": 1,
            "consent_record_deleted": 2,
            "paper_form_numbers_scrubbed": 1,
            "consent_payloads_cleared": 1,
            "recordings_deleted": 0,
            "identity_key_ids": key_ids,
            "key_file_removed": True,
        }

    # idempotent: straight after, and after a start that made a fresh key file
    again = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n")
    assert again.exit_code == 0, again.output
    assert "nothing is left to do" in again.output
    load_ring(None, str(_key_file(app)))  # what the next start does
    fresh = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n")
    assert "nothing is left to do" in fresh.output and _key_file(app).exists()
    with app.app_context():
        ended = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "study_ended"))
        assert len(ended.all()) == 1


def test_before_the_end_date_it_refuses_unless_told_and_then_warns(app, study, cli):
    end = today_in_oslo() + timedelta(days=30)
    app.config["STUDY_END_DATE"] = end.isoformat()
    refused = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n{NAME}\n")
    assert refused.exit_code != 0
    assert f"The study ends on {format_date(end, 'long', locale='en')}" in refused.output
    assert "--before-end-date" in refused.output
    with app.app_context():
        assert _identity_count("identity_entry") == 1 and _key_file(app).exists()

    early = cli(
        ["study", "end", "--admin", "admin", "--before-end-date"], input=f"{PASSWORD}\n{NAME}\n"
    )
    assert early.exit_code == 0, early.output
    assert "WARNING: the study ends on" in early.output
    assert "cannot be undone" in early.output
    with app.app_context():
        assert _identity_count("identity_entry") == 0


@pytest.mark.parametrize(
    ("args", "typed", "said"),
    [
        (["--admin", "admin"], f"wrong password\n{NAME}\n", "Only an active administrator"),
        (["--admin", "coord_a"], f"{PASSWORD}\n{NAME}\n", "Only an active administrator"),
        (["--admin", "admin"], f"{PASSWORD}\ninnofact\n", "not the study's name"),
        ([], f"admin\n{PASSWORD}\nINNOFACT \n", "not the study's name"),
    ],
)
def test_only_an_admin_who_types_the_name_ends_the_study(app, study, cli, args, typed, said):
    result = cli(["study", "end", *args], input=typed)
    assert result.exit_code != 0
    assert said in result.output
    with app.app_context():
        assert _identity_count("identity_entry") == 1
        assert _case("SELECT count(*) FROM consent WHERE paper_form_number IS NOT NULL") == [(1,)]
        assert _key_file(app).exists()
        assert (
            db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "study_ended"))
            is None
        )


def test_without_an_end_date_nothing_happens(app, study, cli):
    app.config["STUDY_END_DATE"] = None
    result = cli(["study", "end", "--admin", "admin", "--before-end-date"], input=PASSWORD)
    assert result.exit_code != 0
    assert "STUDY_END_DATE is not set" in result.output


def test_the_command_speaks_bokmaal_where_the_terminal_does(app, study, cli, monkeypatch):
    monkeypatch.setenv("LANG", "nb_NO.UTF-8")
    result = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n{NAME}\n")
    assert result.exit_code == 0, result.output
    assert "1 oppføring i koblingsnøkkelen (navn og kontaktopplysninger)" in result.output
    assert "Studien er avsluttet" in result.output
    again = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n")
    assert "ingenting er igjen å gjøre" in again.output


def test_a_key_in_the_environment_is_left_to_the_operator(app, study, cli):
    # as a start with IDENTITY_KEY set reads it (the same key the fixture's file holds)
    key = _key_file(app).read_text().strip()
    app.extensions["identity_key"] = RingSource(key, str(_key_file(app)))
    result = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n{NAME}\n")
    assert result.exit_code == 0, result.output
    assert "IDENTITY_KEY in the environment" in result.output
    again = cli(["study", "end", "--admin", "admin"], input=f"{PASSWORD}\n")
    assert "nothing is left to do" in again.output
    assert "IDENTITY_KEY in the environment" in again.output


# --- the domain, without the command ------------------------------------------------------


def test_the_rules_without_the_command(app, study):
    today = today_in_oslo()
    with app.app_context():
        app.config["STUDY_END_DATE"] = (today + timedelta(days=5)).isoformat()
        with pytest.raises(StudyEndError) as early:
            check_date(today, before_end_date=False)
        assert early.value.code == "early"
        assert check_date(today, before_end_date=True) == today + timedelta(days=5)
        app.config["STUDY_END_DATE"] = "31.12.2027"
        with pytest.raises(StudyEndError):
            check_date(today, before_end_date=True)
        with pytest.raises(StudyEndError):
            check_admin(db.session, "coord_a", PASSWORD)
        admin = check_admin(db.session, "ADMIN", PASSWORD)
        plan = plan_end(db.session)
        assert plan.work_left and plan.paper_numbers == 1 and plan.key_file is not None
        done = end_study(db.session, admin, plan)
        assert done.identity_rows == {
            "identity_entry": 1,
            "consent_signature": 1,
            "consent_record": 2,
        }
        after = plan_end(db.session)
        assert not after.work_left and not after.key_in_environment


# --- the reminder on the desk --------------------------------------------------------------


def test_the_reminder_runs_from_sixty_days_before_until_the_end_is_carried_out(app, world):
    today = today_in_oslo()
    with app.app_context():
        app.config["STUDY_END_DATE"] = None
        assert reminder(db.session, today) is None
        app.config["STUDY_END_DATE"] = (today + timedelta(days=61)).isoformat()
        assert reminder(db.session, today) is None
        app.config["STUDY_END_DATE"] = (today + timedelta(days=60)).isoformat()
        assert reminder(db.session, today).days_left == 60
        app.config["STUDY_END_DATE"] = (today - timedelta(days=3)).isoformat()
        assert reminder(db.session, today).passed
        db.session.add(AuditEvent(action="study_ended", detail={}))
        db.session.commit()
        assert reminder(db.session, today) is None


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("en", ["The study ends on {date}, in 30 days.", "take the exports the study needs"]),
        ("nb", ["Studien avsluttes {date}, om 30 dager.", "ta ut eksportene studien trenger"]),
    ],
)
def test_coordinators_see_the_reminder_in_their_language(app, world, client, lang, words):
    end = today_in_oslo() + timedelta(days=30)
    app.config["STUDY_END_DATE"] = end.isoformat()
    client.post("/login", data={"username": "coord_a", "password": PASSWORD})
    page = client.get(f"/desk/?lang={lang}").text
    day = format_date(end, "long", locale=lang)
    for said in words:
        assert said.format(date=day) in page
    assert 'class="banner study-end"' in page
    # the same words on every page of the desk, and for admins
    assert "study-end" in client.get("/participants/").text
    peer = app.test_client()
    peer.post("/login", data={"username": "peer_a", "password": PASSWORD})
    assert "study-end" not in peer.get("/interviews/").text


def test_after_the_date_the_reminder_says_the_end_is_due(app, world, client):
    end = today_in_oslo() - timedelta(days=2)
    app.config["STUDY_END_DATE"] = end.isoformat()
    client.post("/login", data={"username": "admin", "password": PASSWORD})
    page = client.get("/desk/?lang=en").text
    assert f"The study's end date, {format_date(end, 'long', locale='en')}, has come." in page
    assert "flask study end" in page
