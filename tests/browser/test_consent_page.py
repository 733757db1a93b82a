"""The consent form in real Chromium on a tablet: the way first, and errors before any save."""

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent
from tests.browser.helpers import TABLET, _login, _sign, _watch_errors
from tests.conftest import PASSWORD
from tests.helpers import CONSENT_ALL_YES, signature_data_url, start_interview

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots")
ITEMS = ("participate", "audio", "quotes", "recontact")
# the UI language, the world's participant interviewed in it, and the peer
WHO = {"nb": ("pa", "peer_a"), "en": ("pa2", "peer_a2")}
WORDS = {
    "nb": {
        "clear": "Fjern underskriften",
        "title": "Noe mangler",
        "answer": "Svar ja eller nei: ",
        "method": "Velg hvordan deltakeren gir samtykke.",
        "paper": "papirskjema",
    },
    "en": {
        "clear": "Clear signature",
        "title": "There is a problem",
        "answer": "Answer yes or no: ",
        "method": "Choose how the participant gives consent.",
        "paper": "paper form",
    },
}


def _consent_page(app, live_server, browser, world, lang, viewport=TABLET):
    """A peer's tablet on the consent page of an interview past the capacity check."""
    key, user = WHO[lang]
    iid = world.interviews[key]
    client = app.test_client()
    client.post("/login", data={"username": user, "password": PASSWORD})
    start_interview(client, iid)
    context = browser.new_context(viewport=viewport, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, live_server, user, lang=lang)
    page.goto(f"{live_server}/interviews/{iid}/consent")
    page.wait_for_selector("html.tablet-ready", state="attached")
    return context, page, iid, errors


def _consents(app) -> list:
    with app.app_context():
        found = db.session.scalars(select(Consent)).all()
        db.session.remove()
        return found


def _focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def _below_the_bar(page, selector) -> bool:
    """True when the element's top is in view and not under the sticky safety bar."""
    return page.evaluate(
        """selector => {
          const top = document.querySelector(selector).getBoundingClientRect().top;
          const bar = document.querySelector(".safety-bar").getBoundingClientRect().bottom;
          return top >= bar && top < window.innerHeight;
        }""",
        selector,
    )


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_way_comes_first_and_missing_answers_are_named_before_anything_is_saved(
    live_server, browser, app, world, lang
):
    words = WORDS[lang]
    context, page, iid, errors = _consent_page(app, live_server, browser, world, lang)
    pad, number = page.locator("#signature-pad"), page.locator("#paper_form_number")
    # before a choice neither way's fields are shown
    assert not pad.is_visible() and not number.is_visible()
    page.locator("#method-0").check()
    assert pad.is_visible() and not number.is_visible()
    assert page.locator("#signature-clear").inner_text().strip() == words["clear"]
    page.locator("#method-1").check()
    assert not pad.is_visible() and number.is_visible()

    # paper chosen and numbered, two items answered, two not
    number.fill("P-42")
    page.locator("#item-audio-no").check()
    page.locator("#item-quotes-yes").check()
    url = page.url
    page.locator("#consent-form button[type=submit]").click()
    summary = page.locator(".error-summary")
    summary.wait_for()
    assert _focused_id(page) == "error-summary"
    assert _below_the_bar(page, ".error-summary")
    assert summary.get_attribute("role") == "alert"
    assert summary.locator("h2").inner_text() == words["title"]
    links = summary.locator("a")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
        "#item-participate-yes",
        "#item-recontact-yes",
    ]
    first = links.nth(0).inner_text()
    legend = page.locator("#item-participate-yes").locator("xpath=ancestor::fieldset//legend//span")
    assert first == words["answer"] + legend.first.inner_text()
    # marked at each item: the fieldset, its message, the radios
    for item in ("participate", "recontact"):
        fieldset = page.locator(f"fieldset:has(#item-{item}-yes)")
        assert "has-error" in fieldset.get_attribute("class")
        assert f"item-{item}-errors" in fieldset.get_attribute("aria-describedby")
        assert page.locator(f"#item-{item}-errors").is_visible()
        assert page.locator(f"#item-{item}-no").get_attribute("aria-invalid") == "true"
    assert "has-error" not in page.locator("fieldset:has(#item-audio-yes)").get_attribute("class")
    # nothing was saved, on the tablet or in the case store, and the page stayed
    assert page.url == url
    time.sleep(0.5)
    assert _consents(app) == []
    assert page.evaluate("document.getElementById('sync-status').dataset.state") != "waiting"

    # a link in the summary puts focus on the item
    links.nth(1).click()
    assert _focused_id(page) == "item-recontact-yes"
    assert _below_the_bar(page, "fieldset:has(#item-recontact-yes) legend")
    assert page.url == url

    # answered, the same form goes through, and the marks are gone
    for item in ITEMS:
        page.locator(f"#item-{item}-yes").check()
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    context.close()
    assert errors == [], errors


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_a_signature_without_a_way_chosen_asks_for_the_way(live_server, browser, app, world, lang):
    words = WORDS[lang]
    context, page, _iid, errors = _consent_page(app, live_server, browser, world, lang)
    for item in ITEMS:
        page.locator(f"#item-{item}-yes").check()
    page.locator("#method-0").check()
    _sign(page)
    # the choice is lost (as after a reset); the signature is still there
    page.evaluate("document.querySelectorAll('input[name=method]').forEach(r => r.checked = false)")
    page.locator("#consent-form button[type=submit]").click()
    summary = page.locator(".error-summary")
    summary.wait_for()
    text = summary.inner_text()
    assert words["method"] in text
    assert words["paper"] not in text.lower()
    assert summary.locator("a").get_attribute("href") == "#method-0"
    method = page.locator("fieldset:has(#method-0)")
    assert "has-error" in method.get_attribute("class")
    assert "method-errors" in method.get_attribute("aria-describedby")
    assert page.locator("#method-1").get_attribute("aria-invalid") == "true"
    assert _focused_id(page) == "error-summary"
    assert page.locator("#paper_form_number-errors").count() == 0
    assert _consents(app) == []
    context.close()
    assert errors == [], errors


