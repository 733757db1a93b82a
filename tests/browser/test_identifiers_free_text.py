"""The identifier guard on the tablet's other free texts: a warning under the stop comment while
typing, offline too, read with the field; the words are never repeated."""

import pytest

from tests.browser.helpers import TABLET, _login, _watch_errors
from tests.helpers import consented_interview

pytestmark = pytest.mark.browser

WARNING = "[data-identifier-field] .identifier-warning"


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("en", "This text may contain a phone number."),
        ("nb", "Denne teksten kan inneholde et telefonnummer."),
    ],
)
def test_typing_an_identifier_in_the_stop_comment_warns_under_it(
    server, browser, app, world, client, lang, said
):
    iid = consented_interview(client, world)
    client.post("/logout")

    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a", lang)
    page.goto(f"{server.url}/interviews/{iid}/stop")
    page.wait_for_selector("html.tablet-ready", state="attached")
    box = page.locator("textarea[name='comment']")

    # offline: the tablet's own rules warn while typing
    context.set_offline(True)
    box.fill("Ring søsteren hennes på 912 34 567 i kveld.")
    warning = page.locator(WARNING)
    warning.wait_for(timeout=5000)
    words = warning.inner_text()
    assert said in words
    assert "91\u2022 \u2022\u2022 \u2022\u2022\u2022" in words and "912 34 567" not in words
    # read with the field by a screen reader, as its error would be
    assert box.get_attribute("aria-describedby") == "comment-identifiers"
    assert warning.get_attribute("id") == "comment-identifiers"

    # writing around it takes the warning away; the words stay in the box
    box.fill("Ring søsteren hennes i kveld.")
    page.wait_for_selector(WARNING, state="detached", timeout=5000)
    assert box.get_attribute("aria-describedby") is None
    assert box.input_value() == "Ring søsteren hennes i kveld."
    context.close()
    assert errors == [], errors
