"""The tablet's hard cases in real Chromium: an expired session or CSRF token, logging out with
changes waiting, a full storage, and a finished interview leaving the tablet."""

import time

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Debrief, Interview, Note, User
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _started_with_note,
    _wait_status,
    _watch_errors,
    until,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def open_tablet(server, browser):
    """Open peer A's tablet (logged in); returns (page, errors); closed after the test."""
    contexts = []

    def open_(init_script=None):
        context = browser.new_context(viewport=TABLET, has_touch=True)
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        errors: list[str] = []
        _watch_errors(page, errors)
        _login(page, server.url, "peer_a")
        return page, errors

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def tablet(open_tablet, server, app, client, world):
    """Peer A's tablet on the guide page of an interview under way with one note."""
    iid, _note = _started_with_note(app, client, world, "Første notat")
    page, errors = open_tablet()
    _open_section(page, server.url, iid)
    return iid, page, errors


def _open_section(page, base, iid):
    page.goto(f"{base}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"])


def _type_new_note(page, question, text):
    slot = page.locator(f".note[data-new][data-question='{question}']")
    note_id = slot.get_attribute("data-note-id")
    page.locator(f".note[data-note-id='{note_id}'] textarea").fill(text)
    return note_id


def _notes_with(app, text):
    with app.app_context():
        # note text is sealed at rest: count the matches here, not in SQL
        return sum(1 for n in db.session.scalars(select(Note)) if n.text == text)


