"""The study's codebook and the theme matrix: plain functions on the store, no HTTP."""

import re
import unicodedata
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interview.store.content import guide_of
from interview.store.models import (
    Case,
    CaseStaffTheme,
    GuideVersion,
    Interview,
    Note,
    Participant,
    Theme,
    note_themes,
)

MAX_NAME = 200
POLARITY_COLUMNS = ("inhibits", "promotes", "none")
# the one set of signs the matrix's cells and its legend both use
MARKS = {"inhibits": "−", "promotes": "+", "none": "○", "empty": "·", "staff": "★"}
# Norwegian sorts æ, ø, å (and ä, ö with them) after z; these three follow "z" in ASCII
_NB_LAST = str.maketrans({"æ": "{", "ä": "{", "ø": "|", "ö": "|", "å": "}"})
# letters that no accent-stripping turns into a base letter, as English readers file them
_EN_PLAIN = str.maketrans({"æ": "ae", "ø": "o", "đ": "d", "ł": "l", "œ": "oe"})


def name_order(name: str, lang: str) -> tuple[str, str]:
    """Sort key for a name as a reader of that language expects it: case and accents aside,
    and in Norwegian æ, ø, å after z (Python's own order puts "Åpenhet" before "apati")."""
    folded = unicodedata.normalize("NFC", name).casefold()
    folded = folded.translate(_NB_LAST if lang == "nb" else _EN_PLAIN)
    plain = "".join(c for c in unicodedata.normalize("NFD", folded) if not unicodedata.combining(c))
    return plain, name


class CodebookError(ValueError):
    """A codebook change that cannot be made; the code names the reason for the message."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _clean(name: str | None) -> str:
    return " ".join((name or "").split())


def _check_names(session: Session, name_nb: str, name_en: str, theme_id: int | None) -> None:
    if not name_nb or not name_en:
        raise CodebookError("names_required")
    if len(name_nb) > MAX_NAME or len(name_en) > MAX_NAME:
        raise CodebookError("name_too_long")
    clash = session.scalar(
        select(Theme.id).where(
            (func.lower(Theme.name_nb) == name_nb.lower())
            | (func.lower(Theme.name_en) == name_en.lower()),
            Theme.id != (theme_id or -1),
        )
    )
    if clash is not None:
        raise CodebookError("name_taken")


def key_for(session: Session, name_en: str) -> str:
    """Return a fresh, stable key made from the English name (ascii, lowercase, underscores)."""
    ascii_name = unicodedata.normalize("NFKD", name_en).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:60] or "theme"
    taken = set(session.scalars(select(Theme.key).where(Theme.key.like(base + "%"))))
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def add_theme(session: Session, name_nb: str, name_en: str) -> Theme:
    """Add a theme named in both languages; the key never changes afterwards."""
    name_nb, name_en = _clean(name_nb), _clean(name_en)
    _check_names(session, name_nb, name_en, None)
    theme = Theme(key=key_for(session, name_en), name_nb=name_nb, name_en=name_en)
    session.add(theme)
    session.flush()
    return theme


def rename_theme(session: Session, theme: Theme, name_nb: str, name_en: str) -> bool:
    """Rename a theme in both languages; False when nothing changed."""
    name_nb, name_en = _clean(name_nb), _clean(name_en)
    _check_names(session, name_nb, name_en, theme.id)
    if (theme.name_nb, theme.name_en) == (name_nb, name_en):
        return False
    theme.name_nb, theme.name_en = name_nb, name_en
    return True


def set_retired(theme: Theme, retired: bool) -> bool:
    """Retire a theme (no longer offered for new tags; it stays on old notes), or restore it."""
    if theme.retired == retired:
        return False
    theme.retired = retired
    return True


def _counted_notes(case_ids: set[int]):
    """Notes that count for analysis: not deleted, of participants who have not withdrawn."""
    return (
        select(Note.id)
        .join(Interview, Interview.id == Note.interview_id)
        .join(Participant, Participant.id == Interview.participant_id)
        .where(
            Note.deleted_at.is_(None),
            Participant.status != "withdrawn",
            Participant.case_id.in_(case_ids or {-1}),
        )
    )


def note_counts(session: Session, case_ids: set[int]) -> dict[int, int]:
    """How many notes of these cases (withdrawn excluded) carry each theme."""
    rows = session.execute(
        select(note_themes.c.theme_id, func.count())
        .where(note_themes.c.note_id.in_(_counted_notes(case_ids)))
        .group_by(note_themes.c.theme_id)
    )
    return {theme_id: n for theme_id, n in rows}


@dataclass
class Matrix:
    """Themes × cases: tagged patient notes per polarity, and what each team's staff named."""

    themes: list[Theme]
    cases: list[Case]
    counts: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
    staff: dict[tuple[int, int], str] = field(default_factory=dict)

    def cell(self, theme_id: int, case_id: int) -> dict[str, int]:
        """Return the counts of one cell, zeros where no note was tagged."""
        return self.counts.get((theme_id, case_id), dict.fromkeys(POLARITY_COLUMNS, 0))


