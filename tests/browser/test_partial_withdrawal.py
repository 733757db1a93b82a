"""Partial withdrawal in real Chromium at 1024x768: the coordinator records that a participant
takes back consent to quotes (in English and in Bokmål), and the peer's tablet, at its next
sync, holds its quote boxes off and says why."""

import os

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent, Note
from tests.browser.helpers import ALL_SAVED, TABLET, _login, _wait_status, _watch_errors
from tests.conftest import PASSWORD
from tests.helpers import give_paper_consent, new_note_on_page, start_interview

pytestmark = pytest.mark.browser

QKEY = "context.services"
NO_QUOTES = {
    "en": "consent does not cover quotes",
    "nb": "samtykke omfatter ikke sitater",
}


def _shot(page, name):
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=os.path.join(folder, name), full_page=True)


def test_coordinator_withdraws_quotes_and_the_tablet_holds_its_quote_boxes_off(
    server, browser, app, client, world
):
    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    give_paper_consent(client, iid)  # quotes: yes
    note_id, fields = new_note_on_page(client.get(f"/interviews/{iid}/section/0").text, QKEY)
    saved = client.post(
        f"/interviews/{iid}/section/0",
        data={**fields, f"new-{QKEY}-text": "Et mulig sitat", f"new-{QKEY}-quote": "1"},
    )
    assert saved.status_code == 302
    client.post("/logout")
    pid = world.participants["pa"]

    # the peer's tablet has the section open, the note marked as a possible quote
    tablet = browser.new_context(viewport=TABLET, has_touch=True)
    desk = browser.new_context(viewport=TABLET)
    try:
        peer = tablet.new_page()
        errors: list[str] = []
        _watch_errors(peer, errors)
        _login(peer, server.url, "peer_a", "nb")
        peer.goto(f"{server.url}/interviews/{iid}/section/0")
        peer.wait_for_selector("html.tablet-ready", state="attached")
        _wait_status(peer, ALL_SAVED["nb"])
        box = peer.locator(f".note[data-note-id='{note_id}'] input[name$='-quote']")
        assert box.is_checked() and box.is_enabled()
        assert peer.locator("#no-quotes").is_hidden()

        # the coordinator reads the page in Bokmål, then records it in English
        coord = desk.new_page()
        coord_errors: list[str] = []
        _watch_errors(coord, coord_errors)
        coord.goto(f"{server.url}/login?lang=nb")
        coord.locator("#username").fill("coord_a")
        coord.locator("#password").fill(PASSWORD)
        coord.locator("form button[type=submit]").click()
        coord.wait_for_url("**/participants/")
        coord.goto(f"{server.url}/participants/{pid}?lang=nb")
        coord.get_by_role("link", name="Trekk tilbake deler av samtykket").click()
        coord.wait_for_url(f"**/participants/{pid}/withdraw-items**")
        assert coord.locator("html").get_attribute("lang") == "nb"
        assert coord.get_by_role("heading", name="Dette vil skje").is_visible()
        assert "1 notat" in coord.locator("main").inner_text()
        _shot(coord, "partial-withdrawal-nb.png")
        # a post with nothing chosen: the error beside the field, in Bokmål
        coord.get_by_role("button", name="Registrer den delvise tilbaketrekkingen").click()
        coord.wait_for_selector("#items-errors")
        assert "Velg minst ett samtykkepunkt" in coord.locator("#items-errors").inner_text()
        _shot(coord, "partial-withdrawal-error-nb.png")

        coord.goto(f"{server.url}/participants/{pid}/withdraw-items?lang=en")
        assert coord.locator("html").get_attribute("lang") == "en"
        _shot(coord, "partial-withdrawal-en.png")
        quotes = coord.get_by_label("Quotes in publications")
        assert quotes.bounding_box()["height"] >= 24  # the label row makes the 44px target
        quotes.check()
        coord.get_by_role("button", name="Record the partial withdrawal").click()
        coord.wait_for_url(f"**/participants/{pid}")
        main = coord.locator("main").inner_text()
        assert "The withdrawal of part of the consent" in main
        assert "No: withdrawn" in main and "Partial withdrawal" in main
        _shot(coord, "participant-after-partial-en.png")
        coord.goto(f"{server.url}/participants/{pid}?lang=nb")
        assert "Nei: trukket tilbake" in coord.locator("main").inner_text()
        _shot(coord, "participant-after-partial-nb.png")
        with app.app_context():
            kinds = set(db.session.scalars(select(Consent.kind)))
            assert kinds == {"consent", "partial"}

        # at its next sync the tablet hears it: the mark is gone and no box can be ticked
        peer.locator("#sync-now").click()
        peer.wait_for_function("() => !document.getElementById('no-quotes').hidden", timeout=20000)
        assert NO_QUOTES["nb"] in peer.locator("#no-quotes").inner_text()
        boxes = peer.locator("input[name$='-quote']")
        assert boxes.count() >= 2
        for i in range(boxes.count()):
            assert boxes.nth(i).is_disabled() and not boxes.nth(i).is_checked()
        _wait_status(peer, ALL_SAVED["nb"])
        _shot(peer, "section-no-quotes-nb.png")
        assert errors == [] and coord_errors == []
        with app.app_context():
            db.session.expire_all()
            assert db.session.get(Note, note_id).possible_quote is False
    finally:
        tablet.close()
        desk.close()
