"""Analysis-ready exports of the case store: CSV, JSON, a spreadsheet (.xlsx) and a REFI-QDA
project (.qdpx). The JSON is described by a JSON Schema (2020-12), static/export.schema.json
(docs/exports.md); the spreadsheet is written by exports_xlsx.py.

An export is written while it is read, so that the server's memory does not grow with the
number of notes: `head` reads the small part (study, codebook, cases, guide versions),
`participants` reads the participants a batch at a time (`BATCH_SIZE`) and turns each into
plain data (dicts, lists, strings), forgetting the batch's rows before it reads the next, and
the writers (`csv_chunks`, `json_chunks`, `qdpx_chunks`) turn that data into bytes, piece by
piece, without touching the database, so each can be tested on its own. (The REFI-QDA
project, `refi.py`, alone keeps something per note until its end: see `qdpx_chunks`.) `collect` and
`to_csv` / `to_json` / `to_qdpx` read and write everything at once, for small exports and
tests; they give the same bytes as the streamed writers.

What never leaves the store through an export:
- participants who are not counted (progress.counted: those who have withdrawn), and so all
  their interviews, notes, consents, events and debriefs;
- the peers' debriefs (their wellbeing and reflections: personal data about the peers, not
  the participants), unless the coordinator asks for them in the JSON (audited);
- who wrote a note by name: a note carries its author's pseudonymous id (`author_pseudonym`);
- identity data: the identity key store (names, contact details, signed-consent names and
  signature images) is never read here, and paper-form numbers and who obtained a consent are
  left out because they lead back to a person;
- notes that were deleted (`deleted_at` set);
- a "possible quote" mark of a participant whose consent in force does not cover quotes
  (never given, or withdrawn since: store/consents.py): such a note is never a possible quote.

CSV formula injection: a spreadsheet runs a cell that starts with `=` or `@` (and, in some
programs, a tab or carriage return) as a formula, and one that starts with `+` or `-` when the
rest reads as a formula too. Only such cells get a leading apostrophe (`safe_cell`), so a note
such as "-5 points" or "- a list item" stays as written; an analyst reading the file with a CSV
library sees the apostrophe and can strip it. The .xlsx needs no guard: its text cells are
text, never formulas.
"""

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from interview.desk.progress import counted
from interview.store.consents import ConsentInForce, consent_in_force
from interview.store.content import guide_of
from interview.store.models import (
    Case,
    CaseStaffTheme,
    Consent,
    Debrief,
    GuideVersion,
    Interview,
    Note,
    Participant,
    Theme,
    User,
    utcnow,
)

# 2: debriefs only on request, notes carry their author's pseudonymous id, "$schema"
FORMAT_VERSION = 2

# the JSON export's schema: its stable id, which the file names in "$schema"; the schema is
# static/export.schema.json, served by the app at /static/export.schema.json (docs/exports.md)
SCHEMA_ID = "urn:innofact:fact-interview-companion:export:2"

STUDY = "INNOFACT"

ORIGIN = "FACT Interview Companion"

QDA_NS = "urn:QDA-XML:project:1.0"

# every GUID in a .qdpx is a uuid5 of our own ids under this namespace, so that exporting the
# same data twice gives the same GUIDs and an analyst can merge or compare projects
GUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:innofact:fact-interview-companion")

# a cell starting with one of these is always read as a formula (OWASP: CSV injection)
FORMULA_STARTS = ("=", "@", "\t", "\r")

# a cell starting with + or - is a formula when the rest calls, links or compares something
# (brackets, | for DDE, ! for another sheet, =, @, a quote), or when it is one word of
# arithmetic or a cell reference ("-1+2", "+A1"); "-5 points" and "- a list item" are text
SIGNED_FORMULA = re.compile(
    r"""[+-](?:.*[()|!=@"]|\S*[+\-*/^&]|\s*\$?[A-Za-z]{1,3}\$?[0-9]+\s*$)""", re.S
)

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
    "author",
    "polarity",
    "themes",
    "theme_names",
    "possible_quote",
    "created_at",
    "updated_at",
)


