"""Logging in and out: redirects, clear refusals, real logout, Argon2id, throttling."""

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from interview import create_app
from interview.store.extensions import db
from interview.store.models import User
from tests.conftest import PASSWORD, make_config

WRONG = "The username or password is not right"


def _config(tmp_path, **overrides) -> dict:
    """The app fixture's configuration (see conftest), with overrides."""
    return make_config(tmp_path, **overrides)


def _user_row(app, username: str) -> User:
    with app.app_context():
        db.session.expire_all()
        return db.session.execute(select(User).where(User.username == username)).scalar_one()


# --- logging in -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "target"),
    [
        ("peer_a", "/interviews/"),
        ("coord_a", "/participants/"),
        ("admin", "/participants/"),
    ],
)
def test_login_lands_where_the_role_works(client, auth, world, username, target):
    response = auth.login(username)
    assert response.status_code == 302
    start = client.get(response.headers["Location"])
    assert start.status_code == 302
    assert start.headers["Location"].endswith(target)
    assert client.get(target).status_code == 200


def test_login_page_shows_the_form(client, world):
    page = client.get("/login?lang=en")
    assert page.status_code == 200
    assert 'name="username"' in page.text
    assert 'name="password"' in page.text
    assert "Log in" in page.text


def test_wrong_password_is_refused_clearly(client, world, app):
    response = client.post(
        "/login?lang=en", data={"username": "peer_a", "password": "not the password"}
    )
    assert response.status_code == 401
    assert WRONG in response.text
    # no session: the peer's pages still ask for a login
    page = client.get("/interviews/")
    assert page.status_code == 302
    assert "/login" in page.headers["Location"]
    assert _user_row(app, "peer_a").last_login_at is None


def test_unknown_user_gets_the_same_answer(client, world):
    known = client.post("/login?lang=en", data={"username": "peer_a", "password": "nope-nope"})
    unknown = client.post(
        "/login?lang=en", data={"username": "nobody_here", "password": "nope-nope"}
    )
    assert unknown.status_code == known.status_code == 401
    assert WRONG in unknown.text
    # the page does not tell whether the user exists
    assert "nobody_here" not in unknown.text.replace('value="nobody_here"', "")


def test_username_is_not_case_sensitive(client, auth, world):
    response = auth.login("PEER_A")
    assert response.status_code == 302
    assert client.get("/interviews/").status_code == 200


def test_empty_form_is_a_400_not_a_login(client, world):
    response = client.post("/login?lang=en", data={"username": "", "password": ""})
    assert response.status_code == 400
    assert client.get("/interviews/").status_code == 302


def test_inactive_user_cannot_log_in(client, auth, world, app):
    with app.app_context():
        db.session.get(User, world.users["peer_a"]).active = False
        db.session.commit()
    response = client.post("/login?lang=en", data={"username": "peer_a", "password": PASSWORD})
    assert response.status_code == 401
    assert WRONG in response.text
    assert client.get("/interviews/").status_code == 302


