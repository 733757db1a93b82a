"""The identifier guard on the tablet: a warning under the note box while typing, offline too."""

import pytest

from tests.browser.helpers import TABLET, _login, _wait_status, _watch_errors
from tests.helpers import consented_interview

pytestmark = pytest.mark.browser

WARNING = ".note[data-note-id] .identifier-warning"


def test_typing_an_identifier_warns_under_the_note_and_the_note_is_kept(
    server, browser, app, world, client
):
    iid = consented_interview(client, world)
    client.post("/logout")

    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a", "en")
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    box = page.locator("textarea[name='new-context.services-text']")
    # listen from the start: on a loaded machine a sync answer may come at any moment
    page.evaluate(
        "() => { window.answers = []; document.addEventListener('tablet:warnings', "
        "(e) => window.answers.push(...e.detail)); }"
    )

    # offline: the tablet's own rules warn while typing
    context.set_offline(True)
    box.fill("Hun ba meg ringe 912 34 567 i morgen.")
    warning = page.locator(WARNING).first
    warning.wait_for(timeout=5000)
    assert "This note may contain a phone number." in warning.inner_text()
    assert "Write around it" in warning.inner_text()
    assert "91\u2022 \u2022\u2022 \u2022\u2022\u2022" in warning.inner_text()
    assert "912 34 567" not in warning.inner_text()

    # writing around it takes the warning away; the words stay in the box
    box.fill("Hun ba meg ringe henne i morgen.")
    page.wait_for_selector(WARNING, state="detached", timeout=5000)

    # back online: the case store's answer names the kinds for the note that was sent
    box.fill("Broren heter Piotr.")
    page.locator(WARNING).first.wait_for(timeout=5000)
    context.set_offline(False)
    page.evaluate("() => window.dispatchEvent(new Event('online'))")
    _wait_status(page, "All saved to the case store")
    answers = page.evaluate("() => window.answers")
    assert {"name"} <= {k for a in answers for k in a["kinds"]}
    assert all(set(a) == {"id", "kinds", "text"} for a in answers)
    assert "person's name" in page.locator(WARNING).first.inner_text()
    context.close()
    assert errors == [], errors
