"""Retention: what `flask retention run` removes from the case store, and why that is safe.

Sync bookkeeping older than `RETENTION_SYNC_DAYS` (docs/data-protection.md §5, docs/sync.md
*Retention*):

- `sync_change` rows answered long ago, once the tablet that sent them has synced since with
  nothing left to send (it holds no copy it could send again); never a change still waiting,
  nor a refusal its tablet has not been told while that tablet's row is kept;
- `device` rows silent that long with nothing pending and no lost work to report;
- `update_log` rows that a later row of the same record supersedes. Whatever a tablet's
  cursor, the later row (kept) brings it the record as it is now, so no answer changes: the
  log keeps one row per record, which is what a fresh tablet needs to learn everything.

And deleted notes whose sealed words are still in the store (deleted before the words went
with the delete): their text, conflict versions and identifier kinds are cleared; a change
still waiting for a deleted note (left over when the server failed while releasing it) is
refused, its payload dropped, and its tablet told.
"""

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from interview.store.models import Device, Note, SyncChange, UpdateLog, utcnow
from interview.trust import audit


@dataclass
class RetentionReport:
    """What one run removed: counts only."""

    days: int
    notes_cleared: int = 0
    waiting_refused: int = 0
    sync_changes: int = 0
    devices: int = 0
    update_log: int = 0

    @property
    def removed(self) -> int:
        """Count everything the run removed or cleared."""
        return (
            self.notes_cleared
            + self.waiting_refused
            + self.sync_changes
            + self.devices
            + self.update_log
        )

    def as_detail(self) -> dict[str, int]:
        """Return the counts for the audit log."""
        return asdict(self)


def retention_days() -> int:
    """Return RETENTION_SYNC_DAYS, the age past which sync bookkeeping may go (at least 1)."""
    days = int(current_app.config["RETENTION_SYNC_DAYS"])
    if days < 1:
        raise ValueError("RETENTION_SYNC_DAYS must be at least 1")
    return days


def _count(result) -> int:
    return max(result.rowcount or 0, 0)


def clear_deleted_notes(session: Session) -> int:
    """Clear the words of deleted notes that still hold them; return how many notes."""
    return _count(
        session.execute(
            update(Note)
            .where(
                Note.deleted_at.is_not(None),
                or_(
                    Note.text_enc.is_not(None),
                    Note.conflict_enc.is_not(None),
                    Note.identifier_kinds.is_not(None),
                ),
            )
            .values(text_enc=None, conflict_enc=None, identifier_kinds=None)
            .execution_options(synchronize_session=False)
        )
    )


# what a change left waiting for a note that was deleted meanwhile hears
NOTE_DELETED = "the note was deleted before this change reached it; its words were not kept"


def refuse_waiting_for_deleted_notes(session: Session, now: datetime) -> int:
    """Refuse changes still waiting for a deleted note, dropping their payloads; return how many.

    A change waits for a note only until the note arrives; one is left only when the server
    failed while releasing it. It would never apply, and its payload holds the note's words.
    """
    deleted = select(Note.id).where(Note.deleted_at.is_not(None))
    return _count(
        session.execute(
            update(SyncChange)
            .where(SyncChange.waiting_for.in_(deleted))
            .values(
                status="rejected",
                rev=None,
                reason=NOTE_DELETED,
                waiting_for=None,
                payload_enc=None,
                refused_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    )


def purge_devices(session: Session, horizon: datetime) -> int:
    """Remove tablet store rows silent since before the horizon with nothing pending."""
    return _count(
        session.execute(
            delete(Device)
            .where(
                Device.last_sync_at < horizon,
                Device.pending == 0,
                # a store whose work was lost stays: the coordinator's alert names it
                Device.lost_at.is_(None),
            )
            .execution_options(synchronize_session=False)
        )
    )


def purge_sync_changes(session: Session, horizon: datetime) -> int:
    """Remove answered changes received before the horizon that no tablet can send again."""
    device = aliased(Device)
    no_device = ~exists().where(device.id == SyncChange.device_id)
    # the tablet synced after the change and then held nothing unsent: no copy to replay
    synced_since = exists().where(
        device.id == SyncChange.device_id,
        device.last_sync_at > SyncChange.received_at,
        device.pending == 0,
    )
    return _count(
        session.execute(
            delete(SyncChange)
            .where(
                SyncChange.received_at < horizon,
                SyncChange.waiting_for.is_(None),
                SyncChange.status.in_(("applied", "conflict", "rejected")),
                # a refusal is kept until its tablet is told, or its tablet's row is gone
                or_(
                    SyncChange.refused_at.is_(None),
                    SyncChange.told_at.is_not(None),
                    no_device,
                ),
                or_(SyncChange.device_id.is_(None), no_device, synced_since),
            )
            .execution_options(synchronize_session=False)
        )
    )


def compact_update_log(session: Session, horizon: datetime) -> int:
    """Remove update log rows from before the horizon that a later row of their record follows."""
    ranked = select(
        UpdateLog.seq,
        UpdateLog.at,
        func.row_number()
        .over(partition_by=(UpdateLog.entity, UpdateLog.record_id), order_by=UpdateLog.seq.desc())
        .label("newer"),
    ).subquery()
    superseded = select(ranked.c.seq).where(ranked.c.newer > 1, ranked.c.at < horizon)
    return _count(
        session.execute(
            delete(UpdateLog)
            .where(UpdateLog.seq.in_(superseded))
            .execution_options(synchronize_session=False)
        )
    )


def run_retention(session: Session, now: datetime | None = None) -> RetentionReport:
    """Apply the retention rules once, audit the counts; the caller commits."""
    days = retention_days()
    now = now or utcnow()
    horizon = now - timedelta(days=days)
    report = RetentionReport(days=days)
    report.notes_cleared = clear_deleted_notes(session)
    report.waiting_refused = refuse_waiting_for_deleted_notes(session, now)
    # devices first: the refusals of a store that is gone can no longer be told to it
    report.devices = purge_devices(session, horizon)
    report.sync_changes = purge_sync_changes(session, horizon)
    report.update_log = compact_update_log(session, horizon)
    audit.record("retention_run", **report.as_detail())
    return report