def iso(value: datetime | None) -> str | None:
    """Return a stored (naive UTC) time as ISO 8601 UTC with a `Z`, or None."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC, microsecond=0).isoformat().replace("+00:00", "Z")


def author_pseudonym(user_id: int | None) -> str | None:
    """Return a peer's pseudonymous id in the exports: stable, and never their name."""
    return None if user_id is None else str(uuid.uuid5(GUID_NS, f"user:{user_id}"))


def theme_names(top: dict[str, Any], lang: str) -> dict[str, str]:
    """Return each theme key's name in the given language, from `head`'s codebook."""
    return {t["key"]: t["name"].get(lang) or t["key"] for t in top["codebook"]}


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


def _note(note: Note, texts: dict[str, dict], lang: str, quotes: bool) -> dict[str, Any]:
    return {
        "id": note.id,
        "question_key": note.question_key,
        "question_text": (texts.get(note.question_key) or {}).get(lang, ""),
        "text": note.text or "",
        "author": author_pseudonym(note.author_id),
        "polarity": note.polarity,
        "themes": sorted(t.key for t in note.themes),
        # only where the participant's consent in force allows quotes (store/consents.py)
        "possible_quote": bool(note.possible_quote) and quotes,
        # the other tablet's words, kept while a conflict waits to be resolved
        "conflict_text": note.conflict_text,
        "created_at": iso(note.created_at),
        "updated_at": iso(note.updated_at),
    }


