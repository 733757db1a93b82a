"""The interview's course from the web forms: check the step is allowed, then record the event.

Status and times are never set directly: they are folded from the events (sync.fold_events),
the same way whether an event came from a form post or a tablet that was offline.
"""

from flask import has_request_context, request

from interview.store.consents import (
    RenewalDue,
    participant_consent,
    renewal_due,
    required_renewals,
)
from interview.store.extensions import db
from interview.store.models import (
    Consent,
    Interview,
    InterviewEvent,
    Participant,
    User,
    new_uuid,
    utcnow,
)
from interview.sync.merge import refold_interview

EDITABLE = ("in_progress", "paused", "completed", "stopped")


class FlowError(Exception):
    """A step that the interview's current state does not allow."""


def valid_consent(participant: Participant) -> Consent | None:
    """Return the consent in force: the newest 'participate' yes with no later withdrawal."""
    # its items as they stand now (partial withdrawals applied): store.consents.consent_in_force
    state = participant_consent(participant)
    return state.consent if state else None


def renewal_of(interview: Interview) -> RenewalDue | None:
    """Renewed consent due before this interview goes on, and why (None: none is due)."""
    return renewal_due(interview, _renewals())


def _renewals():
    # an interview page asks more than once (the view's gate, the page's context for the
    # tablet): the decisions are read once a request; they change only on a desk POST
    # kept on the request, not on g: g lives as long as the app context, which a test (or a
    # command) may hold across several requests
    if not has_request_context():
        return required_renewals(db.session)
    kept = getattr(request, "_consent_renewals", None)
    if kept is None:
        kept = request._consent_renewals = required_renewals(db.session)
    return kept


def consent_due(interview: Interview) -> bool:
    """Whether consent is to be taken before the interview goes on: none in force, or renewal."""
    return valid_consent(interview.participant) is None or renewal_of(interview) is not None


def record_event(interview: Interview, kind: str, user: User | None, **data) -> InterviewEvent:
    """Append an event to the interview and fold its state again."""
    event = InterviewEvent(
        id=new_uuid(),
        interview_id=interview.id,
        kind=kind,
        data=data,
        recorded_by_id=user.id if user else None,
        recorded_at=utcnow(),
    )
    db.session.add(event)
    refold_interview(db.session, interview)
    return event


def _require(interview: Interview, *statuses: str) -> None:
    if interview.status not in statuses:
        raise FlowError(interview.status)


def capacity_ok(interview: Interview, user: User, minutes: int) -> None:
    """Record a passed capacity check; the visit starts and the expected end is set."""
    _require(interview, "planned")
    record_event(interview, "capacity_check", user, outcome="ok", minutes=minutes)


def reschedule(interview: Interview, user: User, reason: str, new_time=None) -> None:
    """Record a rescheduling; the interview stays planned."""
    _require(interview, "planned")
    record_event(
        interview,
        "reschedule",
        user,
        reason=reason,
        new_time=new_time.isoformat() if new_time else None,
    )


def pause(interview: Interview, user: User) -> None:
    """Pause a running interview."""
    _require(interview, "in_progress")
    record_event(interview, "pause", user)


def resume(interview: Interview, user: User) -> None:
    """Resume a paused interview."""
    _require(interview, "paused")
    record_event(interview, "resume", user)


def check_in(interview: Interview, user: User) -> None:
    """Record a lone-worker safety check-in."""
    _require(interview, "in_progress", "paused")
    record_event(interview, "check_in", user)


def distress_stage_one(interview: Interview, user: User) -> None:
    """Distress stage 1: pause and check in with the participant."""
    _require(interview, "in_progress", "paused")
    record_event(interview, "distress_1", user)


def stop(interview: Interview, user: User, reason: str, comment: str = "") -> None:
    """Stop the interview early, with a reason."""
    _require(interview, "planned", "in_progress", "paused")
    record_event(interview, "stop", user, reason=reason, comment=comment)


def distress_stage_two(interview: Interview, user: User, contact_team: bool, comment: str) -> None:
    """Distress stage 2: stop; with the participant's consent the team is to be contacted."""
    _require(interview, "in_progress", "paused")
    record_event(interview, "distress_2", user, contact_team=contact_team, comment=comment)
    record_event(interview, "stop", user, reason="distress", comment="")


def complete(interview: Interview, user: User) -> None:
    """Close a finished interview; the participant counts as interviewed."""
    _require(interview, "in_progress", "paused")
    if valid_consent(interview.participant) is None:
        raise FlowError("no consent")
    record_event(interview, "complete", user)
