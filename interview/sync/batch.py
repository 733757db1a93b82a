"""A batch of changes: each claimed by its change_id and applied at most once in its own
savepoint, kept waiting only for a record on its way, and answered again at the end.
"""

import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from interview.store.identifiers import warning_kinds
from interview.store.models import (
    Participant,
    SyncChange,
    User,
    utcnow,
)
from interview.sync.apply import APPLIERS
from interview.sync.context import (
    Applied,
    Waiting,
    _Batch,
    _batch,
    _check_access,
    _device,
    _get_interview,
    _known_change,
    _note_created,
    _note_parked,
    _note_waiting,
    _nothing_waits,
    _remember_claim,
)
from interview.sync.envelope import (
    KEPT_WAITING,
    MAX_TEXT,
    NOT_IN_STORE,
    WITHDRAWN_REASON,
    Change,
    Reject,
    Result,
    Withdrawn,
    _is_uuid,
    parse_change,
)
from interview.sync.log import lock_writes
from interview.sync.new_notes import _create_notes, _new_notes
from interview.sync.waiting import EXPIRED_REASON, expired, refuse, setting, use_of


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
    # the results that said "kept waiting": a change id sent twice in the request (the second
    # time with another payload, refused) must not have its other answer taken for this one
    by_id: dict[str, Result] = {}
    for r in results:
        if r.status == "applied" and r.reason == KEPT_WAITING:
            by_id.setdefault(r.change_id, r)
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
    """Name the identifier kinds in a kept change's free text, so the peer can write around them."""
    # kinds only: the answer, like the logs, never repeats the words (DESIGN §6)
    if result.status in ("applied", "duplicate", "conflict") and isinstance(raw, dict):
        text = free_text(raw.get("entity"), raw.get("data"))
        if isinstance(text, str) and len(text) <= MAX_TEXT:
            result.warnings = warning_kinds(text) or None
    return result


def free_text(entity: Any, data: Any) -> Any:
    """Return the free text a person typed in a change: a note's text, a stop or distress
    comment, a debrief's reflection (None when the change carries none)."""
    if not isinstance(data, dict):
        return None
    if entity == "note":
        return data.get("text")
    if entity == "debrief":
        return data.get("reflection")
    if entity == "event":
        details = data.get("details")
        return details.get("comment") if isinstance(details, dict) else None
    return None


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
