"""The interview's course: consent state, status changes and events, as plain functions."""

from datetime import timedelta

from .extensions import db
from .models import Consent, Interview, InterviewEvent, Participant, User, utcnow

EDITABLE = ("in_progress", "paused", "completed", "stopped")


class FlowError(Exception):
    """A step that the interview's current state does not allow."""


def valid_consent(participant: Participant) -> Consent | None:
    """Return the consent in force: the newest 'participate' yes with no later withdrawal."""
    current = None
    for record in sorted(participant.consents, key=lambda c: c.obtained_at):
        if record.kind == "withdrawal":
            current = None
        elif record.answers.get("participate"):
            current = record
    return current


def record_event(interview: Interview, kind: str, user: User | None, **data) -> InterviewEvent:
    """Append an event to the interview."""
    event = InterviewEvent(
        interview_id=interview.id,
        kind=kind,
        data=data,
        recorded_by_id=user.id if user else None,
        recorded_at=utcnow(),
    )
    db.session.add(event)
    interview.events.append(event)
    return event


def _bump(interview: Interview) -> None:
    interview.rev = (interview.rev or 1) + 1
    interview.updated_at = utcnow()


def capacity_ok(interview: Interview, user: User, minutes: int) -> None:
    """Record a passed capacity check; the visit starts and the expected end is set."""
    if interview.status != "planned":
        raise FlowError("capacity check only before the interview starts")
    now = utcnow()
    record_event(interview, "capacity_check", user, outcome="ok", minutes=minutes)
    interview.status = "in_progress"
    interview.started_at = now
    interview.expected_end_at = now + timedelta(minutes=minutes)
    _bump(interview)


def reschedule(interview: Interview, user: User, reason: str, new_time=None) -> None:
    """Record a rescheduling (after a capacity check or on request); the interview stays planned."""
    if interview.status != "planned":
        raise FlowError("only a planned interview can be rescheduled")
    record_event(
        interview,
        "reschedule",
        user,
        reason=reason,
        new_time=new_time.isoformat() if new_time else None,
    )
    if new_time is not None:
        interview.planned_at = new_time
    _bump(interview)


def pause(interview: Interview, user: User, **data) -> None:
    """Pause a running interview."""
    if interview.status != "in_progress":
        raise FlowError("only a running interview can pause")
    record_event(interview, "pause", user, **data)
    interview.status = "paused"
    _bump(interview)


def resume(interview: Interview, user: User) -> None:
    """Resume a paused interview."""
    if interview.status != "paused":
        raise FlowError("only a paused interview can resume")
    record_event(interview, "resume", user)
    interview.status = "in_progress"
    _bump(interview)


def check_in(interview: Interview, user: User) -> None:
    """Record a lone-worker safety check-in."""
    if interview.status not in ("in_progress", "paused"):
        raise FlowError("check-in only during the interview")
    record_event(interview, "check_in", user)
    _bump(interview)


def distress_stage_one(interview: Interview, user: User) -> None:
    """Distress stage 1: pause and check in with the participant."""
    if interview.status not in ("in_progress", "paused"):
        raise FlowError("distress protocol only during the interview")
    record_event(interview, "distress_1", user)
    if interview.status == "in_progress":
        interview.status = "paused"
    _bump(interview)


def stop(interview: Interview, user: User, reason: str, comment: str = "") -> None:
    """Stop the interview early, with a reason."""
    if interview.status not in ("planned", "in_progress", "paused"):
        raise FlowError("the interview has already ended")
    record_event(interview, "stop", user, reason=reason, comment=comment)
    interview.status = "stopped"
    interview.ended_at = utcnow()
    _bump(interview)


def distress_stage_two(interview: Interview, user: User, contact_team: bool, comment: str) -> None:
    """Distress stage 2: stop; with the participant's consent the team is to be contacted."""
    if interview.status not in ("in_progress", "paused"):
        raise FlowError("distress protocol only during the interview")
    record_event(interview, "distress_2", user, contact_team=contact_team, comment=comment)
    stop(interview, user, "distress")


def complete(interview: Interview, user: User) -> None:
    """Close a finished interview; the participant counts as interviewed."""
    if interview.status not in ("in_progress", "paused"):
        raise FlowError("only a running interview can be completed")
    record_event(interview, "complete", user)
    interview.status = "completed"
    interview.ended_at = utcnow()
    if interview.participant.status in ("invited", "consented"):
        interview.participant.status = "interviewed"
    _bump(interview)
