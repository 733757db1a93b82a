"""Analysis-ready exports of the case store: CSV, JSON and a REFI-QDA project (.qdpx).

An export is written while it is read, so that the server's memory does not grow with the
number of notes: `head` reads the small part (study, codebook, cases, guide versions),
`participants` reads the participants a batch at a time (`BATCH_SIZE`) and turns each into
plain data (dicts, lists, strings), forgetting the batch's rows before it reads the next, and
the writers (`csv_chunks`, `json_chunks`, `qdpx_chunks`) turn that data into bytes, piece by
piece, without touching the database, so each can be tested on its own. (The REFI-QDA
project alone keeps something per note until its end: see `qdpx_chunks`.) `collect` and
`to_csv` / `to_json` / `to_qdpx` read and write everything at once, for small exports and
tests; they give the same bytes as the streamed writers.

What never leaves the store through an export:
- participants whose status is "withdrawn" (and so all their interviews, notes, consents,
  events and debriefs);
- identity data: the identity key store (names, contact details, signed-consent names and
  signature images) is never read here, and paper-form numbers and who obtained a consent are
  left out because they lead back to a person;
- notes that were deleted (`deleted_at` set).

CSV formula injection: a spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and,
in some programs, a tab or carriage return) as a formula. Every CSV cell that starts with one
of these characters gets a leading apostrophe, which spreadsheets show as plain text; an
analyst reading the file with a CSV library sees the apostrophe and can strip it.
"""

import csv
import io
import json
import uuid
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from interview.store.content import guide_of
from interview.store.models import (
    POLARITIES,
    Case,
    CaseStaffTheme,
    Consent,
    GuideVersion,
    Interview,
    Note,
    Participant,
    Theme,
    User,
    utcnow,
)
from interview.web.labels import label

FORMAT_VERSION = 1
STUDY = "INNOFACT"
ORIGIN = "FACT Interview Companion"
QDA_NS = "urn:QDA-XML:project:1.0"
# every GUID in a .qdpx is a uuid5 of our own ids under this namespace, so that exporting the
# same data twice gives the same GUIDs and an analyst can merge or compare projects
GUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:innofact:fact-interview-companion")
# the characters a spreadsheet reads as the start of a formula (OWASP: CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# participants read per query: their interviews, notes and tags are held only while the batch
# is turned into plain data (measured: about 0.2 MB a participant of 30-odd notes)
BATCH_SIZE = 50
# the writers hand their bytes on in pieces of about this size
CHUNK_SIZE = 64 * 1024

CSV_COLUMNS = (
    "case",
    "participant",
    "interview_id",
    "guide_version",
    "interview_language",
    "question_key",
    "question_text",
    "note_id",
    "note",
    "polarity",
    "themes",
    "possible_quote",
    "created_at",
    "updated_at",
)


def iso(value: datetime | None) -> str | None:
    """Return a stored (naive UTC) time as ISO 8601 UTC with a `Z`, or None."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC, microsecond=0).isoformat().replace("+00:00", "Z")


def guide_label(guide: dict) -> str:
    """Return a guide version's name as it appears in the CSV: `key v<version>`."""
    return f"{guide['key']} v{guide['version']}"


# ---------------------------------------------------------------------------------------------
# Reading the store


def _question_order(version: GuideVersion) -> tuple[dict[str, int], dict[str, dict]]:
    guide = guide_of(version)
    order: dict[str, int] = {}
    texts: dict[str, dict] = {}
    for section in guide.sections:
        for question in section.questions:
            order[question.key] = len(order)
            texts[question.key] = question.text
    return order, texts


def _note(note: Note, texts: dict[str, dict], lang: str) -> dict[str, Any]:
    return {
        "id": note.id,
        "question_key": note.question_key,
        "question_text": (texts.get(note.question_key) or {}).get(lang, ""),
        "text": note.text or "",
        "polarity": note.polarity,
        "themes": sorted(t.key for t in note.themes),
        "possible_quote": bool(note.possible_quote),
        # the other tablet's words, kept while a conflict waits to be resolved
        "conflict_text": note.conflict_text,
        "created_at": iso(note.created_at),
        "updated_at": iso(note.updated_at),
    }


