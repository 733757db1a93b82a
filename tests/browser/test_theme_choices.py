"""On the tablet every note offers every theme, copied from the page's one list."""

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Note, Theme
from tests.browser.helpers import TABLET, _login, _wait_status, _watch_errors
from tests.helpers import consented_interview, new_note_on_page

pytestmark = pytest.mark.browser


def test_every_note_offers_every_theme_and_a_new_tag_is_saved(server, browser, app, world, client):
    iid = consented_interview(client, world)
    with app.app_context():
        themes = {
            t.key: t.id for t in db.session.scalars(select(Theme).where(Theme.retired.is_(False)))
        }
    page_html = client.get(f"/interviews/{iid}/section/0").text
    new_id, fields = new_note_on_page(page_html, "context.services")
    client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": "Teamet snakker med fastlegen.",
            "new-context.services-theme": [str(themes["housing"])],
            "go": "stay",
        },
    )
    client.post("/logout")

    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a", "en")
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")

    saved = page.locator(f".note[data-note-id='{new_id}']")
    keys = saved.locator("input[data-key]").evaluate_all("els => els.map(e => e.dataset.key)")
    assert sorted(keys) == sorted(themes)
    # the question's suggested themes first, as the server orders a saved note's list
    assert keys[:2] == ["communication", "whole_person"]
    checked = saved.locator("input[data-key]:checked").evaluate_all(
        "els => els.map(e => e.dataset.key)"
    )
    assert checked == ["housing"]
    names = set(saved.locator("input[data-key]").evaluate_all("els => els.map(e => e.name)"))
    assert names == {f"note-{new_id}-theme"}

    fresh = page.locator(".note[data-new][data-question='context.contact']")
    assert fresh.locator("input[data-key]").count() == len(themes)
    assert fresh.locator("input[data-key]:checked").count() == 0

    # tag the saved note with one more theme: it reaches the case store
    saved.locator("input[data-key='communication']").check()
    stored = []
    for _ in range(100):  # the tablet saves a moment after the tap, then syncs
        with app.app_context():
            stored = sorted(t.key for t in db.session.get(Note, new_id).themes)
        if stored == ["communication", "housing"]:
            break
        page.wait_for_timeout(200)
    assert stored == ["communication", "housing"]
    _wait_status(page, "All saved to the case store")
    assert errors == []
    context.close()
