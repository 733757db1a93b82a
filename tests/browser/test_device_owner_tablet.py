"""A device id belongs to the first user who synced with it (issue 16), in real Chromium.

Two peers on one tablet share one IndexedDB store, so the store keeps one device id per person:
each syncs under their own, and the case store has a device row for each. A store that still
names another person's id for a peer (an old store) is answered 409 `device`: the tablet makes
that peer a fresh id and sends again, and nothing is stuck.
"""

import json

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Device, User
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _wait_status,
    _watch_errors,
    notes_with,
)

pytestmark = pytest.mark.browser

QUESTION = "context.services"

META = """(key) => new Promise((resolve, reject) => {
  const open = indexedDB.open('fact-companion');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const get = open.result.transaction(['meta']).objectStore('meta').get(key);
    get.onsuccess = () => { resolve(get.result ? get.result.value : null); open.result.close(); };
  };
})"""

SET_META = """([key, value]) => new Promise((resolve, reject) => {
  const open = indexedDB.open('fact-companion');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const tx = open.result.transaction(['meta'], 'readwrite');
    tx.objectStore('meta').put({ key, value });
    tx.oncomplete = () => { open.result.close(); resolve(true); };
    tx.onerror = () => reject(tx.error);
  };
})"""


def _write_note(page, server, iid, text):
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    box = page.locator(f".note[data-new][data-question='{QUESTION}'] textarea")
    box.click()
    page.keyboard.type(text)
    page.wait_for_function(
        "() => document.getElementById('sync-status').dataset.state === 'waiting'",
        timeout=10000,
    )
    _wait_status(page, ALL_SAVED["en"], timeout=30000)


def _log_out(page):
    page.locator("#logout-form button").click()
    page.wait_for_url("**/login**")


def _devices(app):
    with app.app_context():
        db.session.expire_all()
        return {
            d.id: db.session.get(User, d.user_id).username
            for d in db.session.scalars(select(Device))
        }


def _author(app, text):
    notes = notes_with(app, text)
    assert len(notes) == 1, text
    with app.app_context():
        return db.session.get(User, notes[0].author_id).username


def test_two_peers_on_one_tablet_each_sync_under_their_own_device_id(
    server, browser, app, started, world
):
    iid, _ = started
    errors: list[str] = []
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _watch_errors(page, errors)
    page.on("dialog", lambda dialog: dialog.accept())

    _login(page, server.url, "peer_a")
    _write_note(page, server, iid, "Peer A skrev dette")
    _log_out(page)

    _login(page, server.url, "peer_a2")
    _write_note(page, server, iid, "Peer A2 skrev dette")

    first = page.evaluate(META, f"device_id:{world.users['peer_a']}")
    second = page.evaluate(META, f"device_id:{world.users['peer_a2']}")
    assert first and second and first != second
    # both syncs were taken, each under the person's own id: one device row per person
    assert _devices(app) == {first: "peer_a", second: "peer_a2"}
    assert _author(app, "Peer A skrev dette") == "peer_a"
    assert _author(app, "Peer A2 skrev dette") == "peer_a2"
    # the tablet keeps no single id for everyone any more
    assert page.evaluate(META, "device_id") is None

    # A comes back: still the same id, still A's row
    _log_out(page)
    _login(page, server.url, "peer_a")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    assert page.evaluate(META, f"device_id:{world.users['peer_a']}") == first
    assert _devices(app) == {first: "peer_a", second: "peer_a2"}
    context.close()
    assert errors == [], errors


def test_a_store_that_names_another_persons_id_gets_a_fresh_one_and_sends(
    server, browser, app, started, world
):
    iid, _ = started
    errors: list[str] = []
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _watch_errors(page, errors)
    page.on("dialog", lambda dialog: dialog.accept())

    _login(page, server.url, "peer_a")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    theirs = page.evaluate(META, f"device_id:{world.users['peer_a']}")
    assert _devices(app) == {theirs: "peer_a"}
    _log_out(page)

    # an old store: peer A2's id on this tablet is the one peer A synced with first
    page.evaluate(SET_META, [f"device_id:{world.users['peer_a2']}", theirs])
    answers: list[tuple[int, str]] = []  # (status, the device id the sync was sent under)

    def heard(response):
        if "/api/v1/sync" in response.url:
            sent = json.loads(response.request.post_data or "{}").get("device_id")
            answers.append((response.status, sent))

    page.on("response", heard)
    _login(page, server.url, "peer_a2")
    _write_note(page, server, iid, "Sendt under en ny id")

    fresh = page.evaluate(META, f"device_id:{world.users['peer_a2']}")
    assert fresh and fresh != theirs
    assert _devices(app) == {theirs: "peer_a", fresh: "peer_a2"}
    assert _author(app, "Sendt under en ny id") == "peer_a2"
    # refused under the other person's id (once, or once per sync already on its way when the
    # first refusal came), then taken under the fresh one, and never refused under it
    assert (409, theirs) in answers, answers
    assert {status for status, sent in answers if sent == theirs} == {409}, answers
    assert {status for status, sent in answers if sent == fresh} == {200}, answers
    assert answers.index((409, theirs)) < answers.index((200, fresh)), answers
    context.close()
    assert errors == [], errors