def _interview(interview: Interview, guide: dict, notes_only: bool = False) -> dict[str, Any]:
    order, texts = guide["order"], guide["texts"]
    live = [n for n in interview.notes if n.deleted_at is None]
    # notes follow the guide, then the order they were written in; unknown keys go last
    live.sort(
        key=lambda n: (order.get(n.question_key, len(order)), n.question_key, n.created_at, n.id)
    )
    data = {
        "id": interview.id,
        "status": interview.status,
        "language": interview.language,
        "place_kind": interview.place_kind,
        "guide": {"key": guide["key"], "version": guide["version"]},
        "planned_at": iso(interview.planned_at),
        "first_planned_at": iso(interview.first_planned_at),
        "started_at": iso(interview.started_at),
        "ended_at": iso(interview.ended_at),
        "expected_end_at": iso(interview.expected_end_at),
        "notes": [_note(n, texts, interview.language) for n in live],
    }
    if notes_only:
        return data
    data["events"] = [
        {"kind": e.kind, "recorded_at": iso(e.recorded_at), "data": e.details}
        for e in sorted(interview.events, key=lambda e: (e.recorded_at, e.id))
    ]
    data["debriefs"] = [
        {
            "wellbeing": d.wellbeing,
            "reflection": d.reflection or "",
            "wants_debrief_talk": bool(d.wants_debrief_talk),
            "participant_follow_up": bool(d.participant_follow_up),
            "created_at": iso(d.created_at),
            "updated_at": iso(d.updated_at),
        }
        for d in sorted(interview.debriefs, key=lambda d: (d.created_at, d.id))
    ]
    return data


def _consent(consent: Consent) -> dict[str, Any]:
    # no paper form number and no "obtained by": both lead back to a person
    return {
        "id": consent.id,
        "kind": consent.kind,
        "interview_id": consent.interview_id,
        "form": {"key": consent.form_version.key, "version": consent.form_version.version},
        "language": consent.language,
        "answers": dict(sorted((consent.answers or {}).items())),
        "method": consent.method,
        "obtained_at": iso(consent.obtained_at),
    }


def _participant(
    participant: Participant, case_code: str, guides: dict[int, dict], notes_only: bool
) -> dict[str, Any]:
    interviews = sorted(participant.interviews, key=lambda i: (i.planned_at, i.id))
    data = {
        "code": participant.code,
        "case": case_code,
        "status": participant.status,
        "preferred_language": participant.preferred_language,
        "created_at": iso(participant.created_at),
    }
    if not notes_only:
        data["consents"] = [
            _consent(c) for c in sorted(participant.consents, key=lambda c: (c.obtained_at, c.id))
        ]
    data["interviews"] = [_interview(i, guides[i.guide_version_id], notes_only) for i in interviews]
    return data


def _in_cases(column, case_ids: Iterable[int] | None):
    """Return the SQL condition `column` is one of the cases (None: every case)."""
    return true() if case_ids is None else column.in_(list(case_ids) or [-1])


def _exported(case_ids: Iterable[int] | None):
    """Return the SQL condition a participant is in the export: in the cases, not withdrawn."""
    return and_(_in_cases(Participant.case_id, case_ids), Participant.status != "withdrawn")


