"""What the interview's pages show beside their forms: the consent form's items and problems,
a section's notes, theme boxes and the identifier guard's findings, the notes in conflict.
"""

import uuid
from dataclasses import dataclass

from flask import abort, flash, g, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from interview.field import flow
from interview.store.consents import participant_consent
from interview.store.extensions import db
from interview.store.identifiers import KINDS as IDENTIFIER_KINDS
from interview.store.identifiers import find_identifiers, given_names
from interview.store.models import (
    ConsentFormVersion,
    Interview,
    Note,
    Theme,
)
from interview.sync.consents import decode_signature
from interview.trust.access import (
    open_interviews_visible_to,
)
from interview.web.forms import (
    ConsentForm,
)
from interview.web.i18n import text as text_in
from interview.web.labels import FORM_MESSAGES, Words


def _newest_consent_form() -> ConsentFormVersion | None:
    return db.session.scalars(
        select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
    ).first()


def _latest_consent_form() -> ConsentFormVersion:
    form_version = _newest_consent_form()
    if form_version is None:
        abort(409)
    return form_version


def _consent_answers(items: list[dict]) -> tuple[dict[str, bool], dict[str, str]]:
    """Read each item's yes or no from the posted form; return the answers and what is amiss."""
    answers: dict[str, bool] = {}
    errors: dict[str, str] = {}
    for item in items:
        value = request.form.get(f"item-{item['key']}")
        if value in ("yes", "no"):
            answers[item["key"]] = value == "yes"
        else:
            errors[item["key"]] = str(FORM_MESSAGES["answer_every_item"])
    if answers.get("participate") is False:
        errors["participate"] = str(FORM_MESSAGES["need_participate"])
    return answers, errors


def _check_consent_method(form: ConsentForm) -> bytes | None:
    """Check the fields of the chosen way of consenting; return the signature drawn, if any."""
    if form.method.errors:
        # one plain message, whether nothing was chosen or something unknown was sent
        form.method.errors = [str(FORM_MESSAGES["need_method"])]
        return None
    if form.method.data == "tablet":
        signature = decode_signature(form.signature.data or "")
        if signature is None and not form.signature.errors:
            form.signature.errors = [str(FORM_MESSAGES["need_signature"])]
        return signature
    if not (form.paper_form_number.data or "").strip() and not form.paper_form_number.errors:
        form.paper_form_number.errors = [str(FORM_MESSAGES["need_paper_number"])]
    return None


def _consent_problems(
    form: ConsentForm,
    items: list[dict],
    answers: dict[str, bool],
    item_errors: dict[str, str],
    interview: Interview,
) -> list[tuple[str, Markup]]:
    """The error summary: (id of the field to go to, what to do), in the order of the form."""
    problems: list[tuple[str, Markup]] = []
    if form.method.errors:
        problems.append(("method-0", escape(form.method.errors[0])))
    words = _consent_strings()
    lang = interview.language
    for item in items:
        key = item["key"]
        if key not in item_errors:
            continue
        # the item in the participant's words, the message in the peer's
        named = Markup('<span lang="{}">{}</span>').format(lang, text_in(item["text"], lang))
        says = words["participate_item"] if answers.get(key) is False else words["answer_item"]
        problems.append((f"item-{key}-yes", escape(says) % {"item": named}))
    for field, target in (
        (form.printed_name, "printed_name"),
        (form.signature, "signature-pad"),
        (form.paper_form_number, "paper_form_number"),
    ):
        problems += [(target, escape(message)) for message in field.errors]
    return problems


def _consent_strings() -> dict[str, str]:
    """The consent form's messages in the UI language, for the page and its script alike."""
    return {
        "title": _("There is a problem"),
        "need_method": str(FORM_MESSAGES["need_method"]),
        "answer_every_item": str(FORM_MESSAGES["answer_every_item"]),
        "answer_item": _("Answer yes or no: %(item)s"),
        "need_participate": str(FORM_MESSAGES["need_participate"]),
        "participate_item": _("The participant has answered no: %(item)s"),
        "need_signature": str(FORM_MESSAGES["need_signature"]),
        "need_paper_number": str(FORM_MESSAGES["need_paper_number"]),
    }


