"""The study's end: the desk's reminder as `STUDY_END_DATE` nears, and what `flask study end`
destroys (docs/data-protection.md §8.4).

At the end the link between participant codes and people goes: every row of the identity key
store (names, contact details, printed names, signature images), the paper form numbers that
point to signed paper forms, the identity data in consents still waiting in the sync log, and
the identity key that sealed them. The audio recordings go too, files and rows, as the
consent form promises (docs/recordings.md). The research data stays, under codes nobody can
link to a person any more. An audit row (`study_ended`, counts only) records that the end was
carried out; a second run finds nothing left to do.
"""

import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from flask import current_app
from flask_babel import format_date
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from interview.store.crypto import app_key, load_ring
from interview.store.database import scrub_sqlite_files
from interview.store.extensions import db
from interview.store.models import AuditEvent, Consent, Recording, SyncChange, User, utcnow
from interview.store.recordings import delete_all_recordings
from interview.trust import audit
from interview.trust.passwords import verify_password
from interview.web.i18n import today_in_oslo

# the desk reminds coordinators and admins this many days before the end date
REMINDER_DAYS = 60
ENDED = "study_ended"
# what a consent still waiting in the sync log hears (its tablet is told at its next sync)
ENDED_REASON = "the study has ended: no consent is recorded any more"


class StudyEndError(Exception):
    """The end cannot be carried out now; `code` says why, `message()` says it to a person."""

    def __init__(self, code: str, **values):
        super().__init__(code)
        self.code = code
        self.values = values

    def message(self) -> str:
        """Return the reason in the user's language."""
        if self.code == "no_date":
            return _("STUDY_END_DATE is not set: set the study's end date first.")
        if self.code == "bad_date":
            return _("STUDY_END_DATE must be a date written as YYYY-MM-DD.")
        if self.code == "early":
            return _(
                "The study ends on %(date)s. To end it before that date, run the command "
                "again with --before-end-date.",
                date=format_date(self.values["date"], "long"),
            )
        if self.code == "not_admin":
            return _("Only an active administrator can end the study (username or password wrong).")
        if self.code == "name":
            return _("The name typed is not the study's name. Nothing was changed.")
        return _("Something in the request was not right. Please go back and try again.")


def end_date() -> date | None:
    """Return STUDY_END_DATE as a date, None when unset; StudyEndError when malformed."""
    value = current_app.config.get("STUDY_END_DATE")
    if not value:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise StudyEndError("bad_date") from None


def study_name() -> str:
    """Return the study's name, as typed to confirm the end."""
    return str(current_app.config["STUDY_NAME"])


def ended_at(session: Session) -> datetime | None:
    """Return when the end was last carried out (naive UTC), or None."""
    return session.scalar(select(func.max(AuditEvent.at)).where(AuditEvent.action == ENDED))


@dataclass(frozen=True)
class Reminder:
    """The desk's reminder: the end date and the days left (0 or less once it has come)."""

    end: date
    days_left: int

    @property
    def passed(self) -> bool:
        """Whether the end date has come."""
        return self.days_left <= 0


def reminder(session: Session, today: date) -> Reminder | None:
    """Return the reminder from REMINDER_DAYS before the end date until the end is carried out."""
    try:
        end = end_date()
    except StudyEndError:
        return None  # the command says what is wrong with the setting
    if end is None or (end - today).days > REMINDER_DAYS:
        return None
    # asked only in the last weeks: the rest of the study no page pays for it
    if ended_at(session) is not None:
        return None
    return Reminder(end, (end - today).days)


def desk_reminder() -> Reminder | None:
    """Return the reminder for the person viewing the page: coordinators and admins only."""
    if not current_user.is_authenticated or current_user.role not in ("coordinator", "admin"):
        return None
    return reminder(db.session, today_in_oslo())


def check_admin(session: Session, username: str, password: str) -> User:
    """Return the active admin with this username and password; StudyEndError otherwise."""
    user = session.scalar(
        select(User).where(func.lower(User.username) == (username or "").strip().lower())
    )
    if (
        user is None
        or user.role != "admin"
        or not user.active
        or not verify_password(user.password_hash, password or "")
    ):
        raise StudyEndError("not_admin")
    return user


def check_date(today: date, before_end_date: bool) -> date:
    """Return the end date once it has come (or --before-end-date); StudyEndError otherwise."""
    end = end_date()
    if end is None:
        raise StudyEndError("no_date")
    if today < end and not before_end_date:
        raise StudyEndError("early", date=end)
    return end


def _destroyed_key_ids(session: Session) -> set[str]:
    """Return the identity key ids earlier ends destroyed (their audit rows name them)."""
    ids: set[str] = set()
    for detail in session.scalars(select(AuditEvent.detail).where(AuditEvent.action == ENDED)):
        ids.update((detail or {}).get("identity_key_ids") or [])
    return ids


