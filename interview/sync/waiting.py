"""Changes kept on the server until the record they belong to arrives: their limits.

A change may wait only for a record whose creation the same request carries or the same
tablet sent (docs/sync.md). Each user may have at most `SYNC_WAITING_MAX` changes and
`SYNC_WAITING_MAX_BYTES` of sealed payload waiting; a change still waiting after
`SYNC_WAITING_DAYS` is refused. A change refused after it was answered `applied` is told,
to the tablet that sent it (`refused` in the sync answer) until the tablet says it has it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interview.store.models import SyncChange, utcnow

EXPIRED_REASON = "its record never reached the case store; it waited {days} days and was not kept"
TOLD_AT_MOST = 500  # refusals told in one answer; the rest come with the next sync


def setting(name: str) -> int:
    """Return one of the waiting limits (defaults and their environment variables: config.py)."""
    return int(current_app.config[name])


@dataclass
class Use:
    """How many changes, and how many bytes, a user has waiting."""

    count: int
    size: int

    def room_for(self, size: int) -> str | None:
        """Return why one more change of `size` bytes may not wait, or None if it may."""
        most, most_bytes = setting("SYNC_WAITING_MAX"), setting("SYNC_WAITING_MAX_BYTES")
        if self.count + 1 > most or self.size + size > most_bytes:
            return (
                f"too many of your changes are waiting for records the case store does not "
                f"have yet (at most {most} changes and {most_bytes // 1_000_000} MB); "
                f"this one is kept on the tablet"
            )
        return None


def use_of(session: Session, user_id: int) -> Use:
    """Count the user's waiting changes and the bytes of their sealed payloads."""
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(func.length(SyncChange.payload_enc)), 0)).where(
            SyncChange.user_id == user_id, SyncChange.waiting_for.is_not(None)
        )
    ).one()
    return Use(int(count), int(size))


def refuse(rows, reason: str, now: datetime | None = None) -> list[str]:
    """Refuse waiting rows: forget their payloads, and mark them to be told; return record ids."""
    now = now or utcnow()
    records = []
    for row in rows:
        row.status, row.rev, row.reason = "rejected", None, reason[:200]
        row.waiting_for, row.payload = None, None
        row.refused_at = now
        records.append(row.record_id)
    return records


def expired(session: Session, now: datetime | None = None) -> list[SyncChange]:
    """Return the changes that have waited longer than SYNC_WAITING_DAYS."""
    now = now or utcnow()
    cutoff = now - timedelta(days=setting("SYNC_WAITING_DAYS"))
    return list(
        session.scalars(
            select(SyncChange).where(
                SyncChange.waiting_for.is_not(None), SyncChange.received_at < cutoff
            )
        )
    )


def refusals_to_tell(session: Session, user_id: int, device_id: str) -> list[dict]:
    """Return the changes of this tablet refused after they were answered `applied`.

    Told in every answer until the tablet says it has them (`refused_seen`), so an answer lost
    on the way never hides one.
    """
    rows = session.scalars(
        select(SyncChange)
        .where(
            SyncChange.device_id == device_id,
            SyncChange.user_id == user_id,
            SyncChange.refused_at.is_not(None),
            SyncChange.told_at.is_(None),
        )
        .order_by(SyncChange.refused_at)
        .limit(TOLD_AT_MOST)
    )
    return [
        {"change_id": r.change_id, "entity": r.entity, "id": r.record_id, "reason": r.reason}
        for r in rows
    ]


def acknowledge(session: Session, user_id: int, device_id: str, change_ids: list[str]) -> None:
    """Mark refusals the tablet says it holds as told."""
    if not change_ids:
        return
    for row in session.scalars(
        select(SyncChange).where(
            SyncChange.change_id.in_(change_ids),
            SyncChange.device_id == device_id,
            SyncChange.user_id == user_id,
            SyncChange.refused_at.is_not(None),
            SyncChange.told_at.is_(None),
        )
    ):
        row.told_at = utcnow()