def _renewal_words(interview: Interview, form_version: ConsentFormVersion) -> dict:
    """Why the consent page asks a participant who has consented to consent again.

    On the page whenever the consent in force was given on an older form than the one shown,
    and hidden unless renewal is due: a tablet may hear of the coordinator's decision after it
    kept the page, and then shows it from its own state (interview.js).
    """
    state = participant_consent(interview.participant)
    if state is None or state.consent.form_version.version >= form_version.version:
        return {"renewal": None}
    changes = form_version.content.get("changes") or {}
    return {
        "renewal": Words(
            due=flow.renewal_of(interview) is not None,
            old_version=state.consent.form_version.version,
            consented_at=state.consent.obtained_at,
            changes=[
                p.strip() for p in changes.get(interview.language, "").split("\n\n") if p.strip()
            ],
        )
    }


def _participant_words(lang: str) -> Words:
    """The consent form's words the participant reads, in the interview language."""
    with force_locale(lang):
        return Words(
            answers=_("Your answers"),
            required=_("required to take part"),
            yes=_("Yes"),
            no=_("No"),
            signature=_("Signature"),
            sign_hint=_("Sign with a finger or a stylus in the box."),
            clear=_("Clear signature"),
            printed_name=_("Your name in block letters (optional)"),
            withdrawing=_("About withdrawing"),
            contact=_("Contact"),
        )


def _themes_for(
    question_themes: tuple[str, ...], active: list[Theme], staff: set[int]
) -> list[Theme]:
    """Order the codebook for a note: question's suggestions, team's staff themes, the rest."""

    def rank(t: Theme):
        if t.key in question_themes:
            return (0, question_themes.index(t.key))
        return (1 if t.id in staff else 2, t.key)

    return sorted(active, key=rank)


def _identifier_words() -> dict[str, str]:
    """The identifier guard's warnings, one per kind, and the advice (page and tablet alike)."""
    return {
        "national_id": _("This note may contain a national identity number."),
        "phone": _("This note may contain a phone number."),
        "email": _("This note may contain an e-mail address."),
        "address": _("This note may contain a street address."),
        "name": _("This note may contain a person's name."),
        "advice": _("Write around it: the study must never hold who the participant is."),
        "where": _("Where:"),
    }


def _free_text_words() -> dict[str, str]:
    """The identifier guard's warnings for a free text other than a note (a stop or distress
    comment, a debrief's reflection), one per kind, and the advice."""
    return {
        "national_id": _("This text may contain a national identity number."),
        "phone": _("This text may contain a phone number."),
        "email": _("This text may contain an e-mail address."),
        "address": _("This text may contain a street address."),
        "name": _("This text may contain a person's name."),
        "advice": _("Write around it: the study must never hold who the participant is."),
        "where": _("Where:"),
    }


def text_findings(text: str | None) -> dict | None:
    """The kinds of possible identifiers in a free text and masked excerpts, or None."""
    found = find_identifiers(text or "")
    if not found:
        return None
    kinds = {f.kind for f in found}
    return {
        "kinds": [k for k in IDENTIFIER_KINDS if k in kinds],
        "excerpts": [f.excerpt for f in found],
    }


def free_text_guard(found: dict | None = None) -> dict:
    """What a page with one free-text field needs for the identifier guard: the warning beside
    the field (`found`, from text_findings) and the tablet's rules for the live warning."""
    words = _free_text_words()
    return {
        "identifier_found": found,
        "identifier_words": Words(**words),
        "identifier_guard": _identifier_guard(words),
    }


@dataclass(frozen=True)
class NoteFields:
    """What one note's fields show: the saved note, or what a refused form sent back."""

    prefix: str
    note_id: str
    text: str
    polarity: str
    themes: list[str]
    quote: bool
    rev: str


def note_fields(note: Note | None, prefix: str, values) -> NoteFields:
    """Return a note's field values, from the form sent back when there is one (a refusal)."""
    if values:
        return NoteFields(
            prefix,
            note.id if note else values.get(prefix + "-id", ""),
            values.get(prefix + "-text", note.text if note else ""),
            values.get(prefix + "-polarity", (note.polarity or "") if note else ""),
            values.getlist(prefix + "-theme"),
            values.get(prefix + "-quote") == "1",
            values.get(prefix + "-rev", str(note.rev)) if note else "",
        )
    if note is None:
        return NoteFields(prefix, "", "", "", [], False, "")
    return NoteFields(
        prefix,
        note.id,
        note.text or "",
        note.polarity or "",
        [str(t.id) for t in note.themes],
        note.possible_quote,
        str(note.rev),
    )


