"""The interview record for the archive: one interview's facts, notes, events and debriefs."""

from dataclasses import dataclass, field

from interview.store.consents import ConsentInForce, participant_consent
from interview.store.content import Guide
from interview.store.models import Consent, Debrief, Interview, InterviewEvent, Note

ENDED = ("completed", "stopped")


@dataclass
class RecordQuestion:
    """A guide question with the notes written under it."""

    number: str
    key: str
    text: dict
    notes: list[Note] = field(default_factory=list)


@dataclass
class RecordSection:
    """A guide section with its questions."""

    title: dict
    questions: list[RecordQuestion]


@dataclass
class InterviewRecord:
    """Everything the archive keeps of one interview; no identity data."""

    interview: Interview
    guide: Guide
    consent: Consent | None
    # the consent's items as they stand now, partial withdrawals applied
    consent_state: ConsentInForce | None
    sections: list[RecordSection]
    # notes under a question key the guide version does not have (should not happen; kept)
    other_notes: list[Note]
    events: list[InterviewEvent]
    debriefs: list[Debrief]
    # who worked on the interview (notes, events, debriefs), by username
    interviewers: list[str]
    authors: dict[int, str]

    @property
    def note_count(self) -> int:
        """Return how many notes the record holds."""
        return sum(len(q.notes) for s in self.sections for q in s.questions) + len(self.other_notes)

    @property
    def quotes(self) -> bool:
        """Whether notes may be shown as possible quotes: the consent in force allows quotes."""
        return self.consent_state is not None and self.consent_state.allows("quotes")


def people_of(interview: Interview) -> set[int]:
    """Return the ids of the users who wrote notes or debriefs or recorded events."""
    ids = {n.author_id for n in interview.notes}
    ids |= {d.author_id for d in interview.debriefs}
    ids |= {e.recorded_by_id for e in interview.events}
    return {i for i in ids if i is not None}


def interview_record(
    interview: Interview, guide: Guide, usernames: dict[int, str]
) -> InterviewRecord:
    """Gather one interview's record: notes under their questions in guide order.

    `usernames` names the people of `people_of(interview)`; the interviewers are those who
    did the work, not whoever is assigned to the participant today.
    """
    notes = [n for n in interview.notes if n.deleted_at is None]
    by_key: dict[str, list[Note]] = {}
    for n in sorted(notes, key=lambda n: (n.created_at, n.id)):
        by_key.setdefault(n.question_key, []).append(n)
    sections = []
    for si, s in enumerate(guide.sections, start=1):
        questions = [
            RecordQuestion(f"{si}.{qi}", q.key, q.text, by_key.pop(q.key, []))
            for qi, q in enumerate(s.questions, start=1)
        ]
        sections.append(RecordSection(s.title, questions))
    other = [n for key in sorted(by_key) for n in by_key[key]]
    state = participant_consent(interview.participant)
    return InterviewRecord(
        interview=interview,
        guide=guide,
        consent=state.consent if state else None,
        consent_state=state,
        sections=sections,
        other_notes=other,
        events=sorted(interview.events, key=lambda e: (e.recorded_at, e.id)),
        debriefs=sorted(interview.debriefs, key=lambda d: (d.created_at, d.id)),
        interviewers=sorted(
            {usernames[i] for i in people_of(interview) if i in usernames}
            or {u.username for u in interview.participant.interviewers}
        ),
        authors=usernames,
    )
