"""The consent letter on a tablet held upright: REK's sections in order, read in the interview
language, the limit of confidentiality set apart, and screenshots for a person to look at.
"""

from pathlib import Path

import pytest

from tests.browser.helpers import _login, _watch_errors
from tests.conftest import PASSWORD
from tests.consent_letter import EXCEPTION, HEADINGS
from tests.helpers import start_interview

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots")
UPRIGHT = {"width": 768, "height": 1024}
WHO = {"nb": ("pa", "peer_a"), "en": ("pa2", "peer_a2")}


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_letter_reads_in_rek_order_on_an_upright_tablet(live_server, browser, app, world, lang):
    key, user = WHO[lang]
    iid = world.interviews[key]
    client = app.test_client()
    client.post("/login", data={"username": user, "password": PASSWORD})
    start_interview(client, iid)
    context = browser.new_context(viewport=UPRIGHT, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, live_server, user, lang=lang)
    page.goto(f"{live_server}/interviews/{iid}/consent")
    page.wait_for_selector("html.tablet-ready", state="attached")

    headings = page.locator(".letter-section h2")
    assert [h.strip() for h in headings.all_inner_texts()] == HEADINGS[lang]
    for h in headings.all():
        assert h.evaluate("e => e.closest('[lang]').lang") == lang
    exception = page.locator("#letter-privacy .confidentiality")
    assert EXCEPTION[lang] in " ".join(exception.inner_text().split())
    # set apart: a border a reader sees, and no line runs past the screen
    assert exception.evaluate("e => getComputedStyle(e).borderLeftWidth") == "5px"
    assert page.evaluate("document.documentElement.scrollWidth") <= UPRIGHT["width"]
    SHOTS.mkdir(exist_ok=True)
    exception.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"consent-letter-{lang}-768x1024.png"))
    page.screenshot(path=str(SHOTS / f"consent-letter-{lang}-768x1024-full.png"), full_page=True)
    context.close()
    assert errors == [], errors
