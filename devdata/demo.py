"""Demo cases A, B and C with fictional people, for trying the app on a laptop."""

import secrets
from datetime import timedelta

from sqlalchemy import select

from interview.participants.registry import register
from interview.store.content import read_codebook
from interview.store.extensions import db
from interview.store.models import (
    Case,
    CaseStaffTheme,
    Consent,
    ConsentFormVersion,
    Debrief,
    GuideVersion,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    Theme,
    User,
    utcnow,
)
from interview.trust.passwords import hash_password
from interview.web.i18n import oslo_to_utc, utc_to_oslo

DEMO_USERS = [
    ("admin", "admin", []),
    ("koordinator", "coordinator", ["A", "B", "C"]),
    ("kari", "peer", ["A"]),
    ("jonas", "peer", ["A", "B"]),
    ("amina", "peer", ["C"]),
]

# Fictional people; these names exist only to show the identity key store at work.
DEMO_PARTICIPANTS = [
    ("A", "nb", ["kari"], "Ola Nordmann", "000 00 001"),
    ("A", "en", ["kari", "jonas"], "Sam Example", "000 00 002"),
    ("A", "nb", ["jonas"], "Kari Testesen", None),
    ("B", "nb", ["jonas"], "Per Prøve", "000 00 003"),
    ("B", "nb", ["jonas"], None, None),
    ("C", "nb", ["amina"], "Åse Fiktiv", "000 00 004"),
    ("C", "en", ["amina"], None, None),
]


def seed_cases() -> list[str]:
    """Create the cases of the codebook with their staff themes, where missing."""
    created = []
    codebook = read_codebook()
    themes = {t.key: t for t in db.session.scalars(select(Theme))}
    for c in codebook["cases"]:
        case = db.session.execute(select(Case).where(Case.code == c["code"])).scalar_one_or_none()
        if case is not None:
            continue
        case = Case(code=c["code"], name_nb=c["name"]["nb"], name_en=c["name"]["en"])
        for s in c["staff"]:
            case.staff_themes.append(
                CaseStaffTheme(theme=themes[s["theme"]], polarity=s["polarity"])
            )
        db.session.add(case)
        created.append(c["code"])
    db.session.flush()
    return created


def seed_users(reset_passwords: bool = False) -> dict[str, str]:
    """Create the demo users where missing; return the generated passwords of new users."""
    passwords = {}
    cases = {c.code: c for c in db.session.scalars(select(Case))}
    for username, role, case_codes in DEMO_USERS:
        user = db.session.execute(
            select(User).where(User.username == username)
        ).scalar_one_or_none()
        if user is not None and not reset_passwords:
            continue
        password = secrets.token_urlsafe(9)
        if user is None:
            user = User(username=username, role=role, cases=[cases[c] for c in case_codes])
            db.session.add(user)
        else:
            user.session_version += 1
        user.password_hash = hash_password(password)
        passwords[username] = password
    db.session.flush()
    return passwords


def seed_participants() -> int:
    """Create fictional participants and a few interviews, once."""
    if db.session.execute(select(Participant.id)).first():
        return 0
    guide = db.session.scalars(select(GuideVersion).order_by(GuideVersion.version.desc())).first()
    form = db.session.scalars(
        select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
    ).first()
    users = {u.username: u for u in db.session.scalars(select(User))}
    cases = {c.code: c for c in db.session.scalars(select(Case))}
    coordinator = users.get("koordinator")
    now_oslo = utc_to_oslo(utcnow())
    today = now_oslo.date()
    count = 0
    for i, (case_code, lang, peers, name, phone) in enumerate(DEMO_PARTICIPANTS):
        p = register(cases[case_code], lang, [users[u] for u in peers], coordinator, name, phone)
        count += 1
        hour = 10 + (i % 5)
        day = today + timedelta(days=i % 3)
        db.session.add(
            Interview(
                participant=p,
                guide_version=guide,
                language=lang,
                place_kind=("home", "cafe", "team_office")[i % 3],
                planned_at=oslo_to_utc(
                    day, now_oslo.time().replace(hour=hour, minute=0, second=0, microsecond=0)
                ),
                created_by_id=coordinator.id if coordinator else None,
            )
        )
    db.session.flush()
    _one_done_interview(guide, form, users["kari"], cases["A"])
    return count


def _one_done_interview(guide, form, peer, case) -> None:
    """Give the tour a completed interview with consent, notes, events and a debrief."""
    p = register(case, "nb", [peer], None, None, None)
    p.status = "interviewed"
    started = utcnow().replace(second=0, microsecond=0) - timedelta(days=2, hours=3)
    interview = Interview(
        participant=p,
        guide_version=guide,
        language="nb",
        place_kind="team_office",
        planned_at=started,
        started_at=started,
        expected_end_at=started + timedelta(minutes=75),
        ended_at=started + timedelta(minutes=64),
        status="completed",
    )
    db.session.add(interview)
    db.session.flush()
    db.session.add(
        Consent(
            participant_id=p.id,
            interview_id=interview.id,
            form_version_id=form.id,
            language="nb",
            answers={"participate": True, "audio": False, "quotes": True, "recontact": True},
            method="paper",
            paper_form_number="P-0001",
            obtained_at=started + timedelta(minutes=5),
            obtained_by_id=peer.id,
        )
    )
    themes = {t.key: t for t in db.session.scalars(select(Theme))}
    notes = [
        (
            "promotes.cooperation",
            "Opplever at teamet og fastlegen snakker sammen, slipper å fortelle alt på nytt.",
            "promotes",
            ["communication"],
            True,
        ),
        (
            "inhibits.resources",
            "Lang ventetid på avrusning, ble sendt hjem to ganger.",
            "inhibits",
            ["waiting_times", "lack_of_resources"],
            False,
        ),
    ]
    for offset, (qkey, text, polarity, theme_keys, quote) in enumerate(notes):
        db.session.add(
            Note(
                interview_id=interview.id,
                question_key=qkey,
                text=text,
                polarity=polarity,
                themes=[themes[k] for k in theme_keys if k in themes],
                possible_quote=quote,
                author_id=peer.id,
                created_at=started + timedelta(minutes=20 + offset * 10),
                updated_at=started + timedelta(minutes=20 + offset * 10),
            )
        )
    for minutes, kind in ((0, "capacity_check"), (6, "start"), (64, "complete")):
        db.session.add(
            InterviewEvent(
                interview_id=interview.id,
                kind=kind,
                data={"outcome": "ok"} if kind == "capacity_check" else {},
                recorded_at=started + timedelta(minutes=minutes),
                recorded_by_id=peer.id,
            )
        )
    db.session.add(
        Debrief(
            interview_id=interview.id,
            wellbeing=4,
            reflection="Godt intervju, deltakeren var åpen.",
            author_id=peer.id,
        )
    )
