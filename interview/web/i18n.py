"""Language choice for the UI, and helpers for bilingual content and Oslo times."""

import os
import re
from datetime import date, datetime, time
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import DateTimePattern, parse_pattern
from flask import Flask, current_app, g, request, session, url_for
from flask_babel import format_date, format_datetime, format_time, get_locale
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from interview.store.extensions import babel, db
from interview.store.models import utcnow

OSLO = ZoneInfo("Europe/Oslo")


def terminal_language() -> str:
    """Return the UI language for messages on the command line: Bokmål where the locale says."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return "nb" if value.lower().startswith(("nb", "nn", "no")) else "en"
    return "en"


def select_locale() -> str:
    """Pick the UI language: ?lang=, then the remembered choice, then the user's, then Bokmål."""
    languages = current_app.config["LANGUAGES"]
    asked = request.args.get("lang")
    if asked in languages:
        return asked
    remembered = session.get("lang")
    if remembered in languages:
        return remembered
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def ui_lang() -> str:
    """Return the current UI language code."""
    # flask-babel keeps the chosen (or forced) locale in g._flask_babel; reading it directly
    # spares templates that ask for the language dozens of times a page its slower path
    ctx = g.get("_flask_babel")
    locale = getattr(ctx, "babel_locale", None) if ctx is not None else None
    if locale is None:
        locale = get_locale()
    return locale.language if locale is not None else "nb"


def _remember_language() -> None:
    asked = request.args.get("lang")
    if asked in current_app.config["LANGUAGES"] and session.get("lang") != asked:
        session["lang"] = asked
        if current_user.is_authenticated and current_user.ui_language != asked:
            current_user.ui_language = asked
            db.session.commit()


def text(value: dict | str | None, lang: str | None = None) -> str:
    """Return the text in the given language from a {nb, en} table (UI language by default)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    lang = lang or ui_lang()
    return value.get(lang) or value.get("nb") or ""


def lang_url(lang: str) -> str:
    """Return this page's address in another UI language, keeping its other parameters."""
    if request.endpoint and request.method == "GET":
        args = {k: v for k, v in request.args.items() if k != "lang"}
        return url_for(request.endpoint, **(request.view_args or {}), **args, lang=lang)
    return f"?lang={lang}"


# How dates and times are written in the forms, per UI language: never the browser's own date
# picker, whose order follows the browser's language (12/05/2026 on an English browser showing
# a Norwegian page). The Norwegian way on nb, ISO 8601 on en; either is read on both.
DAY_FORMATS = {"nb": ("%d.%m.%Y", "dd.mm.åååå"), "en": ("%Y-%m-%d", "yyyy-mm-dd")}
TIME_FORMATS = {"nb": "tt:mm", "en": "hh:mm"}
_ISO_DAY = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_NORWEGIAN_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", re.ASCII)
_CLOCK = re.compile(r"(\d{1,2})[:.](\d{2})", re.ASCII)


def parse_day(value: str) -> date:
    """Read a date written as dd.mm.yyyy or yyyy-mm-dd; ValueError for anything else.

    Slashes are refused: 12/05/2026 is 12 May to a Norwegian and 5 December to an American.
    """
    value = value.strip()
    if match := _ISO_DAY.fullmatch(value):
        year, month, day = match.groups()
    elif match := _NORWEGIAN_DAY.fullmatch(value):
        day, month, year = match.groups()
    else:
        # what was typed stays out of the exception (it may end up in a log)
        raise ValueError("not a date")
    return date(int(year), int(month), int(day))


def parse_clock(value: str) -> time:
    """Read a 24-hour time written as 13:30 or 13.30; ValueError for anything else."""
    match = _CLOCK.fullmatch(value.strip())
    if not match:
        raise ValueError("not a time")
    return time(int(match.group(1)), int(match.group(2)))


def day_text(value: date) -> str:
    """Return a date as the forms of the UI language write it (23.11.2026 or 2026-11-23)."""
    return value.strftime(DAY_FORMATS.get(ui_lang(), DAY_FORMATS["nb"])[0])


def day_format() -> str:
    """Return how a date is written in the UI language, for hints: dd.mm.åååå or yyyy-mm-dd."""
    return DAY_FORMATS.get(ui_lang(), DAY_FORMATS["nb"])[1]


def time_format() -> str:
    """Return how a time is written in the UI language, for hints: tt:mm or hh:mm."""
    return TIME_FORMATS.get(ui_lang(), TIME_FORMATS["nb"])


# the button that asks a refused form's page again in another language sends this field
SWITCH_FIELD = "switch_language"


