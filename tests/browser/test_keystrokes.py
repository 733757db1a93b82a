"""Nothing typed is lost, in real Chromium: no wait at all between the last keystroke and a
reload, a Back swipe, a closed tab or a closed browser; the words are on the page afterwards and
reach the case store exactly once. New notes, edits of a note and the debrief alike."""

import os

import pytest
from sqlalchemy import func, select

from interview.store.extensions import db
from interview.store.models import Debrief, Note
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _wait_status,
    _watch_errors,
    notes_with,
)
from tests.chromium import CHROMIUM_ARGS, chromium_path
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

QUESTION = "context.services"


def _open_section(page, base, iid, wait_saved=True):
    page.goto(f"{base}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    if wait_saved:
        _wait_status(page, ALL_SAVED["en"])


def _type_into_new_note(page, text):
    box = page.locator(f".note[data-new][data-question='{QUESTION}'] textarea")
    box.click()
    page.keyboard.type(text)  # keystroke by keystroke; nothing waits after the last one


def _text_on_page(page, text, timeout=15000):
    page.wait_for_function(
        "t => [...document.querySelectorAll('textarea')].some(x => x.value === t)",
        arg=text,
        timeout=timeout,
    )


def _reaches_store_once(page, app, text):
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    notes = notes_with(app, text)
    assert len(notes) == 1, f"{len(notes)} notes hold the words"
    return notes[0]


@pytest.mark.parametrize("gesture", ["reload", "back", "close"])
def test_a_new_note_survives_any_gesture_right_after_the_last_keystroke(
    server, browser, app, started, gesture
):
    iid, _ = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a")
    page.goto(f"{server.url}/interviews/{iid}")  # somewhere to go Back to
    _open_section(page, server.url, iid)
    text = f"Siste ord før {gesture} – æøå"
    _type_into_new_note(page, text)
    if gesture == "reload":
        page.reload()
    elif gesture == "back":
        page.go_back()
        page.wait_for_url(f"**/interviews/{iid}")
        page.go_forward()
    else:
        page.close()
        page = context.new_page()
        _watch_errors(page, errors)
        _open_section(page, server.url, iid, wait_saved=False)
    page.wait_for_selector("html.tablet-ready", state="attached")
    _text_on_page(page, text)
    note = _reaches_store_once(page, app, text)
    assert note.question_key == QUESTION
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    _text_on_page(page, text)
    assert len(notes_with(app, text)) == 1
    assert not errors, errors
    context.close()


def test_words_typed_offline_survive_a_reload_and_are_sent_once_the_network_is_back(
    server, browser, app, started
):
    iid, _ = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline')",
        timeout=30000,
    )
    _open_section(page, server.url, iid)
    context.set_offline(True)
    server.stop()
    text = "Skrevet uten nett, rett før omlasting"
    _type_into_new_note(page, text)
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached", timeout=20000)
    _text_on_page(page, text)
    assert notes_with(app, text) == []
    server.start()
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _reaches_store_once(page, app, text)
    context.close()


def _gesture(context, page, gesture, back_to, reopen, errors):
    """Reload, swipe Back (and Forward again) or close the tab and open the page anew."""
    if gesture == "reload":
        page.reload()
    elif gesture == "back":
        page.go_back()
        page.wait_for_url(back_to)
        page.go_forward()
    else:
        page.close()
        page = context.new_page()
        _watch_errors(page, errors)
        reopen(page)
    page.wait_for_selector("html.tablet-ready", state="attached")
    return page


def _edit_saved_note(page, note_id, words):
    box = page.locator(f".note[data-note-id='{note_id}'] textarea")
    box.click()
    page.keyboard.press("End")
    page.keyboard.type(words)  # nothing waits after the last keystroke


def _edit_reached_store_once(page, app, note_id, text):
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    with app.app_context():
        db.session.expire_all()
        note = db.session.get(Note, note_id)
        assert note.text == text
        assert note.conflict is None
        assert note.rev == 2, f"the edit was applied {note.rev - 1} times"
        count = db.session.scalar(select(func.count()).select_from(Note))
    assert count == 1


@pytest.mark.parametrize("gesture", ["reload", "back", "close"])
def test_an_edit_of_a_saved_note_survives_any_gesture_right_after_the_last_keystroke(
    server, browser, app, started, gesture
):
    iid, note_id = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a")
    page.goto(f"{server.url}/interviews/{iid}")  # somewhere to go Back to
    _open_section(page, server.url, iid)
    _edit_saved_note(page, note_id, f" og litt til før {gesture}")
    page = _gesture(
        context,
        page,
        gesture,
        f"**/interviews/{iid}",
        lambda p: _open_section(p, server.url, iid, wait_saved=False),
        errors,
    )
    text = f"Første notat og litt til før {gesture}"
    _text_on_page(page, text)
    _edit_reached_store_once(page, app, note_id, text)
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    _text_on_page(page, text)
    assert not errors, errors
    context.close()


def test_an_edit_made_offline_survives_a_reload_and_is_sent_once_the_network_is_back(
    server, browser, app, started
):
    iid, note_id = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline')",
        timeout=30000,
    )
    _open_section(page, server.url, iid)
    context.set_offline(True)
    server.stop()
    _edit_saved_note(page, note_id, " skrevet uten nett")
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached", timeout=20000)
    text = "Første notat skrevet uten nett"
    _text_on_page(page, text)
    with app.app_context():
        assert db.session.get(Note, note_id).text == "Første notat"
    server.start()
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _edit_reached_store_once(page, app, note_id, text)
    context.close()


