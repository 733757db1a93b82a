"""The consent form explains itself without JavaScript: the way first, and errors where they are."""

import re

from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent
from tests.helpers import CONSENT_ALL_YES, signature_data_url, start_interview

ITEMS = ("participate", "audio", "quotes", "recontact")
PARTICIPATE_EN = "I have received information about the INNOFACT research study"


def _consenting(client, auth, world, key="pa", user="peer_a") -> str:
    auth.login(user)
    iid = world.interviews[key]
    assert start_interview(client, iid).status_code == 302
    return iid


def _form(html: str) -> str:
    """The consent form as shown (the script's messages, kept in JSON beside it, left out)."""
    return re.search(r'<form[^>]*id="consent-form".*?</form>', html, re.S).group(0)


def _summary(html: str) -> str:
    found = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', html, re.S)
    assert found, "the page has no error summary"
    return found.group(0)


def _links(summary: str) -> list[str]:
    return re.findall(r'<a href="#([^"]+)">', summary)


def _fieldset_of(html: str, radio_id: str) -> str:
    """The opening tag of the fieldset holding a radio, and everything up to that radio."""
    at = html.index(f'id="{radio_id}"')
    start = html.rindex("<fieldset", 0, at)
    return html[start : html.index(">", at) + 1]


def _no_consent_saved(app):
    with app.app_context():
        assert db.session.scalars(select(Consent)).all() == []


def test_the_way_of_consenting_comes_before_the_items(client, auth, world):
    iid = _consenting(client, auth, world)
    page = client.get(f"/interviews/{iid}/consent?lang=en").text
    order = [
        page.index('id="method-0"'),
        page.index('id="method-1"'),
        page.index('id="item-participate-yes"'),
        page.index('id="item-recontact-no"'),
        page.index('id="signature-pad"'),
        page.index('id="paper_form_number"'),
    ]
    assert order == sorted(order)
    assert "How does the participant give consent?" in page
    # no problem yet, so no summary and no marks
    assert "error-summary" not in page
    assert 'aria-invalid="true"' not in page
    # the messages the script shows come from the server, in the peer's language
    strings = re.compile(r'<script type="application/json" id="consent-strings">(.*?)</script>')
    assert "There is a problem" in strings.search(page).group(1)
    nb = client.get(f"/interviews/{iid}/consent?lang=nb").text
    assert "Noe mangler" in strings.search(nb).group(1)


def test_no_way_chosen_is_said_at_the_choice_never_as_a_missing_paper_number(
    client, auth, world, app
):
    iid = _consenting(client, auth, world)
    answer = client.post(
        f"/interviews/{iid}/consent?lang=en",
        data={**CONSENT_ALL_YES, "signature": signature_data_url()},
    )
    assert answer.status_code == 400
    page = answer.text
    summary = _summary(page)
    assert "Choose how the participant gives consent." in summary
    assert _links(summary) == ["method-0"]
    assert "paper form" not in summary.lower()
    assert "Write the number of the signed paper form." not in _form(page)
    # marked at the choice: the fieldset, its message under the legend, the radios
    fieldset = _fieldset_of(page, "method-0")
    assert "has-error" in fieldset
    assert re.search(r'aria-describedby="[^"]*\bmethod-errors\b', fieldset)
    assert fieldset.index("</legend>") < fieldset.index('id="method-errors"')
    for radio in re.findall(r"<input[^>]*name=\"method\"[^>]*>", page):
        assert 'aria-invalid="true"' in radio
    # the answers and the drawn signature are kept, so nobody answers or signs twice
    for item in ITEMS:
        value = CONSENT_ALL_YES[f"item-{item}"]
        assert re.search(rf'id="item-{item}-{value}"[^>]*checked', page), item
    assert f'value="{signature_data_url()}"' in page
    _no_consent_saved(app)


