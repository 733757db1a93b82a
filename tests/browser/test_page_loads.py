"""A section page in Chromium without JavaScript: the load id at the end of the page travels
with the notes form (form="section-form"), so each load's new notes are its own (a double tap
is tested in tests/field/test_page_loads.py)."""

from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Note
from tests.browser.helpers import TABLET, _login
from tests.helpers import consented_interview


def test_without_javascript_each_load_saves_its_own_new_note(server, browser, app, world, client):
    iid = consented_interview(client, world)
    client.post("/logout")

    context = browser.new_context(viewport=TABLET, java_script_enabled=False)
    page = context.new_page()
    _login(page, server.url, "peer_a", "nb")
    url = f"{server.url}/interviews/{iid}/section/0"
    loads = []
    for text in ("Første besøk – æøå.", "Andre besøk."):
        # loaded twice: each load has an id of its own
        page.goto(url)
        page.goto(url)
        loads.append(page.locator("input[name=load]").get_attribute("value"))
        page.locator("textarea[name='new-context.services-text']").fill(text)
        page.locator(".sticky-actions button[value=stay]").click()
        page.wait_for_url(f"**/interviews/{iid}/section/0#saved")
    assert loads[0] != loads[1]
    shown = page.eval_on_selector_all("textarea", "els => els.map(e => e.value)")
    assert "Første besøk – æøå." in shown and "Andre besøk." in shown
    with app.app_context():
        texts = sorted(
            n.text for n in db.session.scalars(select(Note).where(Note.interview_id == iid))
        )
    assert texts == ["Andre besøk.", "Første besøk – æøå."]
    context.close()
