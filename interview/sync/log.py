"""The update log: the write-order lock, the record of what changed in commit order, and
`updates since cursor` as each user may see it.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session, selectinload

from interview.store.consents import participant_consent, renewal_due, required_renewals
from interview.store.models import (
    Consent,
    ConsentRenewal,
    Debrief,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    SyncCounter,
    Theme,
    UpdateLog,
    User,
    new_uuid,
    note_themes,
    utcnow,
)
from interview.store.sealed import field_opener
from interview.trust.access import can_see_participant


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


# how many ids one IN (...) names at most
CHUNK = 500


def _chunks(values, size: int = CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


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


def _consent_items(participant: Participant) -> dict[str, bool] | None:
    state = participant_consent(participant)
    return dict(sorted(state.items.items())) if state else None


def _consent_renewal(interview: Interview, renewals: list[ConsentRenewal] | None) -> int | None:
    if renewals is None:
        renewals = required_renewals(object_session(interview))
    due = renewal_due(interview, renewals) if renewals else None
    return due.version if due else None


def _record_data(
    entity: str, r, user_id: int | None = None, renewals: list[ConsentRenewal] | None = None
) -> dict[str, Any]:
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
            # the consent in force item by item (partial withdrawals applied), or None before
            # consent: the tablet offers no quote mark where "quotes" is false (docs/sync.md)
            "consent_items": _consent_items(r.participant),
            # the form version the participant is to consent on again before this interview
            # goes on, or None: the tablet then shows the consent page first (docs/sync.md)
            "consent_renewal": _consent_renewal(r, renewals),
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
            "form_version": r.form_version.version,
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


def serialize(
    entity: str, record, user_id: int | None = None, renewals: list[ConsentRenewal] | None = None
) -> dict[str, Any]:
    """Return a record as the tablet of user `user_id` keeps it (`renewals`: read once for many)."""
    rev = 1 if entity == "participant" else record.rev
    data = _record_data(entity, record, user_id, renewals)
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
    stmt = select(model).where(model.id.in_(ids))
    if entity == "interview":
        # each interview says its participant's consent in force: read them at once
        stmt = stmt.options(selectinload(Interview.participant).selectinload(Participant.consents))
    renewals = required_renewals(session) if entity == "interview" else None
    out = {}
    for record in session.scalars(stmt):
        if entity == "debrief" and user.role == "peer" and record.author_id != user.id:
            out[(entity, record.id)] = _NOT_YOURS  # theirs and the coordinators', not a co-peer's
        else:
            out[(entity, record.id)] = serialize(entity, record, user.id, renewals)
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


def move_interviews_on(session: Session, participant: Participant) -> int:
    """Move each of the participant's interviews on a rev; return how many there are.

    Every tablet that holds one then hears of the change in its next sync's updates (the
    update log is written for changed records only).
    """
    interviews = list(
        session.scalars(select(Interview).where(Interview.participant_id == participant.id))
    )
    for interview in interviews:
        interview.rev = (interview.rev or 1) + 1
        interview.updated_at = utcnow()
    return len(interviews)
