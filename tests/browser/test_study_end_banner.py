"""The study's end on the desk in Chromium (1024×768): the reminder is on screen, in the
page's language, read as a named region before the page's own heading, in both languages."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from babel.dates import format_date

from interview.web.i18n import today_in_oslo
from tests.browser.helpers import TABLET
from tests.conftest import PASSWORD


@pytest.mark.parametrize(
    ("lang", "title", "step"),
    [
        ("en", "The study ends on {date}, in 45 days.", "take the exports the study needs"),
        ("nb", "Studien avsluttes {date}, om 45 dager.", "ta ut eksportene studien trenger"),
    ],
)
def test_the_reminder_reads_on_the_desk(server, browser, app, tmp_path, lang, title, step):
    end = today_in_oslo() + timedelta(days=45)
    app.config["STUDY_END_DATE"] = end.isoformat()
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    page.goto(f"{server.url}/login?lang={lang}")
    page.locator("#username").fill("coord_a")
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()
    page.goto(f"{server.url}/desk/?lang={lang}")
    banner = page.get_by_role(
        "region", name=title.format(date=format_date(end, "long", locale=lang))
    )
    assert banner.is_visible()
    assert step in banner.inner_text()
    assert page.locator("html").get_attribute("lang") == lang
    # it comes before the page's heading and leaves the heading in view at 1024×768
    box, heading = banner.bounding_box(), page.locator("h1").bounding_box()
    assert box["y"] < heading["y"] < TABLET["height"]
    assert box["x"] + box["width"] <= TABLET["width"]
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    page.screenshot(path=str(folder / f"study-end-{lang}.png"))
    context.close()
