"""The printed consent form, read back from the PDF: every section of REK's template in its
order, the facts filled in, and the distress-protocol exception, in Bokmål and in English.
"""

import io
import re

import pypdf
import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import ConsentFormVersion
from tests.consent_letter import EXCEPTION, FACTS, HEADINGS, in_order

CONSENT = "/consent-forms/innofact-consent/1"


def squash(text: str) -> str:
    """Text without any whitespace: PDF extraction splits words at kerning and line ends."""
    return re.sub(r"\s+", "", text)


def pdf_text(data: bytes) -> str:
    """The text of every page of a PDF, squashed."""
    assert data.startswith(b"%PDF-"), data[:200]
    reader = pypdf.PdfReader(io.BytesIO(data))
    return squash("\n".join(page.extract_text() for page in reader.pages))


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_printed_form_has_every_section_in_rek_order_then_items_and_signatures(
    client, auth, world, lang
):
    auth.login("peer_a")
    response = client.get(f"{CONSENT}/{lang}.pdf?lang={'en' if lang == 'nb' else 'nb'}")
    assert response.status_code == 200
    text = pdf_text(response.data)
    participate = {
        "nb": "Jeg har fått informasjon om forskningsprosjektet INNOFACT",
        "en": "I have received information about the INNOFACT research study",
    }[lang]
    signature = {"nb": "Deltakerens underskrift", "en": "Participant's signature"}[lang]
    wanted = [*HEADINGS[lang], participate, signature]
    assert in_order(text, [squash(w) for w in wanted]) == []
    assert squash(EXCEPTION[lang]) in text
    for fact in FACTS[lang]:
        assert squash(fact) in text, fact
    other = "en" if lang == "nb" else "nb"
    for heading in HEADINGS[other]:
        assert squash(heading) not in text
    assert "{" not in text


def test_a_form_published_before_the_sections_still_prints_as_it_was(client, auth, world, app):
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
        stored.checksum = "1" * 64
        db.session.commit()
    auth.login("peer_a")
    response = client.get(f"{CONSENT}/en.pdf")
    assert response.status_code == 200
    text = pdf_text(response.data)
    wanted = ["The earlier text.", "What you agree to", "You can withdraw.", "Contact", "Call us."]
    assert in_order(text, [squash(w) for w in wanted]) == []
