"""Translated names for the store's codes (statuses, places, events), for templates."""

from types import SimpleNamespace

from flask import Flask, has_app_context
from flask_babel import lazy_gettext as _l

from interview.web.i18n import ui_lang

LABELS = {
    "participant": {
        "invited": _l("Invited"),
        "consented": _l("Consented"),
        "interviewed": _l("Interviewed"),
        "withdrawn": _l("Withdrawn"),
    },
    "interview": {
        "planned": _l("Planned"),
        "in_progress": _l("In progress"),
        "paused": _l("Paused"),
        "completed": _l("Completed"),
        "stopped": _l("Stopped"),
    },
    "place": {
        "home": _l("The participant's home"),
        "cafe": _l("Café or other public place"),
        "team_office": _l("The team's office"),
        "other": _l("Somewhere else"),
    },
    "language": {"nb": _l("Norwegian (Bokmål)"), "en": _l("English")},
    "role": {
        "peer": _l("Peer co-researcher"),
        "coordinator": _l("Coordinator"),
        "admin": _l("Admin"),
    },
    "event": {
        "capacity_check": _l("Capacity check"),
        "reschedule": _l("Rescheduled"),
        "start": _l("Interview started"),
        "pause": _l("Paused"),
        "resume": _l("Resumed"),
        "distress_1": _l("Distress protocol, stage 1"),
        "distress_2": _l("Distress protocol, stage 2"),
        "stop": _l("Stopped"),
        "check_in": _l("Safety check-in"),
        "complete": _l("Completed"),
        "recording_started": _l("Recording started"),
        "recording_stopped": _l("Recording stopped"),
    },
    "polarity": {"inhibits": _l("Inhibits"), "promotes": _l("Promotes")},
    "method": {"tablet": _l("Signed on the tablet"), "paper": _l("Paper form")},
    "consent_item": {
        "participate": _l("Take part"),
        "audio": _l("Audio recording"),
        "quotes": _l("Quotes in publications"),
        "recontact": _l("May be contacted again"),
    },
}


# (language, kind, code) -> the translated name; the catalogues do not change while the app
# runs, and lists ask for the same few names hundreds of times a page
_TRANSLATED: dict[tuple[str, str, str], str] = {}


def label(kind: str, code: str | None) -> str:
    """Return the translated name of a code, or the code itself when unknown."""
    if code is None:
        return ""
    name = LABELS.get(kind, {}).get(code)
    if name is None:
        return str(code)  # unknown codes are not kept: only the known few are
    if not has_app_context():
        return str(name)
    key = (ui_lang(), kind, code)
    text = _TRANSLATED.get(key)
    if text is None:
        text = _TRANSLATED[key] = str(name)
    return text


def error_attrs(field, **attrs) -> dict:
    """Return a form field's HTML attributes, pointing at its hint and its error list."""
    described = [f"{field.id}-hint"] if field.description else []
    if field.errors:
        described.append(f"{field.id}-errors")
        attrs["aria-invalid"] = "true"
    if described:
        attrs["aria-describedby"] = " ".join(described)
    return attrs


class Words(SimpleNamespace):
    """A page's fixed words by name, for templates: `words.clear` is always the word.

    A dict would not do: Jinja's `said.clear` finds the method `dict.clear` before the key, and
    the page showed `<built-in method clear of dict object at 0x…>`. A namespace has no methods
    to find; `words[kind]` works too, for words chosen by a code.
    """

    def __getitem__(self, name: str) -> str:
        return self.__dict__[name]


def init_app(app: Flask) -> None:
    """Make `label` and `error_attrs` available in templates."""
    app.jinja_env.globals["label"] = label
    app.jinja_env.globals["error_attrs"] = error_attrs


# Messages a person sees when a step is not complete: shown by the server's forms and, from the
# same table, by the tablet's scripts when it checks a form without a network.
FORM_MESSAGES = {
    "need_all_three": _l(
        "All three must be true before you go on. If not, choose "
        "\u201cFind another day\u201d: that is the right thing to do."
    ),
    "need_method": _l("Choose how the participant gives consent."),
    "answer_every_item": _l("Answer yes or no."),
    "need_participate": _l(
        "Without consent to take part, the interview cannot go ahead. "
        "Thank the participant, and stop the interview."
    ),
    "need_signature": _l("Ask the participant to sign in the box."),
    "need_paper_number": _l("Write the number of the signed paper form."),
}
