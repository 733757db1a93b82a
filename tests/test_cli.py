"""The command-line tools: create-user, guides load, seed-demo."""

import re
import shutil

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import func, select

from devdata.demo import seed_cases
from interview.store.content import GUIDES_DIR, ContentError, load_all
from interview.store.extensions import db
from interview.store.models import ConsentFormVersion, GuideVersion, Participant, Theme, User

GOOD_PASSWORD = "longenough-password"
CODE = re.compile(r"^[ABC]-[2-9A-HJ-NP-Z]{4}$")
DEMO_USERNAMES = ("admin", "koordinator", "kari", "jonas", "amina")


@pytest.fixture
def cli(app, runner):
    """Run a command the way `flask ...` runs it (FlaskGroup pushes the app context)."""
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def invoke(args, input=None):
        return runner.invoke(cli=group, args=args, input=input)

    return invoke


@pytest.fixture
def cases(app):
    """Cases A, B and C (with the codebook they need)."""
    with app.app_context():
        load_all(db.session)
        seed_cases()
        db.session.commit()


def _user(app, username):
    with app.app_context():
        db.session.expire_all()
        return db.session.execute(
            select(User).where(User.username == username)
        ).scalar_one_or_none()


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


# --- create-user ------------------------------------------------------------------------


def test_create_user_with_password_from_stdin(app, cli, cases):
    result = cli(
        ["create-user", "newpeer", "--role", "peer", "--case", "A", "--password-stdin"],
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "newpeer" in result.output
    assert GOOD_PASSWORD not in result.output
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == "newpeer")).scalar_one()
        assert user.role == "peer"
        assert [c.code for c in user.cases] == ["A"]
        assert user.password_hash.startswith("$argon2id$")
        assert GOOD_PASSWORD not in user.password_hash
    client = app.test_client()
    response = client.post("/login", data={"username": "newpeer", "password": GOOD_PASSWORD})
    assert response.status_code == 302
    assert client.get("/interviews/").status_code == 200


