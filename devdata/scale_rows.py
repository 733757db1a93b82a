"""The rows of one fictional participant at scale: consents, interviews and their events,
notes, debriefs, written as plain dicts for bulk inserts.
"""

import json
import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session

from devdata.words import SENTENCES, _Texts
from interview.store.crypto import research_key, seal
from interview.store.models import (
    PLACE_KINDS,
    Note,
    note_themes,
)
from interview.sync.merge import fold_events

CHUNK = 5000


def _chunks(rows: list[dict], size: int = CHUNK) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class _Seeder:
    """One run of the generator: the random source, the rows gathered and the counts."""

    def __init__(self, session: Session, rng: random.Random, now: datetime, seed: int):
        self.session = session
        self.rng = rng
        self.now = now
        self.key = research_key()
        self.texts = _Texts(seed)
        self.counts: dict[str, int] = {}
        # (at, entity, record id, participant id): the update log, written at the end
        self.log: list[tuple[datetime, str, str, str | None]] = []

    # --- helpers ---------------------------------------------------------------------------

    def uuid(self) -> str:
        """Return a random UUID (version 4 form) from the seeded generator."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def seal(self, table: str, field: str, row_id: str, plain: str) -> bytes:
        """Seal a value the way the model attribute does (see interview/store/sealed.py)."""
        return seal(self.key, plain, f"{table}.{field}.{row_id}")

    def insert(self, table, rows: list[dict], name: str | None = None) -> None:
        """Insert rows with Core executemany in chunks, and count them."""
        for chunk in _chunks(rows):
            self.session.execute(insert(table), chunk)
        if name:
            self.counts[name] = self.counts.get(name, 0) + len(rows)

    def minutes(self, low: float, high: float) -> timedelta:
        """Return a random span of whole minutes between low and high."""
        return timedelta(minutes=self.rng.randint(int(low), int(high)))

    def at_day(self, day: date) -> datetime:
        """Return a working-hours time (Oslo 08:00-15:45, as naive UTC) on the given day."""
        return datetime(day.year, day.month, day.day, self.rng.randint(7, 14)) + timedelta(
            minutes=15 * self.rng.randint(0, 3)
        )


class _Rows:
    """The rows of participants and their records, gathered before they are inserted."""

    def __init__(self):
        self.participants: list[dict] = []
        self.interviews: list[dict] = []
        self.consents: list[dict] = []
        self.events: list[dict] = []
        self.debriefs: list[dict] = []
        # started interviews of participants who have not withdrawn: where notes go
        self.note_holders: list[dict] = []
        # (kind, key, at) of alerts that debriefs and distress events raise
        self.alerts: list[tuple[str, str, datetime]] = []


def _participant(
    s: _Seeder,
    plan: dict,
    guide,
    guide_id: int,
    form_id: int,
    coordinator_id: int | None,
    history_days: int,
    rows: _Rows,
) -> None:
    """Generate one participant's interview(s), consent, events and debriefs."""
    rng, now, course = s.rng, s.now, plan["course"]
    lang, interviewers = plan["language"], plan["interviewers"]
    sections = len(guide.sections)
    today = now.date()

    def day_ago(low: int, high: int) -> datetime:
        return s.at_day(today - timedelta(days=rng.randint(low, max(low, high))))

    def future(low_hours: int, high_days: int) -> datetime:
        at = s.at_day(today + timedelta(days=rng.randint(0, high_days)))
        return at if at > now + timedelta(hours=low_hours) else at + timedelta(days=1)

    events: list[dict] = []

    def event(at: datetime, kind: str, data: dict | None = None, comment: str | None = None):
        row_id = s.uuid()
        events.append(
            {
                "id": row_id,
                "kind": kind,
                "data": data or {},
                "comment_enc": s.seal("interview_event", "comment", row_id, comment)
                if comment
                else None,
                "recorded_at": at,
                "recorded_by_id": rng.choice(interviewers),
                "rev": 1,
            }
        )
        return row_id

    planned = started = None
    minutes = rng.choice((60, 75, 75, 75, 90))
    section = 0
    if course in ("completed", "withdrawn", "stopped", "distress"):
        planned = day_ago(12 if course == "withdrawn" else 1, history_days)
        started = planned + s.minutes(0, 15)
        if course in ("completed", "withdrawn"):
            ended = started + s.minutes(40, 95)
            section = sections - 1
        else:
            ended = started + s.minutes(10, 50)
            section = rng.randint(0, max(0, sections - 2))
        event(started, "capacity_check", {"outcome": "ok", "minutes": minutes})
        span = (ended - started).total_seconds() / 60
        if rng.random() < 0.1 and span > 30:
            paused = started + s.minutes(10, span / 2)
            event(paused, rng.choice(("pause", "pause", "distress_1")))
            event(paused + s.minutes(3, 12), "resume")
        if rng.random() < 0.25 and span > 20:
            event(started + s.minutes(15, span - 3), "check_in")
        if course in ("completed", "withdrawn"):
            event(ended, "complete")
        elif course == "distress":
            comment = rng.choice(SENTENCES[lang]["comment"]) if rng.random() < 0.6 else None
            distress_id = event(ended, "distress_2", {"contact_team": rng.random() < 0.7}, comment)
            event(ended + timedelta(seconds=1), "stop", {"reason": "distress"})
            rows.alerts.append(("distress_2", distress_id, ended))
        else:
            reason = rng.choice(("participant_wish", "practical", "other"))
            comment = rng.choice(SENTENCES[lang]["comment"]) if rng.random() < 0.3 else None
            event(ended, "stop", {"reason": reason}, comment)
    elif course in ("in_progress", "paused"):
        started = now - s.minutes(10, 170)
        planned = started.replace(minute=started.minute - started.minute % 15, second=0)
        event(started, "capacity_check", {"outcome": "ok", "minutes": minutes})
        elapsed = (now - started).total_seconds() / 60
        section = min(sections - 1, int(sections * min(elapsed / minutes, 0.95)))
        if rng.random() < 0.4 and elapsed > 12:
            event(started + s.minutes(5, elapsed - 3), "check_in")
        if elapsed > minutes + 5 and rng.random() < 0.5:
            # "all is well" after the expected end: the overdue alert waits for the grace again
            event(now - s.minutes(1, min(elapsed - minutes, 60)), "check_in")
        if course == "paused":
            event(now - s.minutes(1, min(10, elapsed - 2)), rng.choice(("pause", "distress_1")))
    elif course == "planned":
        planned = future(1, 42)
    elif course == "overdue":
        planned = day_ago(1, 21)
        if planned > now - timedelta(hours=2):
            planned -= timedelta(days=1)
    elif course == "rescheduled":
        original = future(1, 10) if rng.random() < 0.5 else day_ago(1, 10)
        new_time = original + timedelta(days=rng.randint(3, 21))
        if new_time <= now:
            new_time = future(1, 14)
        asked = min(original - s.minutes(60, 48 * 60), now - timedelta(minutes=5))
        reason = rng.choice(("participant_asked", "practical"))
        event(asked, "reschedule", {"reason": reason, "new_time": new_time.isoformat()})
        planned = original
    elif course == "declined":
        planned = day_ago(1, 60)
        event(planned + s.minutes(0, 10), "stop", {"reason": "declined"})

    # the participant was registered some days before the first plan
    first = planned or now - s.minutes(0, 30 * 24 * 60)
    created = first - timedelta(days=rng.randint(3, 30), minutes=rng.randint(0, 600))
    status = {
        "completed": "interviewed",
        "withdrawn": "withdrawn",
        "in_progress": "consented",
        "paused": "consented",
        "stopped": "consented",
        "distress": "consented",
    }.get(course, "invited")
    rows.participants.append(
        {
            "id": plan["id"],
            "code": plan["code"],
            "case_id": plan["case_id"],
            "preferred_language": lang,
            "status": status,
            "created_at": created,
            "created_by_id": coordinator_id,
        }
    )
    s.log.append((created, "participant", plan["id"], plan["id"]))
    if planned is None:
        return

    interview_id = s.uuid()
    folded = [(e["recorded_at"], e["id"], e["kind"], e["data"]) for e in events]
    state = fold_events(folded, planned)
    # every event that changed the state moved the interview on a rev, as refold does
    rev, previous = 1, fold_events([], planned)
    for k in range(1, len(folded) + 1):
        current = fold_events(folded[:k], planned)
        if (current.status, current.started_at, current.ended_at, current.planned_at) != (
            previous.status,
            previous.started_at,
            previous.ended_at,
            previous.planned_at,
        ):
            rev += 1
        previous = current
    rev += section  # the guide's place moved forward one section at a time
    withdrawn = course == "withdrawn"
    if withdrawn:
        rev += 1  # the withdrawal moves every interview of the participant on a rev
    # planned a day or two after registration, and before anything happened in it
    earliest = min([planned, *(e["recorded_at"] for e in events)])
    interview_created = min(
        created + timedelta(days=rng.randint(0, 2)), earliest - timedelta(hours=1)
    )
    interview_created = max(interview_created, created)
    last_change = max([interview_created, *(e["recorded_at"] for e in events)])
    rows.interviews.append(
        {
            "id": interview_id,
            "participant_id": plan["id"],
            "guide_version_id": guide_id,
            "language": lang,
            "status": state.status,
            "place_kind": rng.choice(PLACE_KINDS),
            "planned_at": state.planned_at,
            "first_planned_at": planned if events else None,
            "started_at": state.started_at,
            "ended_at": state.ended_at,
            "expected_end_at": state.expected_end_at,
            "current_section": section,
            "rev": rev,
            "created_at": interview_created,
            "updated_at": last_change,
            "created_by_id": coordinator_id,
        }
    )
    s.log.append((last_change, "interview", interview_id, plan["id"]))

    if state.started_at is not None:
        consent_id = s.uuid()
        consent_at = state.started_at + s.minutes(2, 6)
        obtained_by = rng.choice(interviewers)
        rows.consents.append(
            {
                "id": consent_id,
                "participant_id": plan["id"],
                "interview_id": interview_id,
                "form_version_id": form_id,
                "kind": "consent",
                "language": lang,
                "answers": {
                    "participate": True,
                    "audio": rng.random() < 0.6,
                    "quotes": rng.random() < 0.8,
                    "recontact": rng.random() < 0.7,
                },
                "method": "paper",
                "paper_form_number": f"P-{plan['code']}",
                "obtained_at": consent_at,
                "obtained_by_id": obtained_by,
                "rev": 1,
            }
        )
        s.log.append((consent_at, "consent", consent_id, plan["id"]))
        if withdrawn:
            latest = min(now - timedelta(hours=1), state.ended_at + timedelta(days=30))
            at = state.ended_at + timedelta(
                seconds=rng.randint(
                    86400, max(86400, int((latest - state.ended_at).total_seconds()))
                )
            )
            withdrawal_id = s.uuid()
            rows.consents.append(
                {
                    "id": withdrawal_id,
                    "participant_id": plan["id"],
                    "interview_id": None,
                    "form_version_id": form_id,
                    "kind": "withdrawal",
                    "language": lang,
                    "answers": {"keep_data": False, "keep_identity": False},
                    "method": "coordinator",
                    "paper_form_number": None,
                    "obtained_at": min(at, latest),
                    "obtained_by_id": coordinator_id,
                    "rev": 1,
                }
            )
            s.log.append((min(at, latest), "consent", withdrawal_id, plan["id"]))

    if withdrawn:
        return  # the withdrawal deleted the events, notes and debriefs
    for e in events:
        e["interview_id"] = interview_id
        rows.events.append(e)
        s.log.append((e["recorded_at"], "event", e["id"], plan["id"]))

    if state.started_at is not None:
        rows.note_holders.append(
            {
                "interview_id": interview_id,
                "participant_id": plan["id"],
                "course": course,
                "case": plan["case"],
                "language": lang,
                "interviewers": interviewers,
                "section": section,
                "from": state.started_at + timedelta(minutes=5),
                "to": (state.ended_at or now) - timedelta(minutes=1),
            }
        )

    if state.ended_at is not None and state.started_at is not None:
        # each interviewer writes their own debrief, most of them within hours of the end
        for author in interviewers:
            if state.ended_at > now - timedelta(hours=2) or rng.random() > 0.85:
                continue
            debrief_id = s.uuid()
            at = min(now, state.ended_at + s.minutes(10, 180))
            distressed = course == "distress"
            talk = rng.random() < (0.5 if distressed else 0.06)
            follow_up = rng.random() < (0.7 if distressed else 0.04)
            reflection_lang = "en" if lang == "en" and rng.random() < 0.5 else "nb"
            rows.debriefs.append(
                {
                    "id": debrief_id,
                    "interview_id": interview_id,
                    "wellbeing": rng.choice((2, 3, 3, 4, 4, 4, 5, 5)),
                    "reflection_enc": s.seal(
                        "debrief",
                        "reflection",
                        debrief_id,
                        rng.choice(SENTENCES[reflection_lang]["reflection"]),
                    ),
                    "wants_debrief_talk": talk,
                    "participant_follow_up": follow_up,
                    "conflict_enc": None,
                    "field_revs": {},
                    "author_id": author,
                    "created_at": at,
                    "updated_at": at,
                    "rev": 1,
                }
            )
            s.log.append((at, "debrief", debrief_id, plan["id"]))
            if follow_up:
                rows.alerts.append(("follow_up", debrief_id, at))
            if talk:
                rows.alerts.append(("debrief_talk", debrief_id, at))

    if course == "stopped" and rng.random() < 0.4:
        # stopped early, planned again for another day
        again_id = s.uuid()
        again = future(2, 30)
        rows.interviews.append(
            {
                "id": again_id,
                "participant_id": plan["id"],
                "guide_version_id": guide_id,
                "language": lang,
                "status": "planned",
                "place_kind": rng.choice(PLACE_KINDS),
                "planned_at": again,
                "first_planned_at": None,
                "started_at": None,
                "ended_at": None,
                "expected_end_at": None,
                "current_section": 0,
                "rev": 1,
                "created_at": min(now, state.ended_at + timedelta(days=1)),
                "updated_at": min(now, state.ended_at + timedelta(days=1)),
                "created_by_id": coordinator_id,
            }
        )
        s.log.append(
            (min(now, state.ended_at + timedelta(days=1)), "interview", again_id, plan["id"])
        )


