"""The desk in Chromium with an English browser on a Norwegian page: dates are written and read
the Norwegian way, and the language link after a refused form keeps what was typed."""

from datetime import date, time
from time import monotonic

from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import Interview
from interview.web.i18n import oslo_to_utc
from tests.browser.helpers import TABLET, _login, _watch_errors
from tests.conftest import PASSWORD


def _desk(browser, base, lang):
    # the browser speaks American English whatever page it shows
    context = browser.new_context(viewport=TABLET, locale="en-US", timezone_id="America/New_York")
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    page.goto(f"{base}/login?lang={lang}")
    page.locator("#username").fill("coord_a")
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/participants/**")
    return context, page, errors


def _plan_form(page):
    return page.locator("form[action$='/interviews']")


def test_a_date_on_a_norwegian_page_reads_the_norwegian_way_in_an_english_browser(
    server, browser, app, world
):
    pid = world.participants["pa"]
    context, page, errors = _desk(browser, server.url, "nb")
    try:
        page.goto(f"{server.url}/participants/{pid}?lang=nb")
        assert page.evaluate("navigator.language") == "en-US"
        day = page.locator("#plan-day")
        # a text field with the Norwegian order as its described hint, not a date picker that
        # would show the American 11/23/2030
        assert day.get_attribute("type") == "text"
        hint = page.locator("#" + day.get_attribute("aria-describedby").split()[0])
        assert "dd.mm.åååå" in hint.inner_text()
        day.fill("23.11.2030")
        page.locator("#plan-at").fill("13:30")
        _plan_form(page).locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == "nb"
        assert "23. nov. 2030" in page.locator("main").inner_text()
        with app.app_context():
            planned = set(
                db.session.scalars(
                    select(Interview.planned_at).where(Interview.participant_id == pid)
                )
            )
        assert oslo_to_utc(date(2030, 11, 23), time(13, 30)) in planned
        # a refused date comes back as typed, with the way to write it
        page.locator("#plan-day").fill("12/05/2030")
        page.locator("#plan-at").fill("09:00")
        _plan_form(page).locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("#plan-day").input_value() == "12/05/2030"
        assert "dd.mm.åååå" in page.locator("#plan-day-errors").inner_text()
        assert errors == []
    finally:
        context.close()


def test_the_language_link_after_a_refused_plan_keeps_what_was_typed(server, browser, app, world):
    pid = world.participants["pa"]
    context, page, errors = _desk(browser, server.url, "nb")
    try:
        page.goto(f"{server.url}/participants/{pid}?lang=nb")
        page.locator("#plan-day").fill("31.02.2030")
        page.locator("#plan-at").fill("13:30")
        page.locator("#plan-place_kind").select_option("cafe")
        _plan_form(page).locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("#plan-day-errors").is_visible()  # refused: 31 February
        page.locator("nav [lang=en]").click()
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("#plan-day").input_value() == "31.02.2030"
        assert page.locator("#plan-at").input_value() == "13:30"
        assert page.locator("#plan-place_kind").input_value() == "cafe"
        assert "Write the date as yyyy-mm-dd" in page.locator("#plan-day-errors").inner_text()
        # and back to Norwegian: still there, and still nothing planned
        page.locator("nav [lang=nb]").click()
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == "nb"
        assert page.locator("#plan-day").input_value() == "31.02.2030"
        with app.app_context():
            planned = db.session.scalars(
                select(Interview.id).where(Interview.participant_id == pid)
            ).all()
        assert planned == [world.interviews["pa"]]
        assert errors == []
    finally:
        context.close()


def test_the_tablet_moves_an_interview_to_a_date_written_the_norwegian_way(
    live_server, browser, app, world
):
    # the peer's reschedule form is saved by the tablet's script, which reads the text date
    iid = world.interviews["pa"]
    context = browser.new_context(viewport=TABLET, has_touch=True, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    _watch_errors(page, errors)
    try:
        _login(page, live_server, "peer_a", lang="nb")
        page.goto(f"{live_server}/interviews/{iid}/capacity")
        page.wait_for_selector("html.tablet-ready", state="attached")
        page.locator("button[value=reschedule]").click()
        page.wait_for_url(f"**/interviews/{iid}/reschedule")
        page.wait_for_selector("html.tablet-ready", state="attached")
        assert page.locator("#day").get_attribute("type") == "text"
        page.locator("#reason").select_option("participant_asked")
        page.locator("#day").fill("11/24/2030")
        page.locator("#at").fill("10:00")
        page.locator("form[data-offline=reschedule] button[type=submit]").click()
        alert = page.locator("form[data-offline=reschedule] .form-alert")
        alert.wait_for()
        assert "dd.mm.åååå" in alert.inner_text()
        page.locator("#day").fill("24.11.2030")
        page.locator("form[data-offline=reschedule] button[type=submit]").click()
        page.wait_for_url(f"**/interviews/{iid}")
        wanted = oslo_to_utc(date(2030, 11, 24), time(10, 0))
        with app.app_context():
            deadline = monotonic() + 20
            while monotonic() < deadline:
                db.session.rollback()
                if db.session.get(Interview, iid).planned_at == wanted:
                    break
                page.wait_for_timeout(200)  # the store is polled, not the page
            assert db.session.get(Interview, iid).planned_at == wanted
        assert errors == []
    finally:
        context.close()
