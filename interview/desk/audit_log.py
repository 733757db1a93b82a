"""The audit log as admins and coordinators read it: filters, the team rule, pages and CSV.

Which rows a coordinator sees (an admin sees every row). A row is about a team when:

1. its object belongs to a team: a `participant`, `interview` or `consent` (the participant's
   FACT team) or a `case` (that team). The object alone decides: a coordinator of both A and B
   who looked up a participant of B is seen by B's coordinators, never by A's, so no row tells
   one team anything about another team's participants;
2. its object is a person or their tablet: a `user` (a login, a logout, a rescue import of
   that peer's work) or a `device` (a tablet's sync): the teams that user works in now;
3. otherwise (no object, or a study-wide one: a theme of the shared codebook, an alert, an
   export, a key ring): the teams of the user who acted. A row nobody acted in (a command on
   the server: backup, restore, key rotation) is about no team: admins only.

A row about a participant who withdrew stays with that participant's team (the participant's
row and interviews are kept, only their research data goes). The rule is worked out by the
store (sub-queries of the team's participants, interviews, consents, users and tablets), so
a page reads 50 rows down the index on `at`, never every row.

No content is ever shown: the log holds none (docs/data-protection.md §7), and of `detail`
only the keys named for each action in `SAFE_DETAIL` are shown or exported, and only plain
values (numbers, yes/no, short codes): a key a later feature adds is left out until someone
looks at what it holds and names it here.
"""

import csv
import io
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from interview.desk.exports import CHUNK_SIZE, iso, safe_cell
from interview.store.models import (
    AuditEvent,
    Case,
    Consent,
    Device,
    Interview,
    Participant,
    User,
    user_cases,
)
from interview.web.i18n import day_format, day_text, oslo_to_utc, parse_day

PAGE_SIZE = 50
# a filter value longer than this is refused (usernames are at most 80 characters)
MAX_VALUE = 100
MAX_PAGE = 1_000_000
EXPORT_BATCH = 500

ACTION_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,59}")
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,80}")
CODE_PATTERN = re.compile(r"[A-Za-z0-9]{1,8}-[A-Za-z0-9]{1,7}")

# object types whose rows belong to a team by the object itself (rules 1 and 2 above)
TEAM_OBJECTS = ("participant", "interview", "consent", "case", "user", "device")

# what each action may show of its detail: ids, choices and counts only (see the callers of
# interview.trust.audit.record)
_SYNC_COUNTS = ("applied", "waiting", "duplicate", "conflict", "rejected", "retry")
SAFE_DETAIL: dict[str, frozenset[str]] = {
    "user_created": frozenset({"role"}),
    "user_updated": frozenset({"role"}),
    "session_ended": frozenset({"reason"}),
    "logout": frozenset({"deferred"}),
    "participant_withdrawn": frozenset(
        {
            "withdrawn_on",
            "form_version",
            "data_choice",
            "keep_data",
            "keep_identity",
            "interviews",
            "notes_deleted",
            "note_themes_deleted",
            "events_deleted",
            "debriefs_deleted",
            "sync_changes_scrubbed",
            "identity_deleted",
            "signatures_deleted",
            "consent_records_deleted",
            "recordings_deleted",
        }
    ),
    "consent_items_withdrawn": frozenset(
        {"items", "withdrawn_on", "form_version", "notes_unmarked", "recordings_deleted"}
    ),
    "consent_renewal_required": frozenset({"version", "participants", "interviews"}),
    "retention_run": frozenset(
        {"notes_cleared", "waiting_refused", "sync_changes", "devices", "update_log"}
    ),
    "study_ended": frozenset(
        {"paper_form_numbers_scrubbed", "consent_payloads_cleared", "recordings_deleted"}
    ),
    "recording_created": frozenset({"recording"}),
    "recording_ended": frozenset({"recording", "chunks", "stored", "complete", "reason"}),
    "sync_batch": frozenset(_SYNC_COUNTS),
    "rescue_import": frozenset({"store", "changes", "interrupted", "other_store", *_SYNC_COUNTS}),
    "export": frozenset({"format", "cases", "counts", "audio", "recordings", "debriefs"}),
    "recording_listened": frozenset({"recording", "via"}),
    "interview_record_printed": frozenset({"language", "notes"}),
    "progress_report_printed": frozenset({"language"}),
    "alert_acknowledged": frozenset({"kind"}),
    "theme_added": frozenset({"key"}),
    "theme_renamed": frozenset({"key"}),
    "keys_rotated": frozenset({"ring", "key_id", "resealed", "resumed"}),
    "backup_taken": frozenset({"keys_copied"}),
    "store_restored": frozenset(),
    "audit_log_viewed": frozenset(
        {"page", "rows", "filters", "what", "from", "to", "user", "code"}
    ),
    "audit_log_exported": frozenset({"rows", "filters", "what", "from", "to", "user", "code"}),
}
# a shown value: a number, yes/no, or a short code (no spaces: never a sentence)
_SAFE_TEXT = re.compile(r"[A-Za-z0-9._:@+-]{1,64}")

