"""A change refused after the server answered `applied` is told to its tablet (issue 16).

A change kept waiting on the server for its record may be refused later: it waited longer than
SYNC_WAITING_DAYS, or its participant withdrew. The tablet that sent it had dropped it from its
outbox; it hears of it in the next answer (`refused`), shows it among the refused changes with
the reason and the words it still holds, and says so in its next request (`refused_seen`), so
the server stops telling it.
"""

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import SyncChange, utcnow
from interview.sync.waiting import EXPIRED_REASON
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
WORDS = "Ord som ventet for lenge på serveren"
REASON = EXPIRED_REASON.format(days=14)

REFUSED = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open('fact-companion');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const get = open.result.transaction(['rejected']).objectStore('rejected').getAll();
    get.onsuccess = () => { resolve(get.result); open.result.close(); };
  };
})"""


def _refuse_later(app, note_text: str) -> str:
    """Refuse the note's create as the expiry would have, had it waited; return its change id."""
    note = notes_with(app, note_text)[0]
    with app.app_context():
        row = db.session.scalars(
            select(SyncChange).where(
                SyncChange.record_id == note.id, SyncChange.status == "applied"
            )
        ).first()
        row.status, row.rev, row.reason, row.refused_at = "rejected", None, REASON, utcnow()
        db.session.commit()
        return row.change_id


def _told(app, change_id: str) -> bool:
    with app.app_context():
        return db.session.get(SyncChange, change_id).told_at is not None


def test_a_change_refused_later_is_shown_with_its_words_and_told_once(
    server, browser, app, started
):
    iid, _ = started
    errors: list[str] = []
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a")
    page.goto(f"{server.url}/interviews/{iid}/section/0?lang=en")
    page.wait_for_selector("html.tablet-ready", state="attached")
    box = page.locator(f".note[data-new][data-question='{QUESTION}'] textarea")
    box.click()
    page.keyboard.type(WORDS)
    for _ in range(100):
        if notes_with(app, WORDS):
            break
        page.wait_for_timeout(200)
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    change_id = _refuse_later(app, WORDS)

    sent: list[dict] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data_json) if r.url.endswith("/api/v1/sync") else None,
    )
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, "refused by the case store", timeout=30000)
    status = page.locator("#sync-status").inner_text()
    assert "never reached the case store" in status
    assert status.startswith("1 change was refused by the case store:"), status  # one, singular
    refused = page.evaluate(REFUSED)
    assert [r["change_id"] for r in refused] == [change_id]
    assert refused[0]["data"]["text"] == WORDS  # the words are still on the tablet

    # a later request says the tablet holds it, and the server stops telling
    for _ in range(3):
        if _told(app, change_id):
            break
        with page.expect_response(lambda r: r.url.endswith("/api/v1/sync")):
            page.reload()
    assert _told(app, change_id)
    assert any(change_id in (body or {}).get("refused_seen", []) for body in sent), sent
    _wait_status(page, "refused by the case store", timeout=30000)  # still shown, still kept
    context.close()
    assert errors == [], errors
