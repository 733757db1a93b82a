"""The pure merge rules: fields merged or in conflict, conflict versions and their cap, and
the interview's state folded from its events in time order.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interview.store.models import (
    Interview,
    InterviewEvent,
    utcnow,
)
from interview.sync.envelope import MAX_TEXT, Reject, _parse_time

CONFLICT_SEPARATOR = "\n\n———\n\n"

# versions kept beside a note's text (or a debrief's reflection) until someone chooses, and
# their characters in all: past either, a further version is refused (the alert says so)
MAX_CONFLICT_VERSIONS = 10
MAX_CONFLICT_CHARS = 100_000
CONFLICT_FULL = (
    "this text already has {n} versions waiting for someone to choose; "
    "no more are kept until then (the coordinator has been told)"
)


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