ACTIONS = {
    "login": _l("Logged in"),
    "login_failed": _l("Login failed"),
    "logout": _l("Logged out"),
    "session_ended": _l("Session ended"),
    "user_created": _l("User created"),
    "user_updated": _l("User changed"),
    "user_deactivated": _l("User deactivated"),
    "user_reactivated": _l("User reactivated"),
    "participant_registered": _l("Participant registered"),
    "interviewers_assigned": _l("Interviewers assigned"),
    "interview_planned": _l("Interview planned"),
    "identity_viewed": _l("Name and contact details viewed"),
    "consent_recorded": _l("Consent recorded"),
    "consent_record_downloaded": _l("Consent record downloaded"),
    "participant_withdrawn": _l("Withdrawal recorded"),
    "consent_items_withdrawn": _l("Consent items withdrawn"),
    "consent_renewal_required": _l("Renewed consent asked for"),
    "retention_run": _l("Old sync records removed"),
    "study_ended": _l("Study ended"),
    "sync_batch": _l("Tablet synced"),
    "rescue_import": _l("Rescue copy imported"),
    "recording_created": _l("Audio recording begun"),
    "recording_ended": _l("Audio recording ended"),
    "export": _l("Export downloaded"),
    "recording_listened": _l("Audio recording listened to"),
    "interview_record_printed": _l("Interview record printed"),
    "progress_report_printed": _l("Progress report printed"),
    "alert_acknowledged": _l("Alert marked as seen"),
    "theme_added": _l("Theme added"),
    "theme_renamed": _l("Theme renamed"),
    "theme_retired": _l("Theme retired"),
    "theme_restored": _l("Theme offered again"),
    "keys_rotated": _l("Keys rotated"),
    "backup_taken": _l("Backup taken"),
    "store_restored": _l("Store restored"),
    "audit_log_viewed": _l("Audit log viewed"),
    "audit_log_exported": _l("Audit log exported"),
}

CSV_COLUMNS = (
    "id",
    "at",
    "user",
    "action",
    "object_type",
    "object_id",
    "participant",
    "detail",
)


class FilterError(ValueError):
    """A filter that cannot be read; `message` says why in the user's language."""

    def __init__(self, message: str):
        super().__init__("bad audit log filter")
        self.message = message


@dataclass(frozen=True)
class Filters:
    """What the person asks for: who acted, which action, from and to (Oslo dates), a
    participant code, and the page."""

    who: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None
    code: str = ""
    page: int = 1

    def args(self, page: int | None = None) -> dict[str, str]:
        """Return the filters as query arguments (for links to other pages and the CSV)."""
        out = {
            "who": self.who,
            "action": self.action,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "code": self.code,
        }
        out = {k: v for k, v in out.items() if v}
        if page is not None and page != 1:
            out["page"] = str(page)
        return out

    def used(self) -> list[str]:
        """Return which filters are set, by name (what the audit row of a view records)."""
        return [k for k in ("who", "action", "from", "to", "code") if self.args().get(k)]


def _plain(value: str) -> str:
    """Refuse what no filter ever holds: control characters, lone surrogates, unassigned and
    private-use characters, and the mark of bytes that were no UTF-8."""
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Cn", "Co") or ch == "\ufffd" for ch in value):
        raise FilterError(_("A filter holds characters that cannot be used. Write it again."))
    return value


def _day(value: str, message: str) -> date | None:
    # 23.11.2026 or 2026-11-23, as every date field of the app reads it (never 11/23/2026)
    if not value:
        return None
    try:
        day = parse_day(value)
    except ValueError:
        raise FilterError(message) from None
    if not 2000 <= day.year <= 2100:
        raise FilterError(_("Choose a date between the years 2000 and 2100."))
    return day


