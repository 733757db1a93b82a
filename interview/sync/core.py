"""Sync merge rules: every change applies at most once, each on its own, and no text is lost.

The rules (docs/sync.md tells the whole story):
- a change is claimed by its `change_id` before it is applied; a replay answers `duplicate`
  with the rev of the first answer, a reused `change_id` with another payload is `rejected`;
- each change applies inside its own savepoint, so one bad change never blocks the rest (a run
  of new notes checked in full beforehand is written in one savepoint; should the store refuse
  it, each of them is applied again on its own: see "new notes in one go" below);
- an edit carries the `base_rev` it was made on; a field changed on both sides since then is a
  conflict: the store keeps its value, the incoming one is kept beside it and the record is
  flagged; fields changed on one side only merge;
- a change whose record (or interview) has not arrived yet waits, and is applied when it does;
- interview status is not sent: it is folded from the interview's events in time order, so
  events converge whatever order they arrive in.
"""

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from interview.field.consents import decode_signature, record_consent
from interview.store.content import guide_of
from interview.store.crypto import research_key
from interview.store.identifiers import warning_kinds
from interview.store.models import (
    EVENT_KINDS,
    LANGUAGES,
    PLACE_KINDS,
    POLARITIES,
    Consent,
    ConsentFormVersion,
    Debrief,
    GuideVersion,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    SyncChange,
    SyncCounter,
    Theme,
    UpdateLog,
    User,
    new_uuid,
    note_themes,
    utcnow,
)
from interview.store.sealed import field_opener, seal_field
from interview.sync.waiting import EXPIRED_REASON, expired, refuse, setting, use_of
from interview.trust.access import can_see_participant
from interview.trust.sealed_box import BoxError, open_box

ENTITIES = ("interview", "note", "consent", "event", "debrief")
MAX_TEXT = 20_000
CONFLICT_SEPARATOR = "\n\n———\n\n"
# versions kept beside a note's text (or a debrief's reflection) until someone chooses, and
# their characters in all: past either, a further version is refused (the alert says so)
MAX_CONFLICT_VERSIONS = 10
MAX_CONFLICT_CHARS = 100_000
CONFLICT_FULL = (
    "this text already has {n} versions waiting for someone to choose; "
    "no more are kept until then (the coordinator has been told)"
)
MAX_CHANGES = 500
MAX_PENDING_INTERVIEWS = 200
NOTE_FIELDS = ("text", "polarity", "themes", "possible_quote", "deleted")
DEBRIEF_FIELDS = ("wellbeing", "reflection", "wants_debrief_talk", "participant_follow_up")
STOP_REASONS = ("participant_wish", "distress", "practical", "other", "declined")
RESCHEDULE_REASONS = ("capacity", "participant_asked", "practical")
WITHDRAWN_REASON = "the participant has withdrawn; this change was not kept"
KEPT_WAITING = "kept until the record it belongs to arrives"
NOT_IN_STORE = "the record this change belongs to is not in the case store"
SEALED_UNOPENED = "the sealed signature could not be opened"


class EnvelopeError(ValueError):
    """The request body is not a sync envelope; the reason is safe to show."""


class Reject(Exception):
    """A change that cannot be applied; the reason is safe to show."""


class Withdrawn(Reject):
    """A change for a participant who has withdrawn: it and whatever waits on it are refused."""

    def __init__(self):
        super().__init__(WITHDRAWN_REASON)


