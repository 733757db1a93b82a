"""A withdrawal reaches the tablet in real Chromium: at its next sync the interview's records,
its waiting changes and its kept pages leave the tablet, and nothing is shown as refused."""

import pytest
from sqlalchemy import func, select

from interview.participants.withdrawal import today_in_oslo
from interview.store.extensions import db
from interview.store.models import Note, Participant
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _started_with_note,
    _wait_saved_locally,
    _wait_status,
    _watch_errors,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

COUNT_IN = """([store, id]) => new Promise(done => {
    const r = indexedDB.open('fact-companion');
    r.onsuccess = () => {
      const tx = r.result.transaction(store);
      const q = store === 'rejected'
        ? tx.objectStore(store).getAll()
        : tx.objectStore(store).index('interview').getAll(id);
      q.onsuccess = () => {
        done(q.result.filter(x => x.interview_id === id).length);
        r.result.close();
      };
    };
  })"""
KEPT_PAGES = """id => caches.open('fact-pages-v1').then(c => c.keys())
    .then(keys => keys.filter(k => new URL(k.url).pathname.startsWith('/interviews/' + id))
    .length)"""
LATE = "Skrevet uten nett etter at deltakeren trakk seg"


def test_a_withdrawal_removes_the_interview_from_the_tablet(server, browser, app, client, world):
    iid, _note = _started_with_note(app, client, world, "Første notat")
    context = browser.new_context(viewport=TABLET, has_touch=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        _watch_errors(page, errors)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        _login(page, server.url, "peer_a")
        page.locator("#prepare-offline").click()
        page.wait_for_function(
            "() => document.getElementById('prepare-status').textContent"
            ".includes('Ready offline: 1')",
            timeout=30000,
        )
        page.goto(f"{server.url}/interviews/{iid}/section/0")
        page.wait_for_selector("html.tablet-ready", state="attached")
        _wait_status(page, ALL_SAVED["en"])
        assert page.evaluate(COUNT_IN, ["records", iid]) > 0
        assert page.evaluate(KEPT_PAGES, iid) > 0

        # without a network the peer writes one more note: it waits in the outbox
        context.set_offline(True)
        slot = page.locator(".note[data-new][data-question='context.services']")
        note_id = slot.get_attribute("data-note-id")
        page.locator(f".note[data-note-id='{note_id}'] textarea").fill(LATE)
        _wait_saved_locally(page)
        assert page.evaluate(COUNT_IN, ["outbox", iid]) > 0

        # meanwhile the coordinator records the participant's withdrawal
        coordinator = app.test_client()
        coordinator.post("/login", data={"username": "coord_a", "password": PASSWORD})
        answer = coordinator.post(
            f"/participants/{world.participants['pa']}/withdraw",
            data={"withdrawn_on": today_in_oslo().isoformat(), "keep_identity": "keep"},
        )
        assert answer.status_code == 302

        # back on the network: the next sync drops the interview and leaves its page
        context.set_offline(False)
        page.wait_for_url(f"{server.url}/interviews/", timeout=20000)
        page.wait_for_selector("html.tablet-ready", state="attached")
        _wait_status(page, ALL_SAVED["en"])
        for store in ("records", "outbox", "rejected"):
            assert page.evaluate(COUNT_IN, [store, iid]) == 0, store
        assert page.evaluate(KEPT_PAGES, iid) == 0
        assert iid not in page.content()
        assert dialogs and "withdrawn" in dialogs[0]
        with app.app_context():
            assert db.session.get(Participant, world.participants["pa"]).status == "withdrawn"
            assert db.session.scalar(select(func.count()).select_from(Note)) == 0
        assert errors == [], errors
    finally:
        context.close()
