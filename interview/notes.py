"""Notes written under guide questions: parsing a section's form and applying it to the store."""

import uuid
from dataclasses import dataclass, field

from flask_babel import gettext as _

from .extensions import db
from .models import POLARITIES, Interview, Note, Theme, User, utcnow

MAX_NOTE_LENGTH = 20_000


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


def parse_section_form(
    form, question_keys: list[str], existing: dict[str, Note], theme_ids: set[int]
) -> ParsedSection:
    """Read note fields of one section: existing notes by id, one new note per question."""
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
        parsed.inputs.append(
            NoteInput(
                note_id=note_id,
                question_key=qkey,
                text=text,
                polarity=polarity,
                theme_ids=chosen,
                possible_quote=form.get(f"{prefix}-quote") == "1",
                base_rev=base_rev,
            )
        )

    for note_id, note in existing.items():
        prefix = f"note-{note_id}"
        if f"{prefix}-text" not in form:
            continue
        try:
            base_rev = int(form.get(f"{prefix}-rev", ""))
        except ValueError:
            parsed.errors[prefix] = _("This note's form was damaged. Reload the page.")
            continue
        read(prefix, note.question_key, note_id, base_rev)

    for qkey in question_keys:
        prefix = f"new-{qkey}"
        new_id = (form.get(f"{prefix}-id") or "").lower()
        if not (form.get(f"{prefix}-text") or "").strip():
            continue
        if not _is_uuid(new_id):
            parsed.errors[prefix] = _("This note's form was damaged. Reload the page.")
            continue
        read(prefix, qkey, new_id, None)
    return parsed


@dataclass
class ApplyResult:
    """How applying a section's notes went."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: int = 0


def apply_notes(
    interview: Interview, inputs: list[NoteInput], author: User, themes: dict[int, Theme]
) -> ApplyResult:
    """Create, update or delete notes; a stale edit of the text keeps both texts as a conflict."""
    result = ApplyResult()
    for item in inputs:
        note = db.session.get(Note, item.note_id)
        if note is not None and note.interview_id != interview.id:
            continue  # an id that belongs elsewhere never touches that record
        chosen = [themes[t] for t in item.theme_ids]
        if note is None:
            if item.base_rev is not None:
                continue  # the note was deleted meanwhile; nothing to edit
            db.session.add(
                Note(
                    id=item.note_id,
                    interview_id=interview.id,
                    question_key=item.question_key,
                    text=item.text,
                    polarity=item.polarity,
                    themes=chosen,
                    possible_quote=item.possible_quote,
                    author_id=author.id,
                )
            )
            result.created += 1
            continue
        if item.base_rev is None:
            continue  # a create arriving again (double submit) applies once
        stale = item.base_rev != note.rev
        if not item.text.strip() and not stale:
            db.session.delete(note)
            result.deleted += 1
            continue
        changed = False
        if item.text != note.text:
            if stale:
                note.conflict_text = item.text
                result.conflicts += 1
            else:
                note.text = item.text
            changed = True
        if (
            item.polarity != note.polarity
            or item.possible_quote != note.possible_quote
            or sorted(t.id for t in note.themes) != item.theme_ids
        ):
            note.polarity = item.polarity
            note.possible_quote = item.possible_quote
            note.themes = chosen
            changed = True
        if changed:
            note.rev += 1
            note.updated_at = utcnow()
            result.updated += 1
    return result