def parse_filters(args: Mapping[str, str]) -> Filters:
    """Read the filters of a request's query; raise FilterError (a message) when one is bad."""
    values = {}
    for name in ("who", "action", "from", "to", "code", "page"):
        value = args.get(name) or ""
        if len(value) > MAX_VALUE:
            raise FilterError(_("A filter is too long. Write at most 100 characters."))
        values[name] = _plain(value).strip()
    who, action, code = values["who"], values["action"], values["code"].upper()
    if who and not USERNAME_PATTERN.fullmatch(who):
        raise FilterError(
            _("A username has only letters a-z, digits, dots, dashes and underscores.")
        )
    if action and not ACTION_PATTERN.fullmatch(action):
        raise FilterError(_("Choose an action from the list."))
    if code and not CODE_PATTERN.fullmatch(code):
        raise FilterError(_("Write a participant code like A-7K3Q."))
    how = {"format": day_format(), "example": day_text(date(2026, 11, 23))}
    date_from = _day(
        values["from"], _("Write the from date as %(format)s, for example %(example)s.", **how)
    )
    date_to = _day(
        values["to"], _("Write the to date as %(format)s, for example %(example)s.", **how)
    )
    if date_from and date_to and date_from > date_to:
        raise FilterError(_("The from date must come before the to date."))
    page = 1
    if values["page"]:
        if not values["page"].isdigit() or not 1 <= int(values["page"]) <= MAX_PAGE:
            raise FilterError(_("There is no such page."))
        page = int(values["page"])
    return Filters(who.lower(), action, date_from, date_to, code, page)


# --- which rows -------------------------------------------------------------------------------


def team_condition(case_ids: Iterable[int]):
    """The condition on audit_event of the rows about these teams (the rule above)."""
    ids = sorted(set(case_ids)) or [-1]
    users = select(user_cases.c.user_id).where(user_cases.c.case_id.in_(ids))
    participants = select(Participant.id).where(Participant.case_id.in_(ids))
    interviews = (
        select(Interview.id)
        .join(Participant, Participant.id == Interview.participant_id)
        .where(Participant.case_id.in_(ids))
    )
    consents = (
        select(Consent.id)
        .join(Participant, Participant.id == Consent.participant_id)
        .where(Participant.case_id.in_(ids))
    )
    codes = select(Case.code).where(Case.id.in_(ids))
    devices = select(Device.id).where(Device.user_id.in_(users))
    kind, obj = AuditEvent.object_type, AuditEvent.object_id
    return or_(
        and_(kind == "participant", obj.in_(participants)),
        and_(kind == "interview", obj.in_(interviews)),
        and_(kind == "consent", obj.in_(consents)),
        and_(kind == "case", obj.in_(codes)),
        and_(
            kind == "user",
            obj.in_(
                select(cast(user_cases.c.user_id, String)).where(user_cases.c.case_id.in_(ids))
            ),
        ),
        and_(kind == "device", obj.in_(devices)),
        and_(or_(kind.is_(None), kind.not_in(TEAM_OBJECTS)), AuditEvent.user_id.in_(users)),
    )


def _participant_condition(code: str):
    """The rows about one participant (by code): their own, their interviews', consents'."""
    participant = select(Participant.id).where(Participant.code == code).scalar_subquery()
    kind, obj = AuditEvent.object_type, AuditEvent.object_id
    return or_(
        and_(kind == "participant", obj == participant),
        and_(
            kind == "interview",
            obj.in_(select(Interview.id).where(Interview.participant_id == participant)),
        ),
        and_(
            kind == "consent",
            obj.in_(select(Consent.id).where(Consent.participant_id == participant)),
        ),
    )


def conditions(case_ids: Iterable[int] | None, filters: Filters) -> list:
    """The WHERE conditions of a view: the team rule (None: an admin, every row) and filters."""
    where = []
    if case_ids is not None:
        where.append(team_condition(case_ids))
    if filters.who:
        where.append(
            AuditEvent.user_id.in_(select(User.id).where(func.lower(User.username) == filters.who))
        )
    if filters.action:
        where.append(AuditEvent.action == filters.action)
    if filters.date_from:
        where.append(AuditEvent.at >= oslo_midnight(filters.date_from))
    if filters.date_to:
        where.append(AuditEvent.at < oslo_midnight(filters.date_to + timedelta(days=1)))
    if filters.code:
        where.append(_participant_condition(filters.code))
    return where


