"""CSRF protection on every state change: form field, header, and the page's meta tag."""

import pytest
from sqlalchemy import func, select

from devdata.demo import seed_cases
from interview import create_app
from interview.field import flow
from interview.participants.registry import register
from interview.store.content import load_all
from interview.store.extensions import db
from interview.store.models import AuditEvent, Case, GuideVersion, Interview, InterviewEvent, User
from interview.trust.passwords import hash_password
from tests.conftest import PASSWORD, csrf_from, get_row, make_config

EXPIRED = "Your session form has expired"


def _config(tmp_path) -> dict:
    """The app fixture's configuration (see conftest) with CSRF protection switched on."""
    return make_config(tmp_path, WTF_CSRF_ENABLED=True)


@pytest.fixture
def app(tmp_path):
    """An app with CSRF on; one peer with one interview under way, one coordinator."""
    from datetime import timedelta

    from interview.store.models import utcnow

    application = create_app(_config(tmp_path))
    with application.app_context():
        db.drop_all()
        db.create_all()
        load_all(db.session)
        seed_cases()
        case = db.session.execute(select(Case).where(Case.code == "A")).scalar_one()
        peer = User(
            username="peer_a", role="peer", cases=[case], password_hash=hash_password(PASSWORD)
        )
        coord = User(
            username="coord_a",
            role="coordinator",
            cases=[case],
            password_hash=hash_password(PASSWORD),
        )
        db.session.add_all([peer, coord])
        db.session.flush()
        p = register(case, "nb", [peer], coord, "Test Person")
        iv = Interview(
            participant=p,
            guide_version=db.session.scalars(select(GuideVersion)).first(),
            language="nb",
            place_kind="home",
            planned_at=utcnow() + timedelta(hours=1),
        )
        db.session.add(iv)
        db.session.flush()
        # status follows from events: a passed capacity check puts the interview under way
        flow.capacity_ok(iv, peer, 75)
        db.session.commit()
        application.config["TEST_INTERVIEW"] = iv.id
        application.config["TEST_PARTICIPANT"] = p.id
    yield application
    with application.app_context():
        db.session.remove()
        db.drop_all()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def client(app):
    """A test client of the CSRF-protected app."""
    return app.test_client()


def _login(client, username="peer_a"):
    token = csrf_from(client.get("/login").text)
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    return response


def _logins(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "login")
        )


def test_login_without_token_is_refused(app, client):
    response = client.post("/login?lang=en", data={"username": "peer_a", "password": PASSWORD})
    assert response.status_code == 400
    assert EXPIRED in response.text
    # no session came of it
    page = client.get("/interviews/")
    assert page.status_code == 302
    assert "/login" in page.headers["Location"]
    assert _logins(app) == 0


def test_login_with_a_wrong_token_is_refused(app, client):
    client.get("/login")
    response = client.post(
        "/login?lang=en",
        data={"username": "peer_a", "password": PASSWORD, "csrf_token": "forged.token.value"},
    )
    assert response.status_code == 400
    assert EXPIRED in response.text
    assert client.get("/interviews/").status_code == 302


