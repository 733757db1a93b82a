"""The browser's own Print on the guide and progress pages gives a clean page (real Chromium)."""

import io
import unicodedata

import pypdf
from sqlalchemy import select

from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import GuideVersion
from tests.conftest import PASSWORD


def _login(page, base, username, lang):
    page.goto(f"{base}/login?lang={lang}")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state("load")


def _printed_pages(page) -> list[str]:
    data = page.pdf(format="A4", print_background=True)
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages]


def _squash(text: str) -> str:
    # Chromium sets "fi" as a ligature; NFKC turns it back into two letters
    return "".join(unicodedata.normalize("NFKC", text).split())


def test_printing_the_guide_page_gives_the_guide_with_write_in_lines_and_no_menus(
    app, live_server, browser
):
    with app.app_context():
        guide = guide_of(db.session.scalars(select(GuideVersion)).one())
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    _login(page, live_server, "peer_a", "nb")
    page.goto(f"{live_server}/guides/innofact-patient/1?lang=nb")

    # on screen: the PDF buttons, no write-in lines
    assert page.locator(".doc-actions").is_visible()
    assert not page.locator(".write-lines").first.is_visible()

    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible()
    assert not page.locator(".doc-actions").is_visible()
    assert page.locator(".write-lines").first.is_visible()
    assert page.locator(".print-fields").is_visible()

    pages = _printed_pages(page)
    everything = _squash("\n".join(pages))
    for section in guide.sections:
        for q in section.questions:
            assert _squash(q.text["nb"]) in everything, q.key
    assert "Deltakerkode" in everything
    for menu_word in ("Loggut", "Mineintervjuer", "PDFpå"):
        assert menu_word not in everything, menu_word
    # each part starts on a page of its own
    starts = [
        next(i for i, text in enumerate(pages) if f"Del{n}av6" in _squash(text))
        for n in range(1, 7)
    ]
    assert starts == sorted(set(starts)), starts
    page.close()


def test_printing_the_progress_page_leaves_out_menus_and_buttons(app, live_server, browser):
    page = browser.new_page(viewport={"width": 768, "height": 1024})
    _login(page, live_server, "coord_a", "en")
    page.goto(f"{live_server}/desk/?lang=en")
    assert page.locator(".doc-links").is_visible()
    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible()
    assert not page.locator(".doc-links").is_visible()
    assert not page.locator(".filters").is_visible()
    text = _squash("\n".join(_printed_pages(page)))
    assert "Participantsbystatus" in text and "Interviewsbystatus" in text
    for menu_word in ("Logout", "Alerts", "Progressreport(PDF)"):
        assert menu_word not in text, menu_word
    page.close()
