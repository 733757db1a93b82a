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


def test_an_edit_of_a_saved_note_survives_a_reload_right_after_the_last_keystroke(
    server, browser, app, started
):
    iid, note_id = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    _open_section(page, server.url, iid)
    box = page.locator(f".note[data-note-id='{note_id}'] textarea")
    box.click()
    page.keyboard.press("End")
    page.keyboard.type(" og litt til")
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    _text_on_page(page, "Første notat og litt til")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.text == "Første notat og litt til"
        assert note.conflict is None
        count = db.session.scalar(select(func.count()).select_from(Note))
    assert count == 1
    context.close()


def test_the_debrief_survives_a_reload_right_after_the_last_keystroke(
    server, browser, app, client, started
):
    iid, _ = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    _open_section(page, server.url, iid)
    page.goto(f"{server.url}/interviews/{iid}/finish")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("form[data-offline=finish] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/debrief")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("input[name=wellbeing][value='4']").check()
    page.locator("[name=reflection]").click()
    text = "Det gikk fint, men jeg ble sliten"
    page.keyboard.type(text)
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.wait_for_function(
        "t => document.querySelector('[name=reflection]').value === t", arg=text, timeout=15000
    )
    assert page.locator("input[name=wellbeing][value='4']").is_checked()
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    with app.app_context():
        rows = list(db.session.scalars(select(Debrief).where(Debrief.interview_id == iid)))
        assert len(rows) == 1
        assert rows[0].reflection == text
        assert rows[0].wellbeing == 4
    context.close()


def test_words_survive_a_closed_browser_and_are_sent_after_the_next_login(
    server, app, started, tmp_path
):
    path = chromium_path()
    if path is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is not installed but REQUIRE_BROWSER=1")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    iid, _ = started
    profile = tmp_path / "profile"
    text = "Ord skrevet rett før nettleseren lukkes"
    with sync_playwright() as pw:
        options = {
            "executable_path": path,
            "args": CHROMIUM_ARGS,
            "headless": True,
            "viewport": TABLET,
            "has_touch": True,
        }
        context = pw.chromium.launch_persistent_context(str(profile), **options)
        page = context.new_page()
        _login(page, server.url, "peer_a")
        _open_section(page, server.url, iid)
        _type_into_new_note(page, text)
        context.close()  # the whole browser goes, with no wait after the last keystroke
        assert notes_with(app, text) == []

        context = pw.chromium.launch_persistent_context(str(profile), **options)
        page = context.new_page()
        page.goto(f"{server.url}/interviews/{iid}/section/0?lang=en")
        if "/login" in page.url:  # the session ended with the browser: log in again
            page.locator("#username").fill("peer_a")
            page.locator("#password").fill(PASSWORD)
            page.locator("form button[type=submit]").click()
            page.wait_for_url(f"**/interviews/{iid}/section/0**")
        page.wait_for_selector("html.tablet-ready", state="attached")
        _text_on_page(page, text)
        _reaches_store_once(page, app, text)
        context.close()
