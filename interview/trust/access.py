"""Who may see and change what: plain rules, checked on every route and every object."""

from functools import wraps

from flask import abort
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload

from interview.store.extensions import db
from interview.store.models import (
    Case,
    GuideVersion,
    Interview,
    Participant,
    User,
    participant_interviewers,
    user_cases,
)


def can_see_participant(user: User, participant: Participant) -> bool:
    """Admins see all, coordinators their cases, peers the participants assigned to them."""
    if user.role == "admin":
        return True
    if user.role == "coordinator":
        return participant.case_id in user.case_ids
    if user.role == "peer":
        if "interviewers" in participant.__dict__:  # loaded already: no need to ask
            return any(u.id == user.id for u in participant.interviewers)
        # one indexed row, not every interviewer as a loaded user
        return (
            db.session.scalar(
                select(participant_interviewers.c.user_id).where(
                    participant_interviewers.c.participant_id == participant.id,
                    participant_interviewers.c.user_id == user.id,
                )
            )
            is not None
        )
    return False


def participants_visible_to(user: User) -> Select:
    """Return a select of the participants the user may see."""
    stmt = select(Participant)
    if user.role == "admin":
        return stmt
    if user.role == "coordinator":
        return stmt.where(Participant.case_id.in_(user.case_ids or {-1}))
    return stmt.join(
        participant_interviewers, participant_interviewers.c.participant_id == Participant.id
    ).where(participant_interviewers.c.user_id == user.id)


def interviews_visible_to(user: User) -> Select:
    """Return a select of the interviews the user may see."""
    visible = participants_visible_to(user).with_only_columns(Participant.id)
    return select(Interview).where(Interview.participant_id.in_(visible))


def open_interviews_visible_to(user: User) -> Select:
    """Return a select of the interviews the user may see whose participant has not withdrawn."""
    # a withdrawn participant's interviews are no longer anyone's work
    return (
        interviews_visible_to(user)
        .join(Participant, Participant.id == Interview.participant_id)
        .where(Participant.status != "withdrawn")
    )


def cases_coordinated_by(user: User) -> list[Case]:
    """Return the cases a coordinator works in, by code; an admin's are all cases."""
    if user.role == "admin":
        return list(db.session.scalars(select(Case).order_by(Case.code)))
    return list(user.cases)


def coordinated_case_ids(user: User) -> list[int]:
    """Return the ids of the cases a coordinator works in (an admin's: all), by code, cheaply."""
    stmt = select(Case.id).order_by(Case.code)
    if user.role != "admin":
        stmt = stmt.join(user_cases, user_cases.c.case_id == Case.id).where(
            user_cases.c.user_id == user.id
        )
    return list(db.session.scalars(stmt))


def coordinated_case_or_404(user: User, code: str) -> Case:
    """Return one of the user's cases by code; any other code is a 404 that names the reason."""
    case = next((c for c in cases_coordinated_by(user) if c.code == code), None)
    if case is None:
        # the same answer for a team that does not exist and one that is not yours
        abort(404, _("There is no FACT team with that code among the teams you coordinate."))
    return case


def participant_or_404(participant_id) -> Participant:
    """Return a participant the current user may see; anything else is a 404."""
    participant = db.session.get(Participant, str(participant_id))
    if participant is None or not can_see_participant(current_user, participant):
        abort(404)
    return participant


def interview_or_404(interview_id) -> Interview:
    """Return an interview the current user may see; anything else is a 404."""
    # with the participant and the guide version's checksum, in one statement (the guide's
    # content is read only where it is needed)
    interview = db.session.get(
        Interview,
        str(interview_id),
        options=[
            joinedload(Interview.participant),
            joinedload(Interview.guide_version).defer(GuideVersion.content),
        ],
    )
    if interview is None or not can_see_participant(current_user, interview.participant):
        abort(404)
    if interview.participant.status == "withdrawn":
        # a withdrawn participant's interview is open to nobody: its data is deleted or set aside
        abort(404)
    return interview


def roles_required(*roles: str):
    """Let only logged-in users with one of the roles through; other roles get a 403."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator
