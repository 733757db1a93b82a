"""Renewed consent: who consented on an older consent form, and the coordinator's decision
that a new form version needs renewed consent.

A consent form version is published by the operator (`flask guides load`); whether the change
needs every participant to consent again is the study's decision (REK may ask for it with an
amendment). A coordinator records it once per version, for the whole study. From then on, a
participant whose consent in force was given on an older version is asked to consent on the
new form before their next interview (store.consents.renewal_due), on the web and on a tablet
offline alike; the interview already under way goes on under the consent it began with.
"""

from dataclasses import dataclass, field
from datetime import date, datetime

from flask_babel import gettext as _
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from interview.store.consents import (
    participant_consent,
    renewal_for,
    required_renewals,
)
from interview.store.models import (
    Consent,
    ConsentFormVersion,
    ConsentRenewal,
    Interview,
    Participant,
    User,
    utcnow,
)
from interview.sync.log import lock_writes, move_interviews_on
from interview.trust import audit

OPEN = ("planned", "in_progress", "paused")


class RenewalError(Exception):
    """The decision cannot be recorded; `code` says why, `message()` says it to a person."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code

    def message(self) -> str:
        """Return the reason in the user's language."""
        if self.code == "already":
            return _("Renewed consent is already asked for on this version of the consent form.")
        if self.code == "not_newest":
            return _("Renewed consent can be asked for on the newest consent form only.")
        return _("Confirm that every participant who consented on an older form is asked again.")


@dataclass
class OlderConsent:
    """A participant whose consent in force was given on an older form than the newest."""

    participant: Participant
    version: int
    consented_at: datetime
    # the version renewed consent is asked for (None: not asked), and the next open interview
    asked_version: int | None
    next_interview: Interview | None


@dataclass
class RenewalOverview:
    """The consent form versions and who, among the participants shown, consented on which."""

    versions: list[ConsentFormVersion]
    renewals: list[ConsentRenewal]
    older: list[OlderConsent] = field(default_factory=list)
    # participants shown whose consent in force was given on the newest version
    on_newest: int = 0

    @property
    def newest(self) -> ConsentFormVersion | None:
        """The newest published version, the one every new consent is given on."""
        return self.versions[0] if self.versions else None

    @staticmethod
    def published(version: ConsentFormVersion) -> date:
        """The day the version was published (its file's `published`)."""
        return date.fromisoformat(version.published)

    def renewal_of(self, version: ConsentFormVersion) -> ConsentRenewal | None:
        """The decision that this version needs renewed consent, if one was made."""
        return next((r for r in self.renewals if r.form_version_id == version.id), None)


def overview(session: Session, participants: Select) -> RenewalOverview:
    """Sum up, for the participants the statement selects, which form their consent is on."""
    versions = list(
        session.scalars(select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc()))
    )
    renewals = required_renewals(session)
    result = RenewalOverview(versions, renewals)
    if not versions:
        return result
    newest = versions[0].version
    rows = session.scalars(
        participants.where(Participant.status != "withdrawn")
        .options(
            selectinload(Participant.consents).selectinload(Consent.form_version),
            selectinload(Participant.interviews),
            selectinload(Participant.case),
        )
        .order_by(Participant.code)
    ).unique()
    for participant in rows:
        state = participant_consent(participant)
        if state is None:
            continue
        version = state.consent.form_version.version
        if version >= newest:
            result.on_newest += 1
            continue
        asked = renewal_for(state, renewals)
        upcoming = [iv for iv in participant.interviews if iv.status in OPEN]
        result.older.append(
            OlderConsent(
                participant=participant,
                version=version,
                consented_at=state.consent.obtained_at,
                asked_version=asked.form_version.version if asked else None,
                next_interview=min(upcoming, key=lambda iv: iv.planned_at) if upcoming else None,
            )
        )
    return result


@dataclass
class RenewalSummary:
    """What asking for renewed consent did, for the audit log: counts only."""

    version: int
    participants: int = 0
    interviews: int = 0


def require_renewal(
    session: Session, user: User, form_version: ConsentFormVersion, *, confirmed: bool
) -> RenewalSummary:
    """Record that `form_version` needs renewed consent, and tell the tablets (caller commits)."""
    if not confirmed:
        raise RenewalError("confirm")
    # the sync lock first: a consent arriving meanwhile is counted either before or after
    lock_writes(session)
    newest = session.scalars(
        select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
    ).first()
    if newest is None or newest.id != form_version.id:
        raise RenewalError("not_newest")
    if session.scalar(
        select(ConsentRenewal.id).where(ConsentRenewal.form_version_id == form_version.id)
    ):
        raise RenewalError("already")
    renewal = ConsentRenewal(
        form_version=form_version, required_at=utcnow(), required_by_id=user.id
    )
    session.add(renewal)
    session.flush()
    summary = RenewalSummary(version=form_version.version)
    renewals = required_renewals(session)
    # every tablet holding an interview of a participant who is now asked hears it at its next
    # sync (the interview's `consent_renewal`), so it asks offline too
    for participant in session.scalars(
        select(Participant)
        .where(Participant.status != "withdrawn")
        .options(selectinload(Participant.consents).selectinload(Consent.form_version))
    ):
        if renewal_for(participant_consent(participant), renewals) is renewal:
            summary.participants += 1
            summary.interviews += move_interviews_on(session, participant)
    audit.record(
        "consent_renewal_required",
        "consent_form",
        form_version.version,
        user_id=user.id,
        version=summary.version,
        participants=summary.participants,
        interviews=summary.interviews,
    )
    return summary
