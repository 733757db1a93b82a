"""Partial withdrawal: the participant takes back single items of their consent.

The consent form promises it ("you can also withdraw only part of your consent, for example
to audio recording or quotes"). The coordinator records it as a new immutable consent record
(kind "partial", store/consents.py): the withdrawn items answered no, the day, the form
version of the consent in force, and who recorded it. The participant stays in the study;
what the items covered goes:
- quotes: every "possible quote" mark on the participant's notes is taken off through the
  sync rules (so the update log tells the tablets), and no note of theirs can be marked again
  (the form and the sync refuse it) or be shown as a possible quote anywhere;
- audio: the recordings are deleted, their files and rows (`delete_recordings`);
- recontact: the participant's page says they may not be contacted again.
Every interview of the participant moves on a rev, so each tablet that holds one hears the
consent in force at its next sync. Withdrawing "participate" is the whole withdrawal
(withdrawal.py), never this.
"""

from dataclasses import asdict, dataclass, field
from datetime import date

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interview.participants.withdrawal import (
    WithdrawalError,
    check_date,
    withdrawn_at,
)
from interview.store.consents import PARTIAL, ConsentInForce, participant_consent
from interview.store.models import Consent, Interview, Note, Participant, User
from interview.store.recordings import delete_participant_recordings
from interview.sync.batch import apply_changes, web_change
from interview.sync.log import lock_writes, move_interviews_on
from interview.web.labels import label


class PartialWithdrawalError(WithdrawalError):
    """A partial withdrawal that cannot be recorded; `message()` says why to a person.

    The date's reasons (`future`, `too_early`) are a withdrawal's own.
    """

    @property
    def status(self) -> int:
        """Return the HTTP status: 409 where the participant's state forbids it, else 400."""
        return 409 if self.code in ("withdrawn", "no_consent", "busy") else 400

    def message(self) -> str:
        """Return the reason in the user's language."""
        item = label("consent_item", self.values.get("item"))
        if self.code == "withdrawn":
            return _("This participant has withdrawn from the study. Nothing was changed.")
        if self.code == "no_consent":
            return _("This participant has no consent in force, so there is nothing to withdraw.")
        if self.code == "none":
            return _("Choose at least one consent item to withdraw.")
        if self.code == "participate":
            return _(
                "Withdrawing consent to take part is a full withdrawal. "
                "Use \u201cRecord a withdrawal\u201d instead."
            )
        if self.code == "unknown":
            return _("This consent item is not on the participant's consent form.")
        if self.code == "not_given":
            return _(
                "\u201c%(item)s\u201d is not part of the consent in force: it was never given "
                "or has already been withdrawn. Nothing was changed.",
                item=item,
            )
        if self.code == "busy":
            return _("The notes could not be changed just now. Nothing was changed; try again.")
        return super().message()


@dataclass
class PartialSummary:
    """What a partial withdrawal did: the items and how many rows changed; never any content."""

    consent_id: str
    items: list[str]
    withdrawn_on: str
    form_version: int
    notes_unmarked: int = 0
    recordings_deleted: int = 0
    interviews: int = 0
    unmarked_ids: list[str] = field(default_factory=list, repr=False)

    def as_detail(self) -> dict:
        """Return the summary for the audit log (items, choices and counts only)."""
        detail = asdict(self)
        detail.pop("unmarked_ids")
        return detail


def withdrawable_items(state: ConsentInForce) -> list[str]:
    """Return the optional items of the consent form in force, in the form's order."""
    content = state.consent.form_version.content
    return [i["key"] for i in content.get("items", []) if not i.get("required")]


