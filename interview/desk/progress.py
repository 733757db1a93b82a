"""Progress per case for the coordinator's desk: counts from aggregate queries, no HTTP.

Who is counted is defined once, here (`counted`), and the progress page, the printed progress
report and the exports all go by it: a participant who has withdrawn is not counted, and
neither are their interviews (a withdrawal keeps the interview rows but deletes or sets aside
what they held: participants/withdrawal.py). The withdrawn are shown beside the figures as a
number of their own, never inside a total.

Every figure family is one GROUP BY query across all the asked cases, so the number of
statements stays the same however many participants, interviews and consents there are.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from interview.store.consents import PARTIAL
from interview.store.models import (
    INTERVIEW_STATUSES,
    PARTICIPANT_STATUSES,
    Case,
    Consent,
    Interview,
    Participant,
    User,
    participant_interviewers,
)
from interview.web.i18n import oslo_to_utc, utc_to_oslo

CONSENT_ITEMS = ("audio", "quotes", "recontact")

# the status of a participant who is not counted, and the statuses that are
WITHDRAWN = "withdrawn"
COUNTED_STATUSES = tuple(s for s in PARTICIPANT_STATUSES if s != WITHDRAWN)


def counted():
    """Return the SQL condition a participant is counted: not withdrawn.

    The one definition of who is counted, used by the progress figures and the exports (a
    participant's interviews, notes and consents are counted only with the participant).
    """
    return Participant.status != WITHDRAWN


@dataclass
class ConsentItems:
    """How many valid consents allowed each optional item, out of how many consents."""

    consents: int = 0
    given: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONSENT_ITEMS, 0))

    def add(self, other: "ConsentItems") -> None:
        """Add another case's figures to these."""
        self.consents += other.consents
        for key, value in other.given.items():
            self.given[key] = self.given.get(key, 0) + value


@dataclass
class CaseProgress:
    """The figures of one case, or of several cases added together (then `code` is None)."""

    code: str | None = None
    name_nb: str = ""
    name_en: str = ""
    # counted participants by status (the withdrawn are in `withdrawn`, never here)
    participants: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED_STATUSES, 0))
    # the interviews of counted participants, by status
    interviews: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INTERVIEW_STATUSES, 0))
    # participants who have withdrawn, and their interviews: not counted, shown beside
    withdrawn: int = 0
    withdrawn_interviews: int = 0
    # interviewer username -> interview status -> count (counted participants only)
    by_interviewer: dict[str, dict[str, int]] = field(default_factory=dict)
    planned_this_week: int = 0
    overdue: int = 0
    consent_items: ConsentItems = field(default_factory=ConsentItems)

    def name(self, lang: str) -> str:
        """Return the case name in the given language."""
        return self.name_en if lang == "en" else self.name_nb

    @property
    def participant_total(self) -> int:
        """Return the number of counted participants (the withdrawn are not among them)."""
        return sum(self.participants.values())

    @property
    def interview_total(self) -> int:
        """Return the number of interviews of counted participants."""
        return sum(self.interviews.values())

    def add(self, other: "CaseProgress") -> None:
        """Add another case's figures to these (cases never share participants)."""
        for status, n in other.participants.items():
            self.participants[status] = self.participants.get(status, 0) + n
        for status, n in other.interviews.items():
            self.interviews[status] = self.interviews.get(status, 0) + n
        self.withdrawn += other.withdrawn
        self.withdrawn_interviews += other.withdrawn_interviews
        for username, counts in other.by_interviewer.items():
            mine = self.by_interviewer.setdefault(username, dict.fromkeys(INTERVIEW_STATUSES, 0))
            for status, n in counts.items():
                mine[status] = mine.get(status, 0) + n
        self.planned_this_week += other.planned_this_week
        self.overdue += other.overdue
        self.consent_items.add(other.consent_items)


@dataclass
class PlannedInterview:
    """A planned interview this week or overdue, for the list under the figures."""

    interview_id: str
    participant_id: str
    participant_code: str
    case_code: str
    planned_at: datetime
    overdue: bool


@dataclass
class Progress:
    """The figures per case, their sum, and the Oslo week they were counted in."""

    now: datetime
    week_start: date  # Monday of the Oslo week holding `now`
    week_end: date  # its Sunday
    cases: list[CaseProgress]
    total: CaseProgress
    planned: list[PlannedInterview]


def oslo_week(now: datetime) -> tuple[date, datetime, datetime]:
    """Return the Oslo week holding `now` (naive UTC): its Monday, and start and end in naive UTC.

    The week runs from Monday 00:00 to the next Monday 00:00 in Europe/Oslo, so it is 167 or
    169 hours long in the weeks the clocks change.
    """
    monday = utc_to_oslo(now).date()
    monday -= timedelta(days=monday.weekday())
    return monday, oslo_to_utc(monday, time(0)), oslo_to_utc(monday + timedelta(days=7), time(0))


def _overdue_condition(now: datetime):
    """Overdue: still `planned` (never started) while its planned time is already before `now`.

    Only interviews of participants who have not withdrawn count, since no one should go and
    interview them. This is not the lone-worker "overdue" of DESIGN §6 (an interview running
    past its expected end); that one is an alert, not a progress figure.
    """
    return and_(
        Interview.status == "planned",
        Interview.started_at.is_(None),
        Interview.planned_at < now,
    )


def _this_week_condition(week_start: datetime, week_end: datetime):
    """Planned this week: still `planned`, with its planned time in this Oslo week.

    Interviews planned earlier this week that have not started count here and as overdue.
    """
    return and_(
        Interview.status == "planned",
        Interview.planned_at >= week_start,
        Interview.planned_at < week_end,
    )


