"""The consent page shows the whole information letter in REK's order, in the interview
language, with the one limit of confidentiality (the distress protocol) named.
"""

import html as html_lib
import re

import pytest
from sqlalchemy import select

from interview.store.consent_form import SECTIONS, STATEMENT
from interview.store.extensions import db
from interview.store.models import ConsentFormVersion
from tests.consent_letter import EXCEPTION, FACTS, HEADINGS, in_order, words
from tests.helpers import start_interview

# the world's participant interviewed in each language, and the peer
WHO = {"nb": ("pa", "peer_a"), "en": ("pa2", "peer_a2")}


def _consent_page(client, auth, world, lang, ui="en") -> str:
    key, user = WHO[lang]
    auth.login(user)
    iid = world.interviews[key]
    assert start_interview(client, iid).status_code == 302
    response = client.get(f"/interviews/{iid}/consent?lang={ui}")
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("ui", ["nb", "en"])
@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_consent_page_shows_every_section_in_rek_order_in_the_interview_language(
    client, auth, world, lang, ui
):
    page = _consent_page(client, auth, world, lang, ui)
    # every heading an h2, in order, then the items of the consent statement
    headings = [html_lib.unescape(h) for h in re.findall(r"<h2[^>]*>\s*([^<]+?)\s*</h2>", page)]
    letter = [h for h in headings if h in HEADINGS[lang]]
    assert letter == HEADINGS[lang]
    text = words(page)
    assert in_order(text, [*HEADINGS[lang], "I have" if lang == "en" else "Jeg har fått"]) == []
    other = "en" if lang == "nb" else "nb"
    for heading in HEADINGS[other]:
        assert heading not in text
    assert EXCEPTION[lang] in text
    for fact in FACTS[lang]:
        assert fact in text, fact
    # the letter is marked with the interview language, whatever the UI language
    for key in (*SECTIONS, STATEMENT):
        assert f'id="letter-{key}"' in page
    assert re.search(rf'<div lang="{lang}">\s*<h1>', page)
    assert not re.search(r"\{(institution|rek_reference|end_date|leader\.|dpo\.)", page)


def test_the_exception_stands_apart_inside_the_privacy_section(client, auth, world):
    page = _consent_page(client, auth, world, "en")
    privacy = page[page.index('id="letter-privacy"') : page.index('id="letter-after_end"')]
    block = re.search(r'<div class="confidentiality">(.*?)</div>', privacy, re.S)
    assert block and EXCEPTION["en"] in words(block.group(1))
    assert "Everything you tell us is treated confidentially" not in words(page)


def test_the_rights_are_a_list_of_five(client, auth, world):
    page = _consent_page(client, auth, world, "nb")
    rights = re.search(r'<ul class="rights">(.*?)</ul>', page, re.S).group(1)
    assert len(re.findall(r"<li>", rights)) == 5
    assert "Datatilsynet" in rights


def test_a_form_published_before_the_sections_is_still_shown_as_it_was(client, auth, world, app):
    with app.app_context():
        stored = db.session.scalars(select(ConsentFormVersion)).one()
        content = {k: v for k, v in stored.content.items() if k in ("key", "version", "items")}
        stored.content = {
            **content,
            "published": "2026-11-01",
            "title": {"nb": "Samtykke", "en": "Consent to take part"},
            "body": {"nb": "Tidligere tekst.", "en": "The earlier text."},
            "withdrawal": {"nb": "Du kan trekke deg.", "en": "You can withdraw."},
            "contact": {"nb": "Ring oss.", "en": "Call us."},
        }
        db.session.commit()
    text = words(_consent_page(client, auth, world, "en"))
    assert in_order(text, ["The earlier text.", "You can withdraw.", "Call us."]) == []
    assert "I have received information about the INNOFACT research study" in text
