"""Renewed consent on a tablet, in real Chromium: a participant who consented on an older form
is asked again on the new one before the next interview, offline too, and an interview already
under way when the coordinator asked for it goes on under the consent it began with."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from interview.store.consents import participant_consent, renewal_due, required_renewals
from interview.store.extensions import db
from interview.store.models import Consent, Interview, Participant, utcnow
from tests.browser.helpers import ALL_SAVED, TABLET, _login, _wait_status, _watch_errors, until
from tests.conftest import PASSWORD
from tests.helpers import (
    V2_CHANGES,
    ask_renewal,
    give_paper_consent,
    publish_consent_v2,
    start_interview,
)

pytestmark = pytest.mark.browser

ITEMS = ("participate", "audio", "quotes", "recontact")
# what the note says of the consent given before
CONSENTED_ON_V1 = {
    "en": "The participant consented on version 1 of the consent form",
    "nb": "Deltakeren samtykket på versjon 1 av samtykkeskjemaet",
}
KEPT = {
    "en": "Consent is saved on this tablet and is sent to the case store as soon as there is "
    "a network.",
    "nb": "Samtykket er lagret på nettbrettet og sendes til saksarkivet så snart det er nett.",
}


def _tablet(browser, server, lang="en"):
    context = browser.new_context(viewport=TABLET, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a", lang=lang)
    return context, page, errors


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("html.tablet-ready", state="attached")


def _prepare(page, iid):
    """Prepare for offline on My interviews and wait until the interview is kept."""
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => /[0-9]/.test(document.getElementById('prepare-status').textContent)",
        timeout=30000,
    )
    assert page.locator(f"[data-offline-mark='{iid}']").inner_text().startswith("✓")


def _kept_record(page, iid) -> dict:
    """The tablet's own copy of the interview record (IndexedDB), as the last sync left it."""
    return page.evaluate(
        "id => import('/static/js/store.js').then(s => s.getRecord('interview', id))", iid
    )


def _heard_renewal(page, iid):
    """Wait until the tablet holds the interview as the decision left it: moved on, renewal due."""
    until(
        page,
        "id => import('/static/js/store.js').then(s => s.getRecord('interview', id))"
        ".then(r => !!r && r.rev >= 2 && r.data.consent_renewal === 2)",
        iid,
    )


def _earlier_interview_then_the_next(app, client, world, lang) -> str:
    """pa consents on v1 in the world's interview, which is finished; the next is planned today
    in `lang`; return the next interview's id."""
    first = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, first)
    give_paper_consent(client, first, "P-100")
    client.post(f"/interviews/{first}/finish")
    client.post("/logout")
    with app.app_context():
        done = db.session.get(Interview, first)
        assert done.status == "completed"
        nxt = Interview(
            participant_id=done.participant_id,
            guide_version_id=done.guide_version_id,
            language=lang,
            place_kind="home",
            planned_at=utcnow() + timedelta(hours=2),
        )
        db.session.add(nxt)
        db.session.commit()
        assert participant_consent(nxt.participant).consent.form_version.version == 1
        return nxt.id


def _capacity_ok(page, base, iid):
    """Open the interview and pass the capacity check on the tablet."""
    _open(page, f"{base}/interviews/{iid}")
    page.locator(f"a[href='/interviews/{iid}/capacity']").click()
    page.wait_for_url(f"**/interviews/{iid}/capacity")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("#understands").check()
    page.locator("#can_explain").check()
    page.locator("#not_in_crisis").check()
    page.locator("button[value=ok]").click()
    page.wait_for_url(f"**/interviews/{iid}/consent")
    page.wait_for_selector("html.tablet-ready", state="attached")


def _paper_consent(page, iid, number):
    page.locator("#method-1").check()
    page.locator("#paper_form_number").fill(number)
    for item in ITEMS:
        page.locator(f"#item-{item}-yes").check()
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")


def _renewal_asked(page, lang):
    """The consent page asks for consent on version 2 and says why, in the peer's view."""
    assert page.locator("#consent-form").is_visible()
    assert page.locator("#consent-form").get_attribute("data-form-version") == "2"
    note = page.locator("#renewal-note")
    assert note.is_visible(), "the renewal note is hidden"
    words = " ".join(note.inner_text().split())
    assert CONSENTED_ON_V1[lang] in words
    assert V2_CHANGES[lang] in words


