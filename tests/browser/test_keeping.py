"""A tablet the browser may clear, in real Chromium: the app is installable, "Prepare for offline"
says whether the work is kept, a lost store is noticed at once, a sealed copy of unsent work
reaches the case store through the desk, and signatures never wait in plain form."""

import json
import re

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent, Device, User
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _sign,
    _wait_status,
    _watch_errors,
    notes_with,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

QUESTION = "context.services"


def _outbox_text(page) -> str:
    """Everything the tablet's outbox holds, as one JSON text."""
    return page.evaluate(
        """() => new Promise((resolve, reject) => {
          const open = indexedDB.open('fact-companion');
          open.onsuccess = () => {
            const tx = open.result.transaction(['outbox']);
            const all = tx.objectStore('outbox').getAll();
            all.onsuccess = () => resolve(JSON.stringify(all.result));
            all.onerror = () => reject(all.error);
          };
          open.onerror = () => reject(open.error);
        })"""
    )


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_prepare_for_offline_says_whether_the_work_is_kept(
    server, browser, app, world, lang, tmp_path
):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a", lang=lang)
    manifest = page.locator("link[rel=manifest]").get_attribute("href")
    answer = page.request.get(server.url + manifest)
    assert answer.ok
    data = answer.json()
    assert data["display"] == "standalone"
    assert data["lang"] == lang
    assert data["name"] == {"en": "FACT Interview Companion", "nb": "FACT-intervjuhjelperen"}[lang]
    assert {"192x192", "512x512"} <= {i["sizes"] for i in data["icons"]}
    for icon in data["icons"]:
        assert page.request.get(server.url + icon["src"]).ok
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => !document.getElementById('device-state').hidden"
        " && document.getElementById('device-usage').textContent !== ''",
        timeout=30000,
    )
    state = page.locator("#device-state").inner_text()
    assert page.locator("#device-installed").inner_text() != ""
    assert page.locator("#device-persisted").inner_text() != ""
    assert "MB" in page.locator("#device-usage").inner_text()
    page.locator(".install-help summary").click()
    help_text = page.locator(".install-help").inner_text()
    assert {"en": "Add to Home Screen", "nb": "Legg til på Hjem-skjerm"}[lang] in help_text
    page.screenshot(path=str(tmp_path / f"keeping-{lang}.png"), full_page=True)
    assert state
    assert not errors, errors
    context.close()


def test_a_signature_never_waits_on_the_tablet_in_plain_form(server, browser, app, client, world):
    from tests.helpers import start_interview

    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    client.post("/logout")
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()  # the consent is given without a network
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline')",
        timeout=30000,
    )
    page.goto(f"{server.url}/interviews/{iid}/consent")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.wait_for_function(
        """() => new Promise((resolve) => {
          const open = indexedDB.open('fact-companion');
          open.onsuccess = () => {
            const get = open.result.transaction(['meta']).objectStore('meta').get('study_key');
            get.onsuccess = () => resolve(!!get.result);
          };
        })"""
    )
    context.set_offline(True)
    page.locator("#method-0").check()
    for item in ("participate", "audio", "quotes", "recontact"):
        page.locator(f"#item-{item}-yes").check()
    page.locator("#printed_name").fill("KARI FIKTIV")
    _sign(page)
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    held = _outbox_text(page)
    assert '"entity":"consent"' in held
    assert "data:image" not in held
    assert "KARI FIKTIV" not in held
    assert '"sealed"' in held
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    with app.app_context():
        consent = db.session.scalar(select(Consent))
        assert consent is not None and consent.method == "tablet"
    context.close()


def test_a_store_the_browser_cleared_is_noticed_at_once(server, browser, app, started, world):
    iid, _ = started
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"])
    old_store = page.evaluate(
        """(key) => new Promise((resolve) => {
          const open = indexedDB.open('fact-companion');
          open.onsuccess = () => {
            const get = open.result.transaction(['meta']).objectStore('meta').get(key);
            get.onsuccess = () => { resolve(get.result.value); open.result.close(); };
          };
        })""",
        f"device_id:{world.users['peer_a']}",
    )
    # the browser cleared the site's storage (Safari after seven days unused)
    page.goto(f"{server.url}/offline")
    page.evaluate(
        """() => new Promise((resolve) => {
          const gone = indexedDB.deleteDatabase('fact-companion');
          gone.onsuccess = gone.onerror = gone.onblocked = () => resolve(true);
        })"""
    )
    page.evaluate("localStorage.clear()")
    # what the old store last told the case store: three changes held for this interview
    # (set once the old store is gone, so no late sync of it can say otherwise; on a loaded
    # machine one did, and the test once failed so)
    with app.app_context():
        device = db.session.get(Device, old_store)
        device.pending = 3
        device.pending_interviews = [iid]
        db.session.commit()
    page.goto(f"{server.url}/interviews/")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    context.close()

    desk_context = browser.new_context(viewport=TABLET)
    desk = desk_context.new_page()
    _login_desk(desk, server.url)
    desk.goto(f"{server.url}/desk/alerts")
    text = desk.locator("main").inner_text()
    assert "may have lost unsent work" in text
    assert "peer_a" in text
    with app.app_context():
        code = world_code(world)
    assert code in text
    desk_context.close()


def world_code(world):
    from interview.store.models import Participant

    return db.session.get(Participant, world.participants["pa"]).code


def _login_desk(page, base, username="coord_a"):
    page.goto(f"{base}/login?lang=en")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()


def test_a_sealed_copy_of_unsent_work_reaches_the_store_through_the_desk(
    server, browser, app, started, tmp_path
):
    iid, _ = started
    context = browser.new_context(viewport=TABLET, has_touch=True, accept_downloads=True)
    page = context.new_page()
    _login(page, server.url, "peer_a")
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"])
    # the case store cannot be reached from here on: the note waits on the tablet
    context.route("**/api/v1/sync", lambda route: route.abort())
    first = "Ord som bare finnes i redningskopien"
    box = page.locator(f".note[data-new][data-question='{QUESTION}'] textarea")
    box.fill(first)
    # a sync is tried (and fails) after the first words: what is typed next waits behind them
    page.wait_for_function(
        "() => document.getElementById('sync-status').dataset.state === 'unreachable'",
        timeout=20000,
    )
    note = page.locator(f".note[data-question='{QUESTION}'] textarea").nth(1)
    note.click()
    page.keyboard.press("End")
    page.keyboard.type(" – og mer etterpå")
    text = first + " – og mer etterpå"
    page.wait_for_timeout(300)
    page.goto(f"{server.url}/interviews/")
    page.wait_for_selector("html.tablet-ready", state="attached")
    with page.expect_download() as download_info:
        page.locator("#rescue-copy").click()
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    body = saved.read_text()
    assert text not in body and "Første" not in body
    rescue = json.loads(body)
    assert rescue["format"] == "fact-rescue" and rescue["count"] >= 1
    assert re.search(r"\d+ change", page.locator("#rescue-status").inner_text())
    context.close()
    assert notes_with(app, text) == []

    desk_context = browser.new_context(viewport=TABLET)
    desk = desk_context.new_page()
    _login_desk(desk, server.url)
    for attempt in range(2):  # brought twice: the second time changes nothing
        desk.goto(f"{server.url}/desk/rescue")
        desk.locator("input[type=file]").set_input_files(str(saved))
        desk.locator("main form button[type=submit]").click()
        desk.wait_for_load_state()
        assert len(notes_with(app, text)) == 1, attempt
    with app.app_context():
        note = notes_with(app, text)[0]
        assert db.session.get(User, note.author_id).username == "peer_a"
    desk_context.close()
