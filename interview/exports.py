"""Analysis-ready exports of the case store: CSV, JSON and a REFI-QDA project (.qdpx).

`collect` reads the store once into plain data (dicts, lists, strings); the writers turn that
data into bytes and never touch the database, so each can be tested on its own.

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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from .content import guide_of
from .labels import label
from .models import (
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

FORMAT_VERSION = 1
STUDY = "INNOFACT"
ORIGIN = "FACT Interview Companion"
QDA_NS = "urn:QDA-XML:project:1.0"
# every GUID in a .qdpx is a uuid5 of our own ids under this namespace, so that exporting the
# same data twice gives the same GUIDs and an analyst can merge or compare projects
GUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:innofact:fact-interview-companion")
# the characters a spreadsheet reads as the start of a formula (OWASP: CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

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


def _interview(interview: Interview) -> dict[str, Any]:
    order, texts = _question_order(interview.guide_version)
    live = [n for n in interview.notes if n.deleted_at is None]
    # notes follow the guide, then the order they were written in; unknown keys go last
    live.sort(
        key=lambda n: (order.get(n.question_key, len(order)), n.question_key, n.created_at, n.id)
    )
    return {
        "id": interview.id,
        "status": interview.status,
        "language": interview.language,
        "place_kind": interview.place_kind,
        "guide": {
            "key": interview.guide_version.key,
            "version": interview.guide_version.version,
        },
        "planned_at": iso(interview.planned_at),
        "first_planned_at": iso(interview.first_planned_at),
        "started_at": iso(interview.started_at),
        "ended_at": iso(interview.ended_at),
        "expected_end_at": iso(interview.expected_end_at),
        "notes": [_note(n, texts, interview.language) for n in live],
        "events": [
            {"kind": e.kind, "recorded_at": iso(e.recorded_at), "data": e.details}
            for e in sorted(interview.events, key=lambda e: (e.recorded_at, e.id))
        ],
        "debriefs": [
            {
                "wellbeing": d.wellbeing,
                "reflection": d.reflection or "",
                "wants_debrief_talk": bool(d.wants_debrief_talk),
                "participant_follow_up": bool(d.participant_follow_up),
                "created_at": iso(d.created_at),
                "updated_at": iso(d.updated_at),
            }
            for d in sorted(interview.debriefs, key=lambda d: (d.created_at, d.id))
        ],
    }


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


def collect(
    session: Session,
    case_ids: Iterable[int] | None,
    user: User | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Read the given cases (None: all) into plain data, without withdrawn participants."""
    case_stmt = (
        select(Case)
        .options(selectinload(Case.staff_themes).selectinload(CaseStaffTheme.theme))
        .order_by(Case.code)
    )
    if case_ids is not None:
        case_stmt = case_stmt.where(Case.id.in_(list(case_ids) or [-1]))
    cases = list(session.scalars(case_stmt))

    interview_loads = selectinload(Participant.interviews)
    participants = list(
        session.scalars(
            select(Participant)
            .where(
                Participant.case_id.in_([c.id for c in cases] or [-1]),
                Participant.status != "withdrawn",
            )
            .options(
                interview_loads.selectinload(Interview.notes).selectinload(Note.themes),
                interview_loads.selectinload(Interview.events),
                interview_loads.selectinload(Interview.debriefs),
                interview_loads.selectinload(Interview.guide_version),
                selectinload(Participant.consents).selectinload(Consent.form_version),
            )
            .order_by(Participant.code)
        )
    )
    themes = list(session.scalars(select(Theme).order_by(Theme.key)))

    guides: dict[int, GuideVersion] = {}
    by_case: dict[int, list[dict]] = {c.id: [] for c in cases}
    for p in participants:
        interviews = sorted(p.interviews, key=lambda i: (i.planned_at, i.id))
        for i in interviews:
            guides[i.guide_version.id] = i.guide_version
        by_case[p.case_id].append(
            {
                "code": p.code,
                "case": next(c.code for c in cases if c.id == p.case_id),
                "status": p.status,
                "preferred_language": p.preferred_language,
                "created_at": iso(p.created_at),
                "consents": [
                    _consent(c) for c in sorted(p.consents, key=lambda c: (c.obtained_at, c.id))
                ],
                "interviews": [_interview(i) for i in interviews],
            }
        )

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
            for g in sorted(guides.values(), key=lambda g: (g.key, g.version))
        ],
        "cases": [
            {
                "code": c.code,
                "name": {"nb": c.name_nb, "en": c.name_en},
                "staff_themes": sorted(
                    ({"theme": s.theme.key, "polarity": s.polarity} for s in c.staff_themes),
                    key=lambda s: (s["polarity"], s["theme"]),
                ),
                "participants": by_case[c.id],
            }
            for c in cases
        ],
    }


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


