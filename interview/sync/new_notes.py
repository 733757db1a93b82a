"""New notes in one go: a run of note creates checked in full beforehand is written with one
statement per table inside one savepoint; should the store refuse it, each change goes on
its own, so the result is the same as one by one.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from interview.store.consents import quotes_refused
from interview.store.crypto import research_key
from interview.store.identifiers import warning_kinds
from interview.store.models import (
    Interview,
    Note,
    SyncChange,
    Theme,
    UpdateLog,
    User,
    note_themes,
    utcnow,
)
from interview.store.sealed import seal_field
from interview.sync.apply import APPLIERS, _note_input, apply_note
from interview.sync.context import (
    _Batch,
    _check_access,
    _get_interview,
    _note_created,
    _question_keys,
    _remember_claim,
    _themes_by_key,
)
from interview.sync.envelope import Change, Reject, Result, _is_uuid, _text, parse_change
from interview.sync.log import _take_seqs
from interview.sync.recordings import note_recording


@dataclass
class _NewNote:
    """A note create checked in full: what apply_note would write for it."""

    raw: dict
    change: Change
    digest: str
    interview: Interview
    question_key: str
    values: dict[str, Any]
    themes: list[Theme]


def _new_notes(batch: _Batch, user: User, raw_changes: list[Any], start: int) -> list[_NewNote]:
    """Return the run of note creates from `start` that can be written in one go."""
    if APPLIERS.get("note") is not apply_note:
        return []  # another applier is in place: every change goes through it
    plans: list[_NewNote] = []
    change_ids: set[str] = set()
    note_ids: set[str] = set()
    for position in range(start, len(raw_changes)):
        plan = _new_note(batch, user, raw_changes[position])
        if plan is None or plan.change.change_id in change_ids or plan.change.id in note_ids:
            break
        change_ids.add(plan.change.change_id)
        note_ids.add(plan.change.id)
        plans.append(plan)
    return plans


def _new_note(batch: _Batch, user: User, raw: Any) -> _NewNote | None:
    """Check a note create as apply_note would; None when anything calls for the usual path."""
    if not isinstance(raw, dict) or raw.get("entity") != "note" or raw.get("base_rev") is not None:
        return None
    try:
        change = parse_change(raw)
    except Reject:
        return None
    if change.change_id not in batch.claims or batch.claims[change.change_id] is not None:
        return None  # known (a replay), or not read ahead
    if (
        change.id in batch.notes_present
        or change.id in batch.created
        or not batch.nothing_waits(change.id)
    ):
        return None  # the same note again, or changes wait for it: the usual path
    session = batch.session
    data = change.data
    try:
        values = _note_input(data, creating=True)
        interview_id = data.get("interview_id")
        if not _is_uuid(interview_id):
            return None
        interview = _get_interview(session, interview_id)
        if interview is None:
            return None  # it waits for its interview
        _check_access(user, interview.participant)
        if values.get("possible_quote") and quotes_refused(interview.participant):
            return None  # refused on the usual path, with its reason
        question_key = _text(data, "question_key", required=True, limit=120)
        if question_key not in _question_keys(interview):
            return None
        themes = _themes_by_key(session, values.get("themes", []))
        values["recording"] = note_recording(session, interview, values.get("recording"))
    except Reject:
        return None  # refused on the usual path, with its reason
    return _NewNote(raw, change, change.digest(), interview, question_key, values, themes)


def _create_notes(
    session: Session, user: User, device_id: str | None, plans: list[_NewNote]
) -> list[Result] | None:
    """Write checked note creates in one savepoint; None (nothing written) if the store refuses."""
    now = utcnow()
    ring = research_key()
    claims, notes, links = [], [], []
    for plan in plans:
        change, values = plan.change, plan.values
        # a note created deleted keeps no words, as apply_note has it
        text = None if values.get("deleted") else values["text"]
        place = values.get("recording")
        claims.append(
            {
                "change_id": change.change_id,
                "user_id": user.id,
                "device_id": device_id,
                "entity": "note",
                "record_id": change.id,
                "digest": plan.digest,
                "status": "applied",
                "rev": 1,
                "reason": None,
                "waiting_for": None,
                "payload_enc": None,
                "received_at": now,
            }
        )
        notes.append(
            {
                "id": change.id,
                "interview_id": plan.interview.id,
                "question_key": plan.question_key,
                "text_enc": None
                if text is None
                else seal_field(Note, "text", change.id, text, ring=ring),
                # what Note.text's hook records (Note.flag_identifiers)
                "identifier_kinds": " ".join(warning_kinds(text)) or None,
                "polarity": values.get("polarity"),
                "possible_quote": bool(values.get("possible_quote")),
                "conflict_enc": None,
                "field_revs": {},
                "deleted_at": change.recorded_at if values.get("deleted") else None,
                "rev": 1,
                "author_id": user.id,
                "created_at": change.recorded_at,
                "updated_at": change.recorded_at,
                "recording_id": place[0] if place else None,
                "recording_offset_ms": place[1] if place else None,
            }
        )
        links += [{"note_id": change.id, "theme_id": theme.id} for theme in plan.themes]
    savepoint = session.begin_nested()
    try:
        connection = session.connection()
        # claimed before anything else is written, as one by one
        connection.execute(insert(SyncChange.__table__), claims)
        last = _take_seqs(connection, len(plans))
        first = last - len(plans) + 1
        connection.execute(
            insert(UpdateLog.__table__),
            [
                {
                    "seq": first + offset,
                    "entity": "note",
                    "record_id": plan.change.id,
                    "participant_id": plan.interview.participant_id,
                    "at": now,
                }
                for offset, plan in enumerate(plans)
            ],
        )
        connection.execute(insert(Note.__table__), notes)
        if links:
            connection.execute(insert(note_themes), links)
        savepoint.commit()
    except Exception:
        savepoint.rollback()
        return None
    for plan in plans:
        _remember_claim(plan.change.change_id, None)  # stored now: a replay reads it there
        _note_created(plan.change.id)
    return [Result(plan.change.change_id, "applied", 1, None) for plan in plans]