def test_login_with_the_meta_token_works(app, client):
    page = client.get("/login")
    token = csrf_from(page.text)
    response = client.post(
        "/login", data={"username": "peer_a", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    assert client.get("/interviews/").status_code == 200
    assert _logins(app) == 1


def test_token_of_another_session_is_refused(app, client):
    token = csrf_from(app.test_client().get("/login").text)
    client.get("/login")
    response = client.post(
        "/login", data={"username": "peer_a", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 400
    assert client.get("/interviews/").status_code == 302


def test_every_page_carries_the_meta_tag(app, client):
    iid = app.config["TEST_INTERVIEW"]
    pid = app.config["TEST_PARTICIPANT"]
    # anonymous pages, error pages included
    for url in ("/login", "/login?lang=en", f"/interviews/{iid}/nope"):
        page = client.get(url)
        assert page.status_code in (200, 404), url
        assert page.mimetype == "text/html"
        assert csrf_from(page.text)
    _login(client, "peer_a")
    for url in (
        "/interviews/",
        f"/interviews/{iid}",
        f"/interviews/{iid}/consent",
        f"/interviews/{iid}/stop",
        f"/interviews/{iid}/distress",
        "/participants/",  # a 403 page
    ):
        page = client.get(url)
        assert page.status_code in (200, 403), url
        assert page.mimetype == "text/html", url
        assert csrf_from(page.text), url
    client2 = app.test_client()
    _login(client2, "coord_a")
    for url in ("/participants/", "/participants/new", f"/participants/{pid}"):
        page = client2.get(url)
        assert page.status_code == 200, url
        assert csrf_from(page.text), url


def _status_and_events(app):
    iid = app.config["TEST_INTERVIEW"]
    with app.app_context():
        iv = get_row(Interview, iid)
        events = db.session.scalar(
            select(func.count())
            .select_from(InterviewEvent)
            .where(InterviewEvent.interview_id == iid)
        )
        return iv.status, events


def test_logged_in_post_without_token_changes_nothing(app, client):
    _login(client)
    iid = app.config["TEST_INTERVIEW"]
    before = _status_and_events(app)
    assert before[0] == "in_progress"
    response = client.post(f"/interviews/{iid}/pause?lang=en")
    assert response.status_code == 400
    assert EXPIRED in response.text
    assert _status_and_events(app) == before


def test_logged_in_post_with_header_token_works(app, client):
    _login(client)
    iid = app.config["TEST_INTERVIEW"]
    token = csrf_from(client.get(f"/interviews/{iid}").text)
    _status, events_before = _status_and_events(app)
    response = client.post(f"/interviews/{iid}/pause", headers={"X-CSRFToken": token})
    assert response.status_code == 302
    status, events = _status_and_events(app)
    assert status == "paused"
    assert events == events_before + 1


def test_logged_in_post_with_form_token_works(app, client):
    _login(client)
    iid = app.config["TEST_INTERVIEW"]
    token = csrf_from(client.get(f"/interviews/{iid}").text)
    _status, events_before = _status_and_events(app)
    response = client.post(f"/interviews/{iid}/check-in", data={"csrf_token": token})
    assert response.status_code == 302
    assert _status_and_events(app) == ("in_progress", events_before + 1)


def test_logout_needs_the_token(app, client):
    _login(client)
    response = client.post("/logout")
    assert response.status_code == 400
    # still logged in: a forged cross-site logout does nothing
    assert client.get("/interviews/").status_code == 200
    token = csrf_from(client.get("/interviews/").text)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/interviews/").status_code == 302


def test_identity_lookup_needs_the_token(app, client):
    _login(client, "coord_a")
    pid = app.config["TEST_PARTICIPANT"]
    response = client.post(f"/participants/{pid}/identity")
    assert response.status_code == 400
    assert "Test Person" not in response.text
    with app.app_context():
        views = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "identity_viewed")
        )
    assert views == 0


def test_csrf_error_as_json_for_api_clients(app, client):
    _login(client)
    iid = app.config["TEST_INTERVIEW"]
    response = client.post(
        f"/interviews/{iid}/pause?lang=en", headers={"Accept": "application/json"}
    )
    assert response.status_code == 400
    assert response.is_json
    assert EXPIRED in response.get_json()["error"]
    assert _status_and_events(app)[0] == "in_progress"


def test_a_token_read_before_login_is_refused_after_it(app, client):
    """Login makes a new CSRF secret: a token read on a shared tablet before it is void."""
    before = csrf_from(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "peer_a", "password": PASSWORD, "csrf_token": before}
    )
    assert response.status_code == 302
    old = client.post("/logout?lang=en", headers={"X-CSRFToken": before})
    assert old.status_code == 400
    assert EXPIRED in old.text
    assert client.get("/interviews/").status_code == 200
    fresh = client.get("/api/v1/session").get_json()["csrf_token"]
    assert fresh != before
    response = client.post("/logout", headers={"X-CSRFToken": fresh})
    assert response.status_code == 302
    assert client.get("/interviews/").status_code == 302


def test_login_keeps_the_language_chosen_before_it(app, client):
    """The anonymous session is dropped at login, but the UI language chosen on it stays."""
    token = csrf_from(client.get("/login?lang=en").text)
    client.post("/login", data={"username": "peer_a", "password": PASSWORD, "csrf_token": token})
    with client.session_transaction() as sess:
        assert sess["lang"] == "en"


def test_over_https_the_login_page_lets_the_browser_name_it_and_the_login_works(app, client):
    # Flask-WTF refuses a form post over HTTPS that names no page of this site as its referrer;
    # a browser names it only if the page allows it (Referrer-Policy), and never to other sites
    page = client.get("/login", base_url="https://localhost")
    assert page.headers["Referrer-Policy"] == "same-origin"
    token = csrf_from(page.text)
    data = {"username": "peer_a", "password": PASSWORD, "csrf_token": token}
    named = client.post(
        "/login",
        data=data,
        base_url="https://localhost",
        headers={"Referer": "https://localhost/login"},
    )
    assert named.status_code == 302
    other = app.test_client()  # a second browser that names no page
    page = other.get("/login", base_url="https://localhost")
    unnamed = other.post(
        "/login", data={**data, "csrf_token": csrf_from(page.text)}, base_url="https://localhost"
    )
    assert unnamed.status_code == 400  # what every form post did under "no-referrer"