def oslo_midnight(day: date) -> datetime:
    """Return the start of a day in Oslo as naive UTC, as the store keeps times."""
    return oslo_to_utc(day, time(0, 0))


# the columns read: plain rows, never objects kept in the session (an export may read 100,000)
COLUMNS = (
    AuditEvent.id,
    AuditEvent.at,
    AuditEvent.user_id,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.detail,
)
NEWEST_FIRST = (AuditEvent.at.desc(), AuditEvent.id.desc())


def query_rows(case_ids: Iterable[int] | None, filters: Filters):
    """Return the statement of the rows asked for, newest first (ties by id: a stable order)."""
    return select(*COLUMNS).where(*conditions(case_ids, filters)).order_by(*NEWEST_FIRST)


# --- what is shown ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One audit row as it is shown: never content, only what SAFE_DETAIL allows."""

    id: int
    at: datetime
    username: str | None
    action: str
    object_type: str | None
    object_id: str | None
    participant_code: str | None
    detail: dict[str, Any]
    # the username of a `user` object (a login, a rescue import of that peer's work)
    object_name: str | None = None

    @property
    def label(self) -> str:
        """Return the action in the user's language (its code when it has no label)."""
        known = ACTIONS.get(self.action)
        return str(known) if known is not None else self.action

    def detail_text(self) -> str:
        """Return the shown detail as `key: value` pairs."""
        return "; ".join(f"{k}: {_value_text(v)}" for k, v in self.detail.items())


def _safe_value(value: Any) -> Any:
    """Return a detail value fit to show, or None (left out)."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return value if _SAFE_TEXT.fullmatch(value) else None
    if isinstance(value, list | tuple):
        items = [_safe_value(v) for v in value[:50]]
        return items if all(isinstance(v, str | int) for v in items) else None
    if isinstance(value, dict):
        out = {}
        for k, v in list(value.items())[:50]:
            if isinstance(k, str) and _SAFE_TEXT.fullmatch(k) and isinstance(v, int | bool):
                out[k] = v
        return out or None
    return None


def safe_detail(action: str, detail: Any) -> dict[str, Any]:
    """Return the keys of a row's detail that may be shown for its action, with plain values."""
    allowed = SAFE_DETAIL.get(action, frozenset())
    if not isinstance(detail, dict):
        return {}
    out = {}
    for key in sorted(allowed & set(detail)):
        value = _safe_value(detail[key])
        if value is not None:
            out[key] = value
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def entries(session: Session, rows: list) -> list[Entry]:
    """Turn audit rows into entries: the actor's username and the participant's code looked
    up for the rows at hand (a page, or a batch of the export)."""
    user_ids = {r.user_id for r in rows if r.user_id is not None}
    user_ids |= {
        int(r.object_id)
        for r in rows
        if r.object_type == "user" and r.object_id and r.object_id.isdigit()
    }
    names = (
        dict(session.execute(select(User.id, User.username).where(User.id.in_(user_ids))).all())
        if user_ids
        else {}
    )
    by_kind: dict[str, set[str]] = {}
    for r in rows:
        if r.object_type in ("participant", "interview", "consent") and r.object_id:
            by_kind.setdefault(r.object_type, set()).add(r.object_id)
    codes: dict[tuple[str, str], str] = {}
    if by_kind.get("participant"):
        for pid, code in session.execute(
            select(Participant.id, Participant.code).where(
                Participant.id.in_(by_kind["participant"])
            )
        ):
            codes[("participant", pid)] = code
    for kind, model in (("interview", Interview), ("consent", Consent)):
        if by_kind.get(kind):
            for oid, code in session.execute(
                select(model.id, Participant.code)
                .join(Participant, Participant.id == model.participant_id)
                .where(model.id.in_(by_kind[kind]))
            ):
                codes[(kind, oid)] = code
    return [
        Entry(
            id=r.id,
            at=r.at,
            username=names.get(r.user_id),
            action=r.action,
            object_type=r.object_type,
            object_id=r.object_id,
            participant_code=codes.get((r.object_type or "", r.object_id or "")),
            detail=safe_detail(r.action, r.detail),
            object_name=names.get(int(r.object_id))
            if r.object_type == "user" and r.object_id and r.object_id.isdigit()
            else None,
        )
        for r in rows
    ]