def _finish_and_open_debrief(page, base, iid):
    _open_section(page, base, iid)
    page.goto(f"{base}/interviews/{iid}/finish")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("form[data-offline=finish] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/debrief")
    page.goto(f"{base}/interviews/{iid}")  # somewhere to go Back to
    page.wait_for_selector("html.tablet-ready", state="attached")
    _open_debrief(page, base, iid)


def _open_debrief(page, base, iid):
    page.goto(f"{base}/interviews/{iid}/debrief")
    page.wait_for_selector("html.tablet-ready", state="attached")


def _write_debrief(page, text):
    page.locator("input[name=wellbeing][value='4']").check()
    page.locator("[name=reflection]").click()
    page.keyboard.type(text)  # nothing waits after the last keystroke


def _debrief_on_page(page, text):
    page.wait_for_function(
        "t => document.querySelector('[name=reflection]').value === t", arg=text, timeout=15000
    )
    assert page.locator("input[name=wellbeing][value='4']").is_checked()


def _debrief_reached_store_once(page, app, iid, text):
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    with app.app_context():
        db.session.expire_all()
        rows = list(db.session.scalars(select(Debrief).where(Debrief.interview_id == iid)))
        assert len(rows) == 1
        assert rows[0].reflection == text
        assert rows[0].wellbeing == 4


@pytest.mark.parametrize("gesture", ["reload", "back", "close"])
def test_the_debrief_survives_any_gesture_right_after_the_last_keystroke(
    server, browser, app, started, gesture
):
    iid, _ = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a")
    _finish_and_open_debrief(page, server.url, iid)
    text = f"Det gikk fint, men jeg ble sliten før {gesture}"
    _write_debrief(page, text)
    page = _gesture(
        context,
        page,
        gesture,
        f"**/interviews/{iid}",
        lambda p: _open_debrief(p, server.url, iid),
        errors,
    )
    _debrief_on_page(page, text)
    _debrief_reached_store_once(page, app, iid, text)
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    _debrief_on_page(page, text)
    assert not errors, errors
    context.close()


def _persistent(pw, profile):
    """A Chromium whose storage outlives it, in `profile`; closing it closes the browser."""
    options = {
        "executable_path": chromium_path(),
        "args": CHROMIUM_ARGS,
        "headless": True,
        "viewport": TABLET,
        "has_touch": True,
    }
    return pw.chromium.launch_persistent_context(str(profile), **options)


def _reopen(page, url):
    """Open `url` in a browser started again, logging in again if its session ended with it."""
    page.goto(url)
    if "/login" in page.url:  # the session ended with the browser: log in again
        page.locator("#username").fill("peer_a")
        page.locator("#password").fill(PASSWORD)
        page.locator("form button[type=submit]").click()
        page.wait_for_url(f"{url}**")
    page.wait_for_selector("html.tablet-ready", state="attached")


def _need_chromium():
    if chromium_path() is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is not installed but REQUIRE_BROWSER=1")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")


def test_words_survive_a_closed_browser_and_are_sent_after_the_next_login(
    server, app, started, tmp_path
):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    iid, _ = started
    profile = tmp_path / "profile"
    text = "Ord skrevet rett før nettleseren lukkes"
    with sync_playwright() as pw:
        context = _persistent(pw, profile)
        page = context.new_page()
        _login(page, server.url, "peer_a")
        _open_section(page, server.url, iid)
        _type_into_new_note(page, text)
        context.close()  # the whole browser goes, with no wait after the last keystroke
        assert notes_with(app, text) == []

        context = _persistent(pw, profile)
        page = context.new_page()
        _reopen(page, f"{server.url}/interviews/{iid}/section/0?lang=en")
        _text_on_page(page, text)
        _reaches_store_once(page, app, text)
        context.close()


def test_an_edit_and_the_debrief_survive_a_closed_browser_and_are_sent_after_the_next_login(
    server, app, started, tmp_path
):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    iid, note_id = started
    profile = tmp_path / "profile"
    edited = "Første notat og ord rett før nettleseren lukkes"
    reflection = "Sliten, men fornøyd, rett før nettleseren lukkes"
    with sync_playwright() as pw:
        context = _persistent(pw, profile)
        page = context.new_page()
        _login(page, server.url, "peer_a")
        _open_section(page, server.url, iid)
        _edit_saved_note(page, note_id, " og ord rett før nettleseren lukkes")
        context.close()  # the whole browser goes, with no wait after the last keystroke
        with app.app_context():
            assert db.session.get(Note, note_id).text == "Første notat"

        context = _persistent(pw, profile)
        page = context.new_page()
        _reopen(page, f"{server.url}/interviews/{iid}/section/0?lang=en")
        _text_on_page(page, edited)
        _edit_reached_store_once(page, app, note_id, edited)
        _finish_and_open_debrief(page, server.url, iid)
        _write_debrief(page, reflection)
        context.close()
        with app.app_context():
            assert db.session.scalars(select(Debrief)).first() is None

        context = _persistent(pw, profile)
        page = context.new_page()
        _reopen(page, f"{server.url}/interviews/{iid}/debrief?lang=en")
        _debrief_on_page(page, reflection)
        _debrief_reached_store_once(page, app, iid, reflection)
        context.close()
