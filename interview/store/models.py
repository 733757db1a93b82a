"""The case store: typed models for every record of DESIGN section 2."""

import uuid
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from interview.store.extensions import db
from interview.store.sealed import SealedInit, sealed

ROLES = ("peer", "coordinator", "admin")
LANGUAGES = ("nb", "en")
PARTICIPANT_STATUSES = ("invited", "consented", "interviewed", "withdrawn")
INTERVIEW_STATUSES = ("planned", "in_progress", "paused", "completed", "stopped")
POLARITIES = ("inhibits", "promotes")
PLACE_KINDS = ("home", "cafe", "team_office", "other")
EVENT_KINDS = (
    "capacity_check",
    "reschedule",
    "start",
    "pause",
    "resume",
    "distress_1",
    "distress_2",
    "stop",
    "check_in",
    "complete",
    # the audio recording the participant agreed to (docs/recordings.md)
    "recording_started",
    "recording_stopped",
)


def utcnow() -> datetime:
    """Return the current time as a naive UTC datetime (how the store keeps times)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_uuid() -> str:
    """Return a fresh random UUID as text."""
    return str(uuid.uuid4())


def flag_identifiers(obj: Any, text: str | None) -> None:
    """Record on a row which kinds of identifier the guard finds in its free text."""
    from interview.store.identifiers import warning_kinds

    # kinds only ("phone email"), never the words: the store cannot search sealed text, so
    # the coordinator's count of flagged texts reads this column instead of opening each one
    obj.identifier_kinds = " ".join(warning_kinds(text)) or None


def _flagged_index(name: str) -> Index:
    """A partial index of a table's rows the identifier guard flagged, by interview."""
    where = sql_text("identifier_kinds IS NOT NULL")
    return Index(name, "interview_id", sqlite_where=where, postgresql_where=where)


user_cases = Table(
    "user_case",
    db.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("case_id", ForeignKey("case.id", ondelete="CASCADE"), primary_key=True),
)

participant_interviewers = Table(
    "participant_interviewer",
    db.metadata,
    Column("participant_id", ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True),
    # a peer's own participants are looked up by the peer on every interview page
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True),
)

note_themes = Table(
    "note_theme",
    db.metadata,
    Column("note_id", ForeignKey("note.id", ondelete="CASCADE"), primary_key=True),
    Column("theme_id", ForeignKey("theme.id", ondelete="CASCADE"), primary_key=True),
)


class Case(db.Model):
    """A FACT team: the unit the whole study files its work under."""

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    name_nb: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))

    staff_themes: Mapped[list["CaseStaffTheme"]] = relationship(
        back_populates="case", cascade="all, delete-orphan"
    )

    def name(self, lang: str) -> str:
        """Return the case name in the given language."""
        return self.name_en if lang == "en" else self.name_nb


class Theme(db.Model):
    """A code in the study's codebook; retired themes stay on old notes."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    name_nb: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def name(self, lang: str) -> str:
        """Return the theme name in the given language."""
        return self.name_en if lang == "en" else self.name_nb


class CaseStaffTheme(db.Model):
    """A theme the staff of a team named in their focus group, as inhibiting or promoting."""

    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), primary_key=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id"), primary_key=True)
    polarity: Mapped[str] = mapped_column(String(10))

    case: Mapped[Case] = relationship(back_populates="staff_themes")
    theme: Mapped[Theme] = relationship()


class User(UserMixin, db.Model):
    """A person who logs in: peer co-researcher, coordinator or admin."""

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    ui_language: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)

    cases: Mapped[list[Case]] = relationship(secondary=user_cases, order_by=Case.code)

    def get_id(self) -> str:
        """Return the session identity, which includes the session version."""
        return f"{self.id}:{self.session_version}"

    @property
    def is_active(self) -> bool:  # noqa: D102 - Flask-Login protocol
        return self.active

    @property
    def case_ids(self) -> set[int]:
        """Return the ids of the cases this user works in."""
        return {c.id for c in self.cases}


class Participant(db.Model):
    """A patient taking part, known in the research data only by a pseudonymous code."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    preferred_language: Mapped[str] = mapped_column(String(5), default="nb")
    status: Mapped[str] = mapped_column(String(20), default="invited")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    case: Mapped[Case] = relationship()
    interviewers: Mapped[list[User]] = relationship(
        secondary=participant_interviewers, order_by=User.username
    )
    interviews: Mapped[list["Interview"]] = relationship(
        back_populates="participant", order_by="Interview.planned_at"
    )
    consents: Mapped[list["Consent"]] = relationship(
        back_populates="participant", order_by="Consent.obtained_at"
    )


