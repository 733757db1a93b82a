"""What the peer sees in real Chromium at tablet sizes: every safety action and milestone
confirmed (online and offline), double taps that do nothing twice, a status line that tells no
network from a silent case store, and the small things a peer notices."""

import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Consent, Interview, InterviewEvent
from tests.browser.helpers import (
    ALL_SAVED,
    TABLET,
    _login,
    _sign,
    _wait_status,
    _watch_errors,
    until,
)

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 768, "height": 1024}


def _tablet(browser, server, lang="en", viewport=TABLET):
    context = browser.new_context(viewport=viewport, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    _login(page, server.url, "peer_a", lang=lang)
    return context, page, errors


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("html.tablet-ready", state="attached")


def _tap_twice(page, locator, gap_ms=250):
    """Two taps on the same spot, as a nervous finger does: the second where the first was."""
    box = locator.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(gap_ms)
    page.mouse.click(x, y)


def _events(app, iid, kind):
    with app.app_context():
        db.session.expire_all()
        return list(
            db.session.scalars(
                select(InterviewEvent).where(
                    InterviewEvent.interview_id == iid, InterviewEvent.kind == kind
                )
            )
        )


@pytest.mark.parametrize("online", [True, False])
def test_a_check_in_is_confirmed_and_stays_in_the_safety_bar(
    server, browser, app, started, online, tmp_path
):
    iid, _ = started
    context, page, errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/section/0")
    _wait_status(page, ALL_SAVED["en"])
    note = page.locator("[data-last-check-in]")
    assert note.is_hidden()
    if not online:
        context.set_offline(True)
    page.locator(".safety-bar button[value=check_in]").click()
    page.wait_for_function(
        "() => /Checked in at \\d?\\d:\\d\\d/.test("
        "document.querySelector('[data-last-check-in]').textContent)"
    )
    notice = page.locator("#tablet-notices")
    notice.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('tablet-notices').textContent !== ''")
    if online:
        page.wait_for_function(
            "() => document.getElementById('tablet-notices').textContent"
            ".includes('The coordinator can see that you are safe')"
        )
        assert len(_events(app, iid, "check_in")) == 1
    else:
        assert "not sent yet" in note.inner_text()
        assert "as soon as there is a network" in notice.inner_text()
        assert _events(app, iid, "check_in") == []
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        _wait_status(page, ALL_SAVED["en"], timeout=30000)
        page.wait_for_function(
            "() => !document.querySelector('[data-last-check-in]').textContent.includes('not sent')"
        )
        assert len(_events(app, iid, "check_in")) == 1
    # scrolled far down, the check-in and the bar are still in sight
    page.mouse.wheel(0, 5000)
    page.wait_for_timeout(200)
    box = note.bounding_box()
    assert box is not None and 0 <= box["y"] < TABLET["height"]
    page.screenshot(path=str(tmp_path / "check-in.png"))
    # on a later load the case store's time is shown
    page.reload()
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert re.search(r"Checked in at \d?\d:\d\d", note.inner_text())
    assert not errors, errors
    context.close()


def test_the_coordinators_alerts_page_shows_the_last_check_in(server, browser, app, started):
    iid, _ = started
    context, page, _errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/section/0")
    page.locator(".safety-bar button[value=check_in]").click()
    page.wait_for_function(
        "() => document.getElementById('tablet-notices').textContent.includes('safe')"
    )
    shown = re.search(r"\d?\d:\d\d", page.locator("[data-last-check-in]").inner_text()).group(0)
    context.close()
    context = browser.new_context(viewport=TABLET)
    desk = context.new_page()
    _login_coordinator(desk, server.url)
    desk.goto(f"{server.url}/desk/alerts")
    assert shown in desk.locator("main").inner_text()
    context.close()


def _login_coordinator(page, base):
    from tests.conftest import PASSWORD

    page.goto(f"{base}/login?lang=en")
    page.locator("#username").fill("coord_a")
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()


def test_two_taps_on_pause_record_one_pause_and_do_not_resume(server, browser, app, started):
    iid, _ = started
    context, page, errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/section/0")
    _wait_status(page, ALL_SAVED["en"])
    pause = page.locator(".safety-bar button[value=pause]")
    _tap_twice(page, pause)  # the second tap lands where Resume now is
    page.wait_for_selector(".safety-bar button[value=resume]:visible")
    page.wait_for_timeout(800)
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    assert page.locator(".safety-bar button[value=resume]").is_visible()
    assert len(_events(app, iid, "pause")) == 1
    assert _events(app, iid, "resume") == []
    # the pause banner stays in sight however far the page is scrolled
    page.mouse.wheel(0, 5000)
    page.wait_for_timeout(200)
    banner = page.locator(".pause-note")
    assert banner.is_visible()
    bbox = banner.bounding_box()
    assert 0 <= bbox["y"] < TABLET["height"]
    assert not errors, errors
    context.close()


def test_two_taps_on_pause_off_the_guide_page_record_one_pause(server, browser, app, started):
    iid, _ = started
    context, page, _errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/finish")
    pause = page.locator("form[data-kind=pause] button")
    _tap_twice(page, pause)
    page.wait_for_selector("form[data-kind=resume]:visible")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    assert len(_events(app, iid, "pause")) == 1
    assert _events(app, iid, "resume") == []
    context.close()


def test_the_status_line_tells_no_network_from_a_silent_case_store(server, browser, app, started):
    iid, _ = started
    context, page, _errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/section/0")
    _wait_status(page, ALL_SAVED["en"])
    server.stop()  # the network is up, the case store does not answer
    page.locator(".note[data-new][data-question='context.services'] textarea").fill("Ett ord")
    page.locator("#sync-now").click()
    _wait_status(page, "The case store is not answering")
    assert "No network" not in page.locator("#sync-status").inner_text()
    context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    _wait_status(page, "No network")
    context.set_offline(False)
    server.start()
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    context.close()


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_consent_finish_and_debrief_are_confirmed(
    server, browser, app, client, world, lang, tmp_path
):
    from tests.conftest import PASSWORD
    from tests.helpers import start_interview

    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    client.post("/logout")
    words = {
        "en": ("Consent is recorded", "The interview is complete", "Your debrief is saved"),
        "nb": ("Samtykket er registrert", "Intervjuet er fullført", "debriefen din er lagret"),
    }[lang]
    context, page, errors = _tablet(browser, server, lang=lang, viewport=PORTRAIT)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()  # the debrief is saved offline at the end
    page.wait_for_function(
        "() => /[0-9]/.test(document.getElementById('prepare-status').textContent)",
        timeout=30000,
    )
    _open(page, f"{server.url}/interviews/{iid}/consent")
    page.locator("#method-0").check()
    for item in ("participate", "audio", "quotes", "recontact"):
        page.locator(f"#item-{item}-yes").check()
    _sign(page)
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert words[0].lower() in page.locator("#tablet-notices").inner_text().lower()
    page.screenshot(path=str(tmp_path / f"consent-saved-{lang}.png"))
    page.goto(f"{server.url}/interviews/{iid}/finish")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("form[data-offline=finish] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/debrief")
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert words[1].lower() in page.locator("#tablet-notices").inner_text().lower()
    page.locator("input[name=wellbeing][value='3']").check()
    context.set_offline(True)
    page.locator("form[data-offline=debrief] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}")
    page.wait_for_selector("html.tablet-ready", state="attached")
    said = page.locator("#tablet-notices").inner_text().lower()
    assert words[2].lower() in said
    assert ("nettbrett" if lang == "nb" else "tablet") in said  # saved here, sent later
    context.close()


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_consent_and_finish_offline_say_they_are_kept_and_reach_the_store_later(
    server, browser, app, client, world, lang
):
    from tests.conftest import PASSWORD
    from tests.helpers import start_interview

    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    client.post("/logout")
    kept = {
        "en": (
            "Consent is saved on this tablet and is sent to the case store as soon as there is "
            "a network.",
            "The interview is complete. Thank you. It is saved on this tablet and sent to the "
            "case store as soon as there is a network.",
        ),
        "nb": (
            "Samtykket er lagret på nettbrettet og sendes til saksarkivet så snart det er nett.",
            "Intervjuet er fullført. Takk. Det er lagret på nettbrettet og sendes til "
            "saksarkivet så snart det er nett.",
        ),
    }[lang]
    context, page, errors = _tablet(browser, server, lang=lang)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("#prepare-offline").click()  # the pages after consent open offline
    page.wait_for_function(
        "() => /[0-9]/.test(document.getElementById('prepare-status').textContent)",
        timeout=30000,
    )
    _open(page, f"{server.url}/interviews/{iid}/consent")
    _wait_status(page, ALL_SAVED[lang])  # the study key is on the tablet: it can seal offline
    context.set_offline(True)
    page.locator("#method-0").check()
    for item in ("participate", "audio", "quotes", "recontact"):
        page.locator(f"#item-{item}-yes").check()
    _sign(page)
    page.locator("#consent-form button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/section/0")
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert kept[0] in " ".join(page.locator("#tablet-notices").inner_text().split())
    page.goto(f"{server.url}/interviews/{iid}/finish")
    page.wait_for_selector("html.tablet-ready", state="attached")
    page.locator("form[data-offline=finish] button[type=submit]").click()
    page.wait_for_url(f"**/interviews/{iid}/debrief")
    page.wait_for_selector("html.tablet-ready", state="attached")
    assert kept[1] in " ".join(page.locator("#tablet-notices").inner_text().split())
    with app.app_context():
        assert db.session.scalars(select(Consent)).first() is None
    assert _events(app, iid, "complete") == []

    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    _wait_status(page, ALL_SAVED[lang], timeout=30000)
    with app.app_context():
        db.session.expire_all()
        consents = list(db.session.scalars(select(Consent)))
        assert [(c.interview_id, c.method) for c in consents] == [(iid, "tablet")]
        assert db.session.get(Interview, iid).status == "completed"
    assert len(_events(app, iid, "start")) == 1
    assert len(_events(app, iid, "complete")) == 1
    assert not errors, errors
    context.close()


def test_a_saved_note_is_no_longer_called_new_and_the_offline_list_reads_right(
    server, browser, app, started
):
    iid, _ = started
    context, page, _errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/section/0")
    slot = page.locator(".note[data-new][data-question='context.services']")
    note_id = slot.get_attribute("data-note-id")
    slot.locator("textarea").fill("Et nytt notat")
    note = page.locator(f".note[data-note-id='{note_id}']")
    page.wait_for_function(
        "id => !document.querySelector(`.note[data-note-id='${id}']`).hasAttribute('data-new')",
        arg=note_id,
    )
    assert note.locator("label").first.inner_text().startswith("Note")
    assert not note.locator("label").first.inner_text().startswith("New note")

    page.goto(f"{server.url}/interviews/")
    page.locator("#prepare-offline").click()
    page.wait_for_function(
        "() => document.getElementById('prepare-status').textContent.includes('Ready offline')",
        timeout=30000,
    )
    status = page.locator("#prepare-status").inner_text()
    assert "1 interview." in status and "1 interviews" not in status
    card_time = page.locator(f"a[href='/interviews/{iid}'] time").inner_text()
    assert card_time in page.locator("#offline-list").inner_text()
    context.close()


@pytest.mark.parametrize("kind", ["check_in", "distress"])
def test_two_taps_on_check_in_or_distress_record_one_event(server, browser, app, started, kind):
    iid, _ = started
    context, page, _errors = _tablet(browser, server)
    _open(page, f"{server.url}/interviews/{iid}/section/0")
    _wait_status(page, ALL_SAVED["en"])
    button = page.locator(f".safety-bar button[value={kind}]")
    if kind == "check_in":
        _tap_twice(page, button)
        page.wait_for_function(
            "() => document.getElementById('tablet-notices').textContent.includes('safe')"
        )
    else:
        button.click()
        page.wait_for_timeout(250)
        try:
            page.evaluate(f"document.querySelector('.safety-bar button[value={kind}]')?.click()")
        except PlaywrightError as exc:
            # the second tap came as the page was being left for the next: it lands nowhere
            assert "Execution context was destroyed" in str(exc), exc
        page.wait_for_url(f"**/interviews/{iid}/distress")
    page.wait_for_selector("html.tablet-ready", state="attached")
    _wait_status(page, ALL_SAVED["en"], timeout=30000)
    stored = "check_in" if kind == "check_in" else "distress_1"
    assert len(_events(app, iid, stored)) == 1
    context.close()


class _SlowSync:
    """WSGI middleware: the next sync request, once armed, is held until released, so a test
    can act while a sync is under way (the case store slow to answer, as on a weak network)."""

    def __init__(self, app):
        import threading

        self.app = app.wsgi_app
        self.armed = False
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ, start_response):
        if self.armed and environ.get("PATH_INFO") == "/api/v1/sync":
            self.armed = False
            self.arrived.set()
            self.release.wait(10)
        return self.app(environ, start_response)