def test_create_user_in_several_cases(app, cli, cases):
    result = cli(
        [
            "create-user",
            "coord_ab",
            "--role",
            "coordinator",
            "--case",
            "A",
            "--case",
            "B",
            "--password-stdin",
        ],
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.execute(select(User).where(User.username == "coord_ab")).scalar_one()
        assert sorted(c.code for c in user.cases) == ["A", "B"]


def test_create_user_with_unknown_case_is_refused(app, cli, cases):
    result = cli(
        ["create-user", "lost", "--role", "peer", "--case", "Z", "--password-stdin"],
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code != 0
    assert "No case with code Z" in result.output
    assert _user(app, "lost") is None


def test_create_user_with_short_password_is_refused(app, cli, cases):
    result = cli(
        ["create-user", "shorty", "--role", "peer", "--case", "A", "--password-stdin"],
        input="short\n",
    )
    assert result.exit_code != 0
    assert "at least 10 characters" in result.output
    assert _user(app, "shorty") is None


def test_create_user_with_unknown_role_is_refused(app, cli, cases):
    result = cli(
        ["create-user", "boss", "--role", "superuser", "--password-stdin"],
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code != 0
    assert "superuser" in result.output
    assert _user(app, "boss") is None


def test_create_user_again_updates_and_ends_old_sessions(app, cli, cases):
    args = ["create-user", "peer_z", "--role", "peer", "--case", "A", "--password-stdin"]
    assert cli(args, input=GOOD_PASSWORD + "\n").exit_code == 0
    client = app.test_client()
    client.post("/login", data={"username": "peer_z", "password": GOOD_PASSWORD})
    assert client.get("/interviews/").status_code == 200

    result = cli(args, input="another-long-password\n")
    assert result.exit_code == 0, result.output
    assert "Updated" in result.output
    # the old session is over, the old password no longer works, the new one does
    assert client.get("/interviews/").status_code == 302
    fresh = app.test_client()
    old = fresh.post("/login", data={"username": "peer_z", "password": GOOD_PASSWORD})
    assert old.status_code == 401
    new = fresh.post("/login", data={"username": "peer_z", "password": "another-long-password"})
    assert new.status_code == 302


def test_create_user_differing_only_in_case_does_not_break_login(app, cli, cases):
    """Logins match usernames case-insensitively, so create-user must too.

    A second user "Kari" beside "kari" makes every login of either one fail with a 500.
    """
    args = ["--role", "peer", "--case", "A", "--password-stdin"]
    assert cli(["create-user", "kari", *args], input=GOOD_PASSWORD + "\n").exit_code == 0
    cli(["create-user", "Kari", *args], input="another-long-password\n")
    with app.app_context():
        same = db.session.scalar(
            select(func.count()).select_from(User).where(func.lower(User.username) == "kari")
        )
    first = app.test_client().post("/login", data={"username": "kari", "password": GOOD_PASSWORD})
    second = app.test_client().post(
        "/login", data={"username": "Kari", "password": "another-long-password"}
    )
    assert first.status_code != 500
    assert second.status_code != 500
    assert 302 in (first.status_code, second.status_code)
    assert same == 1


# --- guides load ------------------------------------------------------------------------


def test_guides_load_is_idempotent(app, cli):
    first = cli(["guides", "load"])
    assert first.exit_code == 0, first.output
    assert "loaded guide-v1.toml" in first.output
    assert "loaded consent-v1.toml" in first.output
    counts = [_count(app, m) for m in (GuideVersion, ConsentFormVersion, Theme)]
    assert all(counts)

    second = cli(["guides", "load"])
    assert second.exit_code == 0, second.output
    assert "unchanged guide-v1.toml" in second.output
    assert "unchanged consent-v1.toml" in second.output
    assert "loaded" not in second.output
    assert [_count(app, m) for m in (GuideVersion, ConsentFormVersion, Theme)] == counts


def _stored_guides(app):
    with app.app_context():
        db.session.expire_all()
        return [
            (g.key, g.version, g.checksum, g.content)
            for g in db.session.scalars(select(GuideVersion).order_by(GuideVersion.id))
        ]


def test_changing_a_published_guide_is_refused(app, tmp_path):
    with app.app_context():
        load_all(db.session)
    before = _stored_guides(app)
    themes_before = _count(app, Theme)

    edited = tmp_path / "edited-guides"
    edited.mkdir()
    for path in GUIDES_DIR.glob("*.toml"):
        shutil.copy(path, edited / path.name)
    guide = edited / "guide-v1.toml"
    text = guide.read_text(encoding="utf-8")
    original = (
        'en = "Could you tell me a little about the help you get today, both from the FACT team'
        ' and from others?"'
    )
    assert original in text
    guide.write_text(
        text.replace(original, 'en = "A quietly changed question."', 1), encoding="utf-8"
    )

    with app.app_context():
        with pytest.raises(ContentError) as info:
            load_all(db.session, directory=edited)
    assert "cannot change" in str(info.value)
    assert "guide-v1.toml" in str(info.value)
    after = _stored_guides(app)
    assert after == before
    assert "A quietly changed question." not in str(after)
    assert _count(app, Theme) == themes_before


def test_changed_guide_is_refused_by_the_command_too(app, cli, tmp_path, monkeypatch):
    assert cli(["guides", "load"]).exit_code == 0
    before = _stored_guides(app)
    edited = tmp_path / "edited-guides"
    edited.mkdir()
    for path in GUIDES_DIR.glob("*.toml"):
        shutil.copy(path, edited / path.name)
    guide = edited / "guide-v1.toml"
    guide.write_text(
        guide.read_text(encoding="utf-8").replace("Could you tell me", "Would you tell me", 1),
        encoding="utf-8",
    )
    import interview.store.content

    monkeypatch.setattr(interview.store.content, "GUIDES_DIR", edited)
    monkeypatch.setattr(interview.store.content.load_all, "__defaults__", (edited,))
    result = cli(["guides", "load"])
    assert result.exit_code != 0
    assert "cannot change" in result.output
    assert _stored_guides(app) == before


def test_a_new_version_is_loaded_beside_the_old(app, tmp_path):
    with app.app_context():
        load_all(db.session)
    edited = tmp_path / "new-version"
    edited.mkdir()
    for path in GUIDES_DIR.glob("*.toml"):
        shutil.copy(path, edited / path.name)
    text = (edited / "guide-v1.toml").read_text(encoding="utf-8")
    (edited / "guide-v2.toml").write_text(
        text.replace("version = 1", "version = 2", 1).replace("Could you tell me", "Tell me", 1),
        encoding="utf-8",
    )
    with app.app_context():
        report = load_all(db.session, directory=edited)
    assert "guide-v2.toml" in report.added
    assert "guide-v1.toml" in report.unchanged
    assert [(k, v) for k, v, _c, _t in _stored_guides(app)] == [
        ("innofact-patient", 1),
        ("innofact-patient", 2),
    ]


# --- seed-demo --------------------------------------------------------------------------


def _printed_passwords(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in DEMO_USERNAMES:
            found[parts[0]] = parts[1]
    return found


def test_seed_demo_prints_passwords_only_the_first_time(app, cli):
    first = cli(["seed-demo"])
    assert first.exit_code == 0, first.output
    passwords = _printed_passwords(first.output)
    assert sorted(passwords) == sorted(DEMO_USERNAMES)
    users = _count(app, User)
    participants = _count(app, Participant)

    second = cli(["seed-demo"])
    assert second.exit_code == 0, second.output
    assert _printed_passwords(second.output) == {}
    for password in passwords.values():
        assert password not in second.output
    assert _count(app, User) == users
    assert _count(app, Participant) == participants

    # the printed passwords are the real ones
    client = app.test_client()
    response = client.post("/login", data={"username": "kari", "password": passwords["kari"]})
    assert response.status_code == 302
    assert client.get("/interviews/").status_code == 200


def test_seed_demo_reset_passwords_prints_new_ones(app, cli):
    first = _printed_passwords(cli(["seed-demo"]).output)
    result = cli(["seed-demo", "--reset-passwords"])
    assert result.exit_code == 0, result.output
    again = _printed_passwords(result.output)
    assert sorted(again) == sorted(DEMO_USERNAMES)
    assert again["kari"] != first["kari"]
    client = app.test_client()
    old = client.post("/login", data={"username": "kari", "password": first["kari"]})
    assert old.status_code == 401
    new = client.post("/login", data={"username": "kari", "password": again["kari"]})
    assert new.status_code == 302


def test_demo_participants_have_pseudonymous_codes(app, cli):
    assert cli(["seed-demo"]).exit_code == 0
    with app.app_context():
        codes = db.session.scalars(select(Participant.code)).all()
    assert len(codes) >= 7
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert CODE.match(code), code
    assert {c[0] for c in codes} == {"A", "B", "C"}


# --- the real `flask` command -----------------------------------------------------------


def test_the_flask_command_creates_a_user_end_to_end(tmp_path):
    """`flask create-user ... --password-stdin` as an operator types it (DESIGN §8)."""
    import base64
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    flask = Path(sys.executable).with_name("flask")
    store = tmp_path / "cli-casestore.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{store}",
        "IDENTITY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli-identity.db'}",
        "IDENTITY_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "SECRET_KEY": "cli-test-secret",
    }

    def run(*args, input=None):
        return subprocess.run(
            [str(flask), "--app", "app", *args],
            cwd=root,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("init-db").returncode == 0
    loaded = run("guides", "load")
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded guide-v1.toml" in loaded.stdout
    seeded = run("seed-demo")
    assert seeded.returncode == 0, seeded.stderr
    made = run(
        "create-user",
        "ops_peer",
        "--role",
        "peer",
        "--case",
        "B",
        "--password-stdin",
        input=GOOD_PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert GOOD_PASSWORD not in made.stdout + made.stderr
    refused = run(
        "create-user",
        "ops_bad",
        "--role",
        "peer",
        "--case",
        "Q",
        "--password-stdin",
        input=GOOD_PASSWORD + "\n",
    )
    assert refused.returncode != 0
    assert "No case with code Q" in refused.stderr

    import sqlite3

    with sqlite3.connect(store) as conn:
        rows = conn.execute(
            "SELECT u.username, c.code, u.password_hash FROM user u "
            'JOIN user_case uc ON uc.user_id = u.id JOIN "case" c ON c.id = uc.case_id '
            "WHERE u.username LIKE 'ops_%'"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("ops_peer", "B")]
    assert rows[0][2].startswith("$argon2id$")
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(rows[0][2], GOOD_PASSWORD)
