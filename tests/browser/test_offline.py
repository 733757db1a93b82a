"""Nothing lost, in real Chromium: an interview held without a network, and two tablets at once.

The network is really gone in these tests: the browser context is set offline *and* the server
is shut down, so neither the page nor the service worker can reach the case store.
"""

import pytest
from sqlalchemy import func, select

from interview.store.extensions import db
from interview.store.models import Consent, Interview, InterviewEvent, Note
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _sign,
    _started_with_note,
    _status,
    _wait_saved_locally,
    _wait_status,
    _watch_errors,
)

pytestmark = pytest.mark.browser


def test_an_interview_held_offline_reaches_the_store_exactly_once(
    server, browser, app, world, tmp_path
):
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    base = server.url
    iid = world.interviews["pa"]

    # at the office, with a network: prepare for offline
    _login(page, base, "peer_a")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline: 1')",
        timeout=30000,
    )
    assert "✓" in page.locator("#offline-list").inner_text()
    assert page.locator(f"[data-offline-mark='{iid}']").inner_text().startswith("✓")
    page.screenshot(path=str(tmp_path / "prepared.png"), full_page=True)
    page.reload()  # the service worker now controls the page
    assert page.evaluate("!!navigator.serviceWorker.controller")

    # in the participant's living room: no network at all
    context.set_offline(True)
    server.stop()
    page.goto(f"{base}/interviews/{iid}")
    page.locator(f"a[href='/interviews/{iid}/capacity']").click()
    page.wait_for_url(f"**/interviews/{iid}/capacity")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("#understands").check()
    page.locator("#can_explain").check()
    page.locator("#not_in_crisis").check()
    page.locator("button[value=ok]").dblclick()  # a nervous double tap records it once
    page.wait_for_url(f"**/interviews/{iid}/consent")
    page.wait_for_selector("html.tablet-ready", state="attached")
    for item in ("participate", "audio", "quotes", "recontact"):
        page.locator(f"#item-{item}-yes").check()
    page.locator("#method-0").check()
    _sign(page)
    page.locator("#consent-form button[type=submit]").dblclick()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")

    one_id = page.locator(".note[data-new][data-question='context.services']").get_attribute(
        "data-note-id"
    )
    note_one = page.locator(f".note[data-note-id='{one_id}']")
    note_one.locator("textarea").fill("Offline-notat én – æøå")
    note_one.locator("input[value=promotes]").check()
    note_one.locator("summary").click()
    note_one.locator("input[data-key]").first.check()
    theme_key = note_one.locator("input[data-key]").first.get_attribute("data-key")
    second_slot = page.locator(".note[data-new]:not([data-question='context.services'])").first
    second_key = second_slot.get_attribute("data-question")
    second_id = second_slot.get_attribute("data-note-id")
    page.locator(f".note[data-note-id='{second_id}'] textarea").fill("Offline-notat to")
    page.locator(".safety-bar button[value=pause]").click()
    page.wait_for_selector(".safety-bar button[value=resume]:visible")
    _wait_saved_locally(page)
    assert "No network" in _status(page)

    # the tablet is restarted in the middle of it: everything is still there
    page.reload()
    page.wait_for_selector("textarea")
    page.wait_for_function(
        "() => [...document.querySelectorAll('textarea')].some(t => t.value.includes('én'))"
    )
    values = page.eval_on_selector_all("textarea", "els => els.map(e => e.value)")
    assert "Offline-notat én – æøå" in values
    assert "Offline-notat to" in values
    assert page.locator(".safety-bar button[value=resume]").is_visible()
    promotes = page.locator(".note:not([data-new]) input[value=promotes]:checked")
    assert promotes.count() == 1

    # a third note after the restart, in the next section, then another restart
    page.locator(".sticky-actions button[value=next]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/1")
    page.wait_for_selector("html.tablet-ready", state="attached")
    third_slot = page.locator(".note[data-new]").first
    third_key = third_slot.get_attribute("data-question")
    third_id = third_slot.get_attribute("data-note-id")
    page.locator(f".note[data-note-id='{third_id}'] textarea").fill("Offline-notat tre")
    page.wait_for_timeout(1200)
    page.reload()
    page.wait_for_function(
        "t => [...document.querySelectorAll('textarea')].some(x => x.value === t)",
        arg="Offline-notat tre",
    )
    _wait_saved_locally(page)
    page.screenshot(path=str(tmp_path / "offline-section.png"), full_page=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0

    # back at the office: the network returns and the outbox drains by itself
    server.start()
    context.set_offline(False)
    _wait_status(page, ALL_SAVED["en"], timeout=30000)

    with app.app_context():
        notes = list(db.session.scalars(select(Note).where(Note.interview_id == iid)))
        texts = sorted(n.text for n in notes)
        assert texts == sorted(["Offline-notat én – æøå", "Offline-notat to", "Offline-notat tre"])
        by_text = {n.text: n for n in notes}
        one = by_text["Offline-notat én – æøå"]
        assert one.question_key == "context.services"
        assert one.polarity == "promotes"
        assert [t.key for t in one.themes] == [theme_key]
        assert by_text["Offline-notat to"].question_key == second_key
        assert by_text["Offline-notat tre"].question_key == third_key
        assert all(n.conflict is None for n in notes)
        interview = db.session.get(Interview, iid)
        assert interview.status == "paused"
        assert interview.current_section == 1
        kinds = [
            e.kind
            for e in db.session.scalars(
                select(InterviewEvent)
                .where(InterviewEvent.interview_id == iid)
                .order_by(InterviewEvent.recorded_at)
            )
        ]
        assert kinds == ["capacity_check", "start", "pause"]
        consent = db.session.scalars(select(Consent)).one()
        assert consent.method == "tablet"
        assert consent.answers["participate"] is True

    # a second drain sends nothing again: still exactly once
    page.locator("#sync-now").click()
    _wait_status(page, ALL_SAVED["en"])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 3
        assert db.session.scalar(select(func.count()).select_from(Consent)) == 1
        assert db.session.scalar(select(func.count()).select_from(InterviewEvent)) == 3
    context.close()
    assert errors == [], errors


def test_two_tablets_edit_one_note_and_the_conflict_is_resolved_in_the_ui(
    server, browser, app, client, world, tmp_path
):
    iid, note_id = _started_with_note(app, client, world, "Første versjon")
    errors: list[str] = []
    tablets = []
    for username in ("peer_a", "peer_a2"):
        context = browser.new_context(viewport=TABLET, has_touch=True)
        page = context.new_page()
        _watch_errors(page, errors)
        _login(page, server.url, username)
        page.goto(f"{server.url}/interviews/{iid}/section/0")
        page.wait_for_selector(f".note[data-note-id='{note_id}'] textarea")
        page.wait_for_selector("html.tablet-ready", state="attached")
        _wait_status(page, ALL_SAVED["en"])
        tablets.append((context, page))
    (ctx_a, page_a), (ctx_b, page_b) = tablets

    # both tablets lose the network and each changes the same note
    for context, _page in tablets:
        context.set_offline(True)
    page_a.locator(f".note[data-note-id='{note_id}'] textarea").fill("Versjon fra nettbrett A")
    page_b.locator(f".note[data-note-id='{note_id}'] textarea").fill("Versjon fra nettbrett B")
    _wait_saved_locally(page_a)
    _wait_saved_locally(page_b)

    # A comes back first: its words go in
    ctx_a.set_offline(False)
    _wait_status(page_a, ALL_SAVED["en"])
    # then B: the same field changed on both sides is a conflict, and both texts are kept
    ctx_b.set_offline(False)
    _wait_status(page_b, "two versions")
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.text == "Versjon fra nettbrett A"
        assert note.conflict["text"] == "Versjon fra nettbrett B"
    box = page_b.locator(f".note[data-note-id='{note_id}'] .conflict-box")
    box.wait_for()
    assert "Versjon fra nettbrett B" in box.inner_text()
    page_b.screenshot(path=str(tmp_path / "conflict-section.png"), full_page=True)

    # B looks at both versions and writes them together
    page_b.locator("#sync-status a").click()
    page_b.wait_for_url("**/interviews/conflicts*")
    card = page_b.locator(f"#note-{note_id}")
    assert "Versjon fra nettbrett A" in card.inner_text()
    assert "Versjon fra nettbrett B" in card.inner_text()
    page_b.screenshot(path=str(tmp_path / "conflicts.png"), full_page=True)
    card.locator("textarea").fill("Versjon A og versjon B, skrevet sammen")
    page_b.wait_for_selector("html.tablet-ready", state="attached")
    # without a network the choice waits: the written-together text stays in the box
    ctx_b.set_offline(True)
    card.locator("button[value=merged]").click()
    assert "needs a network" in card.locator(".form-alert").inner_text()
    assert card.locator("textarea").input_value() == "Versjon A og versjon B, skrevet sammen"
    with app.app_context():
        assert db.session.get(Note, note_id).conflict is not None
    ctx_b.set_offline(False)
    card.locator("button[value=merged]").click()
    page_b.wait_for_url("**/interviews/conflicts")
    assert "No notes with two versions" in page_b.content()
    _wait_status(page_b, ALL_SAVED["en"])

    with app.app_context():
        note = db.session.get(Note, note_id)
        assert note.text == "Versjon A og versjon B, skrevet sammen"
        assert note.conflict is None
        assert db.session.scalar(select(func.count()).select_from(Note)) == 1

    # tablet A takes in the resolution at its next sync
    page_a.locator("#sync-now").click()
    page_a.wait_for_function(
        "([id, text]) => document.querySelector(`.note[data-note-id='${id}'] textarea`)"
        ".value === text",
        arg=[note_id, "Versjon A og versjon B, skrevet sammen"],
    )
    _wait_status(page_a, ALL_SAVED["en"])
    for context, _page in tablets:
        context.close()
    assert errors == [], errors
