"""The codebook in a real browser without JavaScript: names to read, edit forms on demand."""

from tests.browser.helpers import TABLET
from tests.conftest import PASSWORD


def _codebook(browser, base, lang):
    context = browser.new_context(viewport=TABLET, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{base}/login?lang={lang}")
    page.locator("#username").fill("coord_a")
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()
    page.goto(f"{base}/desk/themes/?lang={lang}")
    return context, page


def test_the_codebook_opens_one_theme_to_edit_by_keyboard(live_server, browser):
    context, page = _codebook(browser, live_server, "nb")
    try:
        # no edit field shows until asked for: the list is names to read
        assert page.locator("input[type=text]:visible, input:not([type]):visible").count() == 0
        rows = page.locator("li.codebook-theme")
        assert rows.count() == 26
        # the whole codebook fits in five screens of the tablet (it was seven, 5,500 px)
        assert page.evaluate("document.documentElement.scrollHeight") < 5 * TABLET["height"]
        row = rows.filter(has_text="Kultur og holdninger")
        row.locator("summary").focus()
        page.keyboard.press("Enter")
        assert row.locator("input[lang=nb]").input_value() == "Kultur og holdninger"
        assert page.locator("input:visible").count() == 2
        row.locator("input[lang=nb]").fill("")
        row.locator("button.primary").click()
        page.wait_for_load_state()
        # the refusal reopens that theme with its message and puts the cursor in it
        opened = page.locator("details[open]")
        assert opened.count() == 1
        assert "Skriv navnet på begge språk." in opened.inner_text()
        assert page.evaluate("document.activeElement.lang") == "nb"
        assert page.evaluate("document.activeElement.closest('li').id") == row.get_attribute("id")
    finally:
        context.close()
