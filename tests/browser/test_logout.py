"""Logging out is real, in real Chromium, with a network, without one, and with the case store
silent: nothing of the peer is shown again on that tablet before a login, the old session ends at
the first contact, and waiting work is sent only under the peer who wrote it."""

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import AuditEvent, Participant, User
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _wait_status,
    notes_with,
)

pytestmark = pytest.mark.browser

QUESTION = "context.services"


def _prepared_tablet(browser, server, iid):
    """Peer A's tablet, prepared for offline, on the guide page, its service worker in charge."""
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "changes are waiting: log out?"
    _login(page, server.url, "peer_a")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline')",
        timeout=30000,
    )
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert page.evaluate("!!navigator.serviceWorker.controller")
    _wait_status(page, ALL_SAVED["en"])
    return context, page


def _write_waiting_note(page, text):
    box = page.locator(f".note[data-new][data-question='{QUESTION}'] textarea")
    box.click()
    page.keyboard.type(text)
    page.wait_for_function(
        "() => ['offline', 'unreachable', 'waiting'].includes("
        "document.getElementById('sync-status').dataset.state)",
        timeout=10000,
    )


def _log_out(page):
    page.locator("#logout-form button").click()


def _shows_nothing_of_the_peer(page, base, iid, secret):
    for path in ("/interviews/", f"/interviews/{iid}/section/0", f"/interviews/{iid}"):
        try:
            page.goto(base + path)
        except Exception:  # noqa: BLE001 - an error page shows nothing either
            pass
        page.wait_for_load_state()
        body = page.content()
        assert secret not in body, path
        assert "Første notat" not in body, path
        assert "peer_a" not in page.locator("header").inner_text(), path
        assert page.locator("#logout-form").count() == 0, path


def _logouts(app, username):
    with app.app_context():
        db.session.expire_all()
        user = db.session.scalar(select(User).where(User.username == username))
        return list(
            db.session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "logout", AuditEvent.object_id == str(user.id)
                )
            )
        )


def _login_again(page, base, username):
    page.goto(f"{base}/login?lang=en")
    page.wait_for_selector("#username")
    from tests.conftest import PASSWORD

    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/interviews/")


@pytest.mark.parametrize("how", ["offline", "server_silent"])
def test_logging_out_without_the_case_store_still_logs_out(
    server, browser, app, started, how, tmp_path
):
    iid, _ = started
    context, page = _prepared_tablet(browser, server, iid)
    before = len(_logouts(app, "peer_a"))
    if how == "offline":
        context.set_offline(True)
    server.stop()
    secret = "Ventende ord ved utlogging"
    _write_waiting_note(page, secret)
    _log_out(page)
    page.wait_for_selector("text=You are logged out", timeout=20000)
    page.screenshot(path=str(tmp_path / f"signed-out-{how}.png"), full_page=True)
    _shows_nothing_of_the_peer(page, server.url, iid, secret)

    # the network and the case store are back: the old session ends at the first contact
    server.start()
    context.set_offline(False)
    page.goto(f"{server.url}/interviews/")
    page.wait_for_url("**/login**", timeout=20000)
    assert len(_logouts(app, "peer_a")) == before + 1
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_url("**/login**")
    assert notes_with(app, secret) == []

    # the same peer logs in: the waiting note is sent, once
    _login_again(page, server.url, "peer_a")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    assert len(notes_with(app, secret)) == 1
    context.close()


def test_logging_out_online_leaves_nothing_to_see_even_offline_afterwards(
    server, browser, app, started
):
    iid, _ = started
    context, page = _prepared_tablet(browser, server, iid)
    before = len(_logouts(app, "peer_a"))
    _log_out(page)
    page.wait_for_url("**/login**")
    assert len(_logouts(app, "peer_a")) == before + 1
    page.go_back()
    page.wait_for_load_state()
    assert "Første notat" not in page.content()
    context.set_offline(True)
    server.stop()
    _shows_nothing_of_the_peer(page, server.url, iid, "Første notat")
    assert page.locator("text=You are logged out").count() == 1
    server.start()
    context.close()


def test_another_peer_on_the_same_tablet_neither_sees_nor_sends_the_first_peers_work(
    server, browser, app, started, world
):
    iid, _ = started
    context, page = _prepared_tablet(browser, server, iid)
    context.set_offline(True)
    secret = "Peer A sine ventende ord"
    _write_waiting_note(page, secret)
    _log_out(page)
    page.wait_for_selector("text=You are logged out", timeout=20000)
    context.set_offline(False)

    # peer A2 (an interviewer of the same participant) logs in on this tablet
    _login_again(page, server.url, "peer_a2")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.wait_for_function(
        "() => document.getElementById('sync-status').textContent.includes('Another person')",
        timeout=20000,
    )
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.wait_for_timeout(1500)  # the tablet's own state has been laid over the page
    values = page.eval_on_selector_all("textarea", "els => els.map(e => e.value)")
    assert secret not in values
    assert secret not in page.content()
    assert "Another person" in page.locator("#sync-status").inner_text()
    assert notes_with(app, secret) == []

    # A2 leaves; A comes back and the work is sent under A
    page.on("dialog", lambda dialog: dialog.accept())
    _log_out(page)
    page.wait_for_url("**/login**")
    _login_again(page, server.url, "peer_a")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    notes = notes_with(app, secret)
    assert len(notes) == 1
    with app.app_context():
        author = db.session.get(User, notes[0].author_id)
        assert author.username == "peer_a"
        assert db.session.get(Participant, world.participants["pa"]) is not None
    context.close()


def test_a_peer_whose_session_ended_without_logout_leaves_no_pages_to_the_next(
    server, browser, app, started
):
    iid, _ = started
    context, page = _prepared_tablet(browser, server, iid)
    # peer A's session ends on the server (idle, or deactivated) without a logout on the tablet
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "peer_a"))
        user.session_version += 1
        db.session.commit()
    _login_again(page, server.url, "peer_a2")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    # without a network, nothing A kept is shown on this tablet any more
    context.set_offline(True)
    server.stop()
    try:
        page.goto(f"{server.url}/interviews/{iid}/section/0")
    except Exception:  # noqa: BLE001 - an error page shows nothing either
        pass
    assert "Første notat" not in page.content()
    server.start()
    context.close()
