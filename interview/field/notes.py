"""Notes written under guide questions: parsing a section's form and applying it to the store."""

import uuid
from dataclasses import dataclass, field

from flask_babel import gettext as _

from interview.store.extensions import db
from interview.store.models import POLARITIES, Interview, Note, Theme, User
from interview.sync.batch import apply_changes, web_change

MAX_NOTE_LENGTH = 20_000
MAX_REV = 2**31 - 1  # what the stores keep as an integer
# a section page's new notes get their ids from the page's load id (see `new_note_id`)
NEW_NOTES = uuid.UUID("8bec8626-d791-4377-8e96-4d22e4f3d9b8")


@dataclass
class NoteInput:
    """What the form says about one note (existing or new)."""

    note_id: str
    question_key: str
    text: str
    polarity: str | None
    theme_ids: list[int]
    possible_quote: bool
    base_rev: int | None  # None for a new note
    resolve: bool = False  # the peer has looked at both versions and chosen


@dataclass
class ParsedSection:
    """The notes a section form carries, and any problems found."""

    inputs: list[NoteInput] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError):
        return False


def new_note_id(load: str, question_key: str) -> str | None:
    """Return the id of a page load's new note under a question (None for a bad load id)."""
    # every load of a section page has its own id, and each new-note box one derived from it:
    # sending one page twice (a double tap) saves its notes once, two loads never share a note
    load = (load or "").lower()
    if not _is_uuid(load):
        return None
    return str(uuid.uuid5(NEW_NOTES, f"{load}/{question_key}"))


def parse_section_form(
    form,
    question_keys: list[str],
    existing: dict[str, Note],
    theme_ids: set[int],
    quotes: bool = True,
) -> ParsedSection:
    """Read note fields of one section: existing notes by id, one new note per question.

    `quotes` False: the participant's consent does not cover quotes, and a note marked as a
    possible quote is refused beside its field (the sync rules refuse it too).
    """
    parsed = ParsedSection()

    def read(prefix: str, qkey: str, note_id: str, base_rev: int | None) -> None:
        text = (form.get(f"{prefix}-text") or "").replace("\r\n", "\n")
        polarity = form.get(f"{prefix}-polarity") or None
        raw_themes = form.getlist(f"{prefix}-theme")
        if len(text) > MAX_NOTE_LENGTH:
            parsed.errors[prefix] = _(
                "This note is too long (at most %(n)d characters). Split it into two notes.",
                n=MAX_NOTE_LENGTH,
            )
            return
        if polarity is not None and polarity not in POLARITIES:
            parsed.errors[prefix] = _("Choose inhibits, promotes or neither.")
            return
        try:
            chosen = sorted({int(t) for t in raw_themes})
        except ValueError:
            chosen = None
        if chosen is None or not set(chosen) <= theme_ids:
            parsed.errors[prefix] = _("One of the themes is not in the codebook.")
            return
        if not quotes and form.get(f"{prefix}-quote") == "1":
            parsed.errors[prefix] = no_quotes_message()
            return
        parsed.inputs.append(
            NoteInput(
                note_id=note_id,
                question_key=qkey,
                text=text,
                polarity=polarity,
                theme_ids=chosen,
                possible_quote=form.get(f"{prefix}-quote") == "1",
                base_rev=base_rev,
                resolve=form.get(f"{prefix}-resolve") == "1",
            )
        )

    for note_id, note in existing.items():
        prefix = f"note-{note_id}"
        if f"{prefix}-text" not in form:
            continue
        try:
            base_rev = int(form.get(f"{prefix}-rev", ""))
        except ValueError:
            base_rev = 0
        if not 1 <= base_rev <= MAX_REV:
            # checked here, not only by the sync rules, so the other notes are not saved alone
            parsed.errors[prefix] = _("This note's form was damaged. Reload the page.")
            continue
        read(prefix, note.question_key, note_id, base_rev)

    for qkey in question_keys:
        prefix = f"new-{qkey}"
        if not (form.get(f"{prefix}-text") or "").strip():
            continue
        # the tablet's script names its new notes itself; a page without it sends the load id
        new_id = (form.get(f"{prefix}-id") or "").lower() or new_note_id(form.get("load", ""), qkey)
        if not new_id or not _is_uuid(new_id):
            parsed.errors[prefix] = _("This note's form was damaged. Reload the page.")
            continue
        read(prefix, qkey, new_id, None)
    return parsed


def no_quotes_message() -> str:
    """Say, in the user's language, why no note of this participant can be a possible quote."""
    return _(
        "The participant's consent does not cover quotes (never given, or withdrawn), "
        "so no note can be marked as a possible quote."
    )


@dataclass
class ApplyResult:
    """How applying a section's notes went."""

    results: list = field(default_factory=list)

    @property
    def conflicts(self) -> int:
        """Count the notes whose text or tags were changed elsewhere at the same time."""
        return sum(1 for r in self.results if r.status == "conflict")


def apply_notes(
    interview: Interview, inputs: list[NoteInput], author: User, themes: dict[int, Theme]
) -> ApplyResult:
    """Turn the form's notes into changes and apply them with the sync rules (sync.py)."""
    changes = []
    for item in inputs:
        keys = sorted(themes[t].key for t in item.theme_ids)
        if item.base_rev is None:
            data = {
                "interview_id": interview.id,
                "question_key": item.question_key,
                "text": item.text,
                "polarity": item.polarity,
                "themes": keys,
                "possible_quote": item.possible_quote,
            }
        elif not item.text.strip():
            data = {"deleted": True}
        else:
            data = {
                "text": item.text,
                "polarity": item.polarity,
                "themes": keys,
                "possible_quote": item.possible_quote,
            }
            if item.resolve:
                data["resolve"] = True
        changes.append(web_change("note", item.note_id, item.base_rev, data))
    return ApplyResult(apply_changes(db.session, author, changes, device_id=None))
