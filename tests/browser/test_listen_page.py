"""The listening page in Chromium (1024×768): the recording plays, a note on the timeline
plays it from where the note was begun, and the note heard is marked; in both languages."""

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import AuditEvent
from tests.browser.helpers import TABLET, _watch_errors, until
from tests.conftest import PASSWORD
from tests.listen_helpers import make_recording, note_in_recording, opus_webm

pytest.importorskip("av")


@pytest.fixture
def recording(app, world):
    """Twelve seconds of Opus in WebM (no duration in it, as MediaRecorder writes it), in three
    chunks, with notes begun at 0:02 and 0:08."""
    sound = opus_webm(12)
    third = len(sound) // 3
    pieces = [sound[:third], sound[third : 2 * third], sound[2 * third :]]
    with app.app_context():
        iid = world.interviews["pa"]
        rid = make_recording(iid, pieces, chunk_ms=4000)
        peer = world.users["peer_a"]
        note_in_recording(iid, rid, 2_000, "Teamet kommer hjem til meg", "context.services", peer,
                          "promotes")  # fmt: skip
        note_in_recording(iid, rid, 8_000, "Jeg venter lenge på svar", "context.duration", peer)
    return rid


@pytest.mark.parametrize(
    ("lang", "heading", "notes"),
    [("nb", "Lydopptak", "Notater skrevet under opptaket"),
     ("en", "Audio recording", "Notes made while recording")],
)  # fmt: skip
def test_a_note_plays_the_recording_from_its_place(
    server, browser, app, tmp_path, recording, lang, heading, notes
):
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    errors = []
    _watch_errors(page, errors)
    page.goto(f"{server.url}/login?lang={lang}")
    page.locator("#username").fill("coord_a")
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()
    page.goto(f"{server.url}/desk/recordings/{recording}?lang={lang}")
    assert heading in page.locator("h1").inner_text()
    assert page.get_by_role("heading", name=notes).is_visible()
    # the browser reads the sound's start: it is real Opus it can decode
    until(page, "() => document.getElementById('recording-audio').readyState >= 1")
    jumps = page.locator("#timeline button")
    assert jumps.count() == 2
    assert "0:08" in jumps.nth(1).inner_text()
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    page.screenshot(path=str(folder / f"listen-{lang}.png"))

    # by keyboard, as a mouse would: the second note plays from 0:08
    jumps.nth(1).focus()
    page.keyboard.press("Enter")
    until(
        page,
        """() => { const a = document.getElementById('recording-audio');
                   return !a.paused && a.currentTime >= 8 && a.currentTime < 11.5; }""",
    )
    until(page, "() => document.querySelectorAll('#timeline button')[1]"
                ".getAttribute('aria-current') === 'true'")  # fmt: skip
    assert page.locator("#timeline [aria-current=true]").count() == 1
    # and back to the first
    jumps.nth(0).click()
    until(
        page,
        """() => { const a = document.getElementById('recording-audio');
                   return a.currentTime >= 2 && a.currentTime < 5; }""",
    )
    # marked once the player says where it is (its next timeupdate or seeked)
    until(page, "() => document.querySelector('#timeline button')"
                ".getAttribute('aria-current') === 'true'")  # fmt: skip
    assert errors == []
    context.close()
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "recording_listened")
        ).all()
    # the page, and nothing more for the player's own requests from the start
    assert len(rows) == 1
