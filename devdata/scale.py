"""Fictional data at benchmark size: `flask seed-scale` and the plain function behind it.

`seed_scale` fills the case store with generated FACT teams (case codes S001, S002, ...),
peers, participants, consents, interviews, notes with themes, events, debriefs, tablets and
the update log, so that the coordinator's progress page, alerts, theme matrix and exports can
be measured at the size of the whole study. Rows go in with SQLAlchemy Core bulk inserts in
chunks; every value is what the models and the interview flow would have written:

- note text, event comments and debrief reflections are sealed as `interview/store/sealed.py`
  seals them (associated data `table.field.<id>`, the research key ring's active key), and
  `Note.identifier_kinds` is what the identifier guard finds in the text (the model's hook);
- an interview's status and times are folded from its generated events with
  `sync.fold_events`, the function the store itself uses;
- a participant's status follows from consents and a completed interview; a withdrawn one
  has a withdrawal record and no notes, events or debriefs (deleted, as `withdrawal` does);
- every record also gets its update-log row, as the ORM's flush hook would write, so tablets
  of peers who see the data receive it on sync.

Everything comes from one seeded random generator: the same seed, sizes and `now` give the
same rows (ids, codes, times, words, tags); only the sealed bytes differ, since each seal
takes a fresh random nonce. The words are fictional and written so that the identifier guard
finds nothing in them, except a small, deliberate share (`flagged_share`) of notes holding a
made-up e-mail address or phone number, so that the alerts page has flagged notes to count.
"""

import random
import time
from datetime import datetime, timedelta

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from devdata.scale_rows import _notes, _participant, _Rows, _Seeder
from interview.participants.registry import CODE_ALPHABET
from interview.store.content import ContentError, guide_of, load_all
from interview.store.extensions import db
from interview.store.models import (
    AlertAck,
    Case,
    CaseStaffTheme,
    Consent,
    ConsentFormVersion,
    Debrief,
    Device,
    GuideVersion,
    Interview,
    InterviewEvent,
    Participant,
    Theme,
    UpdateLog,
    User,
    participant_interviewers,
    user_cases,
    utcnow,
)
from interview.sync.log import _take_seqs

DEFAULT_SEED = 20261101

# an unusable password hash: generated peers cannot log in until `create-user` gives one
NO_PASSWORD = "!generated-no-login"

# the course of each participant's study so far, as shares of all participants
COURSES = (
    ("completed", 0.55),  # interviewed: consent, a completed interview, notes, debriefs
    ("withdrawn", 0.05),  # interviewed, then withdrew: their research data is deleted
    ("in_progress", 0.02),  # consented, interview under way now (some past their end)
    ("paused", 0.01),  # consented, interview paused now
    ("stopped", 0.05),  # consented, interview stopped early (some planned again)
    ("distress", 0.01),  # consented, interview stopped at distress stage 2
    ("planned", 0.20),  # invited, interview planned in the coming weeks
    ("overdue", 0.03),  # invited, interview planned in the past and never started
    ("rescheduled", 0.03),  # invited, interview moved to a later day
    ("declined", 0.02),  # invited, declined at the door: stopped before it started
    ("unplanned", 0.03),  # invited, no interview planned yet
)

STARTED = ("completed", "withdrawn", "in_progress", "paused", "stopped", "distress")

# how many notes an interview of each course holds, relative to a completed one
NOTE_WEIGHT = {"completed": 1.0, "in_progress": 0.5, "paused": 0.5, "stopped": 0.35}

NOTE_WEIGHT["distress"] = 0.35


class ScaleError(Exception):
    """The generator cannot run on this store (or with these numbers); the message says why."""


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split `total` in proportion to `weights` (largest remainder): the parts add up exactly."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _validate(cases: int, participants: int, notes: int, peers_per_case: int, prefix: str):
    if cases < 1 or participants < 0 or notes < 0 or peers_per_case < 1:
        raise ScaleError("cases and peers per case must be at least 1; counts cannot be negative")
    if not prefix.isalpha() or not prefix.isascii() or not 1 <= len(prefix) <= 4:
        raise ScaleError("the case code prefix must be 1 to 4 letters A-Z")
    width = max(3, len(str(cases)))
    if len(prefix) + width > 8:
        raise ScaleError("case codes would be longer than 8 characters: use a shorter prefix")
    return width