def theme_matrix(session: Session, cases: list[Case], lang: str = "en") -> Matrix:
    """Build the matrix for these cases with two aggregate queries, whatever the data size;
    themes in the order of their names in this language."""
    case_ids = {c.id for c in cases}
    rows = session.execute(
        select(
            note_themes.c.theme_id,
            Participant.case_id,
            Note.polarity,
            func.count(),
        )
        .join(Note, Note.id == note_themes.c.note_id)
        .join(Interview, Interview.id == Note.interview_id)
        .join(Participant, Participant.id == Interview.participant_id)
        .where(Note.id.in_(_counted_notes(case_ids)))
        .group_by(note_themes.c.theme_id, Participant.case_id, Note.polarity)
    )
    counts: dict[tuple[int, int], dict[str, int]] = {}
    for theme_id, case_id, polarity, n in rows:
        cell = counts.setdefault((theme_id, case_id), dict.fromkeys(POLARITY_COLUMNS, 0))
        cell[polarity if polarity in POLARITY_COLUMNS else "none"] += n
    staff = {
        (st.theme_id, st.case_id): st.polarity
        for st in session.scalars(
            select(CaseStaffTheme).where(CaseStaffTheme.case_id.in_(case_ids or {-1}))
        )
    }
    used = {theme_id for theme_id, _ in counts} | {theme_id for theme_id, _ in staff}
    themes = [
        t
        for t in session.scalars(select(Theme))
        if not t.retired or t.id in used  # a retired theme stays where notes carry it
    ]
    # the teams' staff themes first (the comparison the study exists for), then the rest
    named = {theme_id for theme_id, _ in staff}
    themes.sort(key=lambda t: (t.id not in named, name_order(t.name(lang), lang)))
    return Matrix(themes=themes, cases=cases, counts=counts, staff=staff)


@dataclass(frozen=True)
class Entry:
    """One theme of the codebook as a coordinator reads it."""

    theme: Theme
    notes: int
    staff: list[tuple[Case, str]]  # the coordinator's teams whose staff named it, and how


def codebook_entries(session: Session, cases: list[Case], lang: str) -> list[Entry]:
    """The codebook in the order of the names in this language, themes in use first; notes
    and staff namings are those of these cases."""
    case_ids = {c.id for c in cases}
    counts = note_counts(session, case_ids)
    by_id = {c.id: c for c in cases}
    staff: dict[int, list[tuple[Case, str]]] = {}
    for st in session.scalars(
        select(CaseStaffTheme).where(CaseStaffTheme.case_id.in_(case_ids or {-1}))
    ):
        staff.setdefault(st.theme_id, []).append((by_id[st.case_id], st.polarity))
    themes = sorted(
        session.scalars(select(Theme)), key=lambda t: (t.retired, name_order(t.name(lang), lang))
    )
    return [
        Entry(
            t,
            counts.get(t.id, 0),
            sorted(staff.get(t.id, []), key=lambda cp: name_order(cp[0].name(lang), lang)),
        )
        for t in themes
    ]


@dataclass(frozen=True)
class CellNote:
    """One note behind a matrix cell, as a coordinator reads it."""

    note_id: str
    participant_code: str
    interview_id: str
    question_key: str
    question_text: dict
    text: str
    polarity: str | None


def cell_notes(session: Session, case: Case, theme: Theme, polarity: str | None) -> list[CellNote]:
    """The notes of one case tagged with one theme, optionally only one polarity ('none')."""
    stmt = (
        select(Note, Participant.code, GuideVersion)
        .join(note_themes, note_themes.c.note_id == Note.id)
        .join(Interview, Interview.id == Note.interview_id)
        .join(Participant, Participant.id == Interview.participant_id)
        .join(GuideVersion, GuideVersion.id == Interview.guide_version_id)
        .where(note_themes.c.theme_id == theme.id, Note.id.in_(_counted_notes({case.id})))
        .order_by(Participant.code, Note.created_at)
    )
    if polarity == "none":
        stmt = stmt.where(Note.polarity.is_(None))
    elif polarity is not None:
        stmt = stmt.where(Note.polarity == polarity)
    out = []
    for note, code, version in session.execute(stmt):
        question = guide_of(version).question(note.question_key)
        out.append(
            CellNote(
                note.id,
                code,
                note.interview_id,
                note.question_key,
                question.text if question else {"nb": note.question_key, "en": note.question_key},
                note.text,
                note.polarity,
            )
        )
    return out