def head(
    session: Session,
    case_ids: Iterable[int] | None,
    user: User | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Read everything an export holds apart from its participants: all of it small.

    Returns the study, the codebook, the cases (without their participants) and every guide
    version; a writer keeps only the guide versions the exported interviews use.
    """
    cases = list(
        session.scalars(
            select(Case)
            .options(selectinload(Case.staff_themes).selectinload(CaseStaffTheme.theme))
            .where(_in_cases(Case.id, case_ids))
            .order_by(Case.code)
        )
    )
    themes = session.scalars(select(Theme).order_by(Theme.key))
    guides = session.scalars(select(GuideVersion).order_by(GuideVersion.key, GuideVersion.version))
    return {
        "study": {
            "name": STUDY,
            "origin": ORIGIN,
            "format_version": FORMAT_VERSION,
            "exported_at": iso(now or utcnow()),
            "exported_by": None if user is None else {"id": user.id, "username": user.username},
            "cases": [c.code for c in cases],
        },
        "codebook": [
            {
                "key": t.key,
                "name": {"nb": t.name_nb, "en": t.name_en},
                "retired": bool(t.retired),
                "created_at": iso(t.created_at),
            }
            for t in themes
        ],
        "guides": [
            {
                "key": g.key,
                "version": g.version,
                "published": g.published,
                "checksum": g.checksum,
                "content": g.content,
            }
            for g in guides
        ],
        "cases": [
            {
                "code": c.code,
                "name": {"nb": c.name_nb, "en": c.name_en},
                "staff_themes": sorted(
                    ({"theme": s.theme.key, "polarity": s.polarity} for s in c.staff_themes),
                    key=lambda s: (s["polarity"], s["theme"]),
                ),
            }
            for c in cases
        ],
    }


def participants(
    session: Session,
    case_ids: Iterable[int] | None,
    *,
    notes_only: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Iterator[dict[str, Any]]:
    """Yield each exported participant as plain data, by case code and then participant code.

    The store is read `batch_size` participants at a time, with their interviews, notes and
    tags (and, unless `notes_only`, consents, events and debriefs); the rows a batch loaded
    leave the session before its participants are yielded, so the session never holds more
    than one batch. `notes_only` leaves out "consents", "events" and "debriefs" (the CSV and
    the REFI-QDA project do not need them).
    """
    case_ids = None if case_ids is None else list(case_ids)
    guides = {}
    for version in session.scalars(select(GuideVersion)):
        order, texts = _question_order(version)
        guides[version.id] = {
            "key": version.key,
            "version": version.version,
            "order": order,
            "texts": texts,
        }
    interviews = selectinload(Participant.interviews)
    options = [interviews.selectinload(Interview.notes).selectinload(Note.themes)]
    if not notes_only:
        options += [
            interviews.selectinload(Interview.events),
            interviews.selectinload(Interview.debriefs),
            selectinload(Participant.consents).selectinload(Consent.form_version),
        ]
    after: tuple[str, str] | None = None
    while True:
        stmt = (
            select(Participant, Case.code)
            .join(Case, Case.id == Participant.case_id)
            .where(_exported(case_ids))
            .options(*options)
            .order_by(Case.code, Participant.code)
            .limit(batch_size)
        )
        if after is not None:
            # keyset paging: the next batch starts after the last participant of this one
            stmt = stmt.where(
                or_(Case.code > after[0], and_(Case.code == after[0], Participant.code > after[1]))
            )
        held = set(session.identity_map.keys())
        rows = session.execute(stmt).all()
        batch = [_participant(p, code, guides, notes_only) for p, code in rows]
        if rows:
            after = (rows[-1][1], rows[-1][0].code)
        del rows
        _forget_since(session, held)
        yield from batch
        if len(batch) < batch_size:
            return


def _forget_since(session: Session, held: set) -> None:
    """Take every row loaded since `held` (identity keys) out of the session."""
    for key in list(session.identity_map.keys()):
        if key not in held:
            row = session.identity_map.get(key)
            if row is not None and row in session:
                session.expunge(row)


def store_counts(session: Session, case_ids: Iterable[int] | None) -> dict[str, int]:
    """Count what an export of these cases holds, in SQL (for the audit log, before writing).

    The same figures as `counts(collect(...))`: participants not withdrawn, their interviews,
    and their interviews' notes that were not deleted (blank ones too).
    """
    case_ids = None if case_ids is None else list(case_ids)
    exported = _exported(case_ids)
    in_interviews = select(func.count(Interview.id)).join(
        Participant, Participant.id == Interview.participant_id
    )
    in_notes = (
        select(func.count(Note.id))
        .join(Interview, Interview.id == Note.interview_id)
        .join(Participant, Participant.id == Interview.participant_id)
    )
    return {
        "participants": session.scalar(select(func.count(Participant.id)).where(exported)),
        "interviews": session.scalar(in_interviews.where(exported)),
        "notes": session.scalar(in_notes.where(exported, Note.deleted_at.is_(None))),
    }


def assemble(top: dict[str, Any], people: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return `head`'s data with the participants filed under their cases, in one dict."""
    by_case: dict[str, list[dict]] = {c["code"]: [] for c in top["cases"]}
    used: set[tuple[str, int]] = set()
    for participant in people:
        by_case[participant["case"]].append(participant)
        used.update(_guide_key(i) for i in participant["interviews"])
    return {
        "study": top["study"],
        "codebook": top["codebook"],
        "guides": [g for g in top["guides"] if (g["key"], g["version"]) in used],
        "cases": [{**c, "participants": by_case[c["code"]]} for c in top["cases"]],
    }


def _guide_key(interview: dict) -> tuple[str, int]:
    return interview["guide"]["key"], interview["guide"]["version"]


def _split(data: dict[str, Any]) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """Return `assemble`d data as `head`'s data and its participants (the writers' input)."""
    top = {
        "study": data["study"],
        "codebook": data["codebook"],
        "guides": data["guides"],
        "cases": [{k: v for k, v in c.items() if k != "participants"} for c in data["cases"]],
    }
    return top, (p for c in data["cases"] for p in c["participants"])


def collect(
    session: Session,
    case_ids: Iterable[int] | None,
    user: User | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Read the given cases (None: all) into plain data, without withdrawn participants.

    Everything at once: for small exports and tests. The downloads stream instead.
    """
    top = head(session, case_ids, user=user, now=now)
    return assemble(top, participants(session, case_ids))


def iter_interviews(data: dict) -> Iterable[tuple[dict, dict, dict]]:
    """Yield (case, participant, interview) in export order."""
    for case in data["cases"]:
        for participant in case["participants"]:
            for interview in participant["interviews"]:
                yield case, participant, interview


def counts(data: dict) -> dict[str, int]:
    """Return how many participants, interviews and notes the data holds (for the audit log)."""
    rows = list(iter_interviews(data))
    return {
        "participants": sum(len(c["participants"]) for c in data["cases"]),
        "interviews": len(rows),
        "notes": sum(len(i["notes"]) for _c, _p, i in rows),
    }


def _pieces(chunks: Iterable[str]) -> Iterator[bytes]:
    """Yield text pieces as UTF-8, joined into pieces of about `CHUNK_SIZE` characters."""
    waiting: list[str] = []
    length = 0
    for chunk in chunks:
        waiting.append(chunk)
        length += len(chunk)
        if length >= CHUNK_SIZE:
            yield "".join(waiting).encode("utf-8")
            waiting.clear()
            length = 0
    if waiting:
        yield "".join(waiting).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# CSV


def safe_cell(value: Any) -> str:
    """Return a CSV cell as text, with an apostrophe before anything a spreadsheet would run."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_chunks(people: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Yield one row per note as UTF-8 CSV with a BOM (so Excel reads æøå right)."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)
    buf.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    for participant in people:
        for interview in participant["interviews"]:
            for note in interview["notes"]:
                row = (
                    participant["case"],
                    participant["code"],
                    interview["id"],
                    guide_label(interview["guide"]),
                    interview["language"],
                    note["question_key"],
                    note["question_text"],
                    note["id"],
                    note["text"],
                    note["polarity"],
                    ";".join(note["themes"]),
                    note["possible_quote"],
                    note["created_at"],
                    note["updated_at"],
                )
                writer.writerow([safe_cell(v) for v in row])
        if buf.tell() >= CHUNK_SIZE:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def to_csv(data: dict) -> bytes:
    """Return `csv_chunks` of collected data in one piece."""
    return b"".join(csv_chunks(_split(data)[1]))


# ---------------------------------------------------------------------------------------------
# JSON


def _json(value: Any, level: int) -> Iterator[str]:
    """Yield `value` as `json.dumps(indent=2, sort_keys=True)` writes it `level` deep.

    A value may hold parts that are not known yet: an iterator is written item by item as it
    yields (a JSON array), and a callable is called when its turn comes (for what is known
    only after the parts before it are written). Everything else is dumped in one go.
    """
    if callable(value):
        value = value()
    pad = "\n" + "  " * (level + 1)
    if isinstance(value, Iterator):
        empty = True
        for item in value:
            yield ("[" if empty else ",") + pad
            yield from _json(item, level + 1)
            empty = False
        yield "[]" if empty else "\n" + "  " * level + "]"
    elif isinstance(value, dict) and any(
        callable(v) or isinstance(v, Iterator) for v in value.values()
    ):
        for n, (key, item) in enumerate(sorted(value.items())):
            yield ("{" if n == 0 else ",") + pad + json.dumps(key, ensure_ascii=False) + ": "
            yield from _json(item, level + 1)
        yield "\n" + "  " * level + "}"
    else:
        text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
        # json.dumps escapes a newline inside a string, so every newline here is indentation
        yield text.replace("\n", "\n" + "  " * level) if level else text


def _by_case(
    cases: list[dict[str, Any]], people: Iterable[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Yield each case with its participants as an iterator over the participants' stream.

    Each case's participants must be read before the next case is (as `_json` does).
    """
    stream = iter(people)
    waiting = [next(stream, None)]

    def members(code: str) -> Iterator[dict[str, Any]]:
        while waiting[0] is not None and waiting[0]["case"] == code:
            yield waiting[0]
            waiting[0] = next(stream, None)

    for case in cases:
        yield {**case, "participants": members(case["code"])}
    if waiting[0] is not None:
        raise ValueError("participants out of case order")


def json_chunks(top: dict[str, Any], people: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Yield everything as UTF-8 JSON with sorted keys, so two exports of the same data match.

    The bytes are those of `json.dumps(assemble(top, people), indent=2, sort_keys=True)`:
    "cases" comes first, and "guides" (the guide versions the exported interviews use) is
    written after it, once every interview has been seen.
    """
    used: set[tuple[str, int]] = set()

    def seen(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for participant in stream:
            used.update(_guide_key(i) for i in participant["interviews"])
            yield participant

    document = {
        "study": top["study"],
        "codebook": top["codebook"],
        "guides": lambda: [g for g in top["guides"] if (g["key"], g["version"]) in used],
        "cases": _by_case(top["cases"], seen(people)),
    }
    yield from _pieces(_json(document, 0))
    yield b"\n"


def to_json(data: dict) -> bytes:
    """Return `json_chunks` of collected data in one piece."""
    return b"".join(json_chunks(*_split(data)))


# ---------------------------------------------------------------------------------------------
# REFI-QDA


def guid(*parts: Any) -> str:
    """Return the deterministic REFI-QDA GUID of one of our records."""
    return str(uuid.uuid5(GUID_NS, ":".join(str(p) for p in parts)))


def source_text(interview: dict) -> tuple[str, list[tuple[dict, int, int]]]:
    """Return an interview's plain text and each note's (note, start, end) within it.

    The text has a heading line per question (its text in the interview language), a blank
    line, then each note followed by a blank line. Offsets are zero-based and count Unicode
    code points (Python `str` indices), end exclusive: REFI-QDA positions are characters of
    the plain text, not UTF-8 bytes and not UTF-16 units, so `text[start:end]` is the note
    even when it holds æøå or an emoji. Notes with no words get no selection.
    """
    parts: list[str] = []
    length = 0
    spans: list[tuple[dict, int, int]] = []
    current = None

    def add(piece: str) -> None:
        nonlocal length
        parts.append(piece)
        length += len(piece)

    for note in interview["notes"]:
        if not note["text"].strip():
            continue
        if note["question_key"] != current:
            current = note["question_key"]
            add((note["question_text"] or note["question_key"]) + "\n\n")
        start = length
        add(note["text"])
        spans.append((note, start, length))
        add("\n\n")
    return "".join(parts), spans


def _el(parent: ET.Element, tag: str, **attrs: Any) -> ET.Element:
    return ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})


def _coding(parent: ET.Element, note_guid: str, code_guid: str, user_guid: str) -> None:
    coding = _el(parent, "Coding", guid=guid("coding", note_guid, code_guid))
    coding.set("creatingUser", user_guid)
    _el(coding, "CodeRef", targetGUID=code_guid)


def _variable(parent: ET.Element, variable_guid: str, value: str) -> None:
    holder = _el(parent, "VariableValue")
    _el(holder, "VariableRef", targetGUID=variable_guid)
    _el(holder, "TextValue").text = value


def _xml(element: ET.Element) -> bytes:
    # what ElementTree writes for encoding="utf-8": characters UTF-8 cannot carry (lone
    # surrogates) become character references
    return ET.tostring(element, encoding="unicode").encode("utf-8", "xmlcharrefreplace")


# the Sources element's place in the project skeleton, while the sources are written apart
_SOURCES_HERE = "SourcesGoHere"
# what separates two sources: they sit two levels deep in project.qde
_BETWEEN_SOURCES = b"\n    "


def _qde_names(top: dict[str, Any], lang: str) -> dict[str, Any]:
    """Return what `project.qde` says and refers to apart from the interviews."""
    study = top["study"]
    exporter = study["exported_by"]
    with force_locale(lang):
        words = {
            "polarity": _("Polarity"),
            "themes": _("Themes"),
            "quote": _("Possible quote"),
            "team": _("FACT team"),
            "participant": _("Participant"),
            "language": _("Interview language"),
            "guide": _("Guide version"),
            "retired": _("retired"),
            "description": _(
                "Interview notes from %(origin)s, export format %(version)s.",
                origin=study["origin"],
                version=study["format_version"],
            ),
            **{p: label("polarity", p) for p in POLARITIES},
        }
    return {
        "lang": lang,
        "words": words,
        "user_guid": guid("user", exporter["id"] if exporter else "system"),
        "user_name": exporter["username"] if exporter else "system",
        "polarity_guids": {p: guid("code", "polarity", p) for p in POLARITIES},
        "theme_guids": {t["key"]: guid("code", "theme", t["key"]) for t in top["codebook"]},
        "quote_guid": guid("code", "possible_quote"),
        "variables": {k: guid("variable", k) for k in ("team", "participant", "language", "guide")},
    }


def _text_source(
    names: dict[str, Any],
    participant: dict,
    interview: dict,
    spans: list[tuple[dict, int, int]],
) -> ET.Element:
    """Return an interview's TextSource: a selection per note, coded with its tags."""
    user_guid = names["user_guid"]
    polarity_guids, theme_guids = names["polarity_guids"], names["theme_guids"]
    source_guid = guid("interview", interview["id"])
    when = (interview["started_at"] or interview["planned_at"] or "")[:10]
    source = ET.Element(
        "TextSource",
        {
            "guid": source_guid,
            "name": f"{participant['code']} {when}".strip(),
            "plainTextPath": f"internal://{source_guid}.txt",
            "creatingUser": user_guid,
        },
    )
    _el(source, "Description").text = interview["id"]
    for note, start, end in spans:
        note_guid = guid("note", note["id"])
        selection = _el(
            source,
            "PlainTextSelection",
            guid=note_guid,
            name=note["question_key"],
            startPosition=start,
            endPosition=end,
            creatingUser=user_guid,
            creationDateTime=note["created_at"],
        )
        if note["polarity"] in polarity_guids:
            _coding(selection, note_guid, polarity_guids[note["polarity"]], user_guid)
        for key in note["themes"]:
            if key in theme_guids:
                _coding(selection, note_guid, theme_guids[key], user_guid)
        if note["possible_quote"]:
            _coding(selection, note_guid, names["quote_guid"], user_guid)
    guide = interview["guide"]
    for key, value in (
        ("team", participant["case"]),
        ("participant", participant["code"]),
        ("language", interview["language"]),
        ("guide", f"{guide['key']} v{guide['version']}"),
    ):
        _variable(source, names["variables"][key], value)
    return source


def _qde_around_sources(
    top: dict[str, Any], names: dict[str, Any], case_sources: dict[str, list[str]]
) -> tuple[bytes, bytes]:
    """Return `project.qde` around its sources: the XML before them and after them.

    Everything but the sources is small (the cases list their sources by GUID only), so it is
    built as one ElementTree; the Sources element holds a stand-in, and the XML is cut there.
    """
    study, words, lang = top["study"], names["words"], names["lang"]
    # ElementTree cannot put unprefixed attributes under a default namespace, so the elements
    # are written bare and the root declares the namespace they all belong to
    project = ET.Element(
        "Project",
        {
            "xmlns": QDA_NS,
            "name": f"{study['name']} {' '.join(study['cases'])}".strip(),
            "origin": study["origin"],
            "creatingUserGUID": names["user_guid"],
            "creationDateTime": study["exported_at"],
        },
    )
    users = _el(project, "Users")
    _el(users, "User", guid=names["user_guid"], name=names["user_name"])

    codes = _el(_el(project, "CodeBook"), "Codes")
    polarity = _el(codes, "Code", guid=guid("code", "polarity"), name=words["polarity"])
    polarity.set("isCodable", "false")
    for p, code_guid in names["polarity_guids"].items():
        _el(polarity, "Code", guid=code_guid, name=words[p], isCodable="true")
    themes = _el(codes, "Code", guid=guid("code", "themes"), name=words["themes"])
    themes.set("isCodable", "false")
    for t in top["codebook"]:
        name = t["name"].get(lang, t["key"])
        code = _el(themes, "Code", guid=names["theme_guids"][t["key"]], name=name)
        code.set("isCodable", "true")
        other = "en" if lang == "nb" else "nb"
        retired = f" ({words['retired']})" if t["retired"] else ""
        _el(code, "Description").text = f"{t['key']}{retired} – {t['name'][other]}"
    _el(codes, "Code", guid=names["quote_guid"], name=words["quote"], isCodable="true")

    holder = _el(project, "Variables")
    for key, variable_guid in names["variables"].items():
        _el(holder, "Variable", guid=variable_guid, name=words[key], typeOfVariable="Text")

    if top["cases"]:  # the schema wants at least one Case inside Cases
        cases = _el(project, "Cases")
        for case in top["cases"]:
            element = _el(cases, "Case", guid=guid("case", case["code"]))
            element.set("name", f"{case['code']} – {case['name'].get(lang, case['code'])}")
            _variable(element, names["variables"]["team"], case["code"])
            for source_guid in case_sources[case["code"]]:
                _el(element, "SourceRef", targetGUID=source_guid)
    any_sources = any(case_sources.values())
    if any_sources:
        _el(_el(project, "Sources"), _SOURCES_HERE)
    _el(project, "Description").text = words["description"]

    ET.indent(project)
    xml = ET.tostring(project, encoding="utf-8", xml_declaration=True)
    if not any_sources:
        return xml, b""
    before, after = xml.split(f"<{_SOURCES_HERE} />".encode())
    return before, after


class _Sink:
    """A write-only file for zipfile: it keeps what is written until it is taken.

    It has no seek() and no tell(), so zipfile writes each entry's sizes after its data.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return out


def _entry(name: str, date_time: tuple) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


# what a TextSource needs of a note; its words are in the source text
_OUTLINE_NOTE = ("id", "question_key", "created_at", "polarity", "themes", "possible_quote")


def _outline(participant: dict, interview: dict, spans: list[tuple[dict, int, int]]) -> bytes:
    """Return what an interview's TextSource is made of, without the words: one JSON line."""
    outline = [
        {"code": participant["code"], "case": participant["case"]},
        {k: interview[k] for k in ("id", "started_at", "planned_at", "language", "guide")},
        [[{k: note[k] for k in _OUTLINE_NOTE}, start, end] for note, start, end in spans],
    ]
    return json.dumps(outline, separators=(",", ":")).encode("ascii") + b"\n"


def _outlines(packed: deque[bytes]) -> Iterator[list]:
    """Yield the outlines deflated into `packed`, emptying it as they are read."""
    unpack = zlib.decompressobj()
    rest = b""
    while packed:
        rest += unpack.decompress(packed.popleft())
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield json.loads(line)
    if rest + unpack.flush():
        raise ValueError("a source outline was cut short")


def qdpx_chunks(
    top: dict[str, Any], people: Iterable[dict[str, Any]], lang: str = "en"
) -> Iterator[bytes]:
    """Yield a REFI-QDA project: a zip of the interview texts under sources/ and `project.qde`.

    One pass over the participants, so that each source text and the selections in it come
    from the same reading of the store: each interview's text goes into the zip as soon as
    it is read. `project.qde` lists the cases, with their sources, before the sources, so it
    comes last, after the texts (in export order), and each TextSource waits for it as an
    outline without the words, deflated in memory (about 40 bytes a note). The bytes are the
    same for the same data. Entries carry their sizes after their data (the zip is written
    front to back, never sought back in).
    """
    names = _qde_names(top, lang)
    stamp = datetime.fromisoformat(top["study"]["exported_at"].replace("Z", "+00:00"))
    # a fixed entry time (the export's) keeps the zip's bytes the same for the same data
    date_time = max(stamp.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
    sink = _Sink()
    zf = zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED)
    case_sources: dict[str, list[str]] = {c["code"]: [] for c in top["cases"]}
    deflate = zlib.compressobj()
    outlines: deque[bytes] = deque()
    for participant in people:
        for interview in participant["interviews"]:
            text, spans = source_text(interview)
            if not spans:
                continue  # an interview with no words written has nothing to code
            source_guid = guid("interview", interview["id"])
            # UTF-8 without a BOM: a BOM would shift every offset by one character
            with zf.open(_entry(f"sources/{source_guid}.txt", date_time), "w") as entry:
                entry.write(text.encode("utf-8"))
            outlines.append(deflate.compress(_outline(participant, interview, spans)))
            case_sources[participant["case"]].append(source_guid)
        if sink.size >= CHUNK_SIZE:
            yield sink.take()
    outlines.append(deflate.flush())

    before, after = _qde_around_sources(top, names, case_sources)
    with zf.open(_entry("project.qde", date_time), "w") as entry:
        entry.write(before)
        for n, (participant, interview, spans) in enumerate(_outlines(outlines)):
            source = _text_source(names, participant, interview, spans)
            ET.indent(source, level=2)
            entry.write((_BETWEEN_SOURCES if n else b"") + _xml(source))
            if sink.size >= CHUNK_SIZE:
                yield sink.take()
        entry.write(after)
    zf.close()
    yield sink.take()


def to_qdpx(data: dict, lang: str = "en") -> bytes:
    """Return `qdpx_chunks` of collected data in one piece."""
    top, people = _split(data)
    return b"".join(qdpx_chunks(top, people, lang))