def seed_scale(
    session: Session,
    cases: int = 70,
    participants: int = 3000,
    notes: int = 100_000,
    seed: int = DEFAULT_SEED,
    *,
    peers_per_case: int = 4,
    prefix: str = "S",
    coordinator: str | None = "koordinator",
    peer: str | None = "kari",
    peer_participants: int = 24,
    flagged_share: float = 0.002,
    history_days: int = 180,
    now: datetime | None = None,
) -> dict[str, int]:
    """Add generated FACT teams with fictional data to the store; return how many rows of each.

    Needs the guide, consent form and codebook loaded (`flask guides load`). Adds beside
    whatever is there (the demo cases A, B and C included) and refuses when a case code it
    would create exists already (choose another `prefix` for a second batch). The existing
    user `coordinator` (if any) is given every generated team, and the existing user `peer`
    (if any) becomes an interviewer of `peer_participants` generated participants and a
    member of their teams, so that both can log in and see the data. The caller commits.
    """
    width = _validate(cases, participants, notes, peers_per_case, prefix.upper())
    prefix = prefix.upper()
    now = (now or utcnow()).replace(microsecond=0)
    # the prefix is part of the seed: a second batch gets ids of its own
    rng = random.Random(f"{seed}:{prefix}")

    guide_row = session.scalars(select(GuideVersion).order_by(GuideVersion.version.desc())).first()
    form_row = session.scalars(
        select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
    ).first()
    if guide_row is None or form_row is None:
        raise ScaleError("no interview guide or consent form is loaded: run `flask guides load`")
    guide = guide_of(guide_row)
    themes = {
        key: theme_id
        for theme_id, key in session.execute(
            select(Theme.id, Theme.key).where(Theme.retired.is_(False)).order_by(Theme.key)
        )
    }
    if not themes:
        raise ScaleError("the codebook has no themes: run `flask guides load`")
    case_codes = [f"{prefix}{i:0{width}d}" for i in range(1, cases + 1)]
    taken = set(session.scalars(select(Case.code).where(Case.code.in_(case_codes))))
    if taken:
        raise ScaleError(
            f"the store already has generated teams ({min(taken)}...): "
            "use another --prefix for a second batch, or a fresh store"
        )
    if notes and not participants:
        raise ScaleError("notes need participants with interviews")

    def user_id(username: str | None) -> int | None:
        if not username:
            return None
        return session.scalar(select(User.id).where(User.username == username))

    coordinator_id = user_id(coordinator)
    demo_peer_id = user_id(peer)
    seeder = _Seeder(session, rng, now, seed)

    # --- teams, their staff themes, their peers ------------------------------------------
    seeder.insert(
        Case.__table__,
        [
            {"code": code, "name_nb": f"FACT-team {code}", "name_en": f"FACT team {code}"}
            for code in case_codes
        ],
        "cases",
    )
    case_ids = dict(
        session.execute(select(Case.code, Case.id).where(Case.code.in_(case_codes))).all()
    )
    theme_keys = sorted(themes)
    staff: dict[str, list[int]] = {}
    staff_rows = []
    for code in case_codes:
        chosen = rng.sample(theme_keys, min(len(theme_keys), rng.randint(4, 6)))
        staff[code] = [themes[k] for k in chosen]
        for i, key in enumerate(chosen):
            staff_rows.append(
                {
                    "case_id": case_ids[code],
                    "theme_id": themes[key],
                    "polarity": "inhibits" if i % 2 == 0 else "promotes",
                }
            )
    seeder.insert(CaseStaffTheme.__table__, staff_rows, "staff_themes")

    usernames = {
        code: [f"{code.lower()}-peer{j}" for j in range(1, peers_per_case + 1)]
        for code in case_codes
    }
    all_names = [u for code in case_codes for u in usernames[code]]
    clash = session.scalars(select(User.username).where(User.username.in_(all_names))).first()
    if clash:
        raise ScaleError(f"a user named {clash} exists already: use another --prefix")
    seeder.insert(
        User.__table__,
        [
            {
                "username": name,
                "role": "peer",
                "password_hash": NO_PASSWORD,
                "active": True,
                "session_version": 1,
                "ui_language": None,
                "created_at": now - timedelta(days=history_days + 30),
            }
            for name in all_names
        ],
        "peers",
    )
    peer_ids = dict(
        session.execute(select(User.username, User.id).where(User.username.in_(all_names))).all()
    )
    memberships = [
        {"user_id": peer_ids[name], "case_id": case_ids[code]}
        for code in case_codes
        for name in usernames[code]
    ]
    if coordinator_id is not None:
        memberships += [{"user_id": coordinator_id, "case_id": case_ids[c]} for c in case_codes]

    # --- participants and what has happened to them ----------------------------------------
    per_case = _allocate(participants, [rng.uniform(0.6, 1.4) for _ in case_codes])
    courses = [
        course
        for course, n in zip(
            [c for c, _ in COURSES], _allocate(participants, [s for _, s in COURSES]), strict=True
        )
        for _ in range(n)
    ]
    rng.shuffle(courses)
    if notes and not any(c in NOTE_WEIGHT for c in courses):
        courses[0] = "completed"  # a few participants: make sure some interview holds notes
    plans = []
    codes_taken: set[str] = set()
    index = 0
    for code, n in zip(case_codes, per_case, strict=True):
        for _ in range(n):
            while True:
                p_code = f"{code}-" + "".join(rng.choice(CODE_ALPHABET) for _ in range(4))
                if p_code not in codes_taken:
                    codes_taken.add(p_code)
                    break
            peers = usernames[code]
            chosen = [
                peer_ids[u]
                for u in rng.sample(peers, 2 if len(peers) > 1 and rng.random() < 0.25 else 1)
            ]
            plans.append(
                {
                    "id": seeder.uuid(),
                    "code": p_code,
                    "case": code,
                    "case_id": case_ids[code],
                    "course": courses[index],
                    "language": "en" if rng.random() < 0.15 else "nb",
                    "interviewers": chosen,
                }
            )
            index += 1
    # the demo peer takes over as first interviewer of the first participants (team by team)
    demo_cases: set[str] = set()
    if demo_peer_id is not None:
        for plan in plans[:peer_participants]:
            plan["interviewers"] = [demo_peer_id, *plan["interviewers"][:1]]
            demo_cases.add(plan["case"])
        memberships += [
            {"user_id": demo_peer_id, "case_id": case_ids[c]} for c in sorted(demo_cases)
        ]
    # one row per person and team, whoever is named twice
    seeder.insert(user_cases, list({(m["user_id"], m["case_id"]): m for m in memberships}.values()))

    rows = _Rows()
    for plan in plans:
        _participant(
            seeder, plan, guide, guide_row.id, form_row.id, coordinator_id, history_days, rows
        )

    seeder.insert(Participant.__table__, rows.participants, "participants")
    seeder.insert(
        participant_interviewers,
        [
            {"participant_id": plan["id"], "user_id": uid}
            for plan in plans
            for uid in plan["interviewers"]
        ],
    )
    seeder.insert(Interview.__table__, rows.interviews, "interviews")
    seeder.insert(Consent.__table__, rows.consents, "consents")
    seeder.insert(InterviewEvent.__table__, rows.events, "events")
    seeder.insert(Debrief.__table__, rows.debriefs, "debriefs")

    # --- notes, spread over the interviews that have started -------------------------------
    holders = rows.note_holders
    if notes and not holders:
        raise ScaleError("no started interview to hold the notes: give more participants")
    per_interview = _allocate(
        notes, [NOTE_WEIGHT[h["course"]] * rng.uniform(0.5, 1.5) for h in holders]
    )
    _notes(seeder, guide, themes, staff, holders, per_interview, notes, flagged_share)

    # --- tablets, alerts already seen, the update log -------------------------------------
    devices = []
    for name in all_names:
        stale = rng.random() < 0.05
        devices.append(
            {
                "id": seeder.uuid(),
                "user_id": peer_ids[name],
                "last_sync_at": now
                - (timedelta(hours=rng.randint(25, 240)) if stale else seeder.minutes(1, 20 * 60)),
                "pending": rng.randint(1, 30) if stale else 0,
            }
        )
    seeder.insert(Device.__table__, devices, "devices")
    acks = [
        {
            "kind": kind,
            "key": key,
            "acknowledged_at": min(now, at + timedelta(hours=rng.randint(1, 48))),
            "acknowledged_by_id": coordinator_id,
        }
        for kind, key, at in rows.alerts
        if at < now - timedelta(days=7) and rng.random() < 0.9
    ]
    seeder.insert(AlertAck.__table__, acks, "alert_acks")
    _update_log(seeder)
    return seeder.counts