def _interview(
    interview: Interview,
    guide: dict,
    notes_only: bool = False,
    quotes: bool = True,
    debriefs: bool = False,
) -> dict[str, Any]:
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
        "notes": [_note(n, texts, interview.language, quotes) for n in live],
    }
    if notes_only:
        return data
    data["events"] = [
        {"kind": e.kind, "recorded_at": iso(e.recorded_at), "data": e.details}
        for e in sorted(interview.events, key=lambda e: (e.recorded_at, e.id))
    ]
    if not debriefs:
        return data
    data["debriefs"] = [
        {
            "author": author_pseudonym(d.author_id),
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


def _in_force(state: ConsentInForce | None) -> dict[str, Any] | None:
    """The consent in force, item by item, with the dates items were withdrawn since."""
    if state is None:
        return None
    return {
        "consent_id": state.consent.id,
        "items": dict(sorted(state.items.items())),
        "withdrawn": {k: iso(v) for k, v in sorted(state.withdrawn.items())},
    }


def _participant(
    participant: Participant,
    case_code: str,
    guides: dict[int, dict],
    notes_only: bool,
    debriefs: bool = False,
) -> dict[str, Any]:
    interviews = sorted(participant.interviews, key=lambda i: (i.planned_at, i.id))
    state = consent_in_force(participant.consents)
    quotes = state is not None and state.allows("quotes")
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
        data["consent_in_force"] = _in_force(state)
    data["interviews"] = [
        _interview(i, guides[i.guide_version_id], notes_only, quotes, debriefs) for i in interviews
    ]
    return data


def _in_cases(column, case_ids: Iterable[int] | None):
    """Return the SQL condition `column` is one of the cases (None: every case)."""
    return true() if case_ids is None else column.in_(list(case_ids) or [-1])


def _exported(case_ids: Iterable[int] | None):
    """Return the SQL condition a participant is in the export: in the cases, and counted."""
    return and_(_in_cases(Participant.case_id, case_ids), counted())


def head(
    session: Session,
    case_ids: Iterable[int] | None,
    user: User | None = None,
    now: datetime | None = None,
    debriefs: bool = False,
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
            "debriefs_included": debriefs,
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
    debriefs: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Iterator[dict[str, Any]]:
    """Yield each exported participant as plain data, by case code and then participant code.

    The store is read `batch_size` participants at a time, with their interviews, notes and
    tags (and, unless `notes_only`, consents, events and debriefs); the rows a batch loaded
    leave the session before its participants are yielded, so the session never holds more
    than one batch. `notes_only` leaves out "consents" and "events" (the CSV, the spreadsheet
    and the REFI-QDA project do not need them); the peers' "debriefs" are read only when
    `debriefs` is asked for (and never with `notes_only`).
    """
    debriefs = debriefs and not notes_only
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
    # the consents always: a note is a possible quote only under consent to quotes
    consents = selectinload(Participant.consents)
    options = [interviews.selectinload(Interview.notes).selectinload(Note.themes)]
    if notes_only:
        options.append(consents)
    else:
        options += [
            interviews.selectinload(Interview.events),
            consents.selectinload(Consent.form_version),
        ]
        if debriefs:
            options.append(interviews.selectinload(Interview.debriefs))
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
        batch = [_participant(p, code, guides, notes_only, debriefs) for p, code in rows]
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


def store_counts(
    session: Session, case_ids: Iterable[int] | None, debriefs: bool = False
) -> dict[str, int]:
    """Count what an export of these cases holds, in SQL (for the audit log, before writing).

    The same figures as `counts(collect(...))`: participants counted (progress.counted), their
    interviews, and their interviews' notes that were not deleted (blank ones too); with
    `debriefs`, their interviews' debriefs too.
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
    result = {
        "participants": session.scalar(select(func.count(Participant.id)).where(exported)),
        "interviews": session.scalar(in_interviews.where(exported)),
        "notes": session.scalar(in_notes.where(exported, Note.deleted_at.is_(None))),
    }
    if debriefs:
        result["debriefs"] = session.scalar(
            select(func.count(Debrief.id))
            .join(Interview, Interview.id == Debrief.interview_id)
            .join(Participant, Participant.id == Interview.participant_id)
            .where(exported)
        )
    return result


def assemble(top: dict[str, Any], people: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return `head`'s data with the participants filed under their cases, in one dict."""
    by_case: dict[str, list[dict]] = {c["code"]: [] for c in top["cases"]}
    used: set[tuple[str, int]] = set()
    for participant in people:
        by_case[participant["case"]].append(participant)
        used.update(_guide_key(i) for i in participant["interviews"])
    return {
        "$schema": SCHEMA_ID,
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
    debriefs: bool = False,
) -> dict[str, Any]:
    """Read the given cases (None: all) into plain data, counted participants only.

    Everything at once: for small exports and tests. The downloads stream instead.
    """
    top = head(session, case_ids, user=user, now=now, debriefs=debriefs)
    return assemble(top, participants(session, case_ids, debriefs=debriefs))


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


def safe_cell(value: Any) -> str:
    """Return a CSV cell as text, with an apostrophe before anything a spreadsheet would run."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(FORMULA_STARTS) or SIGNED_FORMULA.match(text):
        return "'" + text
    return text


def participant_rows(
    participant: dict[str, Any], names: dict[str, str], joiner: str
) -> Iterator[tuple[Any, ...]]:
    """Yield one participant's notes as rows in the order of CSV_COLUMNS (the CSV, the xlsx).

    Theme names are joined with `joiner`; a value not known is None.
    """
    for interview in participant["interviews"]:
        for note in interview["notes"]:
            yield (
                participant["case"],
                participant["code"],
                interview["id"],
                guide_label(interview["guide"]),
                interview["language"],
                note["question_key"],
                note["question_text"],
                note["id"],
                note["text"],
                note["author"],
                note["polarity"],
                ";".join(note["themes"]),
                joiner.join(names.get(k, k) for k in note["themes"]),
                bool(note["possible_quote"]),
                note["created_at"],
                note["updated_at"],
            )


def csv_chunks(
    people: Iterable[dict[str, Any]], names: dict[str, str] | None = None
) -> Iterator[bytes]:
    """Yield one row per note as UTF-8 CSV with a BOM (so Excel reads æøå right).

    `names` gives each theme key's name (`theme_names`) for the "theme_names" column.
    """
    names = names or {}
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)
    buf.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    for participant in people:
        for row in participant_rows(participant, names, ";"):
            writer.writerow([safe_cell(v) for v in row])
        if buf.tell() >= CHUNK_SIZE:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def to_csv(data: dict, lang: str = "en") -> bytes:
    """Return `csv_chunks` of collected data in one piece, theme names in `lang`."""
    top, people = _split(data)
    return b"".join(csv_chunks(people, theme_names(top, lang)))


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
        "$schema": SCHEMA_ID,
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