class _VersionedContent:
    """Columns of an immutable, versioned content file loaded into the store."""

    @declared_attr.directive
    def __table_args__(cls):  # noqa: N805 - a new constraint object per table
        return (UniqueConstraint("key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80))
    version: Mapped[int] = mapped_column(Integer)
    published: Mapped[str] = mapped_column(String(20))
    checksum: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    loaded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class GuideVersion(_VersionedContent, db.Model):
    """An immutable, versioned interview guide; the content is the parsed data file."""


class ConsentFormVersion(_VersionedContent, db.Model):
    """An immutable, versioned consent form in both languages."""


class ConsentRenewal(db.Model):
    """A coordinator's decision that a consent form version needs renewed consent.

    From `required_at`, a participant whose consent in force was given on an older version is
    asked to consent again, on this version or a newer one, before their next interview
    (store.consents.renewal_due). Once made, never edited: the audit log says who made it.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    form_version_id: Mapped[int] = mapped_column(ForeignKey("consent_form_version.id"), unique=True)
    required_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    required_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    form_version: Mapped[ConsentFormVersion] = relationship()


class Interview(db.Model):
    """One interview of one participant, pinned to the guide version it uses."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participant.id"), index=True)
    guide_version_id: Mapped[int] = mapped_column(ForeignKey("guide_version.id"))
    language: Mapped[str] = mapped_column(String(5))
    status: Mapped[str] = mapped_column(String(20), default="planned")
    place_kind: Mapped[str] = mapped_column(String(20), default="other")
    planned_at: Mapped[datetime] = mapped_column(DateTime)
    # the plan before any reschedule; status and times are folded from events on top of it
    first_planned_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    expected_end_at: Mapped[datetime | None] = mapped_column(DateTime)
    current_section: Mapped[int] = mapped_column(Integer, default=0)
    rev: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    participant: Mapped[Participant] = relationship(back_populates="interviews")
    guide_version: Mapped[GuideVersion] = relationship()
    notes: Mapped[list["Note"]] = relationship(
        back_populates="interview", order_by="Note.created_at"
    )
    events: Mapped[list["InterviewEvent"]] = relationship(
        back_populates="interview", order_by="InterviewEvent.recorded_at"
    )
    debriefs: Mapped[list["Debrief"]] = relationship(back_populates="interview")

    def debrief_of(self, user_id: int) -> "Debrief | None":
        """Return this interviewer's own debrief (each peer writes their own)."""
        return next((d for d in self.debriefs if d.author_id == user_id), None)