def _polarity(rng: random.Random, kind: str) -> str | None:
    roll = rng.random()
    if kind in ("inhibits", "promotes"):
        other = "promotes" if kind == "inhibits" else "inhibits"
        return kind if roll < 0.85 else other if roll < 0.9 else None
    return "inhibits" if roll < 0.35 else "promotes" if roll < 0.7 else None


def _notes(
    s: _Seeder,
    guide,
    themes: dict[str, int],
    staff: dict[str, list[int]],
    holders: list[dict],
    per_interview: list[int],
    total: int,
    flagged_share: float,
) -> None:
    """Generate and insert the notes (and their themes), chunk by chunk."""
    rng, now = s.rng, s.now
    questions = [
        (order, q.key, q.kind, q.section_index, [themes[t] for t in q.themes if t in themes])
        for order, q in enumerate(q for section in guide.sections for q in section.questions)
    ]
    all_themes = [themes[k] for k in sorted(themes)]
    conflicts = (
        set(rng.sample(range(total), min(total, max(1, round(total * 0.0002))))) if total else set()
    )
    note_rows: list[dict] = []
    theme_rows: list[dict] = []
    number = 0

    def flush() -> None:
        s.insert(Note.__table__, note_rows, "notes")
        s.insert(note_themes, theme_rows, "note_themes")
        note_rows.clear()
        theme_rows.clear()

    for holder, count in zip(holders, per_interview, strict=True):
        if not count:
            continue
        allowed = [q for q in questions if q[3] <= holder["section"]]
        picked = sorted(rng.choices(allowed, k=count), key=lambda q: q[0])
        window = max(0, int((holder["to"] - holder["from"]).total_seconds()))
        offsets = sorted(rng.randint(0, window) for _ in range(count))
        case_staff = staff[holder["case"]]
        for (_order, key, kind, _section, suggested), offset in zip(picked, offsets, strict=True):
            note_id = s.uuid()
            created = holder["from"] + timedelta(seconds=offset)
            polarity = _polarity(rng, kind)
            bucket = "flagged" if rng.random() < flagged_share else polarity or "neutral"
            text, kinds = s.texts.pick(rng, holder["language"], bucket)
            author = rng.choice(holder["interviewers"])
            tags: set[int] = set()
            for _ in range(rng.choices((0, 1, 2, 3), weights=(15, 45, 30, 10))[0]):
                roll = rng.random()
                if roll < 0.6 and suggested:
                    tags.add(rng.choice(suggested))
                elif roll < 0.85:
                    tags.add(rng.choice(case_staff))
                else:
                    tags.add(rng.choice(all_themes))
            row = {
                "id": note_id,
                "interview_id": holder["interview_id"],
                "question_key": key,
                "text_enc": s.seal("note", "text", note_id, text),
                "identifier_kinds": kinds,
                "polarity": polarity,
                "possible_quote": rng.random() < 0.08,
                "conflict_enc": None,
                "field_revs": {},
                "deleted_at": None,
                "rev": 1,
                "author_id": author,
                "created_at": created,
                "updated_at": created,
            }
            roll = rng.random()
            if number in conflicts:
                # edited on two tablets at once: the other version waits beside the kept one
                other, _ = s.texts.pick(rng, holder["language"], polarity or "neutral")
                at = min(now, created + s.minutes(1, 30))
                conflict = {
                    "text": other,
                    "by": author,
                    "at": at.isoformat(),
                    "recorded_at": at.isoformat(),
                    "device": None,
                }
                plain = json.dumps(conflict, ensure_ascii=False, sort_keys=True)
                row.update(
                    conflict_enc=s.seal("note", "conflict", note_id, plain),
                    field_revs={"text": 2},
                    rev=3,
                    updated_at=at,
                )
            elif roll < 0.01:
                deleted = min(now, created + s.minutes(1, 20))
                row.update(deleted_at=deleted, field_revs={"deleted": 2}, rev=2, updated_at=deleted)
            elif roll < 0.07:
                edited = min(now, created + s.minutes(1, 30))
                row.update(field_revs={"text": 2}, rev=2, updated_at=edited)
            note_rows.append(row)
            theme_rows.extend({"note_id": note_id, "theme_id": t} for t in sorted(tags))
            s.log.append((row["updated_at"], "note", note_id, holder["participant_id"]))
            number += 1
            if len(note_rows) >= CHUNK:
                flush()
    flush()
