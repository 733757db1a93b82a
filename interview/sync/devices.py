"""Tablet stores: when each last synced, what it still held, and a store whose work was lost.

The sync envelope's `device_id` is made by the tablet when it creates its IndexedDB store, so
it names the store. Safari deletes a site's script-written storage after seven days unused
(unless the app runs from the home screen); the tablet then starts a new store under a new id,
and whatever waited in the old one is gone. The server notices when a store it has never seen
syncs for the first time with nothing waiting and nothing new, while an earlier store of the
same person in the same browser (the `fact_browser` cookie, which that eviction leaves alone) or
the store it names in `replaces` last said it still held changes: the coordinator is told at
once (alert `lost_work`), with the interviews those changes belonged to. A replaced store no
longer raises `stale_tablet`; a store that syncs again was not lost after all.

A device id belongs to the first user who synced with it: another user's sync under it is
refused before anything is applied (`owned_by_another`), so nobody can take over a store's row
and silence its alerts. A tablet shared by two peers keeps one id per person (static/js/store.js).
"""

import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from interview.store.models import Device, User, utcnow

BROWSER_COOKIE = "fact_browser"
# browsers keep a cookie at most this long (400 days) whatever it asks for
BROWSER_COOKIE_DAYS = 400


def browser_id_from(value: str | None) -> str | None:
    """Return the browser id a `fact_browser` cookie carries, or None when it is not one of ours."""
    if not value or len(value) != 36:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def new_browser_id() -> str:
    """Return a fresh browser id for the `fact_browser` cookie."""
    return str(uuid.uuid4())


class DeviceOfAnother(Exception):
    """A device id that another user synced with first."""


def owned_by_another(session: Session, user: User, device_id: str) -> bool:
    """Return True when the store `device_id` names belongs to another user than `user`."""
    device = session.get(Device, device_id)
    return device is not None and device.user_id != user.id


def record_device(
    session: Session,
    user: User,
    device_id: str,
    pending: int | None,
    *,
    browser_id: str | None = None,
    replaces: str | None = None,
    pending_interviews: list[str] | None = None,
    nothing_new: bool = True,
) -> Device:
    """Remember when a store last synced and what it still holds; spot a store it replaced.

    `nothing_new` says that every change of this sync was already in the case store. A store
    keeps the user it first synced for: another user's id raises DeviceOfAnother (the sync
    refuses that before it applies anything, see `owned_by_another`).
    """
    now = utcnow()
    device = session.get(Device, device_id)
    first = device is None
    if device is None:
        device = Device(id=device_id, user_id=user.id, first_sync_at=now, pending=0)
        session.add(device)
    elif device.user_id != user.id:
        raise DeviceOfAnother(device_id)
    device.last_sync_at = now
    if browser_id:
        device.browser_id = browser_id
    if pending is not None:
        device.pending = pending
    if pending_interviews is not None:
        device.pending_interviews = pending_interviews or None
    elif pending == 0:
        device.pending_interviews = None
    if device.replaced_by is not None:
        # it syncs, so it was not lost: no alert, and it may raise stale_tablet again
        device.replaced_by = None
        device.lost_at = None
    if first:
        session.flush()
        _replaced(session, user, device, replaces, lost=not pending and nothing_new)
    return device


def _replaced(
    session: Session, user: User, device: Device, replaces: str | None, lost: bool
) -> None:
    """Mark the earlier stores this new one replaced; flag those whose waiting work is lost."""
    same = []
    if device.browser_id:
        same.append(Device.browser_id == device.browser_id)
    if replaces and replaces != device.id:
        same.append(Device.id == replaces)
    if not same:
        return
    earlier = session.scalars(
        select(Device).where(
            Device.user_id == user.id,
            Device.id != device.id,
            Device.replaced_by.is_(None),
            or_(*same),
        )
    ).all()
    now = utcnow()
    for old in earlier:
        old.replaced_by = device.id
        # the new store brought none of it: what the old one held never reached the store
        if lost and old.pending > 0:
            old.lost_at = now
