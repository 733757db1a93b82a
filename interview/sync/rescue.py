"""Rescue copies: a tablet's waiting work, sealed to the study key, brought in from the desk.

When a tablet cannot sync (no network for days, a session that will not come back, a browser
about to lose its storage) the peer can save a rescue file: the changes still waiting on the
tablet, sealed on the tablet to the study key (interview/trust/sealed_box.py), so the file is of no
use to whoever finds it. A coordinator imports it on the desk; its changes are applied as the
peer who made them, through the same rules as `POST /api/v1/sync`, so a change already in the
store is a duplicate and importing a file twice changes nothing.

    {"format": "fact-rescue", "v": 1, "made_at": "<ISO>", "store_id": "<uuid>", "count": <int>,
     "box": <sealed box of {"token": "<rescue token>", "device_id": "<uuid>",
                            "changes": [<sync changes>]}>}

The rescue token (`GET /api/v1/session`) is the user id signed with the app's secret key, so
a file names its author in a way nobody can forge; it does not expire (a tablet may hold a
copy for weeks).
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l
from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from interview.store.models import User
from interview.sync.batch import apply_changes
from interview.sync.devices import owned_by_another
from interview.sync.envelope import MAX_CHANGES
from interview.trust import audit
from interview.trust.access import coordinated_case_ids
from interview.trust.sealed_box import BoxError, open_box

FORMAT = "fact-rescue"
VERSION = 1
SALT = "fact-rescue"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_RESCUE_CHANGES = 20_000
# the statuses an import counts, in the order the page shows them
STATUSES = ("applied", "waiting", "duplicate", "conflict", "rejected", "retry")


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


class RescueRefused(Exception):
    """A rescue file that is not imported; nothing of it was applied. The message is shown."""

    def __init__(self, message, status: int = 400):
        super().__init__(str(message))
        self.message = message
        self.status = status


@dataclass
class RescueReport:
    """What an import did: how many changes ended how, and why some were refused."""

    username: str
    store_id: str
    made_at: datetime | None  # when the tablet says it made the file (naive UTC)
    changes: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    reasons: list[tuple[str, int]] = field(default_factory=list)
    # the store could not take every batch just now: importing the file again sends the rest
    interrupted: bool = False


def _serializer(secret_key: str | bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT)


def rescue_token(secret_key: str | bytes, user_id: int) -> str:
    """Return the token a tablet seals into its rescue copies: the user id, signed."""
    return _serializer(secret_key).dumps({"u": user_id})


def token_user(secret_key: str | bytes, token: Any) -> int | None:
    """Return the user id a rescue token names, or None when it is not one this app signed."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    try:
        payload = _serializer(secret_key).loads(token)
    except (BadData, UnicodeError, ValueError):
        return None
    user_id = payload.get("u") if isinstance(payload, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        return None
    return user_id


NOT_A_RESCUE_FILE = _l("This is not a rescue file from the app. Nothing was imported.")
UNOPENED = _l(
    "The rescue file could not be opened: it is damaged, or sealed to another study key. "
    "Nothing was imported."
)


def read_file(raw: bytes) -> dict:
    """Check a rescue file's outer frame; return it, or raise RescueRefused."""
    try:
        found = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RescueRefused(NOT_A_RESCUE_FILE) from None
    if (
        not isinstance(found, dict)
        or found.get("format") != FORMAT
        or found.get("v") != VERSION
        or isinstance(found.get("v"), bool)
        or not _is_uuid(found.get("store_id"))
        or not isinstance(found.get("made_at"), str)
        or len(found["made_at"]) > 40
        or not isinstance(found.get("box"), dict)
    ):
        raise RescueRefused(NOT_A_RESCUE_FILE)
    return found


def _made_at(found: dict) -> datetime | None:
    """Return when the tablet made the file, or None when it wrote no time we can read."""
    try:
        made = datetime.fromisoformat(found["made_at"].replace("Z", "+00:00"))
    except ValueError:
        return None
    if made.tzinfo is None or not 2000 <= made.year <= 2200:
        return None
    return made.astimezone(UTC).replace(tzinfo=None)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def open_file(found: dict, secret_key: str | bytes) -> tuple[int, str, list[Any]]:
    """Open a rescue file's box; return (the author's user id, the device id, the changes)."""
    try:
        inside = open_box(found["box"], max_chars=MAX_FILE_BYTES)
    except BoxError:
        raise RescueRefused(UNOPENED) from None
    if (
        not isinstance(inside, dict)
        or not _is_uuid(inside.get("device_id"))
        or not isinstance(inside.get("changes"), list)
    ):
        raise RescueRefused(UNOPENED)
    if len(inside["changes"]) > MAX_RESCUE_CHANGES:
        raise RescueRefused(
            _l(
                "The rescue file holds more than %(most)s changes; it cannot be imported here. "
                "Nothing was imported.",
                most=format_decimal(MAX_RESCUE_CHANGES),
            )
        )
    user_id = token_user(secret_key, inside.get("token"))
    if user_id is None:
        raise RescueRefused(
            _l("The rescue file was not made by a user of this case store. Nothing was imported.")
        )
    return user_id, inside["device_id"].lower(), inside["changes"]


def _may_import_for(session: Session, coordinator: User, author: User) -> bool:
    """A coordinator imports for people in their own cases; an admin for anyone."""
    if coordinator.role == "admin":
        return True
    return bool(set(coordinated_case_ids(coordinator)) & author.case_ids)


def import_file(
    session: Session, coordinator: User, raw: bytes, secret_key: str | bytes
) -> RescueReport:
    """Apply a rescue file's changes as its author, in sync-sized batches; return the counts.

    Refused files raise RescueRefused before anything is applied. Each batch commits, as a
    sync request would; the audit record (counts only, never words) comes with the last one.
    """
    found = read_file(raw)
    user_id, device_id, changes = open_file(found, secret_key)
    author = session.get(User, user_id)
    if author is None:
        raise RescueRefused(
            _l("The rescue file was not made by a user of this case store. Nothing was imported.")
        )
    if not _may_import_for(session, coordinator, author):
        raise RescueRefused(
            _l(
                "The rescue file was made by someone outside the FACT teams you coordinate. "
                "Nothing was imported."
            ),
            status=403,
        )
    report = RescueReport(author.username, found["store_id"].lower(), _made_at(found), 0)
    report.changes = len(changes)
    # A device id belongs to the first user who synced with it. A file whose id is another
    # user's (made before a shared tablet kept one id per person, when both peers' changes
    # went under one id) is still the author's work, signed by their token: it comes in, but
    # is not recorded under a store that is not theirs. The import never touches device rows.
    other_store = owned_by_another(session, author, device_id)
    if other_store:
        device_id = None
    reasons: Counter = Counter()
    for start in range(0, len(changes), MAX_CHANGES):
        try:
            results = apply_changes(
                session, author, changes[start : start + MAX_CHANGES], device_id
            )
            session.commit()
        except OperationalError:
            # the store could not be written just now; what committed stays, once
            session.rollback()
            report.interrupted = True
            break
        for result in results:
            status = result.status
            if status == "applied" and result.rev is None:
                status = "waiting"  # kept until the record it belongs to arrives
            report.counts[status] = report.counts.get(status, 0) + 1
            if status == "rejected":
                reasons[(result.reason or "")[:200]] += 1
    report.reasons = reasons.most_common(10)
    audit.record(
        "rescue_import",
        "user",
        author.id,
        user_id=coordinator.id,
        store=report.store_id,
        changes=report.changes,
        interrupted=report.interrupted,
        **({"other_store": True} if other_store else {}),
        **{k: v for k, v in report.counts.items() if v},
    )
    try:
        session.commit()
    except OperationalError:
        # the changes that committed stand; the page says to import again (all duplicates)
        session.rollback()
        report.interrupted = True
    return report