def check_items(participant: Participant, items: list[str]) -> ConsentInForce:
    """Return the consent in force if every item can be withdrawn from it; raise otherwise."""
    if participant.status == "withdrawn":
        raise PartialWithdrawalError("withdrawn")
    state = participant_consent(participant)
    if state is None:
        raise PartialWithdrawalError("no_consent")
    if not items:
        raise PartialWithdrawalError("none")
    optional = withdrawable_items(state)
    for item in items:
        if item == "participate":
            raise PartialWithdrawalError("participate")
        if item not in optional:
            raise PartialWithdrawalError("unknown")
        if not state.allows(item):
            raise PartialWithdrawalError("not_given", item=item)
    return state


def withdraw_items(
    session: Session,
    participant: Participant,
    *,
    items: list[str],
    withdrawn_on: date,
    user: User,
) -> PartialSummary:
    """Record the withdrawal of single consent items and undo what they covered; the caller
    commits (and audits `as_detail()`)."""
    # the write-order lock first: a tablet's quote mark either lands before (and is taken off
    # here) or after (and meets the partial withdrawal and is refused)
    lock_writes(session)
    session.refresh(participant)
    state = check_items(participant, items)
    items = [k for k in withdrawable_items(state) if k in items]  # once each, as on the form
    try:
        check_date(participant, withdrawn_on)
    except WithdrawalError as exc:
        raise PartialWithdrawalError(exc.code, **exc.values) from None
    record = Consent(
        participant_id=participant.id,
        interview_id=None,
        form_version_id=state.consent.form_version_id,
        kind=PARTIAL,
        language=state.consent.language,
        answers=dict.fromkeys(items, False),
        method="coordinator",
        obtained_at=withdrawn_at(participant, withdrawn_on),
        obtained_by_id=user.id,
        rev=1,
    )
    session.add(record)
    participant.consents.append(record)
    session.flush()
    summary = PartialSummary(
        consent_id=record.id,
        items=items,
        withdrawn_on=withdrawn_on.isoformat(),
        form_version=state.consent.form_version.version,
    )
    if "quotes" in items:
        summary.unmarked_ids = unmark_quotes(session, participant, user)
        summary.notes_unmarked = len(summary.unmarked_ids)
    if "audio" in items:
        summary.recordings_deleted = delete_recordings(session, participant)
    # every tablet that holds one of the interviews hears the consent in force at its next sync
    summary.interviews = move_interviews_on(session, participant)
    session.flush()
    return summary


def unmark_quotes(session: Session, participant: Participant, user: User) -> list[str]:
    """Take the "possible quote" mark off every note of the participant; return their ids.

    Through the sync rules, as a form's edit would be: each note moves on a rev and the update
    log tells the tablets, so no tablet keeps showing the mark.
    """
    notes = session.execute(
        select(Note.id, Note.rev)
        .join(Interview, Interview.id == Note.interview_id)
        .where(Interview.participant_id == participant.id, Note.possible_quote.is_(True))
        .order_by(Note.id)
    ).all()
    if not notes:
        return []
    changes = [web_change("note", n.id, n.rev, {"possible_quote": False}) for n in notes]
    results = apply_changes(session, user, changes, device_id=None)
    if any(r.status not in ("applied", "duplicate") for r in results):
        # never half done: the caller rolls back, and nothing of the withdrawal is kept
        raise PartialWithdrawalError("busy")
    return [n.id for n in notes]


def delete_recordings(session: Session, participant: Participant) -> int:
    """Delete the participant's audio recordings after they withdrew consent to audio.

    The files and their rows (interview/store/recordings.py): the rows now, the files when
    the withdrawal commits. A chunk the tablet sends afterwards is answered 410 and dropped
    there. Returns how many went; the partial withdrawal audits that count.
    """
    return delete_participant_recordings(session, participant.id)


def marked_quotes(session: Session, participant: Participant) -> int:
    """Count the participant's live notes marked as possible quotes (for the page, not content)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Note)
            .join(Interview, Interview.id == Note.interview_id)
            .where(
                Interview.participant_id == participant.id,
                Note.possible_quote.is_(True),
                Note.deleted_at.is_(None),
            )
        )
        or 0
    )