def _store_consents(app, iid):
    with app.app_context():
        db.session.expire_all()
        return [
            (c.form_version.version, c.method, c.paper_form_number, c.answers["participate"])
            for c in db.session.scalars(select(Consent).where(Consent.interview_id == iid))
        ]


def _in_force_and_due(app, participant_id, iid):
    """The form version of the participant's consent in force, and the renewal due (or None)."""
    with app.app_context():
        db.session.expire_all()
        interview = db.session.get(Interview, iid)
        state = participant_consent(db.session.get(Participant, participant_id))
        due = renewal_due(interview, required_renewals(db.session))
        return state.consent.form_version.version, (due.version if due else None)


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_a_tablet_prepared_after_the_mark_asks_for_renewed_consent_offline(
    server, browser, app, client, world, lang
):
    iid = _earlier_interview_then_the_next(app, client, world, lang)
    publish_consent_v2(app)
    ask_renewal(app)
    assert _in_force_and_due(app, world.participants["pa"], iid) == (1, 2)

    # at the office: prepare, so the tablet keeps the pages and hears of the renewal
    context, page, errors = _tablet(browser, server, lang)
    _prepare(page, iid)
    _wait_status(page, ALL_SAVED[lang])
    assert _kept_record(page, iid)["data"]["consent_renewal"] == 2

    # in the participant's living room: no network at all
    context.set_offline(True)
    server.stop()
    _capacity_ok(page, server.url, iid)
    _renewal_asked(page, lang)
    page.locator("#renewal-note").scroll_into_view_if_needed()
    page.screenshot(path=f"/tmp/renewal-consent-{lang}.png")
    # the guide is not open before the new consent: the tablet sends the peer back to it
    page.goto(f"{server.url}/interviews/{iid}/section/0")
    page.wait_for_url(f"**/interviews/{iid}/consent")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _renewal_asked(page, lang)

    _paper_consent(page, iid, "P-200")
    assert KEPT[lang] in " ".join(page.locator("#tablet-notices").inner_text().split())
    assert page.locator("#section-form").is_visible()
    assert _store_consents(app, iid) == []

    # back at the office: the consent reaches the store, and renewal is done
    server.start()
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _wait_status(page, ALL_SAVED[lang], timeout=30000)
    assert _store_consents(app, iid) == [(2, "paper", "P-200", True)]
    assert _in_force_and_due(app, world.participants["pa"], iid) == (2, None)
    with app.app_context():
        assert db.session.get(Interview, iid).status == "in_progress"
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert page.url.endswith(f"/interviews/{iid}/section/0")
    assert page.locator("#section-form").is_visible()
    assert page.locator("#consent-form").count() == 0
    assert not errors, errors
    context.close()


def test_a_tablet_that_kept_the_pages_before_the_mark_asks_on_the_new_form_after_a_sync(
    server, browser, app, client, world
):
    iid = _earlier_interview_then_the_next(app, client, world, "en")
    context, page, errors = _tablet(browser, server)
    _prepare(page, iid)  # v1 is the newest form when the pages are kept
    _wait_status(page, ALL_SAVED["en"])
    assert _kept_record(page, iid)["data"]["consent_renewal"] is None

    publish_consent_v2(app)
    ask_renewal(app)
    # the tablet hears of it at its next sync
    page.locator("#sync-now").click()
    # the decision moved the interview on a rev: the tablet holds that rev, renewal due
    _heard_renewal(page, iid)
    # and at the same sync it kept the consent page again: it shows the new form
    until(
        page,
        "id => caches.open('fact-pages-v1').then(c => c.match(`/interviews/${id}/consent`))"
        ".then(r => r && r.text()).then(t => !!t && t.includes('data-form-version=\"2\"'))",
        iid,
    )
    _wait_status(page, ALL_SAVED["en"])

    context.set_offline(True)
    server.stop()
    _capacity_ok(page, server.url, iid)
    _renewal_asked(page, "en")
    _paper_consent(page, iid, "P-300")

    server.start()
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    assert _store_consents(app, iid) == [(2, "paper", "P-300", True)]
    assert _in_force_and_due(app, world.participants["pa"], iid) == (2, None)
    assert not errors, errors
    context.close()