class Consent(db.Model):
    """An immutable consent (or later withdrawal) record; never edited."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participant.id"), index=True)
    interview_id: Mapped[str | None] = mapped_column(ForeignKey("interview.id"))
    form_version_id: Mapped[int] = mapped_column(ForeignKey("consent_form_version.id"))
    kind: Mapped[str] = mapped_column(String(12), default="consent")
    language: Mapped[str] = mapped_column(String(5))
    answers: Mapped[dict[str, bool]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(12))
    paper_form_number: Mapped[str | None] = mapped_column(String(40))
    obtained_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    obtained_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    rev: Mapped[int] = mapped_column(Integer, default=1)

    participant: Mapped[Participant] = relationship(back_populates="consents")
    form_version: Mapped[ConsentFormVersion] = relationship()
    obtained_by: Mapped[User | None] = relationship()


class Note(SealedInit, db.Model):
    """A block of text written under one question of one interview, with its tags."""

    SEALED = ("text", "conflict")

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    interview_id: Mapped[str] = mapped_column(ForeignKey("interview.id"), index=True)
    question_key: Mapped[str] = mapped_column(String(120))
    # the words are sealed at rest (interview/store/sealed.py); `text` reads and writes them
    text_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    text = sealed("text_enc", "text", on_set=flag_identifiers)
    # kinds the identifier guard found in the text ("phone email"), or NULL: the store cannot
    # search sealed words, so the coordinator's count reads this instead of opening every note
    identifier_kinds: Mapped[str | None] = mapped_column(String(60))
    polarity: Mapped[str | None] = mapped_column(String(10))
    possible_quote: Mapped[bool] = mapped_column(Boolean, default=False)
    # the other side's version of fields edited on two tablets at once (see docs/sync.md)
    conflict_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    conflict = sealed("conflict_enc", "conflict", as_json=True)
    field_revs: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    rev: Mapped[int] = mapped_column(Integer, default=1)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # where in a recording of the interview the note was begun (docs/recordings.md); no foreign
    # key: a recording deleted on a withdrawal of audio leaves the note as it was
    recording_id: Mapped[str | None] = mapped_column(String(36))
    recording_offset_ms: Mapped[int | None] = mapped_column(Integer)

    interview: Mapped[Interview] = relationship(back_populates="notes")
    themes: Mapped[list[Theme]] = relationship(secondary=note_themes, order_by=Theme.key)

    # the alerts page looks for the few notes in conflict or flagged by the identifier guard
    # among all the study's notes: indexes of only those, so it never walks every note
    __table_args__ = (
        Index(
            "ix_note_conflict",
            "interview_id",
            sqlite_where=sql_text("conflict_enc IS NOT NULL"),
            postgresql_where=sql_text("conflict_enc IS NOT NULL"),
        ),
        _flagged_index("ix_note_flagged"),
    )

    @property
    def conflict_text(self) -> str | None:
        """Return the other version's text when the text is in conflict."""
        return (self.conflict or {}).get("text")


class InterviewEvent(SealedInit, db.Model):
    """An append-only event in an interview: pause, distress step, stop, check-in."""

    SEALED = ("comment",)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    interview_id: Mapped[str] = mapped_column(ForeignKey("interview.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # a stop or distress comment is free text about a person in crisis: sealed, apart from data
    comment_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    comment = sealed("comment_enc", "comment", on_set=flag_identifiers)
    # what the identifier guard found in the comment (kinds only), as for a note's text
    identifier_kinds: Mapped[str | None] = mapped_column(String(60))
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    rev: Mapped[int] = mapped_column(Integer, default=1)

    interview: Mapped[Interview] = relationship(back_populates="events")

    __table_args__ = (_flagged_index("ix_interview_event_flagged"),)

    def __init__(self, **kwargs):
        data = dict(kwargs.get("data") or {})
        if "comment" in data:
            # the comment never rests in the plain JSON details
            kwargs["comment"] = data.pop("comment") or None
            kwargs["data"] = data
        super().__init__(**kwargs)

    @property
    def details(self) -> dict[str, Any]:
        """Return the event's details with its comment, as one table."""
        out = dict(self.data or {})
        if self.comment:
            out["comment"] = self.comment
        return out


class Debrief(SealedInit, db.Model):
    """The peer's reflection and wellbeing after an interview; one per interviewer."""

    __table_args__ = (
        UniqueConstraint("interview_id", "author_id"),
        _flagged_index("ix_debrief_flagged"),
    )
    SEALED = ("reflection", "conflict")

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    interview_id: Mapped[str] = mapped_column(ForeignKey("interview.id"), index=True)
    wellbeing: Mapped[int] = mapped_column(Integer)
    reflection_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    reflection = sealed("reflection_enc", "reflection", on_set=flag_identifiers)
    # what the identifier guard found in the reflection (kinds only), as for a note's text
    identifier_kinds: Mapped[str | None] = mapped_column(String(60))
    wants_debrief_talk: Mapped[bool] = mapped_column(Boolean, default=False)
    participant_follow_up: Mapped[bool] = mapped_column(Boolean, default=False)
    conflict_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    conflict = sealed("conflict_enc", "conflict", as_json=True)
    field_revs: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    rev: Mapped[int] = mapped_column(Integer, default=1)

    interview: Mapped[Interview] = relationship(back_populates="debriefs")


class AuditEvent(db.Model):
    """Who did what and when; never note text or identity data."""

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    # the audit log screen finds one participant's rows among a study's 100,000 by their object
    __table_args__ = (Index("ix_audit_event_object", "object_type", "object_id"),)


class AlertAck(db.Model):
    """A coordinator has seen an alert; the key names the alert's kind and its occurrence."""

    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    key: Mapped[str] = mapped_column(String(120))
    acknowledged_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))


