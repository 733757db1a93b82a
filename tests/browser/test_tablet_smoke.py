"""Smoke test in real Chromium on tablet viewports: log in, take consent, save a note."""

import time

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent, ConsentSignature, Note
from tests.browser.helpers import _sign
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("viewport", "lang"),
    [({"width": 1024, "height": 768}, "nb"), ({"width": 768, "height": 1024}, "en")],
)
def test_peer_logs_in_signs_consent_and_saves_a_note(
    live_server, browser, app, world, tmp_path, viewport, lang
):
    context = browser.new_context(viewport=viewport, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{live_server}/login?lang={lang}")
    assert page.locator("html").get_attribute("lang") == lang
    page.get_by_label("Brukernavn" if lang == "nb" else "Username").fill("peer_a")
    page.get_by_label("Passord" if lang == "nb" else "Password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/interviews/")

    interview_id = world.interviews["pa"]
    page.locator(f"a[href='/interviews/{interview_id}']").first.click()
    page.locator(f"a[href='/interviews/{interview_id}/capacity']").click()
    page.locator("#understands").check()
    page.locator("#can_explain").check()
    page.locator("#not_in_crisis").check()
    page.locator("button[value=ok]").click()
    page.wait_for_url(f"**/interviews/{interview_id}/consent")

    for item in ("participate", "audio", "quotes", "recontact"):
        page.locator(f"#item-{item}-yes").check()
    page.locator("#method-0").check()  # signed on the tablet
    _sign(page)
    page.screenshot(path=str(tmp_path / f"consent-{lang}.png"), full_page=True)
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{interview_id}/section/0")

    note_box = page.locator("textarea[name='new-context.services-text']")
    note_box.fill("Notat skrevet i nettleseren – æøå.")
    page.locator("textarea[name='new-context.services-text'] ~ .tags input[value=promotes]").check()
    page.screenshot(path=str(tmp_path / f"section-{lang}.png"), full_page=False)
    page.locator("button[name=go][value=stay]").last.click()
    # the note is saved on the tablet and then sent; the status line says when it is in
    status = page.locator("#sync-status")
    all_saved = "Alt er lagret i saksarkivet" if lang == "nb" else "All saved to the case store"
    with app.app_context():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # the last change (the tag) has reached the store, not only the first save
            note = db.session.scalars(select(Note)).first()
            if note is not None and note.polarity == "promotes":
                break
            db.session.rollback()
            time.sleep(0.2)
    page.wait_for_function(
        "text => document.getElementById('sync-status').textContent.includes(text)", arg=all_saved
    )
    assert status.is_visible()
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    shown = page.eval_on_selector_all("textarea", "els => els.map(e => e.value)")
    assert "Notat skrevet i nettleseren – æøå." in shown
    page.screenshot(path=str(tmp_path / f"saved-{lang}.png"), full_page=True)
    context.close()

    with app.app_context():
        note = db.session.scalars(select(Note)).one()
        assert note.text == "Notat skrevet i nettleseren – æøå."
        assert note.polarity == "promotes"
        consent = db.session.scalars(select(Consent)).one()
        assert consent.method == "tablet"
        assert db.session.scalars(select(ConsentSignature)).one().signature_enc
    assert (tmp_path / f"saved-{lang}.png").stat().st_size > 10_000
    assert errors == [], errors
