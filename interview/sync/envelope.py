"""The sync envelope and one change's frame: their shapes, limits and the words of refusal.

Everything here is checked before the store is asked anything (docs/sync.md, *The request*).
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ENTITIES = ("interview", "note", "consent", "event", "debrief")
MAX_TEXT = 20_000
MAX_CHANGES = 500
MAX_PENDING_INTERVIEWS = 200
NOTE_FIELDS = ("text", "polarity", "themes", "possible_quote", "deleted")
DEBRIEF_FIELDS = ("wellbeing", "reflection", "wants_debrief_talk", "participant_follow_up")
STOP_REASONS = ("participant_wish", "distress", "practical", "other", "declined")
RESCHEDULE_REASONS = ("capacity", "participant_asked", "practical")
# why a recording stopped (the event `recording_stopped`, and a recording's end: docs/recordings.md)
RECORDING_STOP_REASONS = (
    "participant_asked",
    "interview_ended",
    "distress",
    "storage",
    "consent",
    "peer",
    "interrupted",
)
# where in a recording a note was begun: at most a day into it
MAX_RECORDING_OFFSET_MS = 24 * 3600 * 1000
WITHDRAWN_REASON = "the participant has withdrawn; this change was not kept"
KEPT_WAITING = "kept until the record it belongs to arrives"
NOT_IN_STORE = "the record this change belongs to is not in the case store"
SEALED_UNOPENED = "the sealed signature could not be opened"
# the tablet shows this one in the peer's language (field/tablet.py, "reasons")
NO_QUOTES_REASON = (
    "the participant's consent does not cover quotes: the note is kept without its "
    "possible-quote mark"
)

# a consent on an older form than the renewal asked for (the tablet kept an old consent page)
OLD_FORM_REASON = "consent is to be renewed on a newer consent form than the one sent"


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
    warnings: list[str] | None = None  # identifier kinds found in its free text (kinds only)

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