class SyncChange(SealedInit, db.Model):
    """One change from a tablet (or a form), claimed by its change_id so it applies at most once."""

    SEALED = ("payload",)

    change_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    device_id: Mapped[str | None] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(20))
    record_id: Mapped[str] = mapped_column(String(36))
    digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    rev: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(200))
    # kept only while the change waits for the record it refers to
    waiting_for: Mapped[str | None] = mapped_column(String(36), index=True)
    # sealed: a waiting change may carry a note's words
    payload_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload = sealed("payload_enc", "payload", as_json=True)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # the participant a waiting change belongs to, recorded when it is parked, so a
    # withdrawal finds it without opening anyone's payload
    participant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # a change answered `applied` while it waited and refused later (expired, withdrawn,
    # refused when its record arrived): the tablet that sent it is told once (told_at)
    refused_at: Mapped[datetime | None] = mapped_column(DateTime)
    told_at: Mapped[datetime | None] = mapped_column(DateTime)

    # every sync asks for its device's refusals not yet told: never a scan of the whole log
    __table_args__ = (Index("ix_sync_change_device_refused", "device_id", "refused_at"),)


class UpdateLog(db.Model):
    """A record changed in the store, in commit order: what `updates since cursor` reads."""

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entity: Mapped[str] = mapped_column(String(20))
    record_id: Mapped[str] = mapped_column(String(36))
    participant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SyncCounter(db.Model):
    """A single row whose lock orders every write, so a cursor never skips a late commit."""

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Device(db.Model):
    """A tablet's store that syncs: when it last did, and how many changes it said it holds.

    The id is the `device_id` the tablet made when it created its IndexedDB store, so it names
    the store: a browser whose store was deleted (Safari, after seven days unused) comes back
    with a new one (interview/sync/devices.py).
    """

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    last_sync_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    first_sync_at: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow)
    # the browser's `fact_browser` cookie: a new store in the same browser replaced this one
    browser_id: Mapped[str | None] = mapped_column(String(36))
    # ids of the interviews the changes still waiting on the tablet belong to
    pending_interviews: Mapped[list[str] | None] = mapped_column(JSON)
    # the store that replaced this one, and when the server found work waiting here was lost
    replaced_by: Mapped[str | None] = mapped_column(String(64))
    lost_at: Mapped[datetime | None] = mapped_column(DateTime)


class IdentityEntry(db.Model):
    """The key linking a participant code to a person (koblingsnøkkel), kept in its own store."""

    __bind_key__ = "identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    participant_id: Mapped[str] = mapped_column(String(36), unique=True)
    name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    contact_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ConsentSignature(db.Model):
    """Signed-consent identity data (printed name, signature image), kept in the identity store."""

    __bind_key__ = "identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    consent_id: Mapped[str] = mapped_column(String(36), unique=True)
    participant_id: Mapped[str] = mapped_column(String(36), index=True)
    printed_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    signature_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ConsentRecord(db.Model):
    """A consent's signed record: the PDF the server rendered of it, sealed, in the identity store.

    Rendered once and never again: its SHA-256 is the record's fingerprint from then on.
    """

    __bind_key__ = "identity"

    consent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(36), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    pdf_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Recording(db.Model):
    """An audio recording of an interview, kept as the tablet encrypted it (docs/recordings.md).

    The sound is in files under RECORDINGS_DIR, one per chunk; the row holds what is needed to
    find, check and open them: the AES key wrapped to the study key (`kid`), never the key.
    """

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    interview_id: Mapped[str] = mapped_column(ForeignKey("interview.id"), index=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participant.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    device_id: Mapped[str | None] = mapped_column(String(36))
    mime: Mapped[str] = mapped_column(String(80))
    kid: Mapped[str] = mapped_column(String(16))
    wrapped_key: Mapped[str] = mapped_column(String(1400))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(30))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    expected_chunks: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    interview: Mapped[Interview] = relationship()
    chunks: Mapped[list["RecordingChunk"]] = relationship(
        order_by="RecordingChunk.seq", cascade="all, delete-orphan"
    )


class RecordingChunk(db.Model):
    """One chunk of a recording as received: its file's size and SHA-256, its place in time."""

    recording_id: Mapped[str] = mapped_column(ForeignKey("recording.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    start_ms: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