def test_deactivating_a_user_ends_their_session(client, auth, world, app):
    auth.login("peer_a")
    assert client.get("/interviews/").status_code == 200
    with app.app_context():
        db.session.get(User, world.users["peer_a"]).active = False
        db.session.commit()
    response = client.get("/interviews/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_is_audited_without_the_password(client, auth, world, app):
    from interview.store.models import AuditEvent

    app.test_client().post("/login", data={"username": "peer_b", "password": "a wrong one"})
    auth.login("peer_a")
    with app.app_context():
        events = db.session.scalars(select(AuditEvent)).all()
        actions = [(e.action, e.user_id) for e in events]
        assert ("login", world.users["peer_a"]) in actions
        assert ("login_failed", world.users["peer_b"]) in actions
        for e in events:
            assert PASSWORD not in str(e.detail)
            assert "a wrong one" not in str(e.detail)


# --- logging out ------------------------------------------------------------------------


def test_logout_by_get_is_not_allowed(client, auth, world):
    auth.login("peer_a")
    response = client.get("/logout")
    assert response.status_code == 405
    # still logged in
    assert client.get("/interviews/").status_code == 200


def test_logout_ends_the_session_for_real(app, client, auth, world):
    auth.login("peer_a")
    assert client.get("/interviews/").status_code == 200
    stolen = client.get_cookie("session")
    assert stolen is not None
    version_before = _user_row(app, "peer_a").session_version

    response = auth.logout()
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")
    assert client.get("/interviews/").status_code == 302
    assert _user_row(app, "peer_a").session_version == version_before + 1

    # the old cookie, replayed on a fresh client, no longer opens anything
    other = app.test_client()
    other.set_cookie("session", stolen.value, domain=stolen.domain or "localhost")
    replay = other.get("/interviews/")
    assert replay.status_code == 302
    assert "/login" in replay.headers["Location"]


def test_old_cookie_works_before_logout(app, client, auth, world):
    """Control for the test above: the cookie copy itself does carry the session."""
    auth.login("peer_a")
    cookie = client.get_cookie("session")
    other = app.test_client()
    other.set_cookie("session", cookie.value, domain=cookie.domain or "localhost")
    assert other.get("/interviews/").status_code == 200


def test_logout_shows_a_message(client, auth, world):
    auth.login("peer_a")
    page = client.post("/logout?lang=en", follow_redirects=True)
    assert page.status_code == 200
    assert "You are logged out." in page.text


def test_logout_when_logged_out_asks_for_login(client, world):
    response = client.post("/logout")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# --- password hashes --------------------------------------------------------------------


def test_stored_hash_is_argon2id(app, world):
    with app.app_context():
        hashes = db.session.scalars(select(User.password_hash)).all()
    assert hashes
    for h in hashes:
        assert h.startswith("$argon2id$")
        assert PASSWORD not in h


def test_hash_is_upgraded_on_login_when_parameters_change(app, client, auth, world):
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    with app.app_context():
        db.session.get(User, world.users["peer_a"]).password_hash = old
        db.session.commit()
    response = auth.login("peer_a")
    assert response.status_code == 302
    new = _user_row(app, "peer_a").password_hash
    assert new != old
    assert new.startswith("$argon2id$")
    assert "t=1" in new and "m=8" in new
    assert PasswordHasher().verify(new, PASSWORD)
    # and the new hash still logs in
    auth.logout()
    assert auth.login("peer_a").status_code == 302


def test_hash_with_current_parameters_is_kept(app, client, auth, world):
    before = _user_row(app, "peer_a").password_hash
    assert auth.login("peer_a").status_code == 302
    assert _user_row(app, "peer_a").password_hash == before


# --- open redirect ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/interviews/",
        "https://evil.example/",
        "/\\evil.example",
        "http:evil.example",
        # browsers drop tabs and newlines from URLs: "/<TAB>/evil.example" is "//evil.example"
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
    ],
    ids=[
        "scheme-relative",
        "scheme-relative-path",
        "absolute",
        "backslash",
        "scheme-only",
        "tab",
        "newline",
        "crlf",
    ],
)
def test_next_to_another_site_is_not_followed(client, world, target):
    """`/login?next=...` never sends the user off the app, and never fails (no 500)."""
    response = client.post(
        "/login", query_string={"next": target}, data={"username": "peer_a", "password": PASSWORD}
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "evil.example" not in location
    assert location in ("/", "http://localhost/")


def test_next_inside_the_app_is_followed(client, world):
    iid = world.interviews["pa"]
    response = client.post(
        "/login",
        query_string={"next": f"/interviews/{iid}"},
        data={"username": "peer_a", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/interviews/{iid}")


# --- throttling -------------------------------------------------------------------------


@pytest.fixture
def limited_app(tmp_path):
    """An app with login throttling on: three failed logins a minute."""
    application = create_app(_config(tmp_path, RATELIMIT_ENABLED=True, LOGIN_LIMIT="3 per minute"))
    with application.app_context():
        db.drop_all()
        db.create_all()
        db.session.add(
            User(
                username="peer_x",
                role="peer",
                password_hash=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(
                    PASSWORD
                ),
            )
        )
        db.session.commit()
    yield application
    with application.app_context():
        db.session.remove()
        db.drop_all()
        for engine in db.engines.values():
            engine.dispose()


def test_login_is_throttled_after_failures(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        response = client.post(
            "/login?lang=en", data={"username": "peer_x", "password": "wrong password"}
        )
        assert response.status_code == 401
    response = client.post(
        "/login?lang=en", data={"username": "peer_x", "password": "wrong password"}
    )
    assert response.status_code == 429
    assert "Too many attempts" in response.text
    # even the right password waits now: the limit is not a password oracle
    response = client.post("/login?lang=en", data={"username": "peer_x", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many attempts" in response.text


def test_throttling_counts_per_username_across_addresses(limited_app):
    client = limited_app.test_client()
    for i in range(3):
        response = client.post(
            "/login?lang=en",
            data={"username": "peer_x", "password": "wrong password"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"},
        )
        assert response.status_code == 401
    response = client.post(
        "/login?lang=en",
        data={"username": "PEER_X", "password": "wrong password"},
        environ_base={"REMOTE_ADDR": "10.0.0.99"},
    )
    assert response.status_code == 429
    assert "Too many attempts" in response.text


def test_successful_logins_are_not_throttled(limited_app):
    for _ in range(5):
        client = limited_app.test_client()
        response = client.post("/login", data={"username": "peer_x", "password": PASSWORD})
        assert response.status_code == 302


def test_throttled_api_answer_is_json(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/login", data={"username": "peer_x", "password": "wrong password"})
    response = client.post(
        "/login?lang=en",
        data={"username": "peer_x", "password": "wrong password"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 429
    assert response.is_json
    assert "Too many attempts" in response.get_json()["error"]