def _valid_consent_condition():
    """A valid consent: a consent (not a withdrawal) saying yes to taking part, still in force.

    In force means no later consent or withdrawal record of the same participant, and the
    participant has not withdrawn; this is flow.valid_consent, written as SQL.
    """
    later = aliased(Consent)
    return and_(
        Consent.kind == "consent",
        Consent.answers["participate"].as_boolean(),
        counted(),
        ~exists().where(
            later.participant_id == Consent.participant_id,
            later.obtained_at > Consent.obtained_at,
            # a partial withdrawal leaves the consent in force (its items are counted below)
            later.kind != PARTIAL,
        ),
    )


def _item_in_force(key: str):
    """The consent in force gives `key` and no later partial withdrawal took it back.

    This is store.consents.consent_in_force for one item, written as SQL.
    """
    partial = aliased(Consent)
    return and_(
        Consent.answers[key].as_boolean(),
        ~exists().where(
            partial.participant_id == Consent.participant_id,
            partial.kind == PARTIAL,
            partial.obtained_at >= Consent.obtained_at,
            partial.answers[key].as_boolean().is_(False),
        ),
    )


def case_progress(session: Session, case_ids, now: datetime, list_limit: int = 50) -> Progress:
    """Count the progress of the given cases at `now` (naive UTC); one query per figure family."""
    ids = sorted(set(case_ids))
    monday, week_start, week_end = oslo_week(now)
    rows = session.execute(
        select(Case.id, Case.code, Case.name_nb, Case.name_en)
        .where(Case.id.in_(ids))
        .order_by(Case.code)
    ).all()
    by_id = {r.id: CaseProgress(code=r.code, name_nb=r.name_nb, name_en=r.name_en) for r in rows}
    ids = list(by_id)

    for case_id, status, n in session.execute(
        select(Participant.case_id, Participant.status, func.count())
        .where(Participant.case_id.in_(ids))
        .group_by(Participant.case_id, Participant.status)
    ):
        if status != WITHDRAWN:
            by_id[case_id].participants[status] = n
        else:
            by_id[case_id].withdrawn += n

    # grouped by the participant's status too (PostgreSQL would not group by `counted()`, a
    # condition with its own bound parameter), then sorted into counted and withdrawn
    for case_id, participant_status, status, n in session.execute(
        select(Participant.case_id, Participant.status, Interview.status, func.count())
        .join(Participant, Participant.id == Interview.participant_id)
        .where(Participant.case_id.in_(ids))
        .group_by(Participant.case_id, Participant.status, Interview.status)
    ):
        if participant_status != WITHDRAWN:
            counts = by_id[case_id].interviews
            counts[status] = counts.get(status, 0) + n
        else:
            by_id[case_id].withdrawn_interviews += n

    # an interview counts for every peer assigned to its participant (two may share one)
    for case_id, username, status, n in session.execute(
        select(Participant.case_id, User.username, Interview.status, func.count())
        .join(Participant, Participant.id == Interview.participant_id)
        .join(
            participant_interviewers,
            participant_interviewers.c.participant_id == Participant.id,
        )
        .join(User, User.id == participant_interviewers.c.user_id)
        .where(Participant.case_id.in_(ids), counted())
        .group_by(Participant.case_id, User.username, Interview.status)
    ):
        counts = by_id[case_id].by_interviewer.setdefault(
            username, dict.fromkeys(INTERVIEW_STATUSES, 0)
        )
        counts[status] = n

    overdue = _overdue_condition(now)
    this_week = _this_week_condition(week_start, week_end)
    for case_id, n_week, n_overdue in session.execute(
        select(
            Participant.case_id,
            func.sum(case((this_week, 1), else_=0)),
            func.sum(case((overdue, 1), else_=0)),
        )
        .join(Participant, Participant.id == Interview.participant_id)
        .where(
            Participant.case_id.in_(ids),
            counted(),
            or_(this_week, overdue),
        )
        .group_by(Participant.case_id)
    ):
        by_id[case_id].planned_this_week = int(n_week or 0)
        by_id[case_id].overdue = int(n_overdue or 0)

    item_sums = [func.sum(case((_item_in_force(key), 1), else_=0)) for key in CONSENT_ITEMS]
    for case_id, n, *given in session.execute(
        select(Participant.case_id, func.count(), *item_sums)
        .join(Participant, Participant.id == Consent.participant_id)
        .where(Participant.case_id.in_(ids), _valid_consent_condition())
        .group_by(Participant.case_id)
    ):
        by_id[case_id].consent_items = ConsentItems(
            consents=n, given={k: int(v or 0) for k, v in zip(CONSENT_ITEMS, given, strict=True)}
        )

    planned = [
        PlannedInterview(
            interview_id=r.id,
            participant_id=r.participant_id,
            participant_code=r.participant_code,
            case_code=r.case_code,
            planned_at=r.planned_at,
            overdue=r.planned_at < now,
        )
        for r in session.execute(
            select(
                Interview.id,
                Interview.planned_at,
                Interview.participant_id,
                Participant.code.label("participant_code"),
                Case.code.label("case_code"),
            )
            .join(Participant, Participant.id == Interview.participant_id)
            .join(Case, Case.id == Participant.case_id)
            .where(
                Participant.case_id.in_(ids),
                counted(),
                or_(this_week, overdue),
            )
            .order_by(Interview.planned_at, Participant.code)
            .limit(list_limit)
        )
    ]

    total = CaseProgress()
    for progress in by_id.values():
        total.add(progress)
    return Progress(
        now=now,
        week_start=monday,
        week_end=monday + timedelta(days=6),
        cases=list(by_id.values()),
        total=total,
        planned=planned,
    )
