"""Withdrawal: a participant leaves the study, and their research data leaves with them.

A withdrawal is a new immutable consent record (kind "withdrawal"), never an edit. Unless the
consent form the participant signed lets them keep what was already analysed (and they chose
that), their notes, interview events and debriefs are deleted from the case store at once.
Their audio recordings are deleted in any case. Either way the participant's status becomes
"withdrawn", which every view, export and sync leaves out, and tablets drop what they hold of
the participant at their next sync.
"""

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from interview.store.consent_form import withdrawal_data_choice
from interview.store.models import (
    Consent,
    ConsentFormVersion,
    ConsentRecord,
    ConsentSignature,
    Debrief,
    IdentityEntry,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    SyncChange,
    User,
    note_themes,
    utcnow,
)
from interview.store.recordings import delete_participant_recordings
from interview.sync.envelope import WITHDRAWN_REASON
from interview.sync.log import lock_writes, move_interviews_on
from interview.sync.waiting import refuse
from interview.web.i18n import oslo_to_utc, today_in_oslo, utc_to_oslo


class WithdrawalError(Exception):
    """A withdrawal that cannot be recorded; `code` says why, `message()` says it to a person."""

    def __init__(self, code: str, **values):
        super().__init__(code)
        self.code = code
        self.values = values

    def message(self) -> str:
        """Return the reason in the user's language."""
        if self.code == "already":
            return _("This participant has already withdrawn. Nothing was changed.")
        if self.code == "future":
            return _("The date of withdrawal cannot be in the future.")
        if self.code == "too_early":
            return _(
                "The date of withdrawal cannot be earlier than %(date)s.",
                date=format_date(self.values["date"], "long"),
            )
        if self.code == "choice":
            return _("Choose what happens to the data already collected.")
        if self.code == "no_form":
            return _("No consent form is loaded, so the withdrawal cannot be recorded.")
        return _("Something in the request was not right. Please go back and try again.")


@dataclass
class WithdrawalSummary:
    """What a withdrawal did: the choices and how many rows went; never any content."""

    participant_id: str
    withdrawal_id: str
    withdrawn_on: str
    form_version: int
    data_choice: bool
    keep_data: bool
    keep_identity: bool
    interviews: int = 0
    notes_deleted: int = 0
    note_themes_deleted: int = 0
    events_deleted: int = 0
    debriefs_deleted: int = 0
    sync_changes_scrubbed: int = 0
    identity_deleted: bool = False
    signatures_deleted: int = 0
    consent_records_deleted: int = 0
    recordings_deleted: int = 0

    def as_detail(self) -> dict:
        """Return the summary for the audit log (ids, choices and counts only)."""
        detail = asdict(self)
        detail.pop("participant_id")
        return detail


def _latest_consent(participant: Participant) -> Consent | None:
    given = [c for c in participant.consents if c.kind != "withdrawal"]
    return max(given, key=lambda c: c.obtained_at) if given else None


def withdrawal_record(participant: Participant) -> Consent | None:
    """Return the participant's withdrawal record, if they have withdrawn."""
    records = [c for c in participant.consents if c.kind == "withdrawal"]
    return max(records, key=lambda c: c.obtained_at) if records else None


def consent_form_for(session: Session, participant: Participant) -> ConsentFormVersion | None:
    """Return the form version the participant consented under, else the newest one."""
    latest = _latest_consent(participant)
    if latest is not None:
        return latest.form_version
    return session.scalars(
        select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
    ).first()


def data_choice_allowed(session: Session, participant: Participant) -> bool:
    """Whether the participant's consent form lets them keep already analysed data."""
    form = consent_form_for(session, participant)
    return form is not None and withdrawal_data_choice(form.content)


def earliest_date(participant: Participant) -> date:
    """Return the first day a withdrawal can be dated: registration, or the latest consent."""
    days = [utc_to_oslo(participant.created_at).date()]
    latest = _latest_consent(participant)
    if latest is not None:
        days.append(utc_to_oslo(latest.obtained_at).date())
    return max(days)


def check_date(participant: Participant, withdrawn_on: date) -> None:
    """Refuse a withdrawal date in the future or before the participant could withdraw."""
    if withdrawn_on > today_in_oslo():
        raise WithdrawalError("future")
    earliest = earliest_date(participant)
    if withdrawn_on < earliest:
        raise WithdrawalError("too_early", date=earliest)


def withdrawn_at(participant: Participant, withdrawn_on: date) -> datetime:
    """Return when a withdrawal dated `withdrawn_on` is filed: that day, at the present time."""
    # never before the latest consent (or partial withdrawal), so the withdrawal always ends
    # the consent in force (store.consents.consent_in_force reads them in time order)
    at = oslo_to_utc(withdrawn_on, utc_to_oslo(utcnow()).time())
    latest = _latest_consent(participant)
    if latest is not None and at <= latest.obtained_at:
        at = latest.obtained_at + timedelta(seconds=1)
    return at