def test_every_unanswered_item_is_named_in_the_summary_and_marked_at_the_item(
    client, auth, world, app
):
    iid = _consenting(client, auth, world, key="pa2", user="peer_a2")  # an English interview
    answer = client.post(
        f"/interviews/{iid}/consent?lang=en",
        data={"item-audio": "no", "method": "paper", "paper_form_number": "P-9"},
    )
    assert answer.status_code == 400
    page = answer.text
    summary = _summary(page)
    assert 'role="alert"' in summary and 'tabindex="-1"' in summary
    assert "There is a problem" in summary
    assert _links(summary) == ["item-participate-yes", "item-quotes-yes", "item-recontact-yes"]
    # each link names its item by its words, in the interview's language
    assert f'Answer yes or no: <span lang="en">{PARTICIPATE_EN}' in summary
    for item in ("participate", "quotes", "recontact"):
        fieldset = _fieldset_of(page, f"item-{item}-yes")
        assert "has-error" in fieldset
        assert f'aria-describedby="item-{item}-errors"' in fieldset
        assert fieldset.index("</legend>") < fieldset.index(f'id="item-{item}-errors"')
        assert "Answer yes or no." in fieldset
        for choice in ("yes", "no"):
            radio = re.search(rf'<input[^>]*id="item-{item}-{choice}"[^>]*>', page).group(0)
            assert 'aria-invalid="true"' in radio
    # the answered item is not marked, and keeps its answer; so does the paper number
    audio = _fieldset_of(page, "item-audio-no")
    assert "has-error" not in audio
    assert re.search(r'id="item-audio-no"[^>]*checked', page)
    assert 'value="P-9"' in page
    _no_consent_saved(app)


def test_the_summary_in_norwegian_keeps_the_item_in_the_interview_language(client, auth, world):
    iid = _consenting(client, auth, world, key="pa2", user="peer_a2")
    page = client.post(f"/interviews/{iid}/consent?lang=nb", data={}).text
    summary = _summary(page)
    assert "Noe mangler" in summary
    assert "Velg hvordan deltakeren gir samtykke." in summary
    assert f'Svar ja eller nei: <span lang="en">{PARTICIPATE_EN}' in summary


def test_no_to_taking_part_is_marked_at_that_item(client, auth, world, app):
    iid = _consenting(client, auth, world)
    answer = client.post(
        f"/interviews/{iid}/consent?lang=en",
        data={**CONSENT_ALL_YES, "item-participate": "no", "method": "paper"},
    )
    assert answer.status_code == 400
    page = answer.text
    summary = _summary(page)
    assert _links(summary) == ["item-participate-yes", "paper_form_number"]
    assert "The participant has answered no:" in summary
    fieldset = _fieldset_of(page, "item-participate-yes")
    assert "has-error" in fieldset
    assert "Without consent to take part, the interview cannot go ahead." in fieldset
    assert re.search(r'id="item-participate-no"[^>]*checked', page)
    # the paper number is asked for at its field
    number = re.search(r'<input[^>]*id="paper_form_number"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in number
    assert "paper_form_number-errors" in number
    assert "Write the number of the signed paper form." in _form(page)
    _no_consent_saved(app)


def test_signing_on_the_tablet_without_a_signature_is_said_at_the_pad(client, auth, world, app):
    iid = _consenting(client, auth, world)
    answer = client.post(
        f"/interviews/{iid}/consent?lang=en", data={**CONSENT_ALL_YES, "method": "tablet"}
    )
    assert answer.status_code == 400
    page = answer.text
    summary = _summary(page)
    assert _links(summary) == ["signature-pad"]
    assert "Ask the participant to sign in the box." in summary
    pad = re.search(r"<canvas[^>]*>", page).group(0)
    assert 'aria-invalid="true"' in pad
    assert re.search(r'aria-describedby="[^"]*\bsignature-errors\b', pad)
    _no_consent_saved(app)


def test_a_complete_form_is_saved_as_before(client, auth, world, app):
    iid = _consenting(client, auth, world)
    answer = client.post(
        f"/interviews/{iid}/consent",
        data={**CONSENT_ALL_YES, "method": "tablet", "signature": signature_data_url()},
    )
    assert answer.status_code == 302
    with app.app_context():
        assert db.session.scalars(select(Consent)).one().method == "tablet"