def _by_question(notes: list[Note]) -> dict[str, list[Note]]:
    """The section's notes under their question's key, in the order given."""
    found: dict[str, list[Note]] = {}
    for note in notes:
        found.setdefault(note.question_key, []).append(note)
    return found


def _section_notes(interview: Interview, keys: list[str]) -> list[Note]:
    """Return the section's live notes with their themes, in the order they were written."""
    return list(
        db.session.scalars(
            select(Note)
            .where(
                Note.interview_id == interview.id,
                Note.question_key.in_(keys),
                Note.deleted_at.is_(None),
            )
            .options(selectinload(Note.themes))
            .order_by(Note.created_at, Note.id)
        )
    )


def _note_words() -> dict[str, str]:
    """The fixed words of a note's fields, translated once per page."""
    return {
        "note": _("Note"),
        "new_note": _("New note"),
        "about": _("This note is about something that…"),
        "neither": _("Neither"),
        "inhibits": _("Inhibits"),
        "promotes": _("Promotes"),
        "quote": _("Possible quote"),
        "themes": _("Themes"),
        "all_themes": _("Save and show all themes"),
        # the number is put in per note by the template (`|format`)
        "question": _("question %(n)d"),
    }


def theme_boxes(
    prefix: str, themes: list[Theme], checked: list[str], lang: str, only_checked: bool = False
) -> Markup:
    """Return a note's theme checkboxes (a note page holds dozens of notes: built in Python)."""
    name = escape(prefix + "-theme")
    chosen = set(checked)
    boxes = []
    for t in themes:
        if only_checked and str(t.id) not in chosen:
            continue
        mark = " checked" if str(t.id) in chosen else ""
        label = escape(t.name(lang))
        boxes.append(
            f'<label class="check"><input type="checkbox" name="{name}" value="{t.id}" '
            f'data-key="{escape(t.key)}"{mark}>{label}</label>'
        )
    return Markup("".join(boxes))


def _identifier_findings(notes: list[Note]) -> dict[str, dict]:
    """Per note id: the kinds of possible identifiers in its saved text and masked excerpts."""
    out = {}
    for note in notes:
        if not note.identifier_kinds:
            continue  # worked out when the text was written: nothing found then
        found = find_identifiers(note.text or "")
        if found:
            kinds = {f.kind for f in found}
            out[note.id] = {
                "kinds": [k for k in IDENTIFIER_KINDS if k in kinds],
                "excerpts": [f.excerpt for f in found],
            }
    return out


def _identifier_guard(words: dict[str, str] | None = None) -> dict:
    """What the tablet's identifiers.js needs: the words to show and the given-name list."""
    return {"words": words or _identifier_words(), "names": sorted(given_names())}


def _warn_identifiers_elsewhere(results, target: str, interview: Interview, index: int) -> None:
    """Leaving the section: say that a saved note may hold an identifier (never which words)."""
    # on this section's own page the warning stands beside the note, and on the way to the
    # distress or stop pages it would only be in the way; the flash names no words
    here = url_for("interviews.section", interview_id=interview.id, index=index)
    if request.form.get("go") in ("distress", "stop") or target.split("#")[0] == here:
        return
    if any(r.warnings for r in results):
        flash(
            _(
                "A note you saved in section %(n)d may hold something that tells who the "
                "participant is. Go back to it and write around it.",
                n=index + 1,
            ),
            "warning",
        )


def _conflicted_notes():
    visible = open_interviews_visible_to(current_user).with_only_columns(Interview.id)
    return list(
        db.session.scalars(
            select(Note)
            .where(Note.conflict.is_not(None), Note.interview_id.in_(visible))
            .options(selectinload(Note.interview).selectinload(Interview.participant))
            .order_by(Note.updated_at)
        )
    )


def page_load() -> str:
    """Return this page load's own id; the section page's new notes take their ids from it.

    Sending one page twice (a double tap) saves its notes once; two loads never share a note
    (`notes.new_note_id`).
    """
    if "_page_load" not in g:
        g._page_load = str(uuid.uuid4())
    return g._page_load