def to_csv(data: dict) -> bytes:
    """Return one row per note as UTF-8 CSV with a BOM (so Excel reads æøå right)."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    guides = {(g["key"], g["version"]): g for g in data["guides"]}
    for case, participant, interview in iter_interviews(data):
        guide = guides[(interview["guide"]["key"], interview["guide"]["version"])]
        for note in interview["notes"]:
            row = (
                case["code"],
                participant["code"],
                interview["id"],
                guide_label(guide),
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
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# JSON


def to_json(data: dict) -> bytes:
    """Return everything as UTF-8 JSON with sorted keys, so two exports of the same data match."""
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"


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


def qde(data: dict, lang: str = "en") -> tuple[bytes, dict[str, str]]:
    """Return the `project.qde` XML and the source texts by their file name in the zip."""
    study = data["study"]
    exporter = study["exported_by"]
    user_guid = guid("user", exporter["id"] if exporter else "system")
    # ElementTree cannot put unprefixed attributes under a default namespace, so the elements
    # are written bare and the root declares the namespace they all belong to
    project = ET.Element(
        "Project",
        {
            "xmlns": QDA_NS,
            "name": f"{study['name']} {' '.join(study['cases'])}".strip(),
            "origin": study["origin"],
            "creatingUserGUID": user_guid,
            "creationDateTime": study["exported_at"],
        },
    )
    users = _el(project, "Users")
    _el(users, "User", guid=user_guid, name=exporter["username"] if exporter else "system")

    with force_locale(lang):
        names = {
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
    codes = _el(_el(project, "CodeBook"), "Codes")
    polarity = _el(codes, "Code", guid=guid("code", "polarity"), name=names["polarity"])
    polarity.set("isCodable", "false")
    polarity_guids = {}
    for p in POLARITIES:
        polarity_guids[p] = guid("code", "polarity", p)
        _el(polarity, "Code", guid=polarity_guids[p], name=names[p], isCodable="true")
    themes = _el(codes, "Code", guid=guid("code", "themes"), name=names["themes"])
    themes.set("isCodable", "false")
    theme_guids = {}
    for t in data["codebook"]:
        theme_guids[t["key"]] = guid("code", "theme", t["key"])
        code = _el(themes, "Code", guid=theme_guids[t["key"]], name=t["name"].get(lang, t["key"]))
        code.set("isCodable", "true")
        other = "en" if lang == "nb" else "nb"
        retired = f" ({names['retired']})" if t["retired"] else ""
        _el(code, "Description").text = f"{t['key']}{retired} – {t['name'][other]}"
    quote_guid = guid("code", "possible_quote")
    _el(codes, "Code", guid=quote_guid, name=names["quote"], isCodable="true")

    variables = {k: guid("variable", k) for k in ("team", "participant", "language", "guide")}
    holder = _el(project, "Variables")
    for key, variable_guid in variables.items():
        _el(holder, "Variable", guid=variable_guid, name=names[key], typeOfVariable="Text")

    files: dict[str, str] = {}
    sources: list[ET.Element] = []
    case_sources: dict[str, list[str]] = {c["code"]: [] for c in data["cases"]}
    for case, participant, interview in iter_interviews(data):
        text, spans = source_text(interview)
        if not spans:
            continue  # an interview with no words written has nothing to code
        source_guid = guid("interview", interview["id"])
        case_sources[case["code"]].append(source_guid)
        files[f"sources/{source_guid}.txt"] = text
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
                _coding(selection, note_guid, quote_guid, user_guid)
        guide = interview["guide"]
        for key, value in (
            ("team", case["code"]),
            ("participant", participant["code"]),
            ("language", interview["language"]),
            ("guide", f"{guide['key']} v{guide['version']}"),
        ):
            _variable(source, variables[key], value)
        sources.append(source)

    cases = _el(project, "Cases")
    for case in data["cases"]:
        element = _el(cases, "Case", guid=guid("case", case["code"]))
        element.set("name", f"{case['code']} – {case['name'].get(lang, case['code'])}")
        _variable(element, variables["team"], case["code"])
        for source_guid in case_sources[case["code"]]:
            _el(element, "SourceRef", targetGUID=source_guid)
    if not data["cases"]:
        project.remove(cases)  # the schema wants at least one Case inside Cases
    if sources:
        _el(project, "Sources").extend(sources)
    _el(project, "Description").text = names["description"]

    ET.indent(project)
    xml = ET.tostring(project, encoding="utf-8", xml_declaration=True)
    return xml, files


def to_qdpx(data: dict, lang: str = "en") -> bytes:
    """Return a REFI-QDA project: a zip of `project.qde` and the interview texts under sources/."""
    xml, files = qde(data, lang)
    stamp = datetime.fromisoformat(data["study"]["exported_at"].replace("Z", "+00:00"))
    # a fixed entry time (the export's) keeps the zip's bytes the same for the same data
    date_time = max(stamp.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("project.qde", date_time), xml, zipfile.ZIP_DEFLATED)
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time)
            # UTF-8 without a BOM: a BOM would shift every offset by one character
            zf.writestr(info, files[name].encode("utf-8"), zipfile.ZIP_DEFLATED)
    return buf.getvalue()