@dataclass
class Page:
    """One page of the log: its entries, the page number, how many rows and pages in all."""

    entries: list[Entry]
    number: int
    total: int
    pages: int
    filters: Filters = field(default_factory=Filters)


def page_of(session: Session, case_ids: Iterable[int] | None, filters: Filters) -> Page:
    """Return the page asked for; raise FilterError when the page is past the last one."""
    total = count(session, case_ids, filters)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if filters.page > pages:
        raise FilterError(_("There is no such page."))
    statement = query_rows(case_ids, filters).limit(PAGE_SIZE)
    rows = session.execute(statement.offset((filters.page - 1) * PAGE_SIZE)).all()
    return Page(entries(session, rows), filters.page, total, pages, filters)


def object_words() -> dict[str, str]:
    """Return what a row's object is, in the user's language, by object type."""
    return {
        "participant": _("Participant"),
        "interview": _("Interview"),
        "consent": _("Consent"),
        "consent_form": _("Consent form"),
        "case": _("Team"),
        "user": _("User"),
        "device": _("Tablet"),
        "theme": _("Theme"),
        "alert": _("Alert"),
        "key_ring": _("Key ring"),
    }


def known_actions(current: str = "") -> list[tuple[str, str]]:
    """Return the actions to choose from, (code, label in the user's language), by label."""
    choices = {code: str(label) for code, label in ACTIONS.items()}
    if current and current not in choices:
        choices[current] = current  # an action a later feature records, asked for by its code
    return sorted(choices.items(), key=lambda item: item[1].lower())


# --- the CSV for a data protection officer ----------------------------------------------------


def csv_chunks(
    session: Session, case_ids: Iterable[int] | None, filters: Filters
) -> Iterator[bytes]:
    """Yield the rows asked for as UTF-8 CSV with a BOM, as the app's exports are written
    (comma-separated, a formula-like cell made harmless), read EXPORT_BATCH rows at a time."""
    case_ids = None if case_ids is None else sorted(case_ids)
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)
    buf.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    where = conditions(case_ids, filters)
    last: tuple[datetime, int] | None = None
    while True:
        statement = select(*COLUMNS).where(*where)
        if last is not None:
            # the next batch after the last row sent, in the same order (no offset to walk)
            statement = statement.where(
                or_(
                    AuditEvent.at < last[0],
                    and_(AuditEvent.at == last[0], AuditEvent.id < last[1]),
                )
            )
        rows = session.execute(statement.order_by(*NEWEST_FIRST).limit(EXPORT_BATCH)).all()
        if not rows:
            break
        for entry in entries(session, rows):
            writer.writerow(
                [
                    safe_cell(v)
                    for v in (
                        entry.id,
                        iso(entry.at),
                        entry.username,
                        entry.action,
                        entry.object_type,
                        entry.object_id,
                        entry.participant_code,
                        entry.detail_text(),
                    )
                ]
            )
        last = (rows[-1].at, rows[-1].id)
        if buf.tell() >= CHUNK_SIZE:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
        if len(rows) < EXPORT_BATCH:
            break
    yield buf.getvalue().encode("utf-8")


def count(session: Session, case_ids: Iterable[int] | None, filters: Filters) -> int:
    """Return how many rows the filters select."""
    where = conditions(case_ids, filters)
    return session.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0


def view_detail(
    session: Session, case_ids: Iterable[int] | None, filters: Filters, rows: int
) -> dict[str, Any]:
    """Return what the audit row of a view or export of the log records: which filters were
    used, and their values where they name something the viewer may see (never typed text)."""
    detail: dict[str, Any] = {"rows": rows, "filters": filters.used()}
    if filters.action:
        detail["what"] = filters.action
    if filters.date_from:
        detail["from"] = filters.date_from.isoformat()
    if filters.date_to:
        detail["to"] = filters.date_to.isoformat()
    scope = None if case_ids is None else sorted(case_ids) or [-1]
    if filters.who:
        users = select(User.id).where(func.lower(User.username) == filters.who)
        if scope is not None:
            users = users.where(
                User.id.in_(select(user_cases.c.user_id).where(user_cases.c.case_id.in_(scope)))
            )
        user_id = session.scalar(users)
        if user_id is not None:
            detail["user"] = user_id
    if filters.code:
        participants = select(Participant.id).where(Participant.code == filters.code)
        if scope is not None:
            participants = participants.where(Participant.case_id.in_(scope))
        if session.scalar(participants) is not None:
            detail["code"] = filters.code
    return detail
