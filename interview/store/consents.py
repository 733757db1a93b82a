"""The consent in force, item by item: the one reading every view, export and rule goes by.

Consent records are immutable and read in time order (docs/data-protection.md, *Withdrawal*):
- a "consent" that says yes to taking part starts a new consent in force, its answers as given
  (one that says no to taking part changes nothing, as flow.valid_consent always had it);
- a "partial" record (a partial withdrawal) turns the items it names to no from its time on;
- a "withdrawal" ends the consent in force: nothing is in force after it.

A consent in force given on an older form version than one a coordinator marked as needing
renewed consent is renewed before the participant's next interview (`renewal_due`).

Kept here, under every capability, so that the sync rules, the forms, the desk and the
exports all ask the same function.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from interview.store.models import (
    Consent,
    ConsentFormVersion,
    ConsentRenewal,
    Interview,
    Participant,
)

# the kind of a partial-withdrawal record (Consent.kind holds at most 12 characters)
PARTIAL = "partial"


@dataclass
class ConsentInForce:
    """The consent in force: the record that gave it, and each item's answer as it stands now."""

    consent: Consent
    items: dict[str, bool]
    # the items withdrawn since the consent was given, with when (naive UTC)
    withdrawn: dict[str, datetime] = field(default_factory=dict)

    def allows(self, item: str) -> bool:
        """Whether the item is consented to now (given and not withdrawn since)."""
        return bool(self.items.get(item))


def consent_in_force(consents: Iterable[Consent]) -> ConsentInForce | None:
    """Return the consent in force with later partial withdrawals applied, or None."""
    current: ConsentInForce | None = None
    # a partial withdrawal is dated after the consent it changes; on the same instant the
    # consent comes first, so a withdrawal never goes back before what it withdraws
    order = {"consent": 0, PARTIAL: 1, "withdrawal": 2}
    for record in sorted(consents, key=lambda c: (c.obtained_at, order.get(c.kind, 0))):
        answers = record.answers or {}
        if record.kind == "withdrawal":
            current = None
        elif record.kind == PARTIAL:
            if current is not None:
                for item, given in answers.items():
                    if given is False and current.items.get(item):
                        current.items[item] = False
                        current.withdrawn[item] = record.obtained_at
        elif answers.get("participate"):
            current = ConsentInForce(record, dict(answers))
    return current


def participant_consent(participant: Participant) -> ConsentInForce | None:
    """Return the participant's consent in force (their consent records, read in time order)."""
    return consent_in_force(participant.consents)


def quotes_refused(participant: Participant) -> bool:
    """Whether the participant's consent in force says no to quotes (never given, or withdrawn).

    A participant with no consent recorded yet is not refused here: the store may hear of the
    consent after a note (a tablet's changes arrive as they can), and no page lets a note be
    written before consent. The exports are stricter (`may_quote`).
    """
    state = participant_consent(participant)
    return state is not None and not state.allows("quotes")


def may_quote(participant: Participant) -> bool:
    """Whether the participant's notes may be shown as possible quotes: quotes are consented to."""
    state = participant_consent(participant)
    return state is not None and state.allows("quotes")


# -- renewed consent -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewalDue:
    """Consent to be renewed before an interview goes on, and why (docs/data-protection.md)."""

    # the version the coordinator asked renewed consent for; the form shown is the newest
    version: int
    required_at: datetime
    # the consent in force: the version it was given on, and when
    consented_version: int
    consented_at: datetime


def required_renewals(session: Session) -> list[ConsentRenewal]:
    """Every consent form version marked as needing renewed consent, newest version first."""
    return list(
        session.scalars(
            select(ConsentRenewal)
            .join(ConsentFormVersion, ConsentFormVersion.id == ConsentRenewal.form_version_id)
            .options(contains_eager(ConsentRenewal.form_version))
            .order_by(ConsentFormVersion.version.desc())
        )
    )


def renewal_for(
    state: ConsentInForce | None, renewals: list[ConsentRenewal]
) -> ConsentRenewal | None:
    """The newest renewal asked for a version newer than the consent in force was given on."""
    if state is None:
        return None
    given_on = state.consent.form_version.version
    return next((r for r in renewals if r.form_version.version > given_on), None)


def renewal_due(interview: Interview, renewals: list[ConsentRenewal]) -> RenewalDue | None:
    """Whether the participant must consent again before this interview goes on, and why.

    An interview that began before the coordinator's decision goes on under the consent it
    began with; every interview begun since (or not begun yet) asks for the new form first.
    """
    state = participant_consent(interview.participant)
    renewal = renewal_for(state, renewals)
    if renewal is None:
        return None
    if interview.started_at is not None and interview.started_at < renewal.required_at:
        return None
    return RenewalDue(
        version=renewal.form_version.version,
        required_at=renewal.required_at,
        consented_version=state.consent.form_version.version,
        consented_at=state.consent.obtained_at,
    )
