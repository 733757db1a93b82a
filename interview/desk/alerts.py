"""Safety and sync alerts for coordinators, worked out from the store as plain data.

Each alert has a kind and a key naming its occurrence (a later overdue deadline, a new
conflict revision, a tablet silent since another sync), so acknowledging one occurrence never
hides the next.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from interview.store.models import (
    AlertAck,
    Debrief,
    Device,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    User,
    user_cases,
)
from interview.sync.merge import conflict_full

KINDS = (
    "overdue",
    "distress_2",
    "follow_up",
    "debrief_talk",
    "lost_work",
    "conflict",
    "stale_tablet",
)
ACTIVE_STATUSES = ("in_progress", "paused")


@dataclass(frozen=True)
class Alert:
    """One thing a coordinator should look at."""

    kind: str
    key: str
    at: datetime
    case_code: str | None = None
    participant_code: str | None = None
    participant_id: str | None = None
    interview_id: str | None = None
    username: str | None = None
    count: int | None = None
    entity: str | None = None
    # lost_work: the old store (its first 8 characters), when it last synced, and the codes
    # of the participants whose interviews its waiting changes belonged to
    store: str | None = None
    last_sync_at: datetime | None = None
    codes: tuple[str, ...] = ()
    # conflict: the text holds as many versions as the store keeps; more are refused
    full: bool = False


def _visible(case_ids: set[int]):
    """The condition on a joined Participant: in these cases, never withdrawn."""
    # on the joined row, not as `IN (participants of these cases)`: the store can then start
    # from the few rows wanted instead of walking every participant's interviews
    return and_(Participant.case_id.in_(case_ids or {-1}), Participant.status != "withdrawn")


def _rows(
    session: Session, case_ids: set[int], model, *where, with_author: bool = False, record=None
):
    """Rows of a record of visible interviews: (record, participant id, code, case id[, author]).

    `record` names the columns to read instead of the whole `model` (a tuple then stands in
    for the record); `author` is the author's username.
    """
    columns = [
        *(record or [model]),
        Interview.participant_id,
        Participant.code,
        Participant.case_id,
        *([User.username] if with_author else []),
    ]
    stmt = (
        select(*columns)
        .select_from(model)
        .join(Interview, Interview.id == model.interview_id)
        .join(Participant, Participant.id == Interview.participant_id)
        .where(_visible(case_ids), *where)
    )
    if with_author:
        stmt = stmt.outerjoin(User, User.id == model.author_id)
    if record:
        return [(tuple(row[: len(record)]), *row[len(record) :]) for row in session.execute(stmt)]
    return session.execute(stmt).all()


@dataclass(frozen=True)
class UnderWay:
    """An interview under way: when it should end and when the peer last checked in."""

    interview_id: str
    participant_code: str
    case_code: str | None
    status: str
    participant_id: str
    expected_end_at: datetime | None
    last_check_in: datetime | None


def under_way(session: Session, case_ids: set[int], codes: dict[int, str]) -> list[UnderWay]:
    """Every interview in progress or paused in these cases, the one ending first at the top."""
    last_check_in = (
        select(InterviewEvent.interview_id, func.max(InterviewEvent.recorded_at).label("at"))
        .where(InterviewEvent.kind == "check_in")
        .group_by(InterviewEvent.interview_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Interview.id,
            Participant.code,
            Participant.case_id,
            Interview.status,
            Interview.participant_id,
            Interview.expected_end_at,
            last_check_in.c.at,
        )
        .join(Participant, Participant.id == Interview.participant_id)
        .outerjoin(last_check_in, last_check_in.c.interview_id == Interview.id)
        .where(
            _visible(case_ids),
            Interview.status.in_(ACTIVE_STATUSES),
        )
    ).all()
    found = [
        UnderWay(iid, code, codes.get(case_id), status, pid, expected_end, checked_in)
        for iid, code, case_id, status, pid, expected_end, checked_in in rows
    ]
    return sorted(
        found,
        key=lambda u: (
            u.expected_end_at is None,
            u.expected_end_at or datetime.min,
            u.participant_code,
        ),
    )


def overdue(
    session: Session,
    case_ids: set[int],
    codes: dict[int, str],
    now: datetime,
    grace: timedelta,
    under: list[UnderWay] | None = None,
) -> list[Alert]:
    """Interviews under way whose expected end, or last check-in after it, is over grace ago."""
    if under is None:
        under = under_way(session, case_ids, codes)
    alerts = []
    for u in under:
        if u.expected_end_at is None:
            continue
        # a check-in after the expected end says "all is well" and starts the grace again
        since = max(u.expected_end_at, u.last_check_in or u.expected_end_at)
        deadline = since + grace
        if now > deadline:
            alerts.append(
                Alert(
                    "overdue",
                    f"{u.interview_id}@{deadline.isoformat()}",
                    deadline,
                    u.case_code,
                    u.participant_code,
                    u.participant_id,
                    u.interview_id,
                )
            )
    return alerts


def distress(session: Session, case_ids: set[int], codes: dict[int, str]) -> list[Alert]:
    """Every distress stage 2 recorded in an interview."""
    rows = _rows(session, case_ids, InterviewEvent, InterviewEvent.kind == "distress_2")
    return [
        Alert(
            "distress_2",
            event.id,
            event.recorded_at,
            codes.get(case_id),
            code,
            participant_id,
            event.interview_id,
        )
        for event, participant_id, code, case_id in rows
    ]


def debrief_flags(session: Session, case_ids: set[int], codes: dict[int, str]) -> list[Alert]:
    """Debriefs asking for participant follow-up or a debrief talk for the peer."""
    rows = _rows(
        session,
        case_ids,
        Debrief,
        (Debrief.participant_follow_up.is_(True)) | (Debrief.wants_debrief_talk.is_(True)),
        with_author=True,
        # the flags alone: a debrief's sealed reflection is not opened, nor even read, here
        record=(
            Debrief.id,
            Debrief.interview_id,
            Debrief.updated_at,
            Debrief.participant_follow_up,
            Debrief.wants_debrief_talk,
        ),
    )
    alerts = []
    for record, participant_id, code, case_id, author in rows:
        debrief_id, interview_id, updated_at, follow_up, talk = record
        common = dict(
            at=updated_at,
            case_code=codes.get(case_id),
            participant_code=code,
            participant_id=participant_id,
            interview_id=interview_id,
            username=author,
        )
        if follow_up:
            alerts.append(Alert("follow_up", debrief_id, **common))
        if talk:
            alerts.append(Alert("debrief_talk", debrief_id, **common))
    return alerts


def conflicts(session: Session, case_ids: set[int], codes: dict[int, str]) -> list[Alert]:
    """Notes with two versions waiting for someone to choose or merge."""
    rows = _rows(session, case_ids, Note, Note.conflict.is_not(None), Note.deleted_at.is_(None))
    # a settled note may hold JSON null rather than SQL NULL: only a real version counts
    return [
        Alert(
            "conflict",
            f"{note.id}@{note.rev}",
            note.updated_at,
            codes.get(case_id),
            code,
            participant_id,
            note.interview_id,
            entity="note",
            full=conflict_full(note.conflict, "text"),
        )
        for note, participant_id, code, case_id in rows
        if note.conflict
    ] + debrief_conflicts(session, case_ids, codes)


def debrief_conflicts(session: Session, case_ids: set[int], codes: dict[int, str]) -> list[Alert]:
    """Debriefs two tablets changed at once: the other version waits beside the kept one."""
    rows = _rows(session, case_ids, Debrief, Debrief.conflict.is_not(None), with_author=True)
    return [
        Alert(
            "conflict",
            f"debrief:{debrief.id}@{debrief.rev}",
            debrief.updated_at,
            codes.get(case_id),
            code,
            participant_id,
            debrief.interview_id,
            username=author,
            entity="debrief",
            full=conflict_full(debrief.conflict, "reflection"),
        )
        for debrief, participant_id, code, case_id, author in rows
        if debrief.conflict
    ]


def stale_tablets(
    session: Session, case_ids: set[int], now: datetime, silent_for: timedelta
) -> list[Alert]:
    """Tablets of people in these cases, silent too long while holding changes."""
    people = select(user_cases.c.user_id).where(user_cases.c.case_id.in_(case_ids or {-1}))
    rows = session.execute(
        select(Device, User.username)
        .join(User, User.id == Device.user_id)
        .where(
            and_(
                Device.pending > 0,
                Device.last_sync_at < now - silent_for,
                Device.user_id.in_(people),
                # a store known to be replaced never syncs again (see lost_work)
                Device.replaced_by.is_(None),
            )
        )
        .order_by(Device.last_sync_at)
    ).all()
    return [
        Alert(
            "stale_tablet",
            f"{device.id}@{device.last_sync_at.isoformat()}",
            device.last_sync_at,
            username=username,
            count=device.pending,
        )
        for device, username in rows
    ]


def lost_work(session: Session, case_ids: set[int]) -> list[Alert]:
    """Stores replaced by a new one in the same browser while changes still waited in them."""
    people = select(user_cases.c.user_id).where(user_cases.c.case_id.in_(case_ids or {-1}))
    rows = session.execute(
        select(Device, User.username)
        .join(User, User.id == Device.user_id)
        .where(
            Device.lost_at.is_not(None),
            Device.replaced_by.is_not(None),
            Device.user_id.in_(people),
        )
        .order_by(Device.lost_at)
    ).all()
    # the interviews concerned, by participant code: only those in these cases, never withdrawn
    wanted = {i for device, _name in rows for i in device.pending_interviews or [] if i}
    # asked even when nothing is wanted, so the page runs the same statements whatever the data
    codes = dict(
        session.execute(
            select(Interview.id, Participant.code)
            .join(Participant, Participant.id == Interview.participant_id)
            .where(
                Interview.id.in_(sorted(wanted) or [""]),
                _visible(case_ids),
            )
        ).all()
    )
    return [
        Alert(
            "lost_work",
            f"{device.id}>{device.replaced_by}",
            device.lost_at,
            username=username,
            count=device.pending,
            store=device.id[:8],
            last_sync_at=device.last_sync_at,
            codes=tuple(sorted({codes[i] for i in device.pending_interviews or [] if i in codes})),
        )
        for device, username in rows
    ]


@dataclass
class FlaggedNotes:
    """One FACT team's free texts whose current words may hold a direct identifier (counts
    only): notes, stop and distress comments, debrief reflections."""

    case_code: str
    notes: int = 0
    comments: int = 0
    reflections: int = 0
    # (interview id, participant code, flagged texts in it), in participant-code order
    interviews: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def texts(self) -> int:
        """Every flagged text of the team."""
        return self.notes + self.comments + self.reflections


# what is counted, and the field of FlaggedNotes it is counted in
_FLAGGED = (
    (Note, "notes", (Note.deleted_at.is_(None),)),
    (InterviewEvent, "comments", ()),
    (Debrief, "reflections", ()),
)


def identifier_flags(
    session: Session, case_ids: set[int], codes: dict[int, str]
) -> list[FlaggedNotes]:
    """Count the free texts whose current words have identifier findings, per team and interview."""
    # the guard ran when each text was written (`identifier_kinds`): no text is opened, or
    # even read, here: the store counts them per interview, from indexes of the flagged rows
    teams: dict[int, FlaggedNotes] = {}
    per_interview: dict[tuple[int, str, str], int] = {}
    for model, counted, where in _FLAGGED:
        rows = session.execute(
            select(Participant.case_id, Participant.code, model.interview_id, func.count())
            .join(Interview, Interview.id == model.interview_id)
            .join(Participant, Participant.id == Interview.participant_id)
            .where(_visible(case_ids), model.identifier_kinds.is_not(None), *where)
            .group_by(Participant.case_id, Participant.code, model.interview_id)
        ).all()
        for case_id, code, interview_id, count in rows:
            team = teams.setdefault(case_id, FlaggedNotes(codes.get(case_id, "")))
            setattr(team, counted, getattr(team, counted) + count)
            key = (case_id, code, interview_id)
            per_interview[key] = per_interview.get(key, 0) + count
    for (case_id, code, interview_id), count in sorted(per_interview.items()):
        teams[case_id].interviews.append((interview_id, code, count))
    return sorted(teams.values(), key=lambda t: t.case_code)


def collect(
    session: Session,
    case_ids: set[int],
    codes: dict[int, str],
    now: datetime,
    grace: timedelta,
    silent_for: timedelta,
    include_acknowledged: bool = False,
    under: list[UnderWay] | None = None,
) -> list[Alert]:
    """Every alert of these cases, newest first; acknowledged ones left out unless asked.

    `under` is `under_way(...)` of the same cases when the caller has it already.
    """
    alerts = [
        *overdue(session, case_ids, codes, now, grace, under),
        *distress(session, case_ids, codes),
        *debrief_flags(session, case_ids, codes),
        *conflicts(session, case_ids, codes),
        *stale_tablets(session, case_ids, now, silent_for),
        *lost_work(session, case_ids),
    ]
    if not include_acknowledged:
        seen = acknowledged(session, {a.key for a in alerts})
        alerts = [a for a in alerts if (a.kind, a.key) not in seen]
    # safety first (the order of KINDS), then the one waiting longest
    return sorted(alerts, key=lambda a: (KINDS.index(a.kind), a.at))


def acknowledged(session: Session, keys: set[str]) -> set[tuple[str, str]]:
    """Return which of these alert keys someone has acknowledged, as (kind, key) pairs."""
    # asked even with no keys, so the page runs the same statements whatever the data
    rows = session.execute(
        select(AlertAck.kind, AlertAck.key).where(AlertAck.key.in_(keys or {""}))
    )
    return {(kind, key) for kind, key in rows}


def acknowledge(session: Session, alert: Alert, user_id: int) -> bool:
    """Record that a coordinator has seen an alert; False when someone already had."""
    try:
        # two coordinators may tap at once: the unique key decides, not a read before the write
        with session.begin_nested():
            session.add(AlertAck(kind=alert.kind, key=alert.key, acknowledged_by_id=user_id))
    except IntegrityError:
        return False
    return True
