"""What one batch reads once and holds (its interviews, access decisions, guide questions,
the codebook, claims read ahead), and the lookups the appliers share.
"""

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interview.store.content import guide_of
from interview.store.models import (
    Interview,
    Note,
    Participant,
    SyncChange,
    Theme,
    User,
)
from interview.sync.envelope import Reject, Withdrawn, _is_uuid
from interview.sync.log import _chunks
from interview.trust.access import can_see_participant


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


# the tablet a batch comes from, for the rules that tell one tablet's versions from another's
_device: ContextVar[str | None] = ContextVar("sync_device", default=None)


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