def test_finishing_while_a_sync_is_under_way_reaches_the_debrief(server, browser, app, started):
    """The finish saved while a sync was already on its way is sent by a sync that follows it,
    before the tablet leaves the page: the debrief opens, not the interview's overview."""
    iid, _ = started
    context, page, errors = _tablet(browser, server)
    slow = _SlowSync(app)
    app.wsgi_app = slow
    try:
        # everything the case store has is on the tablet: the next sync brings nothing new
        _open(page, f"{server.url}/interviews/{iid}/finish")
        _wait_status(page, ALL_SAVED["en"])
        slow.armed = True
        _open(page, f"{server.url}/interviews/{iid}/finish")
        # the page's own sync has taken its batch (nothing yet) and waits for the case store
        assert slow.arrived.wait(10)
        page.locator("form[data-offline=finish] button[type=submit]").click()
        # the finish is saved on the tablet meanwhile, waiting to be sent
        until(
            page,
            "id => import('/static/js/store.js').then(s => s.pendingFor(id))"
            ".then(es => es.some(e => e.entity === 'event' && e.data.kind === 'complete'))",
            iid,
        )
        slow.release.set()
        page.wait_for_url(f"**/interviews/{iid}/debrief")
        page.wait_for_selector("html.tablet-ready", state="attached")
    finally:
        slow.release.set()
        app.wsgi_app = slow.app
    assert len(_events(app, iid, "complete")) == 1
    with app.app_context():
        assert db.session.get(Interview, iid).status == "completed"
    assert not errors, errors
    context.close()