def _update_log(s: _Seeder) -> None:
    """Write the update log as the flush hook would: one row per record, in time order."""
    entries = sorted(s.log, key=lambda e: (e[0], e[1], e[2]))
    if not entries:
        s.counts["update_log"] = 0
        return
    last = _take_seqs(s.session.connection(), len(entries))
    first = last - len(entries) + 1
    s.insert(
        UpdateLog.__table__,
        [
            {
                "seq": first + i,
                "entity": entity,
                "record_id": record_id,
                "participant_id": participant_id,
                "at": at,
            }
            for i, (at, entity, record_id, participant_id) in enumerate(entries)
        ],
        "update_log",
    )


@click.command("seed-scale")
@click.option("--cases", default=70, show_default=True, help="Generated FACT teams.")
@click.option("--participants", default=3000, show_default=True, help="Participants in all.")
@click.option("--notes", default=100_000, show_default=True, help="Notes in all.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Random seed.")
@click.option("--peers-per-case", default=4, show_default=True, help="Peers in each team.")
@click.option("--prefix", default="S", show_default=True, help="Letters of the team codes.")
@click.option(
    "--coordinator",
    default="koordinator",
    show_default=True,
    help="Existing user given every generated team ('' for none).",
)
@click.option(
    "--peer",
    default="kari",
    show_default=True,
    help="Existing peer made interviewer of some generated participants ('' for none).",
)
@click.option("--peer-participants", default=24, show_default=True, help="How many, for --peer.")
@click.option(
    "--flagged-share",
    default=0.002,
    show_default=True,
    help="Share of notes with a made-up e-mail address or phone number.",
)
def seed_scale_command(
    cases: int,
    participants: int,
    notes: int,
    seed: int,
    peers_per_case: int,
    prefix: str,
    coordinator: str,
    peer: str,
    peer_participants: int,
    flagged_share: float,
) -> None:
    """Fill the store with fictional data at benchmark size (not for a real store).

    \b
    Adds generated FACT teams S001, S002, ... beside what is there, the demo teams A, B and
    C included, so run it after `make demo` (or `flask db upgrade` and `flask guides load`):
    peers (s001-peer1, ...; they have no password and cannot log in), participants in every
    state of the study, consents, interviews planned, overdue, under way, paused, stopped and
    completed, notes with polarity and codebook themes, events, debriefs, tablets, and the
    update log. The same seed gives the same data (its times counted from now). It refuses
    when the team codes exist already: give another --prefix for a second batch.

    \b
    Who sees it: the existing user --coordinator (the demo 'koordinator') is made a
    coordinator of every generated team, and the existing peer --peer (the demo 'kari')
    becomes the first interviewer of --peer-participants generated participants and a member
    of their teams. A missing user is left out. An admin sees everything anyway.
    """
    started = time.perf_counter()
    try:
        load_all(db.session)
    except ContentError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        counts = seed_scale(
            db.session,
            cases=cases,
            participants=participants,
            notes=notes,
            seed=seed,
            peers_per_case=peers_per_case,
            prefix=prefix,
            coordinator=coordinator or None,
            peer=peer or None,
            peer_participants=peer_participants,
            flagged_share=flagged_share,
        )
    except ScaleError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    elapsed = time.perf_counter() - started
    shown = ", ".join(
        f"{n} {'update-log rows' if name == 'update_log' else name.replace('_', ' ')}"
        for name, n in counts.items()
    )
    click.echo(f"Seeded {shown} in {elapsed:.1f} s.")