def keeps_form_on_language_switch(view):
    """Mark a view whose refused form may be posted again only to switch the page's language.

    Such a post (`language_switch_requested()`) shows the form again, with what was typed and
    its errors in the new language, and does nothing else: the view's forms are then never
    valid (forms.Form). Every other page switches language with a plain link.
    """
    view.keeps_form_on_language_switch = True
    return view


def language_switch_requested() -> bool:
    """True when this POST only asks for its form again in another language."""
    return (
        request.method == "POST"
        and request.form.get(SWITCH_FIELD) in (current_app.config["LANGUAGES"])
    )


def lang_switch(lang: str) -> dict:
    """How this page switches to `lang`: {"href": …} for a link, or {"action", "fields"}.

    A page answered to a POST has no address of its own: a link to it asked for it with GET,
    which the form's address refuses (405), and what was typed was lost. A refused form's page
    of a marked view therefore posts what was sent again, with `SWITCH_FIELD`; other pages
    link to the same address where it answers GET, else to the page the form was sent from.
    """
    if request.method == "GET" or not request.endpoint:
        return {"href": lang_url(lang)}
    view = current_app.view_functions.get(request.endpoint)
    # url_for reads arguments starting with "_" as its own options (_scheme, _external…)
    args = {k: v for k, v in request.args.items() if k != "lang" and not k.startswith("_")}
    sent = None
    if getattr(view, "keeps_form_on_language_switch", False):
        try:
            sent = request.form.lists()
        except HTTPException:
            # the page says the form could not be read (too large): nothing to send again
            sent = None
    if sent is not None:
        fields = [
            (name, value)
            for name, values in sent
            if name not in ("csrf_token", SWITCH_FIELD)
            for value in values
        ]
        action = url_for(request.endpoint, **(request.view_args or {}), **args, lang=lang)
        return {"action": action, "fields": fields}
    if request.url_rule is not None and "GET" in (request.url_rule.methods or ()):
        return {"href": url_for(request.endpoint, **(request.view_args or {}), **args, lang=lang)}
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path:
        query = [(k, v) for k, v in parse_qsl(referrer.query) if k != "lang"] + [("lang", lang)]
        return {"href": referrer.path + "?" + urlencode(query)}
    return {"href": url_for("main.home", lang=lang)}


def date_hint() -> str:
    """The hint under a date field: how to write it in the UI language, with an example."""
    return _(
        "Format: %(format)s (for example %(example)s)",
        format=day_format(),
        example=day_text(date(2026, 11, 23)),
    )


def time_hint() -> str:
    """The hint under a time field: the 24-hour clock, with an example."""
    return _("Format: %(format)s (for example %(example)s)", format=time_format(), example="13:30")


def oslo_to_utc(day: date, at: time) -> datetime:
    """Turn a wall-clock date and time in Oslo into a naive UTC datetime for the store."""
    local = datetime.combine(day, at).replace(tzinfo=OSLO)
    return local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def utc_to_oslo(value: datetime) -> datetime:
    """Turn a naive UTC datetime from the store into an aware Oslo datetime."""
    return value.replace(tzinfo=ZoneInfo("UTC")).astimezone(OSLO)


@lru_cache(maxsize=8)
def _when_patterns(lang: str) -> tuple[DateTimePattern, DateTimePattern, Locale]:
    locale = Locale.parse(lang)
    return (
        parse_pattern(locale.date_formats["medium"].pattern),
        parse_pattern(locale.time_formats["short"].pattern),
        locale,
    )


def when_text(value: datetime) -> str:
    """Return a stored (naive UTC) time as Oslo's medium date and short time.

    The same text as flask-babel's format_date(…, 'medium') and format_time(…, 'short') in
    Europe/Oslo, with the patterns parsed once: lists show dozens of these.
    """
    local = utc_to_oslo(value)
    day, clock, locale = _when_patterns(ui_lang())
    return f"{day.apply(local, locale)}, {clock.apply(local, locale)}"


def init_app(app: Flask) -> None:
    """Set up Flask-Babel and the template helpers."""
    babel.init_app(app, locale_selector=select_locale, default_timezone="Europe/Oslo")
    app.before_request(_remember_language)

    # globals (not a context processor) so imported macros can use them too
    app.jinja_env.globals.update(
        ui_lang=ui_lang,
        lang_url=lang_url,
        lang_switch=lang_switch,
        day_text=day_text,
        date_hint=date_hint,
        tr=text,
        when_text=when_text,
        format_datetime=format_datetime,
        format_date=format_date,
        format_time=format_time,
    )

    @app.before_request
    def _lang_to_g():
        g.lang = ui_lang()


def today_in_oslo() -> date:
    """Return today's date in Oslo (the study's calendar)."""
    return utc_to_oslo(utcnow()).date()