@dataclass(frozen=True)
class Change:
    """One validated change from a tablet."""

    change_id: str
    entity: str
    id: str
    base_rev: int | None
    recorded_at: datetime
    data: dict[str, Any]

    def digest(self) -> str:
        """Return a fingerprint of everything but the change_id, to spot a reused change_id."""
        body = {
            "entity": self.entity,
            "id": self.id,
            "base_rev": self.base_rev,
            "recorded_at": self.recorded_at.isoformat(),
            "data": self.data,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def as_payload(self) -> dict[str, Any]:
        """Return the change as JSON-able data (kept while it waits for its record)."""
        return {
            "change_id": self.change_id,
            "entity": self.entity,
            "id": self.id,
            "base_rev": self.base_rev,
            "recorded_at": self.recorded_at.isoformat(),
            "data": self.data,
        }


@dataclass
class Result:
    """The answer for one change."""

    change_id: str
    status: str
    rev: int | None = None
    reason: str | None = None
    warnings: list[str] | None = None  # identifier kinds found in a note's text (kinds only)

    def as_json(self) -> dict[str, Any]:
        """Return the result as the envelope names it."""
        out: dict[str, Any] = {"change_id": self.change_id, "status": self.status, "rev": self.rev}
        if self.reason:
            out["reason"] = self.reason
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass
class Envelope:
    """A parsed sync request."""

    device_id: str
    cursor: int | None
    pending: int | None
    changes: list[Any] = field(default_factory=list)
    # the store this one replaced on the same browser, and the interviews of the waiting changes
    replaces: str | None = None
    pending_interviews: list[str] | None = None
    # refusals told in an earlier answer that the tablet now holds
    refused_seen: list[str] = field(default_factory=list)


# --- parsing ----------------------------------------------------------------------------


# a UUID written the one way the store keeps it (8-4-4-4-12 hex digits), in either case: what
# str(uuid.UUID(value)) == value.lower() accepts, without building a UUID for every id
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


# the stores keep these as 32-bit integers: anything larger is malformed, not a crash
MAX_INT = 2**31 - 1


def _int_in(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_INT


def parse_envelope(body: Any) -> Envelope:
    """Check the fixed envelope; the changes inside are checked one by one later."""
    if not isinstance(body, dict):
        raise EnvelopeError("the body must be a JSON object")
    device_id = body.get("device_id")
    if not _is_uuid(device_id):
        raise EnvelopeError("device_id must be a UUID")
    cursor = body.get("cursor")
    if cursor is not None and not _int_in(cursor, 0):
        raise EnvelopeError("cursor must be a non-negative integer or null")
    pending = body.get("pending")
    if pending is not None and not _int_in(pending, 0):
        raise EnvelopeError("pending must be a non-negative integer")
    changes = body.get("changes", [])
    if not isinstance(changes, list):
        raise EnvelopeError("changes must be a list")
    if len(changes) > MAX_CHANGES:
        raise EnvelopeError(f"at most {MAX_CHANGES} changes per request")
    replaces = body.get("replaces")
    if replaces is not None and not _is_uuid(replaces):
        raise EnvelopeError("replaces must be a UUID or null")
    waiting = body.get("pending_interviews")
    if waiting is not None and (
        not isinstance(waiting, list)
        or len(waiting) > MAX_PENDING_INTERVIEWS
        or not all(_is_uuid(i) for i in waiting)
    ):
        raise EnvelopeError(
            f"pending_interviews must be a list of at most {MAX_PENDING_INTERVIEWS} UUIDs"
        )
    seen = body.get("refused_seen", [])
    if not isinstance(seen, list) or len(seen) > MAX_CHANGES or not all(_is_uuid(i) for i in seen):
        raise EnvelopeError(f"refused_seen must be a list of at most {MAX_CHANGES} UUIDs")
    return Envelope(
        device_id.lower(),
        cursor,
        pending,
        changes,
        replaces.lower() if replaces else None,
        sorted({i.lower() for i in waiting}) if waiting is not None else None,
        sorted({i.lower() for i in seen}),
    )


# a tablet whose clock was reset may say 1970; anything outside these years is malformed
MIN_YEAR, MAX_YEAR = 1970, 2200


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise Reject("recorded_at must be an ISO-8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Reject("recorded_at must be an ISO-8601 time") from exc
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        # year 1 or 9999 overflows when shifted to UTC, or when an expected end is added
        raise Reject(f"recorded_at must be a time between the years {MIN_YEAR} and {MAX_YEAR}")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def parse_change(raw: Any) -> Change:
    """Check one change's frame (not yet its data); raise Reject with a reason."""
    if not isinstance(raw, dict):
        raise Reject("a change must be an object")
    if not _is_uuid(raw.get("change_id")):
        raise Reject("change_id must be a UUID")
    entity = raw.get("entity")
    if entity not in ENTITIES:
        raise Reject("unknown entity")
    if not _is_uuid(raw.get("id")):
        raise Reject("id must be a UUID")
    base_rev = raw.get("base_rev")
    if base_rev is not None and not _int_in(base_rev, 1):
        raise Reject("base_rev must be a positive integer or null")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise Reject("data must be an object")
    _check_unicode(data)
    return Change(
        change_id=raw["change_id"].lower(),
        entity=entity,
        id=raw["id"].lower(),
        base_rev=base_rev,
        recorded_at=_parse_time(raw.get("recorded_at")),
        data=data,
    )


# data, an event's details, a consent's answers or sealed box, and the values in them: no
# change needs more, and a deeper one would cost whoever reads it later (a withdrawal once
# failed on a waiting change nested 965 levels deep)
MAX_DEPTH = 4


def _depth(value: Any, limit: int) -> int:
    """Return how deep lists and objects nest in value, counting no further than limit + 1."""
    deepest = 0
    level = [value]
    while level and deepest <= limit:
        inner = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(item.values())
            elif isinstance(item, list):
                inner.extend(item)
        if not inner and not any(isinstance(i, (dict, list)) for i in level):
            break
        deepest += 1
        level = [i for i in inner if isinstance(i, (dict, list))]
    return deepest


def _check_unicode(data: dict) -> None:
    """Refuse what the stores cannot hold or read back: too deep, or text that is not Unicode."""
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise Reject(f"data is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Reject("data holds text that is not valid Unicode") from None
    except (RecursionError, ValueError):
        raise Reject("data is nested too deeply") from None


# --- small checks -----------------------------------------------------------------------


def _text(data: dict, key: str, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise Reject(f"{key} is required")
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise Reject(f"{key} must be text of at most {limit} characters")
    # one kind of line break, as the forms keep it: a text's offsets (REFI-QDA codings) and
    # its comparison with another version must not depend on the device that sent it
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _bool(data: dict, key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise Reject(f"{key} must be true or false")
    return value


def _choice(data: dict, key: str, choices, required: bool = False):
    value = data.get(key)
    if value is None and not required:
        return None
    if value not in choices:
        raise Reject(f"{key} must be one of {', '.join(map(str, choices))}")
    return value


def _int(data: dict, key: str, low: int, high: int, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Reject(f"{key} must be a whole number from {low} to {high}")
    return value


def _unknown_keys(data: dict, allowed) -> None:
    extra = set(data) - set(allowed)
    if extra:
        raise Reject("unknown fields: " + ", ".join(sorted(extra)))


# --- the pure merge rule ----------------------------------------------------------------


def merge_fields(
    current: dict[str, Any], field_revs: dict[str, int], base_rev: int, incoming: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an edit into fields to apply and fields in conflict.

    A field merges when it is unchanged on the server since `base_rev` (its last change is at
    or before the rev the edit was made on); it conflicts when the server changed it too, to
    another value. Equal values are neither.
    """
    applied: dict[str, Any] = {}
    conflicts: dict[str, Any] = {}
    for name, value in incoming.items():
        if current.get(name) == value:
            continue
        if field_revs.get(name, 0) <= base_rev:
            applied[name] = value
        else:
            conflicts[name] = value
    return applied, conflicts


# --- interview state folded from events -------------------------------------------------


@dataclass
class FoldedState:
    """The interview fields that follow from its events."""

    status: str = "planned"
    started_at: datetime | None = None
    expected_end_at: datetime | None = None
    ended_at: datetime | None = None
    planned_at: datetime | None = None
    completed: bool = False


def fold_events(events: list[tuple[datetime, str, str, dict]], planned_at: datetime) -> FoldedState:
    """Fold (recorded_at, id, kind, data) events, in time order, into the interview's state."""
    state = FoldedState(planned_at=planned_at)
    for at, _id, kind, data in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "capacity_check" and data.get("outcome") == "ok":
            if state.status == "planned":
                state.status = "in_progress"
                state.started_at = at
                state.expected_end_at = at + timedelta(minutes=int(data.get("minutes") or 75))
        elif kind == "reschedule":
            if state.status == "planned" and data.get("new_time"):
                state.planned_at = _parse_time(data["new_time"])
        elif kind in ("pause", "distress_1"):
            if state.status == "in_progress":
                state.status = "paused"
        elif kind == "resume":
            if state.status == "paused":
                state.status = "in_progress"
        elif kind in ("stop", "distress_2"):
            if state.status in ("planned", "in_progress", "paused"):
                state.status = "stopped"
                state.ended_at = at
        elif kind == "complete":
            if state.status in ("in_progress", "paused"):
                state.status = "completed"
                state.ended_at = at
                state.completed = True
    return state


def refold_interview(session: Session, interview: Interview) -> None:
    """Set the interview's status and times from all its events."""
    session.flush()
    rows = session.execute(
        select(
            InterviewEvent.recorded_at,
            InterviewEvent.id,
            InterviewEvent.kind,
            InterviewEvent.data,
        ).where(InterviewEvent.interview_id == interview.id)
    ).all()
    original = _original_planned_at(interview)
    state = fold_events([tuple(r) for r in rows], original)
    changed = (
        interview.status != state.status
        or interview.started_at != state.started_at
        or interview.ended_at != state.ended_at
        or interview.planned_at != state.planned_at
        or interview.expected_end_at != state.expected_end_at
    )
    if changed:
        interview.status = state.status
        interview.started_at = state.started_at
        interview.expected_end_at = state.expected_end_at
        interview.ended_at = state.ended_at
        interview.planned_at = state.planned_at
        interview.rev = (interview.rev or 1) + 1
        interview.updated_at = utcnow()
    participant = interview.participant
    if state.completed and participant.status in ("invited", "consented"):
        participant.status = "interviewed"


def _original_planned_at(interview: Interview) -> datetime:
    """The plan before any reschedule: kept on the interview as `first_planned_at`."""
    if interview.first_planned_at is None:
        interview.first_planned_at = interview.planned_at
    return interview.first_planned_at


# --- applying one change ----------------------------------------------------------------


@dataclass
class Applied:
    """How one change went, before it is written down."""

    status: str
    rev: int | None = None
    reason: str | None = None
    waiting_for: str | None = None
    created: str | None = None  # the id of a record this change created
    participant_id: str | None = None  # whose record a waiting change belongs to


class Waiting(Exception):
    """The record this change refers to has not arrived yet."""

    def __init__(self, record_id: str):
        super().__init__(record_id)
        self.record_id = record_id


def _interview_for(session: Session, user: User, interview_id: Any) -> Interview:
    if not _is_uuid(interview_id):
        raise Reject("interview_id must be a UUID")
    interview = _get_interview(session, interview_id)
    if interview is None:
        raise Waiting(interview_id)
    _check_access(user, interview.participant)
    return interview


def _get_interview(session: Session, interview_id: str) -> Interview | None:
    batch = _batch.get()
    if batch is None:
        return session.get(Interview, interview_id)
    interview = batch.interviews.get(interview_id)
    if interview is None or interview not in session:
        interview = session.get(Interview, interview_id)
        if interview is not None:
            batch.interviews[interview_id] = interview
    return interview


def _check_access(user: User, participant: Participant) -> None:
    batch = _batch.get()
    if batch is None:
        visible = can_see_participant(user, participant)
    else:
        # who is assigned to a participant, and a coordinator's teams, do not change in a batch
        key = (user.id, participant.id)
        visible = batch.visible.get(key)
        if visible is None:
            visible = batch.visible[key] = can_see_participant(user, participant)
    if not visible:
        raise Reject("not allowed for this participant")
    if participant.status == "withdrawn":
        raise Withdrawn()


def _question_keys(interview: Interview) -> set[str] | frozenset[str]:
    batch = _batch.get()
    if batch is None:
        return guide_of(interview.guide_version).question_keys
    # a guide version never changes once loaded
    keys = batch.question_keys.get(interview.guide_version_id)
    if keys is None:
        keys = frozenset(guide_of(interview.guide_version).question_keys)
        batch.question_keys[interview.guide_version_id] = keys
    return keys


def _themes_by_key(session: Session, keys: list[str]) -> list[Theme]:
    if not keys:
        return []
    batch = _batch.get()
    if batch is None:
        found = list(session.scalars(select(Theme).where(Theme.key.in_(keys))))
    else:
        codebook = batch.codebook()
        found = [codebook[key] for key in set(keys) if key in codebook]
    if len(found) != len(set(keys)):
        raise Reject("a theme is not in the codebook")
    return sorted(found, key=lambda t: t.key)


def _note_values(note: Note) -> dict[str, Any]:
    return {
        "text": note.text,
        "polarity": note.polarity,
        "themes": sorted(t.key for t in note.themes),
        "possible_quote": note.possible_quote,
        "deleted": note.deleted_at is not None,
    }


def _note_input(data: dict, creating: bool) -> dict[str, Any]:
    allowed = (
        ("interview_id", "question_key", *NOTE_FIELDS) if creating else (*NOTE_FIELDS, "resolve")
    )
    _unknown_keys(data, allowed)
    values: dict[str, Any] = {}
    text = _text(data, "text", required=creating)
    if text is not None:
        values["text"] = text
    if "polarity" in data:
        values["polarity"] = _choice(data, "polarity", POLARITIES)
    if "themes" in data:
        themes = data["themes"]
        if (
            not isinstance(themes, list)
            or len(themes) > 60
            or not all(isinstance(t, str) and len(t) <= 80 and "\x00" not in t for t in themes)
        ):
            raise Reject("themes must be a list of theme keys")
        values["themes"] = sorted(set(themes))
    quote = _bool(data, "possible_quote")
    if quote is not None:
        values["possible_quote"] = quote
    deleted = _bool(data, "deleted")
    if deleted is not None:
        values["deleted"] = deleted
    return values


def apply_note(session: Session, user: User, change: Change) -> Applied:
    """Create, edit, delete or resolve a note."""
    note = session.get(Note, change.id)
    if change.base_rev is None:
        values = _note_input(change.data, creating=True)
        if note is not None:
            # the same note created again (a form sent twice): the first one's tags stand, and
            # a different text is kept beside it as a conflict version, so no words are lost
            _check_access(user, note.interview.participant)
            same_place = (
                str(change.data.get("interview_id") or "").lower() == note.interview_id
                and change.data.get("question_key") == note.question_key
            )
            if not same_place:
                # not the same note sent again: an id already taken by another note
                raise Reject("id is already another note's")
            if values["text"] == note.text:
                return Applied("applied", note.rev)
            return _edit_note(
                session, user, note, -1, {"text": values["text"]}, False, change.recorded_at
            )
        question_key = _text(change.data, "question_key", required=True, limit=120)
        interview = _interview_for(session, user, change.data.get("interview_id"))
        if question_key not in _question_keys(interview):
            raise Reject("question_key is not in this interview's guide")
        note = Note(
            id=change.id,
            interview_id=interview.id,
            question_key=question_key,
            text=values["text"],
            polarity=values.get("polarity"),
            possible_quote=bool(values.get("possible_quote")),
            themes=_themes_by_key(session, values.get("themes", [])),
            deleted_at=change.recorded_at if values.get("deleted") else None,
            author_id=user.id,
            created_at=change.recorded_at,
            updated_at=change.recorded_at,
            rev=1,
            field_revs={},
        )
        session.add(note)
        session.flush()
        return Applied("applied", note.rev, created=note.id)
    # checked in full before it may wait: what waits is as valid as what applies
    values = _note_input(change.data, creating=False)
    if note is None:
        raise Waiting(change.id)
    _check_access(user, note.interview.participant)
    return _edit_note(
        session,
        user,
        note,
        change.base_rev,
        values,
        bool(change.data.get("resolve")),
        change.recorded_at,
    )


def _edit_note(
    session: Session,
    user: User,
    note: Note,
    base_rev: int,
    values: dict,
    resolve: bool,
    recorded_at: datetime | None = None,
) -> Applied:
    current = _note_values(note)
    if resolve:
        if base_rev != note.rev:
            # someone changed the note while this resolution was being made: look again
            applied, conflicts = merge_fields(current, note.field_revs or {}, base_rev, values)
        else:
            applied, conflicts = {k: v for k, v in values.items() if current.get(k) != v}, {}
    else:
        applied, conflicts = merge_fields(current, note.field_revs or {}, base_rev, values)
    if "text" in conflicts and conflicts["text"] in conflict_versions(note.conflict, "text"):
        del conflicts["text"]  # the same words sent again: kept already, no new version
    if not applied and not conflicts and not (resolve and note.conflict and base_rev == note.rev):
        return Applied("applied", note.rev)
    new_rev = note.rev + 1
    revs = dict(note.field_revs or {})
    for name, value in applied.items():
        revs[name] = new_rev
        if name == "themes":
            note.themes = _themes_by_key(session, value)
        elif name == "deleted":
            note.deleted_at = utcnow() if value else None
        else:
            setattr(note, name, value)
    if conflicts:
        kept = dict(note.conflict or {})
        earlier = kept.get("text")
        kept.update(conflicts)
        if "text" in conflicts and earlier and earlier != conflicts["text"]:
            versions = earlier.split(CONFLICT_SEPARATOR)
            last_at = kept.get("recorded_at")
            device = _device.get()
            if (
                device is not None
                and kept.get("device") == device
                and kept.get("by") == user.id
                and recorded_at is not None
                and last_at
                and recorded_at.isoformat() > last_at
            ):
                # the same tablet typing on: its newer words replace its own last version
                # (an older change arriving late is kept beside it instead)
                versions[-1] = conflicts["text"]
            else:
                # a third version while two are waiting: keep every text, one after the other
                versions.append(conflicts["text"])
            _within_cap(versions)
            kept["text"] = CONFLICT_SEPARATOR.join(versions)
        kept["by"] = user.id
        kept["at"] = utcnow().isoformat()
        if "text" in conflicts and recorded_at is not None:
            kept["recorded_at"] = recorded_at.isoformat()
            kept["device"] = _device.get()
        if conflicts.get("deleted") is False and note.deleted_at is not None:
            # deleted on one side, edited on the other: bring the words back, flagged
            note.deleted_at = None
            revs["deleted"] = new_rev
        note.conflict = kept
    elif resolve and base_rev == note.rev:
        note.conflict = None
    if note.deleted_at is not None and "text" in conflicts:
        note.deleted_at = None
    note.field_revs = revs
    note.rev = new_rev
    note.updated_at = utcnow()
    return Applied("conflict" if conflicts else "applied", note.rev)


def conflict_versions(conflict: dict | None, name: str) -> list[str]:
    """Return the versions of a text kept beside the one in force."""
    text = (conflict or {}).get(name)
    return text.split(CONFLICT_SEPARATOR) if text else []


def conflict_full(conflict: dict | None, name: str) -> bool:
    """Whether a further version of this text would be refused."""
    versions = conflict_versions(conflict, name)
    return (
        len(versions) >= MAX_CONFLICT_VERSIONS
        or sum(map(len, versions)) >= MAX_CONFLICT_CHARS - MAX_TEXT
    )


def _within_cap(versions: list[str]) -> None:
    if len(versions) > MAX_CONFLICT_VERSIONS or sum(map(len, versions)) > MAX_CONFLICT_CHARS:
        raise Reject(CONFLICT_FULL.format(n=len(versions) - 1))


def apply_event(session: Session, user: User, change: Change) -> Applied:
    """Append an interview event (immutable) and fold the interview's state again."""
    if change.base_rev is not None:
        raise Reject("events cannot be edited")
    existing = session.get(InterviewEvent, change.id)
    if existing is not None:
        # a known record sent again: only someone who may touch it hears that it is there
        _check_access(user, existing.interview.participant)
        return Applied("applied", existing.rev)
    data = change.data
    _unknown_keys(data, ("interview_id", "kind", "details"))
    kind = _choice(data, "kind", EVENT_KINDS, required=True)
    details = data.get("details") or {}
    if not isinstance(details, dict):
        raise Reject("details must be an object")
    details = _event_details(kind, details)
    interview = _interview_for(session, user, data.get("interview_id"))
    if (
        interview.ended_at is not None
        and change.recorded_at > interview.ended_at
        and kind != "stop"  # the stop that follows a distress stage 2 changes nothing
    ):
        # as the forms have it: once stopped or completed, nothing more happens in the visit
        # (an event from before the end that arrives late still counts)
        raise Reject("the interview has ended: nothing more is recorded in it")
    session.add(
        InterviewEvent(
            id=change.id,
            interview_id=interview.id,
            kind=kind,
            data=details,
            recorded_at=change.recorded_at,
            recorded_by_id=user.id,
            rev=1,
        )
    )
    refold_interview(session, interview)
    return Applied("applied", 1, created=change.id)


def _event_details(kind: str, details: dict) -> dict:
    if kind == "capacity_check":
        _unknown_keys(
            details, ("outcome", "minutes", "understands", "can_explain", "not_in_crisis")
        )
        out = {"outcome": _choice(details, "outcome", ("ok", "reschedule"), required=True)}
        minutes = _int(details, "minutes", 15, 240)
        if minutes is not None:
            out["minutes"] = minutes
        for name in ("understands", "can_explain", "not_in_crisis"):
            flag = _bool(details, name)
            if flag is not None:
                out[name] = flag
        return out
    if kind == "reschedule":
        _unknown_keys(details, ("reason", "new_time"))
        new_time = details.get("new_time")
        if new_time is not None:
            new_time = _parse_time(new_time).isoformat()
        return {
            "reason": _choice(details, "reason", RESCHEDULE_REASONS, required=True),
            "new_time": new_time,
        }
    if kind == "stop":
        _unknown_keys(details, ("reason", "comment"))
        return {
            "reason": _choice(details, "reason", STOP_REASONS, required=True),
            "comment": _text(details, "comment", limit=2000) or "",
        }
    if kind == "distress_2":
        _unknown_keys(details, ("contact_team", "comment"))
        return {
            "contact_team": bool(_bool(details, "contact_team")),
            "comment": _text(details, "comment", limit=2000) or "",
        }
    _unknown_keys(details, ())
    return {}


def apply_consent(session: Session, user: User, change: Change) -> Applied:
    """Record a consent (immutable); the signature goes to the identity key store."""
    if change.base_rev is not None:
        raise Reject("a consent cannot be edited; record a withdrawal instead")
    existing = session.get(Consent, change.id)
    if existing is not None:
        # a known record sent again: only someone who may touch it hears that it is there
        _check_access(user, existing.participant)
        return Applied("applied", existing.rev)
    data = change.data
    _unknown_keys(
        data,
        (
            "interview_id",
            "form_version",
            "language",
            "answers",
            "method",
            "paper_form_number",
            "signature",
            "printed_name",
            "sealed",
        ),
    )
    # checked in full before the interview is looked for: what waits is as valid as what applies
    language = _choice(data, "language", LANGUAGES, required=True)
    version = _int(data, "form_version", 1, 10_000, required=True)
    form_version = session.scalars(
        select(ConsentFormVersion).where(ConsentFormVersion.version == version)
    ).first()
    if form_version is None:
        raise Reject("unknown consent form version")
    answers = data.get("answers")
    keys = [item["key"] for item in form_version.content["items"]]
    if (
        not isinstance(answers, dict)
        or set(answers) != set(keys)
        or not all(isinstance(v, bool) for v in answers.values())
    ):
        raise Reject("every consent item must be answered yes or no")
    if not answers.get("participate"):
        raise Reject("without consent to take part there is no consent to record")
    method = _choice(data, "method", ("tablet", "paper"), required=True)
    paper_number = _text(data, "paper_form_number", limit=40)
    identity = _sealed_identity(data) if "sealed" in data else data
    printed_name = _text(identity, "printed_name", limit=200)
    signature = None
    if method == "tablet":
        signature = decode_signature(_text(identity, "signature", limit=700_000) or "")
        if signature is None:
            raise Reject("a signature drawn on the tablet is required")
    elif not (paper_number or "").strip():
        raise Reject("the number of the signed paper form is required")
    interview = _interview_for(session, user, data.get("interview_id"))
    # the rules of the consent page: consent comes before the interview, and once
    if interview.status in ("completed", "stopped"):
        raise Reject("the interview has ended: consent is taken before it")
    if _consent_in_force(session, interview.participant_id):
        raise Reject("the participant's consent is already recorded")
    record = record_consent(
        interview,
        user,
        consent_id=change.id,
        form_version=form_version,
        language=language,
        answers=answers,
        method=method,
        paper_form_number=(paper_number or "").strip() or None,
        printed_name=(printed_name or "").strip() or None,
        signature=signature,
        obtained_at=change.recorded_at,
    )
    return Applied("applied", record.rev, created=change.id)


def _sealed_identity(data: dict) -> dict:
    """Open the signature and printed name the tablet sealed to the study key."""
    if "signature" in data or "printed_name" in data:
        raise Reject("with sealed, signature and printed_name go inside it, not beside it")
    try:
        inside = open_box(data["sealed"])
    except BoxError:
        # refused, not retried: a box that does not open now never will
        raise Reject(SEALED_UNOPENED) from None
    if not isinstance(inside, dict):
        raise Reject("the sealed part must hold an object")
    _unknown_keys(inside, ("signature", "printed_name"))
    _check_unicode(inside)
    return inside


def _consent_in_force(session: Session, participant_id: str) -> bool:
    """Whether the participant has a consent in force, asked of the store (as flow.valid_consent
    reads it): a consent made earlier in the same batch counts too."""
    rows = session.execute(
        select(Consent.kind, Consent.answers)
        .where(Consent.participant_id == participant_id)
        .order_by(Consent.obtained_at)
    ).all()
    in_force = False
    for kind, answers in rows:
        if kind == "withdrawal":
            in_force = False
        elif (answers or {}).get("participate"):
            in_force = True
    return in_force


def apply_debrief(session: Session, user: User, change: Change) -> Applied:
    """Create or edit the peer's debrief; reflections edited on two tablets keep both texts."""
    data = change.data
    debrief = session.get(Debrief, change.id)
    if change.base_rev is None and debrief is None:
        _unknown_keys(data, ("interview_id", *DEBRIEF_FIELDS))
        wellbeing = _int(data, "wellbeing", 1, 5, required=True)
        reflection = _text(data, "reflection") or ""
        wants_talk = bool(_bool(data, "wants_debrief_talk"))
        follow_up = bool(_bool(data, "participant_follow_up"))
        interview = _interview_for(session, user, data.get("interview_id"))
        # asked of the store, not of interview.debriefs: a debrief created earlier in the same
        # batch is in the store but not in that list, and a second create then broke the batch
        mine = select(Debrief.id).where(
            Debrief.interview_id == interview.id, Debrief.author_id == user.id
        )
        if session.scalar(mine) is not None:
            raise Reject("you already wrote a debrief for this interview; edit that one")
        if interview.status not in ("completed", "stopped"):
            raise Reject("the debrief comes after the interview has ended")
        debrief = Debrief(
            id=change.id,
            interview_id=interview.id,
            wellbeing=wellbeing,
            reflection=reflection,
            wants_debrief_talk=wants_talk,
            participant_follow_up=follow_up,
            author_id=user.id,
            rev=1,
            field_revs={},
            created_at=change.recorded_at,
            updated_at=change.recorded_at,
        )
        session.add(debrief)
        session.flush()
        return Applied("applied", 1, created=debrief.id)
    _unknown_keys(data, ("interview_id", *DEBRIEF_FIELDS))
    values: dict[str, Any] = {}
    if "wellbeing" in data:
        values["wellbeing"] = _int(data, "wellbeing", 1, 5, required=True)
    if "reflection" in data:
        values["reflection"] = _text(data, "reflection") or ""
    for name in ("wants_debrief_talk", "participant_follow_up"):
        if name in data:
            values[name] = bool(_bool(data, name))
    if debrief is None:
        raise Waiting(change.id)
    _check_access(user, debrief.interview.participant)
    if debrief.author_id != user.id:
        raise Reject("a debrief is changed only by the one who wrote it")
    current = {name: getattr(debrief, name) for name in DEBRIEF_FIELDS}
    base = change.base_rev or 1
    applied, conflicts = merge_fields(current, debrief.field_revs or {}, base, values)
    if "reflection" in conflicts and conflicts["reflection"] in conflict_versions(
        debrief.conflict, "reflection"
    ):
        del conflicts["reflection"]  # the same words sent again: kept already
    if not applied and not conflicts:
        return Applied("applied", debrief.rev)
    new_rev = debrief.rev + 1
    revs = dict(debrief.field_revs or {})
    for name, value in applied.items():
        setattr(debrief, name, value)
        revs[name] = new_rev
    # a yes on either side wins for the two flags: nobody's call for help is lost
    for name in ("wants_debrief_talk", "participant_follow_up"):
        if conflicts.pop(name, False) is True:
            setattr(debrief, name, True)
            revs[name] = new_rev
    if conflicts:
        kept = dict(debrief.conflict or {})
        earlier = kept.get("reflection")
        kept.update(conflicts)
        if "reflection" in conflicts and earlier and earlier != conflicts["reflection"]:
            versions = [*earlier.split(CONFLICT_SEPARATOR), conflicts["reflection"]]
            _within_cap(versions)
            kept["reflection"] = CONFLICT_SEPARATOR.join(versions)
        debrief.conflict = kept
    debrief.field_revs = revs
    debrief.rev = new_rev
    debrief.updated_at = utcnow()
    return Applied("conflict" if conflicts else "applied", debrief.rev)


def apply_interview(session: Session, user: User, change: Change) -> Applied:
    """Create an interview planned on a tablet, or move its place in the guide."""
    data = change.data
    interview = session.get(Interview, change.id)
    if change.base_rev is None and interview is None:
        _unknown_keys(data, ("participant_id", "language", "planned_at", "place_kind"))
        participant_id = data.get("participant_id")
        if not _is_uuid(participant_id):
            raise Reject("participant_id must be a UUID")
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise Reject("not allowed for this participant")
        _check_access(user, participant)
        guide = session.scalars(select(GuideVersion).order_by(GuideVersion.version.desc())).first()
        if guide is None:
            raise Reject("no interview guide is loaded")
        planned = _parse_time(data.get("planned_at"))
        interview = Interview(
            id=change.id,
            participant=participant,
            guide_version=guide,
            language=_choice(data, "language", LANGUAGES, required=True),
            place_kind=_choice(data, "place_kind", PLACE_KINDS) or "other",
            planned_at=planned,
            first_planned_at=planned,
            created_by_id=user.id,
            rev=1,
        )
        session.add(interview)
        session.flush()
        return Applied("applied", 1, created=interview.id)
    _unknown_keys(data, ("current_section",))
    section = _int(data, "current_section", 0, 100)
    if interview is None:
        raise Waiting(change.id)
    _check_access(user, interview.participant)
    if section is not None and section != interview.current_section:
        interview.current_section = section
        interview.rev += 1
        interview.updated_at = utcnow()
    return Applied("applied", interview.rev)


APPLIERS: dict[str, Callable[[Session, User, Change], Applied]] = {
    "note": apply_note,
    "event": apply_event,
    "consent": apply_consent,
    "debrief": apply_debrief,
    "interview": apply_interview,
}


# --- the batch --------------------------------------------------------------------------


def lock_writes(session: Session) -> None:
    """Take the write order lock first, so batches never deadlock and cursors never skip."""
    done = session.execute(
        update(SyncCounter).where(SyncCounter.id == 1).values(value=SyncCounter.value)
    )
    if done.rowcount == 0:
        ensure_counter(session)
        session.execute(
            update(SyncCounter).where(SyncCounter.id == 1).values(value=SyncCounter.value)
        )


# the tablet a batch comes from, for the rules that tell one tablet's versions from another's
_device: ContextVar[str | None] = ContextVar("sync_device", default=None)

# how many ids one IN (...) names at most
CHUNK = 500


def _chunks(values, size: int = CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _Batch:
    """What one batch looks up again and again, read once and held for the batch.

    Held, not only left in the session: the session keeps an unchanged row only while someone
    refers to it, so without this every change would read its interview, participant and
    guide again. Nothing here can change under the batch: it holds the write lock, sync
    changes never reassign interviewers or teams, and guide versions and the codebook are not
    changed by them either. A participant's status is read from the row every time.
    """

    def __init__(self, session: Session):
        self.session = session
        self.interviews: dict[str, Interview] = {}
        self.visible: dict[tuple[int, str], bool] = {}
        self.question_keys: dict[int, frozenset[str]] = {}
        self._codebook: dict[str, Theme] | None = None
        # sync_change rows of the batch's change ids, read at once: the row, or None where
        # there was none when the batch began (a claim made in the batch is put here too)
        self.claims: dict[str, SyncChange | None] = {}
        # record ids whose waiting changes were looked for at once, and those some change
        # may wait for (found then, or made to wait since)
        self.wait_checked: set[str] = set()
        self.may_wait: set[str] = set()
        # notes of the batch's note creates already in the store, and records made since
        self.notes_present: set[str] = set()
        self.created: set[str] = set()
        # the records this request creates (entity and data by record id): what a change of
        # the same request may wait for
        self.creates: dict[str, tuple[str, dict]] = {}
        # the batch user's waiting changes and bytes, read when first needed
        self.waiting_use = None
        # changes of this request kept waiting: their answers are looked at again at the end
        self.parked: list[str] = []

    def codebook(self) -> dict[str, Theme]:
        """Return every theme by key (retired ones too: old notes keep them)."""
        if self._codebook is None:
            self._codebook = {t.key: t for t in self.session.scalars(select(Theme))}
        return self._codebook

    def read_ahead(self, raw_changes: list[Any]) -> None:
        """Read in a few statements what the changes would otherwise ask one by one."""
        change_ids, record_ids, note_ids = set(), set(), set()
        for raw in raw_changes:
            if not isinstance(raw, dict):
                continue
            if _is_uuid(raw.get("change_id")):
                change_ids.add(raw["change_id"].lower())
            if _is_uuid(raw.get("id")):
                record_ids.add(raw["id"].lower())
                if raw.get("base_rev") is None and isinstance(raw.get("data"), dict):
                    self.creates.setdefault(raw["id"].lower(), (raw.get("entity"), raw["data"]))
                if raw.get("entity") == "note" and raw.get("base_rev") is None:
                    note_ids.add(raw["id"].lower())
        session = self.session
        self.claims = dict.fromkeys(change_ids)
        for chunk in _chunks(change_ids):
            for row in session.scalars(select(SyncChange).where(SyncChange.change_id.in_(chunk))):
                self.claims[row.change_id] = row
        for chunk in _chunks(record_ids):
            self.may_wait.update(
                session.scalars(
                    select(SyncChange.waiting_for).where(SyncChange.waiting_for.in_(chunk))
                )
            )
        self.wait_checked = record_ids
        for chunk in _chunks(note_ids):
            self.notes_present.update(session.scalars(select(Note.id).where(Note.id.in_(chunk))))

    def nothing_waits(self, record_id: str) -> bool:
        """True when it is known that no change waits for the record."""
        return record_id in self.wait_checked and record_id not in self.may_wait


_batch: ContextVar[_Batch | None] = ContextVar("sync_batch", default=None)


def apply_changes(
    session: Session, user: User, raw_changes: list[Any], device_id: str | None = None
) -> list[Result]:
    """Apply a batch of raw changes one by one, each atomically; the caller commits."""
    lock_writes(session)
    batch = _Batch(session)
    results: list[Result] = []
    token = _device.set(device_id)
    batch_token = _batch.set(batch)
    try:
        # after the lock: no other batch can claim a change or add a row in between
        expire_waiting(session)
        batch.read_ahead(raw_changes)
        position = 0
        while position < len(raw_changes):
            plans = _new_notes(batch, user, raw_changes, position)
            if plans:
                applied = _create_notes(session, user, device_id, plans)
                if applied is None:
                    # the store refused the run: each change goes on its own, as always
                    applied = [_apply_one(session, user, p.raw, device_id) for p in plans]
                raws = [p.raw for p in plans]
            else:
                raws = [raw_changes[position]]
                applied = [_apply_one(session, user, raws[0], device_id)]
            results += [_with_warnings(r, raw) for r, raw in zip(applied, raws, strict=True)]
            position += len(raws)
        _settle_parked(session, batch, results)
    finally:
        _batch.reset(batch_token)
        _device.reset(token)
    return results


def expire_waiting(session: Session) -> None:
    """Refuse the changes that waited too long for their record, and what waits on them."""
    rows = expired(session)
    if rows:
        reason = EXPIRED_REASON.format(days=setting("SYNC_WAITING_DAYS"))
        for record_id in refuse(rows, reason):
            refuse_waiting(session, record_id, reason)


def _settle_parked(session: Session, batch: _Batch, results: list[Result]) -> None:
    """Answer what became of the changes this request kept waiting, now the request is done.

    An edit sent before its create in the same request has its rev by now; one whose create
    was refused is refused too, and the tablet hears it in this answer.
    """
    if not batch.parked:
        return
    by_id = {r.change_id: r for r in results}
    now = utcnow()
    for change_id in batch.parked:
        row = batch.claims.get(change_id) or session.get(SyncChange, change_id)
        result = by_id.get(change_id)
        if row is None or result is None or row.waiting_for is not None:
            continue
        if row.status == "rejected":
            result.status, result.rev, result.reason, result.warnings = (
                "rejected",
                None,
                row.reason,
                None,
            )
            row.told_at = now  # told here, not again
        else:
            result.status, result.rev, result.reason = row.status, row.rev, None


def _with_warnings(result: Result, raw: Any) -> Result:
    """Name the identifier kinds in a kept note's text, so the peer can write around them."""
    # kinds only: the answer, like the logs, never repeats the words (DESIGN §6)
    if result.status in ("applied", "duplicate", "conflict") and isinstance(raw, dict):
        data = raw.get("data")
        if raw.get("entity") == "note" and isinstance(data, dict):
            text = data.get("text")
            if isinstance(text, str) and len(text) <= MAX_TEXT:
                result.warnings = warning_kinds(text) or None
    return result


def _known_change(session: Session, change_id: str) -> SyncChange | None:
    batch = _batch.get()
    if batch is not None and change_id in batch.claims:
        return batch.claims[change_id]
    return session.get(SyncChange, change_id)


def _remember_claim(change_id: str, row: SyncChange | None) -> None:
    batch = _batch.get()
    if batch is not None:
        if row is None:
            batch.claims.pop(change_id, None)  # not known here: ask the store
        else:
            batch.claims[change_id] = row


def _apply_one(session: Session, user: User, raw: Any, device_id: str | None) -> Result:
    change_id = raw.get("change_id") if isinstance(raw, dict) else None
    try:
        change = parse_change(raw)
    except Reject as exc:
        return Result(str(change_id) if change_id else "", "rejected", None, str(exc))
    digest = change.digest()
    known = _known_change(session, change.change_id)
    if known is not None:
        return _replay(known, digest)
    savepoint = session.begin_nested()
    try:
        claim = _change_row(user, change, digest, device_id, "claimed")
        session.add(claim)
        session.flush()
    except IntegrityError:
        # the same change arrived at the same moment on another connection and won
        savepoint.rollback()
        session.expire_all()
        _remember_claim(change.change_id, None)
        known = session.get(SyncChange, change.change_id)
        if known is None:
            return Result(change.change_id, "retry", None, "please send this change again")
        return _replay(known, digest)
    try:
        outcome = _run(session, user, change)
    except Reject as exc:
        savepoint.rollback()
        if isinstance(exc, Withdrawn):
            refuse_waiting(session, change.id, WITHDRAWN_REASON)
        elif change.base_rev is None and not _nothing_waits(change.id):
            # a create refused: what this request kept waiting for its record never applies
            refuse_waiting(session, change.id, f"the record it belongs to was refused: {exc}")
        return _record_rejection(session, user, change, digest, device_id, str(exc))
    except Exception:
        # not the change's fault: it is not written down, and the tablet sends it again
        savepoint.rollback()
        return Result(change.change_id, "retry", None, "the server could not apply this change")
    claim.status = outcome.status
    claim.rev = outcome.rev
    claim.reason = outcome.reason
    claim.waiting_for = outcome.waiting_for
    claim.payload = change.as_payload() if outcome.waiting_for else None
    claim.participant_id = outcome.participant_id
    session.flush()
    savepoint.commit()
    _remember_claim(change.change_id, claim)
    _note_waiting(outcome.waiting_for)
    if outcome.waiting_for:
        _note_parked(change.change_id, len(claim.payload_enc or b""))
    if outcome.created:
        _note_created(outcome.created)
        release_waiting(session, outcome.created)
    return Result(change.change_id, outcome.status, outcome.rev, outcome.reason)


def _nothing_waits(record_id: str) -> bool:
    batch = _batch.get()
    return batch is not None and batch.nothing_waits(record_id)


def _note_parked(change_id: str, size: int) -> None:
    batch = _batch.get()
    if batch is not None:
        batch.parked.append(change_id)
        if batch.waiting_use is not None:
            batch.waiting_use.count += 1
            batch.waiting_use.size += size


def _note_waiting(record_id: str | None) -> None:
    batch = _batch.get()
    if batch is not None and record_id is not None:
        batch.may_wait.add(record_id)


def _note_created(record_id: str) -> None:
    batch = _batch.get()
    if batch is not None:
        batch.created.add(record_id)


def _run(session: Session, user: User, change: Change, held: SyncChange | None = None) -> Applied:
    try:
        return APPLIERS[change.entity](session, user, change)
    except Waiting as waiting:
        if held is not None:
            # released for one record, it now waits for another (an edit whose note waits
            # for its interview): it stays with the participant it was kept for
            return Applied(
                "applied", None, KEPT_WAITING, waiting.record_id, participant_id=held.participant_id
            )
        return _park(session, user, change, waiting.record_id)


def _park(session: Session, user: User, change: Change, record_id: str) -> Applied:
    """Keep a change until its record arrives, if that record is on its way (docs/sync.md)."""
    if user.role not in ("peer", "coordinator", "admin"):
        raise Reject("not allowed")
    participant_id = _participant_on_the_way(session, user, record_id)
    if participant_id is None:
        raise Reject(NOT_IN_STORE)
    participant = session.get(Participant, participant_id)
    if participant is None:
        raise Reject("not allowed for this participant")
    _check_access(user, participant)
    batch = _batch.get()
    if batch is not None and batch.waiting_use is None:
        batch.waiting_use = use_of(session, user.id)
    use = batch.waiting_use if batch is not None else use_of(session, user.id)
    too_much = use.room_for(len(json.dumps(change.as_payload())))
    if too_much:
        raise Reject(too_much)
    return Applied("applied", None, KEPT_WAITING, record_id, participant_id=participant_id)


def _participant_on_the_way(
    session: Session, user: User, record_id: str, depth: int = 0
) -> str | None:
    """Return whose record is on its way: created in this request, or by a change the same
    tablet sent that waits itself; None when nothing says the record will ever arrive."""
    batch = _batch.get()
    coming = batch.creates.get(record_id) if batch is not None else None
    if coming is not None:
        entity, data = coming
        if entity == "interview":
            participant_id = data.get("participant_id")
            return participant_id.lower() if _is_uuid(participant_id) else None
        interview_id = data.get("interview_id")
        if not _is_uuid(interview_id) or depth >= 2:
            return None
        interview_id = interview_id.lower()
        interview = _get_interview(session, interview_id)
        if interview is not None:
            return interview.participant_id
        return _participant_on_the_way(session, user, interview_id, depth + 1)
    device = _device.get()
    return session.scalar(
        select(SyncChange.participant_id)
        .where(
            SyncChange.record_id == record_id,
            SyncChange.user_id == user.id,
            SyncChange.device_id == device if device else SyncChange.device_id.is_(None),
            SyncChange.waiting_for.is_not(None),
        )
        .limit(1)
    )


def _replay(known: SyncChange, digest: str) -> Result:
    if known.digest != digest:
        return Result(known.change_id, "rejected", None, "change_id reused with another payload")
    if known.status == "rejected":
        return Result(known.change_id, "rejected", None, known.reason)
    # a replay of a change that conflicted says so, so the tablet never takes it as applied
    reason = "conflict" if known.status == "conflict" else None
    return Result(known.change_id, "duplicate", known.rev, reason)


def _change_row(user, change, digest, device_id, status: str, **extra) -> SyncChange:
    """Return the sync_change row that claims (or records the answer to) one change."""
    return SyncChange(
        change_id=change.change_id,
        user_id=user.id,
        device_id=device_id,
        entity=change.entity,
        record_id=change.id,
        digest=digest,
        status=status,
        **extra,
    )


def _record_rejection(session, user, change, digest, device_id, reason) -> Result:
    savepoint = session.begin_nested()
    # a reason may quote a field name the tablet sent; PostgreSQL stores no NUL
    row = _change_row(
        user, change, digest, device_id, "rejected", reason=reason.replace("\x00", "")[:200]
    )
    try:
        session.add(row)
        session.flush()
        savepoint.commit()
        _remember_claim(change.change_id, row)
    except IntegrityError:
        savepoint.rollback()
        _remember_claim(change.change_id, None)
    return Result(change.change_id, "rejected", None, reason)


def release_waiting(session: Session, record_id: str) -> None:
    """Apply the changes that were waiting for a record that has now arrived."""
    batch = _batch.get()
    if batch is not None and batch.nothing_waits(record_id):
        return  # read ahead for the whole batch: nothing waits for this record
    waiting = list(
        session.scalars(
            select(SyncChange)
            .where(SyncChange.waiting_for == record_id)
            .order_by(SyncChange.received_at)
        )
    )
    waiting.sort(key=lambda c: (c.payload or {}).get("recorded_at", ""))
    for held in waiting:
        user = session.get(User, held.user_id)
        change = parse_change(held.payload)
        savepoint = session.begin_nested()
        try:
            outcome = _run(session, user, change, held)
        except Reject as exc:
            savepoint.rollback()
            refuse([held], str(exc))
            if isinstance(exc, Withdrawn):
                refuse_waiting(session, held.record_id, WITHDRAWN_REASON)
            elif change.base_rev is None:
                refuse_waiting(
                    session, held.record_id, f"the record it belongs to was refused: {exc}"
                )
            continue
        except Exception:
            savepoint.rollback()
            continue  # stays waiting; tried again when anything else arrives for it
        held.status, held.rev, held.reason = outcome.status, outcome.rev, outcome.reason
        held.waiting_for = outcome.waiting_for
        held.payload = change.as_payload() if outcome.waiting_for else None
        savepoint.commit()
        _note_waiting(outcome.waiting_for)
        if outcome.created:
            _note_created(outcome.created)
            release_waiting(session, outcome.created)


# --- new notes in one go ----------------------------------------------------------------
#
# Most of what a tablet sends is new notes. A run of them that apply_note would create as they
# are (every check passed beforehand, nothing in the store or the batch in their way) is
# written with one statement per table inside one savepoint: each change's claim first, then
# the update log, the notes and their themes, exactly the rows apply_note writes. Should the
# store refuse any of it, the savepoint rolls the whole run back and every change of it goes
# through the ordinary path on its own, in its own savepoint: a change never fails for
# another's sake, and what is stored is the same either way.


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
        question_key = _text(data, "question_key", required=True, limit=120)
        if question_key not in _question_keys(interview):
            return None
        themes = _themes_by_key(session, values.get("themes", []))
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
        text = values["text"]
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
                "text_enc": seal_field(Note, "text", change.id, text, ring=ring),
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


def refuse_waiting(session: Session, record_id: str, reason: str) -> None:
    """Refuse the changes waiting for a record that will never arrive, and drop their payloads."""
    # a note typed for an interview that is refused (the participant withdrew) would otherwise
    # wait forever with its words in the sync log; edits waiting for that note go with it
    pending = [record_id]
    seen: set[str] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        rows = list(session.scalars(select(SyncChange).where(SyncChange.waiting_for == current)))
        pending += refuse(rows, reason)
    session.flush()


# --- form posts use the same rules ------------------------------------------------------


def web_change(entity: str, record_id: str, base_rev: int | None, data: dict) -> dict:
    """Build a change for a plain form post, so forms and tablets share one set of rules."""
    return {
        "change_id": str(uuid.uuid4()),
        "entity": entity,
        "id": record_id,
        "base_rev": base_rev,
        "recorded_at": utcnow().isoformat() + "Z",
        "data": data,
    }


# --- updates since a cursor -------------------------------------------------------------


def _take_seqs(connection, count: int) -> int:
    """Reserve `count` sequence numbers under the counter's row lock; return the last one."""
    row = connection.execute(
        update(SyncCounter)
        .where(SyncCounter.id == 1)
        .values(value=SyncCounter.value + count)
        .returning(SyncCounter.value)
    ).first()
    if row is None:
        connection.execute(SyncCounter.__table__.insert().values(id=1, value=count))
        return count
    return row[0]


def _participant_of(session: Session, obj) -> str | None:
    if isinstance(obj, Participant):
        return obj.id
    if isinstance(obj, Interview | Consent):
        # a record made with participant=... has no participant_id until the flush
        return obj.participant_id or (obj.participant.id if obj.participant else None)
    interview = obj.interview if obj.interview_id is None else None
    if interview is None and obj.interview_id:
        interview = session.get(Interview, obj.interview_id)
    return _participant_of(session, interview) if interview else None


TRACKED = {
    Note: "note",
    InterviewEvent: "event",
    Consent: "consent",
    Debrief: "debrief",
    Interview: "interview",
    Participant: "participant",
}


def _log_updates(session: Session, _flush_context, _instances) -> None:
    touched = []
    for obj in list(session.new) + list(session.dirty):
        entity = TRACKED.get(type(obj))
        if entity is None or (obj not in session.new and not session.is_modified(obj)):
            continue
        touched.append((entity, obj))
    if not touched:
        return
    last = _take_seqs(session.connection(), len(touched))
    first = last - len(touched) + 1
    for _entity, obj in touched:
        if obj.id is None:
            # the column default would only fill it at the insert: the log needs it now
            obj.id = new_uuid()
    for offset, (entity, obj) in enumerate(touched):
        session.add(
            UpdateLog(
                seq=first + offset,
                entity=entity,
                record_id=str(obj.id),
                participant_id=_participant_of(session, obj),
            )
        )


def init_update_log() -> None:
    """Log every change to tracked records, from forms and tablets alike."""
    if not event.contains(Session, "before_flush", _log_updates):
        event.listen(Session, "before_flush", _log_updates)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


# who wrote a second version and on which tablet stay on the server: a tablet is told the words
PRIVATE_CONFLICT_KEYS = frozenset({"by", "device"})


def _conflict_for_tablet(conflict: dict | None) -> dict | None:
    if not conflict:
        return conflict
    return {k: v for k, v in conflict.items() if k not in PRIVATE_CONFLICT_KEYS}


def _note_data(
    interview_id: str,
    question_key: str,
    text: str,
    polarity: str | None,
    themes: list[str],
    possible_quote: bool,
    deleted_at: datetime | None,
    conflict: dict | None,
    updated_at: datetime | None,
) -> dict[str, Any]:
    return {
        "interview_id": interview_id,
        "question_key": question_key,
        "text": text,
        "polarity": polarity,
        "themes": sorted(themes),
        "possible_quote": possible_quote,
        "deleted": deleted_at is not None,
        "conflict": _conflict_for_tablet(conflict),
        "updated_at": _iso(updated_at),
    }


def _record_data(entity: str, r, user_id: int | None = None) -> dict[str, Any]:
    if entity == "note":
        return _note_data(
            r.interview_id,
            r.question_key,
            r.text,
            r.polarity,
            [t.key for t in r.themes],
            r.possible_quote,
            r.deleted_at,
            r.conflict,
            r.updated_at,
        )
    if entity == "interview":
        return {
            "participant_id": r.participant_id,
            "participant_code": r.participant.code,
            "status": r.status,
            "language": r.language,
            "planned_at": _iso(r.planned_at),
            "current_section": r.current_section,
            "expected_end_at": _iso(r.expected_end_at),
            "participant_status": r.participant.status,
            # the tablet drops everything it holds of this interview (docs/sync.md)
            "withdrawn": r.participant.status == "withdrawn",
        }
    if entity == "event":
        return {
            "interview_id": r.interview_id,
            "kind": r.kind,
            "recorded_at": _iso(r.recorded_at),
        }
    if entity == "consent":
        return {
            "participant_id": r.participant_id,
            "interview_id": r.interview_id,
            "kind": r.kind,
            "answers": r.answers,
        }
    if entity == "debrief":
        return {
            "interview_id": r.interview_id,
            "wellbeing": r.wellbeing,
            "reflection": r.reflection,
            "wants_debrief_talk": r.wants_debrief_talk,
            "participant_follow_up": r.participant_follow_up,
            "conflict": _conflict_for_tablet(r.conflict),
            # whether the reader wrote it: a tablet is never told anyone else's user id
            "mine": r.author_id == user_id,
        }
    return {"code": r.code, "status": r.status}


def serialize(entity: str, record, user_id: int | None = None) -> dict[str, Any]:
    """Return a record as the tablet of user `user_id` keeps it."""
    rev = 1 if entity == "participant" else record.rev
    data = _record_data(entity, record, user_id)
    return {"entity": entity, "id": record.id, "rev": rev, "data": data}


MODELS = {
    "note": Note,
    "interview": Interview,
    "event": InterviewEvent,
    "consent": Consent,
    "debrief": Debrief,
    "participant": Participant,
}
MAX_UPDATES = 1000


def updates_since(session: Session, user: User, cursor: int | None) -> tuple[list[dict], int]:
    """Return what changed since the cursor in records the user may see, and the new cursor."""
    new_cursor = cursor or None
    seen: dict[tuple[str, str], Any] = {}
    participants: dict[str, Participant] = {}  # held while the records are read
    visible_cache: dict[str, bool] = {}
    withdrawn: set[str] = set()
    for page in _log_pages(session, cursor):
        new_cursor = page[-1].seq
        # the page's participants, read at once
        participants.update(
            _participants(session, user, {r.participant_id for r in page} - set(participants))
        )
        full = False
        for row in page:
            if row.participant_id is None:
                continue
            if row.participant_id not in visible_cache:
                participant = participants.get(row.participant_id)
                visible_cache[row.participant_id] = bool(
                    participant and can_see_participant(user, participant)
                )
                if participant is not None and participant.status == "withdrawn":
                    withdrawn.add(participant.id)
            if row.participant_id in withdrawn and row.entity not in ("interview", "participant"):
                # a withdrawn participant's records never reach a tablet again; their interviews
                # come with `withdrawn: true`, which tells the tablet to drop all it holds of them
                continue
            if visible_cache[row.participant_id]:
                seen[(row.entity, row.record_id)] = row
            if len(seen) >= MAX_UPDATES:
                new_cursor = row.seq
                full = True
                break
        if full:
            break
    if new_cursor is None:
        new_cursor = _current_seq(session)
    wanted: dict[str, set[str]] = {}
    for entity, record_id in seen:
        wanted.setdefault(entity, set()).add(record_id)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for entity, ids in wanted.items():
        for chunk in _chunks(ids):
            found.update(_current_records(session, user, entity, chunk))
    out = []
    for (entity, record_id), _row in sorted(seen.items(), key=lambda kv: kv[1].seq):
        record = found.get((entity, record_id))
        if record is None:
            out.append({"entity": entity, "id": record_id, "rev": None, "data": {"gone": True}})
        elif record is not _NOT_YOURS:
            out.append(record)
    return out, new_cursor


LOG_PAGE = 500


def _log_pages(session: Session, cursor: int | None):
    """Yield the update log after the cursor in order, MAX_UPDATES * 4 rows at most.

    A page at a time, so that reading stops soon after MAX_UPDATES records are found.
    """
    connection = session.connection()
    after = cursor or None
    left = MAX_UPDATES * 4
    while left > 0:
        size = min(LOG_PAGE, left)
        stmt = select(
            UpdateLog.seq, UpdateLog.entity, UpdateLog.record_id, UpdateLog.participant_id
        ).order_by(UpdateLog.seq)
        if after is not None:
            stmt = stmt.where(UpdateLog.seq > after)
        page = connection.execute(stmt.limit(size)).all()
        if page:
            yield page
        if len(page) < size:
            return
        left -= size
        after = page[-1].seq


# a record that is there but not sent to this user (a co-peer's debrief)
_NOT_YOURS: dict[str, Any] = {}


def _participants(session: Session, user: User, ids: set[str | None]) -> dict[str, Participant]:
    ids = ids - {None}
    out: dict[str, Participant] = {}
    for chunk in _chunks(ids):
        stmt = select(Participant).where(Participant.id.in_(chunk))
        if user.role == "peer":
            # who may see them is who is assigned to them
            stmt = stmt.options(selectinload(Participant.interviewers))
        out.update((p.id, p) for p in session.scalars(stmt))
    return out


def _current_records(
    session: Session, user: User, entity: str, ids: list[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Return the records as the tablet keeps them (serialize), read a chunk at a time."""
    if entity == "note":
        return _current_notes(session, ids)
    model = MODELS[entity]
    out = {}
    for record in session.scalars(select(model).where(model.id.in_(ids))):
        if entity == "debrief" and user.role == "peer" and record.author_id != user.id:
            out[(entity, record.id)] = _NOT_YOURS  # theirs and the coordinators', not a co-peer's
        else:
            out[(entity, record.id)] = serialize(entity, record, user.id)
    return out


def _current_notes(session: Session, ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return notes as serialize does, read as rows: the notes are most of what is sent."""
    connection = session.connection()
    themes: dict[str, list[str]] = {}
    linked = connection.execute(
        select(note_themes.c.note_id, Theme.key)
        .join(Theme, Theme.id == note_themes.c.theme_id)
        .where(note_themes.c.note_id.in_(ids))
    )
    for note_id, key in linked:
        themes.setdefault(note_id, []).append(key)
    rows = connection.execute(
        select(
            Note.id,
            Note.rev,
            Note.text_enc,
            Note.conflict_enc,
            Note.interview_id,
            Note.question_key,
            Note.polarity,
            Note.possible_quote,
            Note.deleted_at,
            Note.updated_at,
        ).where(Note.id.in_(ids))
    )
    open_text = field_opener(Note, "text")
    open_conflict = field_opener(Note, "conflict", as_json=True)
    out = {}
    for row in rows:
        (note_id, rev, text, conflict, interview_id, question_key, polarity, quote, deleted_at,
         updated_at) = row  # fmt: skip
        data = _note_data(
            interview_id,
            question_key,
            open_text(note_id, text),
            polarity,
            themes.get(note_id, []),
            quote,
            deleted_at,
            open_conflict(note_id, conflict),
            updated_at,
        )
        out[("note", note_id)] = {"entity": "note", "id": note_id, "rev": rev, "data": data}
    return out


def _current_seq(session: Session) -> int:
    value = session.execute(select(SyncCounter.value).where(SyncCounter.id == 1)).scalar()
    return value or 0


def ensure_counter(session: Session) -> None:
    """Create the write-order counter row once (the migration also creates it)."""
    if session.get(SyncCounter, 1) is None:
        savepoint = session.begin_nested()
        try:
            session.add(SyncCounter(id=1, value=0))
            session.flush()
            savepoint.commit()
        except IntegrityError:
            savepoint.rollback()


__all__ = [
    "Change",
    "Envelope",
    "EnvelopeError",
    "Reject",
    "Result",
    "apply_changes",
    "fold_events",
    "merge_fields",
    "parse_change",
    "parse_envelope",
    "serialize",
    "updates_since",
]
