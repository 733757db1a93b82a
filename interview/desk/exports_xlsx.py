"""The notes as a spreadsheet (.xlsx) that opens by double-click in Excel and LibreOffice.

One row per note with the CSV's columns (exports.CSV_COLUMNS), headed in the export's
language, the themes' names in that language beside their keys, and a second sheet that
explains every column. Written with openpyxl in write-only mode: each row goes to a temporary
file as it is written, so memory stays the same at 100,000 notes; the finished file is then
read back in pieces.

Every text cell is stored as text (`data_type` "s"), never as a formula, whatever it starts
with, so the CSV's apostrophe guard is not needed here and a note reads exactly as written.
"""

import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from interview.desk.exports import CHUNK_SIZE, CSV_COLUMNS, _split, participant_rows, theme_names

MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Excel keeps at most this many characters in a cell; a longer text is cut there (the JSON
# export holds all of it)
CELL_LIMIT = 32_767

# the columns' widths in characters, so the notes are readable without resizing
WIDTHS = {"note": 60, "question_text": 40, "theme_names": 30, "themes": 24, "author": 38}


def _headings() -> dict[str, tuple[str, str]]:
    """Return each column's heading and its explanation, in the current language."""
    return {
        "case": (_("FACT team"), _("The code of the FACT team (the case).")),
        "participant": (
            _("Participant code"),
            _("The participant's pseudonymous code. No names or contact details are exported."),
        ),
        "interview_id": (_("Interview"), _("The interview's id, the same in every export.")),
        "guide_version": (
            _("Guide version"),
            _("The interview guide and its version, as key v<version>."),
        ),
        "interview_language": (
            _("Interview language"),
            _("The language the interview was held in: nb (Norwegian Bokmål) or en (English)."),
        ),
        "question_key": (_("Question key"), _("The question's key in the interview guide.")),
        "question_text": (
            _("Question"),
            _("The question's text in the interview's language."),
        ),
        "note_id": (_("Note id"), _("The note's id, the same in every export.")),
        "note": (
            _("Note"),
            _(
                "The note as the peer wrote it. A cell holds at most 32,767 characters; "
                "a longer note is cut there, and the JSON export holds all of it."
            ),
        ),
        "author": (
            _("Written by"),
            _(
                "The pseudonymous id of the peer who wrote the note: the same peer has the "
                "same id in every export, and no name is exported."
            ),
        ),
        "polarity": (
            _("Polarity key"),
            _("inhibits or promotes: whether the note tells of a hindrance or a help; or empty."),
        ),
        "themes": (
            _("Theme keys"),
            _("The keys of the themes the note is tagged with, separated by ;."),
        ),
        "theme_names": (
            _("Themes"),
            _("The names of the same themes in this file's language, in the same order."),
        ),
        "possible_quote": (
            _("Possible quote"),
            _(
                "TRUE if the peer marked the note as a possible quote and the participant's "
                "consent allows quotes."
            ),
        ),
        "created_at": (
            _("Written at (UTC)"),
            _("When the note was written, in UTC (ISO 8601)."),
        ),
        "updated_at": (
            _("Changed at (UTC)"),
            _("When the note was last changed, in UTC (ISO 8601)."),
        ),
    }


def _cell(sheet, value: Any, bold: bool = False) -> WriteOnlyCell:
    """Return a cell that holds `value` as it is: text stays text, never a formula."""
    if isinstance(value, str):
        text = ILLEGAL_CHARACTERS_RE.sub("", value)[:CELL_LIMIT]
        cell = WriteOnlyCell(sheet, value=text)
        # openpyxl reads a string that starts with "=" as a formula; this one is text
        cell.data_type = "s"
    else:
        cell = WriteOnlyCell(sheet, value=value)
    if bold:
        cell.font = Font(bold=True)
    return cell


def _note_rows(
    people: Iterable[dict[str, Any]], names: dict[str, str]
) -> Iterator[tuple[Any, ...]]:
    """Yield each note's values in the order of CSV_COLUMNS, an empty cell for a value not known."""
    for participant in people:
        for row in participant_rows(participant, names, "; "):
            yield tuple("" if v is None else v for v in row)


def write_workbook(
    top: dict[str, Any], people: Iterable[dict[str, Any]], lang: str, target
) -> None:
    """Write the notes and the sheet of explanations as .xlsx to `target` (a binary file)."""
    with force_locale(lang):
        headings = _headings()
        notes_title = _("Notes")
        about_title = _("About the columns")
        about_head = (_("Column"), _("Key"), _("What it holds"))
        about_intro = _(
            "One row per note of the participants who are counted (not withdrawn), exported "
            "%(time)s UTC from %(study)s. Every cell is text or a number, never a formula.",
            time=top["study"]["exported_at"],
            study=top["study"]["name"],
        )
    names = theme_names(top, lang)
    book = Workbook(write_only=True)
    notes = book.create_sheet(notes_title)
    for n, key in enumerate(CSV_COLUMNS, start=1):
        notes.column_dimensions[get_column_letter(n)].width = WIDTHS.get(key, 16)
    notes.freeze_panes = "A2"
    notes.append([_cell(notes, headings[key][0], bold=True) for key in CSV_COLUMNS])
    wrap = Alignment(wrap_text=True, vertical="top")
    rows = 0
    for row in _note_rows(people, names):
        cells = [_cell(notes, v) for v in row]
        cells[CSV_COLUMNS.index("note")].alignment = wrap
        notes.append(cells)
        rows += 1
    notes.auto_filter.ref = f"A1:{get_column_letter(len(CSV_COLUMNS))}{rows + 1}"

    about = book.create_sheet(about_title)
    for letter, width in zip("ABC", (22, 18, 90), strict=True):
        about.column_dimensions[letter].width = width
    about.append([_cell(about, about_intro)])
    about.append([])
    about.append([_cell(about, h, bold=True) for h in about_head])
    for key in CSV_COLUMNS:
        heading, meaning = headings[key]
        about.append([_cell(about, heading), _cell(about, key), _cell(about, meaning)])
    book.save(target)


def xlsx_chunks(
    top: dict[str, Any],
    people: Iterable[dict[str, Any]],
    lang: str,
    spool: Callable[[], Any] = tempfile.TemporaryFile,
) -> Iterator[bytes]:
    """Yield the .xlsx in pieces: written to a temporary file first, row by row."""
    with spool() as target:
        write_workbook(top, people, lang, target)
        target.seek(0)
        while piece := target.read(CHUNK_SIZE):
            yield piece


def to_xlsx(data: dict, lang: str = "en") -> bytes:
    """Return the .xlsx of collected data (exports.collect) in one piece."""
    return b"".join(xlsx_chunks(*_split(data), lang))
