"""Sessions end after idling or after their absolute lifetime; cookies are locked down."""

import uuid

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import select

from interview import create_app
from interview.store.extensions import db
from interview.store.models import AuditEvent, Note
from interview.trust import sessions
from tests.conftest import get_row, make_config
from tests.helpers import give_paper_consent, note_change, start_interview

MINUTE = 60
DEVICE = str(uuid.uuid4())


@pytest.mark.parametrize(
    "started,seen,now,expected",
    [
        (0, 0, 44 * MINUTE, None),
        (0, 0, 46 * MINUTE, "idle"),
        (0, 11 * 3600, 11 * 3600 + 44 * MINUTE, None),
        (0, 12 * 3600, 12 * 3600 + 1, "absolute"),
        (None, None, 10**9, None),
    ],
)
def test_expired(started, seen, now, expected):
    assert sessions.expired(started, seen, now, 45 * MINUTE, 12 * 3600) == expected


class Clock:
    """A clock the test moves on, in place of the session module's."""

    def __init__(self, monkeypatch):
        self.now = 1_900_000_000.0
        monkeypatch.setattr(sessions, "_now", lambda: self.now)

    def advance(self, minutes: float) -> None:
        """Move the clock on."""
        self.now += minutes * MINUTE


def test_an_idle_session_ends_with_a_calm_message_and_an_audit_entry(
    app, client, auth, world, monkeypatch
):
    clock = Clock(monkeypatch)
    auth.login("peer_a")
    clock.advance(30)
    assert client.get("/interviews/").status_code == 200
    clock.advance(44)  # 74 minutes after login, 44 after the last page: still fine
    assert client.get("/interviews/").status_code == 200
    clock.advance(46)
    response = client.get("/interviews/?lang=en")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "logged out after a while without activity" in page
    with app.app_context():
        ended = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "session_ended")
        ).one()
        assert ended.detail == {"reason": "idle"}
        assert ended.user_id == world.users["peer_a"]


def test_idle_message_in_bokmal(client, auth, world, monkeypatch):
    clock = Clock(monkeypatch)
    auth.login("peer_a")
    client.get("/interviews/?lang=nb")
    clock.advance(50)
    response = client.get("/interviews/")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Du ble logget ut" in page


def test_background_checks_do_not_keep_a_session_alive(client, auth, world, monkeypatch):
    clock = Clock(monkeypatch)
    auth.login("peer_a")
    for _ in range(4):
        clock.advance(10)
        assert client.get("/api/v1/session").status_code == 200
    clock.advance(10)  # 50 minutes with only background checks
    answer = client.get("/api/v1/session")
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "login"


def test_a_sync_that_carries_changes_is_activity_and_nothing_is_lost_after_expiry(
    app, client, auth, world, monkeypatch
):
    clock = Clock(monkeypatch)
    iid = world.interviews["pa"]
    auth.login("peer_a")
    assert start_interview(client, iid).status_code == 302
    assert give_paper_consent(client, iid).status_code == 302
    note_id = str(uuid.uuid4())
    first = note_change(iid, note_id, "Første ord.")
    for _ in range(3):
        clock.advance(40)
        sent = client.post("/api/v1/sync", json={"device_id": DEVICE, "changes": [first]})
        assert sent.status_code == 200
    # two hours of writing kept the session; an hour of silence ends it
    clock.advance(60)
    second = note_change(iid, str(uuid.uuid4()), "Skrevet mens økta var ute.")
    refused = client.post("/api/v1/sync", json={"device_id": DEVICE, "changes": [second]})
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "login"
    # the tablet logs in again and sends the same change: it arrives once
    auth.login("peer_a")
    again = client.post("/api/v1/sync", json={"device_id": DEVICE, "changes": [second]})
    assert again.status_code == 200
    assert again.get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        assert get_row(Note, second["id"]).text == "Skrevet mens økta var ute."


def test_a_session_ends_after_its_absolute_lifetime_however_busy(client, auth, world, monkeypatch):
    clock = Clock(monkeypatch)
    auth.login("coord_a")
    for _ in range(17):  # 17 × 40 minutes = 11 h 20 min of steady work
        clock.advance(40)
        assert client.get("/participants/").status_code == 200
    clock.advance(41)
    response = client.get("/participants/?lang=en")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your session has ended" in page


def test_limits_are_configurable(tmp_path, world, monkeypatch):
    app = create_app(make_config(tmp_path, SESSION_IDLE_MINUTES=5, SESSION_ABSOLUTE_HOURS=1))
    clock = Clock(monkeypatch)
    client = app.test_client()
    from tests.conftest import PASSWORD

    assert (
        client.post("/login", data={"username": "peer_a", "password": PASSWORD}).status_code == 302
    )
    clock.advance(6)
    assert client.get("/interviews/").status_code == 302


def test_session_cookie_is_httponly_lax_and_secure_behind_https(tmp_path, world):
    app = create_app(make_config(tmp_path, SESSION_COOKIE_SECURE=True))
    client = app.test_client()
    from tests.conftest import PASSWORD

    response = client.post(
        "/login", data={"username": "peer_a", "password": PASSWORD}, base_url="https://localhost"
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie


def test_a_changed_password_ends_other_sessions(app, client, auth, world, runner):
    auth.login("peer_a")
    assert client.get("/interviews/").status_code == 200
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = runner.invoke(
        cli=group,
        args=["create-user", "peer_a", "--role", "peer", "--case", "A", "--password-stdin"],
        input="a brand new password\n",
    )
    assert result.exit_code == 0, result.output
    assert client.get("/interviews/").status_code == 302


def test_deactivating_a_user_from_the_command_line_ends_their_session(
    app, client, auth, world, runner
):
    auth.login("peer_a")
    assert client.get("/interviews/").status_code == 200
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = runner.invoke(cli=group, args=["deactivate-user", "PEER_A"])
    assert result.exit_code == 0, result.output
    assert client.get("/interviews/").status_code == 302
    assert auth.login("peer_a").status_code == 401
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user_deactivated")
        ).one()
        assert event.object_id == str(world.users["peer_a"])
    back = runner.invoke(cli=group, args=["deactivate-user", "peer_a", "--reactivate"])
    assert back.exit_code == 0
    assert auth.login("peer_a").status_code == 302
    unknown = runner.invoke(cli=group, args=["deactivate-user", "nobody"])
    assert unknown.exit_code != 0 and "No user nobody" in unknown.output


def test_behind_a_trusted_proxy_https_is_seen_and_hsts_sent(tmp_path, world):
    proxied = create_app(make_config(tmp_path, TRUSTED_PROXIES=1)).test_client()
    answer = proxied.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "max-age=" in answer.headers["Strict-Transport-Security"]
    # without a proxy configured, anyone could claim https: the header is ignored
    direct = create_app(make_config(tmp_path)).test_client()
    plain = direct.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in plain.headers