def withdraw(
    session: Session,
    participant: Participant,
    *,
    withdrawn_on: date,
    keep_data: bool | None,
    keep_identity: bool,
    user: User,
) -> WithdrawalSummary:
    """Record a withdrawal and delete (or set aside) the participant's data; the caller commits.

    `keep_data` is the participant's choice for data already collected; it must be given when
    their consent form allows a choice and is ignored (the data is deleted) when it does not.
    """
    # the write-order lock first: a sync batch for this participant then either commits
    # before (and its notes are deleted here) or after (and sees "withdrawn" and rejects)
    lock_writes(session)
    session.refresh(participant)
    if participant.status == "withdrawn":
        raise WithdrawalError("already")
    check_date(participant, withdrawn_on)
    form = consent_form_for(session, participant)
    if form is None:
        raise WithdrawalError("no_form")
    choice = withdrawal_data_choice(form.content)
    if choice and keep_data is None:
        raise WithdrawalError("choice")
    keep = bool(keep_data) if choice else False
    latest = _latest_consent(participant)

    record = Consent(
        participant_id=participant.id,
        interview_id=None,
        form_version_id=form.id,
        kind="withdrawal",
        language=latest.language if latest else participant.preferred_language,
        answers={"keep_data": keep, "keep_identity": keep_identity},
        method="coordinator",
        obtained_at=withdrawn_at(participant, withdrawn_on),
        obtained_by_id=user.id,
        rev=1,
    )
    session.add(record)
    participant.consents.append(record)
    participant.status = "withdrawn"
    session.flush()

    summary = WithdrawalSummary(
        participant_id=participant.id,
        withdrawal_id=record.id,
        withdrawn_on=withdrawn_on.isoformat(),
        form_version=form.version,
        data_choice=choice,
        keep_data=keep,
        keep_identity=keep_identity,
    )
    interview_ids = select(Interview.id).where(Interview.participant_id == participant.id)
    note_ids = select(Note.id).where(Note.interview_id.in_(interview_ids))
    event_ids = select(InterviewEvent.id).where(InterviewEvent.interview_id.in_(interview_ids))
    debrief_ids = select(Debrief.id).where(Debrief.interview_id.in_(interview_ids))
    consent_ids = select(Consent.id).where(Consent.participant_id == participant.id)

    # before the rows go: the sync log's copies of this participant's changes, so no note text
    # survives there (only changes still waiting for their record keep a payload)
    summary.sync_changes_scrubbed = _scrub_sync_log(
        session, participant.id, [interview_ids, note_ids, event_ids, debrief_ids, consent_ids]
    )

    if not keep:
        summary.note_themes_deleted = _count(
            session.execute(delete(note_themes).where(note_themes.c.note_id.in_(note_ids)))
        )
        summary.notes_deleted = _count(
            session.execute(
                delete(Note)
                .where(Note.interview_id.in_(interview_ids))
                .execution_options(synchronize_session=False)
            )
        )
        summary.events_deleted = _count(
            session.execute(
                delete(InterviewEvent)
                .where(InterviewEvent.interview_id.in_(interview_ids))
                .execution_options(synchronize_session=False)
            )
        )
        summary.debriefs_deleted = _count(
            session.execute(
                delete(Debrief)
                .where(Debrief.interview_id.in_(interview_ids))
                .execution_options(synchronize_session=False)
            )
        )

    if not keep_identity:
        summary.identity_deleted = bool(
            _count(
                session.execute(
                    delete(IdentityEntry).where(IdentityEntry.participant_id == participant.id)
                )
            )
        )
        summary.signatures_deleted = _count(
            session.execute(
                delete(ConsentSignature).where(ConsentSignature.participant_id == participant.id)
            )
        )
        # the signed PDFs name the participant: they go with the identity entry
        summary.consent_records_deleted = _count(
            session.execute(
                delete(ConsentRecord).where(ConsentRecord.participant_id == participant.id)
            )
        )

    # the recordings go whatever the choice for analysed data: what was analysed is the notes,
    # and the consent form promises the sound goes with a withdrawal (docs/recordings.md)
    summary.recordings_deleted = delete_participant_recordings(session, participant.id)

    summary.interviews = move_interviews_on(session, participant)
    # the deleted rows may still sit in the session's identity map: let nothing stale linger
    session.flush()
    session.expire_all()
    return summary


def _count(result) -> int:
    return max(result.rowcount or 0, 0)


def _scrub_sync_log(session: Session, participant_id: str, id_selects: list) -> int:
    """Null the payloads of this participant's changes in the sync log; return how many waited.

    A change still waiting for its record names its participant in a column of its own, so
    nobody else's payload is opened to find it: a withdrawal never depends on others' data.
    """
    ours = or_(
        SyncChange.participant_id == participant_id,
        *[SyncChange.record_id.in_(s) for s in id_selects],
        *[SyncChange.waiting_for.in_(s) for s in id_selects],
    )
    held = list(
        session.scalars(select(SyncChange).where(ours, SyncChange.waiting_for.is_not(None)))
    )
    # they can never apply now; a replay gets this answer, and their tablets are told
    refuse(held, WITHDRAWN_REASON)
    session.flush()
    session.execute(
        update(SyncChange)
        .where(ours)
        .values(payload_enc=None)
        .execution_options(synchronize_session=False)
    )
    return len(held)