@dataclass
class EndPlan:
    """What is left to destroy: rows per identity table, paper form numbers, waiting consents,
    and the identity key (its ids, and its file unless it comes from the environment)."""

    identity_rows: dict[str, int] = field(default_factory=dict)
    paper_numbers: int = 0
    waiting_consents: int = 0
    # audio recordings: the consent form promises they are deleted when the project ends
    recordings: int = 0
    key_ids: list[str] = field(default_factory=list)
    key_file: Path | None = None
    # the end was never carried out: the first run records it even with nothing to delete
    first: bool = False

    @property
    def key_in_environment(self) -> bool:
        """Whether a key to destroy comes from IDENTITY_KEY, which only the operator can remove."""
        return bool(self.key_ids) and self.key_file is None

    @property
    def work_left(self) -> bool:
        """Whether the command has anything left to do (an IDENTITY_KEY is the operator's)."""
        return bool(
            self.first
            or any(self.identity_rows.values())
            or self.paper_numbers
            or self.waiting_consents
            or self.recordings
            or self.key_file is not None
        )

    def as_detail(self) -> dict:
        """Return the counts for the audit log, with the ids of the keys (never a key)."""
        return {
            **{f"{name}_deleted": n for name, n in self.identity_rows.items()},
            "paper_form_numbers_scrubbed": self.paper_numbers,
            "consent_payloads_cleared": self.waiting_consents,
            "recordings_deleted": self.recordings,
            "identity_key_ids": self.key_ids,
            "key_file_removed": self.key_file is not None,
        }


def _identity_tables():
    # every table of the identity bind: what is added there later (the consent records of
    # issue 18) is destroyed with the rest without a change here
    return db.metadatas["identity"].sorted_tables


def _count(result) -> int:
    return max(result.rowcount or 0, 0)


def _consent_payloads():
    return (SyncChange.entity == "consent", SyncChange.payload_enc.is_not(None))


def plan_end(session: Session) -> EndPlan:
    """Count what the end would destroy now; changes nothing."""
    plan = EndPlan()
    for table in _identity_tables():
        plan.identity_rows[table.name] = session.scalar(
            select(func.count()).select_from(table), bind_arguments={"bind": db.engines["identity"]}
        )
    plan.paper_numbers = session.scalar(
        select(func.count()).where(Consent.paper_form_number.is_not(None))
    )
    plan.waiting_consents = session.scalar(select(func.count()).where(*_consent_payloads()))
    plan.recordings = session.scalar(select(func.count()).select_from(Recording))
    ring = app_key()
    # the file as it is on disk: once removed, the key lives on only in processes started
    # before, which the operator restarts
    path = Path(ring.path) if ring.path else None
    if path is None:
        ids = ring.ids()
    else:
        ids = load_ring(None, str(path)).ids() if path.exists() else []
    plan.first = ended_at(session) is None
    if plan.first:
        left = ids
    else:
        # a later start makes a fresh key when the file is gone; only the old one is left to do
        gone = _destroyed_key_ids(session)
        left = [kid for kid in ids if kid in gone]
    plan.key_ids = left
    plan.key_file = path if left else None
    return plan


def end_study(session: Session, admin: User, plan: EndPlan) -> EndPlan:
    """Destroy what the plan counts, audit it and commit; then remove the identity key file.

    Committed here, in this order: the rows go and the audit row is written first; the key
    file is removed only after that commit (a failure leaves it for the next run, which finds
    it by the key ids the audit row names). Returns what was done.
    """
    done = EndPlan(key_ids=plan.key_ids, key_file=plan.key_file, first=plan.first)
    for table in _identity_tables():
        done.identity_rows[table.name] = _count(
            session.execute(delete(table), bind_arguments={"bind": db.engines["identity"]})
        )
    # Consent records (the signed PDFs of issue 18) are kept with the identity key store: as
    # rows of the identity bind they go above; kept as files, delete them here and count them.
    done.paper_numbers = _count(
        session.execute(
            update(Consent)
            .where(Consent.paper_form_number.is_not(None))
            .values(paper_form_number=None)
            .execution_options(synchronize_session=False)
        )
    )
    # a consent still waiting for its interview carries a signature, a printed name or a paper
    # form number: it never applies now, its tablet is told, and the payload goes
    refused = _count(
        session.execute(
            update(SyncChange)
            .where(*_consent_payloads(), SyncChange.waiting_for.is_not(None))
            .values(
                status="rejected",
                rev=None,
                reason=ENDED_REASON,
                waiting_for=None,
                payload_enc=None,
                refused_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
    )
    cleared = _count(
        session.execute(
            update(SyncChange)
            .where(*_consent_payloads())
            .values(payload_enc=None)
            .execution_options(synchronize_session=False)
        )
    )
    done.waiting_consents = refused + cleared
    # their files go when this commits (interview/store/recordings.py)
    done.recordings = delete_all_recordings(session)
    audit.record(ENDED, "study", study_name()[:40], user_id=admin.id, **done.as_detail())
    session.commit()
    # the deleted rows' old pages leave the SQLite WAL (PostgreSQL: docs/data-protection.md)
    scrub_sqlite_files((None, "identity"))
    if done.key_file is not None:
        destroy_key_file(done.key_file)
    return done


def destroy_key_file(path: Path) -> None:
    """Overwrite a key file with random bytes, flush it to disk, and remove it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    # the overwrite is best effort (a journalling or flash file system may keep old blocks);
    # what makes the key gone for good is that no copy of it is left anywhere (the docs' steps)
    with open(path, "r+b") as fh:
        fh.write(os.urandom(max(size, 64)))
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
