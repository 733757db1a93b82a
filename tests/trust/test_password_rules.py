"""Password rules: a length by role, no common password, no username, no repeat, no run."""

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import User
from interview.trust.passwords import common_passwords, password_problem
from tests.conftest import PASSWORD


@pytest.fixture
def cli(app, runner, monkeypatch):
    """Run `flask create-user` as a terminal in English would."""
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def invoke(username, role, password):
        args = ["create-user", username, "--role", role, "--password-stdin"]
        return runner.invoke(cli=group, args=args, input=password + "\n")

    return invoke


def _exists(app, username) -> bool:
    with app.app_context():
        found = db.session.execute(select(User.id).where(User.username == username))
        return found.first() is not None


def _problem(app, password, username="kari", role="peer", lang="en"):
    with app.test_request_context(f"/?lang={lang}"):
        return password_problem(password, username, role)


def test_an_admin_password_of_one_repeated_letter_is_refused(app, cli):
    result = cli("boss", "admin", "aaaaaaaaaa")
    assert result.exit_code != 0
    assert not _exists(app, "boss")


@pytest.mark.parametrize("role", ["admin", "coordinator"])
def test_staff_need_twelve_characters(app, cli, role):
    result = cli("staffer", role, "tulip-river")  # 11 characters
    assert result.exit_code != 0
    assert "at least 12 characters" in result.output
    assert not _exists(app, "staffer")
    assert cli("staffer", role, "tulip-rivers").exit_code == 0
    assert _exists(app, "staffer")


def test_peers_keep_ten_characters(app):
    assert "at least 10" in _problem(app, "tulip-rv")
    assert _problem(app, "tulip-rivr") is None


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "Passord2024!",
        "sommer2024",
        "qwertyuiop123",
        "Iloveyou2024!",
        "Velkommen123",
    ],
)
def test_common_passwords_are_refused(app, password):
    assert "most common" in _problem(app, password)


def test_the_username_forwards_or_backwards_is_refused(app):
    for password in ("ingrid.hansen", "INGRID.HANSEN", "nesnah.dirgni", "ingrid.hansen2024"):
        problem = _problem(app, password, username="ingrid.hansen")
        assert "username" in problem, password


@pytest.mark.parametrize(
    "password", ["aaaaaaaaaaaa", "ZZZZZZZZZZZZ", "abababababab", "123123123123"]
)
def test_a_repeat_is_refused(app, password):
    assert "repeated" in _problem(app, password, role="admin")


@pytest.mark.parametrize(
    "password", ["123456789012", "abcdefghijkl", "qwertyuiopå", "lkjihgfedcba", "9876543210"]
)
def test_a_simple_sequence_is_refused(app, password):
    assert "sequence" in _problem(app, password)


def test_the_reason_is_given_in_the_users_language(app):
    assert "minst 12 tegn" in _problem(app, "kort", role="admin", lang="nb")
    assert "at least 12 characters" in _problem(app, "short", role="admin", lang="en")


def test_the_command_line_answers_in_bokmal_where_the_locale_says(app, runner, monkeypatch):
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "nb_NO.UTF-8")
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    args = ["create-user", "boss", "--role", "admin", "--password-stdin"]
    result = runner.invoke(cli=group, args=args, input="kort\n")
    assert result.exit_code != 0
    assert "minst 12 tegn" in result.output


def test_good_passwords_pass(app):
    assert _problem(app, PASSWORD, role="admin") is None
    assert _problem(app, "longenough-password", role="coordinator") is None
    assert _problem(app, "tre blå hester i snøen", role="admin") is None


def test_the_list_is_shipped_and_holds_norwegian_entries():
    listed = common_passwords()
    assert len(listed) > 500
    assert {"123456", "password", "passord", "sommer2024", "qwerty"} <= listed