def test_a_consent_page_still_showing_the_older_form_cannot_record_consent(
    server, browser, app, client, world
):
    iid = _earlier_interview_then_the_next(app, client, world, "en")
    context, page, errors = _tablet(browser, server)
    _prepare(page, iid)  # v1 is the newest form when the pages are kept
    _wait_status(page, ALL_SAVED["en"])
    keep_old = (
        "id => caches.open('fact-pages-v1').then(async c => {"
        " const path = `/interviews/${id}/consent`; const r = await c.match(path);"
        " window.__old = await r.text(); return true; })"
    )
    assert page.evaluate(keep_old, iid)
    publish_consent_v2(app)
    ask_renewal(app)
    page.locator("#sync-now").click()
    _heard_renewal(page, iid)
    _wait_status(page, ALL_SAVED["en"])
    # the page was kept again, but say keeping it failed (the network went at that moment):
    # the tablet holds the consent page as it was, with the older form
    put_old = (
        "id => caches.open('fact-pages-v1').then(c => c.put(`/interviews/${id}/consent`,"
        " new Response(window.__old, {headers: {'Content-Type': 'text/html; charset=utf-8'}})))"
        ".then(() => true)"
    )
    assert page.evaluate(put_old, iid)

    context.set_offline(True)
    server.stop()
    _capacity_ok(page, server.url, iid)
    assert page.locator("#consent-form").get_attribute("data-form-version") == "1"
    page.locator("#method-1").check()
    page.locator("#paper_form_number").fill("P-500")
    for item in ITEMS:
        page.locator(f"#item-{item}-yes").check()
    page.locator("#consent-form button[type=submit]").click()
    alert = page.locator("#consent-form .form-alert")
    alert.wait_for()
    assert "older consent form than the study now asks for" in alert.inner_text()
    assert page.url.endswith(f"/interviews/{iid}/consent")
    waiting = (
        "id => import('/static/js/store.js').then(s => s.pendingFor(id, "
        "document.body.dataset.userId)).then(es => es.filter(e => e.entity === 'consent').length)"
    )
    assert page.evaluate(waiting, iid) == 0

    server.start()
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    assert _store_consents(app, iid) == []
    assert not errors, errors
    context.close()


def test_an_interview_under_way_before_the_mark_goes_on_without_renewal(
    server, browser, app, world
):
    iid = world.interviews["pa"]
    context, page, errors = _tablet(browser, server)
    _prepare(page, iid)  # so the section page opens offline at the end
    _capacity_ok(page, server.url, iid)
    _paper_consent(page, iid, "P-400")
    _wait_status(page, ALL_SAVED["en"])
    assert _store_consents(app, iid) == [(1, "paper", "P-400", True)]

    publish_consent_v2(app)
    ask_renewal(app)
    rev = _kept_record(page, iid)["rev"]
    page.locator("#sync-now").click()
    until(
        page,
        "([id, rev]) => import('/static/js/store.js').then(s => s.getRecord('interview', id))"
        ".then(r => !!r && r.rev > rev)",
        [iid, rev],
    )
    _wait_status(page, ALL_SAVED["en"])
    assert _kept_record(page, iid)["data"]["consent_renewal"] is None
    assert _in_force_and_due(app, world.participants["pa"], iid) == (1, None)

    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert page.url.endswith(f"/interviews/{iid}/section/0")
    assert page.locator("#section-form").is_visible()
    assert page.locator("#consent-form").count() == 0
    # and without a network the tablet decides the same from what it holds
    context.set_offline(True)
    server.stop()
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert page.url.endswith(f"/interviews/{iid}/section/0")
    assert page.locator("#section-form").is_visible()
    server.start()
    context.set_offline(False)
    assert _store_consents(app, iid) == [(1, "paper", "P-400", True)]
    assert not errors, errors
    context.close()