def test_the_servers_answer_is_focused_and_keeps_the_signature_for_when_the_pad_is_shown(
    live_server, browser, app, world
):
    """A form the server refused (sent without the page's checks): its summary is read first,
    and the signature drawn before comes back on the pad once signing on the tablet is chosen."""
    context, page, iid, errors = _consent_page(app, live_server, browser, world, "en")
    fields = {**CONSENT_ALL_YES, "signature": signature_data_url()}
    # sent as a plain post, past the page's own checks (form.submit() fires no submit event)
    page.evaluate(
        """fields => {
          const f = document.createElement("form");
          f.method = "post";
          for (const [name, value] of Object.entries(fields)) {
            const input = document.createElement("input");
            input.type = "hidden"; input.name = name; input.value = value;
            f.append(input);
          }
          document.body.append(f);
          HTMLFormElement.prototype.submit.call(f);
        }""",
        fields,
    )
    page.wait_for_selector(".error-summary")
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert _focused_id(page) == "error-summary"
    summary = page.locator(".error-summary").inner_text()
    assert "Choose how the participant gives consent." in summary
    assert not page.locator("#signature-pad").is_visible()
    page.locator("#method-0").check()
    page.wait_for_function(
        """() => {
          const c = document.getElementById("signature-pad");
          const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          for (let i = 3; i < d.length; i += 4) if (d[i]) return true;
          return false;
        }"""
    )
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    context.close()
    with app.app_context():
        deadline = time.monotonic() + 20
        while not db.session.scalars(select(Consent)).all() and time.monotonic() < deadline:
            db.session.rollback()
            time.sleep(0.2)
        assert db.session.scalars(select(Consent)).one().method == "tablet"
    assert errors == [], errors


@pytest.mark.parametrize("lang", ["nb", "en"])
@pytest.mark.parametrize("viewport", [TABLET, {"width": 768, "height": 1024}])
def test_screenshots_of_the_consent_page_with_errors(
    live_server, browser, app, world, lang, viewport
):
    """For a person to look at: the summary at the top, focused, and the marks at the items."""
    context, page, _iid, errors = _consent_page(app, live_server, browser, world, lang, viewport)
    page.locator("#method-0").check()
    page.locator("#item-audio-yes").check()
    page.locator("#item-participate-no").check()
    page.keyboard.press("Enter")  # sent from the keyboard, as a peer with a keyboard would
    page.locator(".error-summary").wait_for()
    assert _focused_id(page) == "error-summary"
    outline = page.evaluate(
        "getComputedStyle(document.activeElement).outlineStyle + ' ' + "
        "getComputedStyle(document.activeElement).outlineWidth"
    )
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
    SHOTS.mkdir(exist_ok=True)
    size = f"{viewport['width']}x{viewport['height']}"
    page.screenshot(path=str(SHOTS / f"consent-errors-{lang}-{size}.png"))
    page.screenshot(path=str(SHOTS / f"consent-errors-{lang}-{size}-full.png"), full_page=True)
    context.close()
    assert errors == [], errors