def _wait_note(app, text, timeout=20.0):
    """Wait until the case store holds a note with this text; return how many it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = _notes_with(app, text)
        if count:
            return count
        time.sleep(0.2)
    return 0


def test_expired_session_keeps_changes_warns_at_logout_and_sends_after_login(
    tablet, server, app, world
):
    iid, page, errors = tablet
    page.goto(f"{server.url}/interviews/")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline: 1')",
        timeout=30000,
    )
    _open_section(page, server.url, iid)

    # the session ends on the server (logged out everywhere) while the peer goes on writing
    with app.app_context():
        user = db.session.get(User, world.users["peer_a"])
        user.session_version += 1
        db.session.commit()
    _type_new_note(page, "context.services", "Skrevet etter at økten gikk ut")
    _wait_status(page, "Log in again to send 1 change.")
    assert _notes_with(app, "Skrevet etter at økten gikk ut") == 0

    # logging out warns that a change is waiting, and keeps it
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.locator("#logout-form button").click()
    page.wait_for_url("**/login*")
    assert dialogs and "1 change is not yet in the case store" in dialogs[0]

    # whoever picks up the tablet now sees no kept interview page, even without a network
    page.context.set_offline(True)
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    assert "Skrevet etter at økten gikk ut" not in page.content()
    assert "Første notat" not in page.content()
    page.context.set_offline(False)

    # after logging in again the change is sent without anything typed again
    _login(page, server.url, "peer_a")
    _wait_status(page, ALL_SAVED["en"])
    assert _notes_with(app, "Skrevet etter at økten gikk ut") == 1
    assert errors == [], errors


def test_an_expired_csrf_token_is_renewed_and_nothing_is_lost(
    open_tablet, server, app, client, world
):
    iid, _note = _started_with_note(app, client, world, "Første notat")
    app.config.update(WTF_CSRF_ENABLED=True, WTF_CSRF_TIME_LIMIT=2)
    try:
        page, errors = open_tablet()
        sync_answers: list[int] = []
        page.on(
            "response",
            lambda r: sync_answers.append(r.status) if r.url.endswith("/api/v1/sync") else None,
        )
        _open_section(page, server.url, iid)
        time.sleep(3)  # the token on the page has expired
        sync_answers.clear()
        _type_new_note(page, "context.services", "Skrevet med et gammelt token")
        assert _wait_note(app, "Skrevet med et gammelt token") == 1
        _wait_status(page, ALL_SAVED["en"])
        assert 400 in sync_answers  # the expired token was refused …
        assert sync_answers[-1] == 200  # … renewed, and the change sent
        assert errors == [], errors
    finally:
        app.config.update(WTF_CSRF_ENABLED=False)


def test_a_full_storage_is_shown_and_the_words_stay_on_screen(
    open_tablet, server, app, client, world
):
    iid, _note = _started_with_note(app, client, world, "Første notat")
    # the tablet's storage refuses every write while window.__full is set
    page, _errors = open_tablet(
        """
        for (const name of ['add', 'put']) {
          const original = IDBObjectStore.prototype[name];
          IDBObjectStore.prototype[name] = function (...args) {
            if (window.__full && this.name !== 'meta') {
              throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
            }
            return original.apply(this, args);
          };
        }
        """
    )
    _open_section(page, server.url, iid)
    page.evaluate("window.__full = true")
    note_id = _type_new_note(page, "context.services", "Ord som ikke får plass")
    page.wait_for_function("() => document.getElementById('sync-status').dataset.state === 'full'")
    assert "storage is full" in page.locator("#sync-status").inner_text()
    box = page.locator(f".note[data-note-id='{note_id}'] textarea")
    assert box.input_value() == "Ord som ikke får plass"

    # space is freed: the next keystroke saves it all, and it reaches the case store
    page.evaluate("window.__full = false")
    box.press("End")
    box.type(".")
    _wait_status(page, ALL_SAVED["en"])
    assert _notes_with(app, "Ord som ikke får plass.") == 1


def test_a_finished_interview_leaves_the_tablet_once_it_is_synced(
    open_tablet, server, app, client, world
):
    iid, _note = _started_with_note(app, client, world, "Første notat")
    page, errors = open_tablet()
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline: 1')",
        timeout=30000,
    )
    held = """id => new Promise(done => {
        const r = indexedDB.open('fact-companion');
        r.onsuccess = () => {
          const q = r.result.transaction('records').objectStore('records')
            .index('interview').count(id);
          q.onsuccess = () => done(q.result);
        };
      })"""
    kept_pages = """id => caches.open('fact-pages-v1').then(c => c.keys())
        .then(keys => keys.filter(k => new URL(k.url).pathname.startsWith('/interviews/' + id))
        .length)"""
    assert page.evaluate(held, iid) > 0
    assert page.evaluate(kept_pages, iid) > 0

    page.goto(f"{server.url}/interviews/{iid}/finish")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("form[data-offline=finish] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/debrief")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("input[name=wellbeing][value='4']").check()
    page.locator("#reflection").fill("Det gikk fint, men var tungt i starten.")
    page.locator("form[data-offline=debrief] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}")
    page.goto(f"{server.url}/interviews/")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"])
    until(page, f"id => ({held})(id).then(n => n === 0)", iid)

    with app.app_context():
        assert db.session.get(Interview, iid).status == "completed"
        debrief = db.session.scalars(select(Debrief)).one()
        assert debrief.wellbeing == 4
        assert debrief.reflection == "Det gikk fint, men var tungt i starten."
    assert page.evaluate(held, iid) == 0
    assert page.evaluate(kept_pages, iid) == 0
    assert errors == [], errors


def test_typing_on_while_the_tablet_syncs_never_conflicts_with_itself(tablet, app):
    iid, page, errors = tablet
    note_id = _type_new_note(page, "context.services", "Én")
    box = page.locator(f".note[data-note-id='{note_id}'] textarea")
    assert _wait_note(app, "Én") == 1
    # steady typing for several seconds: saves and syncs happen under the peer's fingers
    sent: list[int] = []
    page.on("response", lambda r: sent.append(1) if r.url.endswith("/api/v1/sync") else None)
    more = " og så fortsatte praten om hjelpen fra teamet og fra fastlegen"
    box.press("End")
    box.type(more, delay=110)  # the box keeps the focus all along
    text = "Én" + more
    assert _wait_note(app, text) == 1
    assert len(sent) >= 3  # it really did sync while the words were coming
    with app.app_context():
        notes = list(db.session.scalars(select(Note).where(Note.interview_id == iid)))
        mine = [n for n in notes if n.id == note_id]
        assert len(notes) == 2 and len(mine) == 1
        assert mine[0].text == text
        assert mine[0].conflict is None
    _wait_status(page, ALL_SAVED["en"])
    assert errors == [], errors


def test_words_typed_before_the_tablet_script_wakes_up_are_saved_once(
    browser, server, app, client, world
):
    """A slow tablet: the page shows before its script runs, and the peer types at once."""
    iid, note_id = _started_with_note(app, client, world, "Første notat")
    # the worker would serve the script from its cache, out of reach of page.route
    context = browser.new_context(viewport=TABLET, has_touch=True, service_workers="block")
    try:
        page = context.new_page()
        errors: list[str] = []
        _watch_errors(page, errors)
        _login(page, server.url, "peer_a")
        held, released = [], []
        page.route(
            "**/static/js/offline.js*",
            lambda route: route.continue_() if released else held.append(route),
        )
        page.goto(f"{server.url}/interviews/{iid}/section/0", wait_until="commit")
        new_box = page.locator("textarea[name='new-context.services-text']")
        new_box.fill("Skrevet før skriptet våknet")
        page.locator(f"textarea[name='note-{note_id}-text']").fill("Første notat, rettet tidlig")
        page.wait_for_timeout(300)
        assert held, "the script was not held back, so nothing was typed before it woke up"
        assert not page.evaluate("document.documentElement.classList.contains('tablet-ready')")
        released.append(True)
        for route in held:
            route.continue_()
        page.wait_for_selector("html.tablet-ready", state="attached")
        assert _wait_note(app, "Skrevet før skriptet våknet") == 1
        assert _wait_note(app, "Første notat, rettet tidlig") == 1
        _wait_status(page, ALL_SAVED["en"])

        page.reload()
        page.wait_for_selector("html.tablet-ready", state="attached")
        shown = page.eval_on_selector_all("textarea", "els => els.map(e => e.value)")
        assert shown.count("Skrevet før skriptet våknet") == 1
        assert shown.count("Første notat, rettet tidlig") == 1
        assert "Første notat" not in shown
        page.wait_for_timeout(1500)  # a box filled in again on reload would be saved by now
        with app.app_context():
            texts = sorted(
                n.text for n in db.session.scalars(select(Note).where(Note.interview_id == iid))
            )
        assert texts == ["Første notat, rettet tidlig", "Skrevet før skriptet våknet"]
        assert errors == [], errors
    finally:
        context.close()
