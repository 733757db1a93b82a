"""Fictional data at benchmark size: `flask seed-scale` and the plain function behind it.

`seed_scale` fills the case store with generated FACT teams (case codes S001, S002, ...),
peers, participants, consents, interviews, notes with themes, events, debriefs, tablets and
the update log, so that the coordinator's progress page, alerts, theme matrix and exports can
be measured at the size of the whole study. Rows go in with SQLAlchemy Core bulk inserts in
chunks; every value is what the models and the interview flow would have written:

- note text, event comments and debrief reflections are sealed as `interview/sealed.py`
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

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import click
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from interview.participants.registry import CODE_ALPHABET
from interview.store.content import ContentError, guide_of, load_all
from interview.store.crypto import research_key, seal
from interview.store.extensions import db
from interview.store.identifiers import warning_kinds
from interview.store.models import (
    PLACE_KINDS,
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
    Note,
    Participant,
    Theme,
    UpdateLog,
    User,
    note_themes,
    participant_interviewers,
    user_cases,
    utcnow,
)
from interview.sync.log import _take_seqs
from interview.sync.merge import fold_events

DEFAULT_SEED = 20261101
CHUNK = 5000
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

# --- fictional words: no names, numbers, addresses (checked by tests/test_scale.py) --------

SENTENCES = {
    "nb": {
        "inhibits": (
            "Lang ventetid på avrusning, ble sendt hjem to ganger.",
            "Opplever at ingen tar ansvar når noe går galt mellom tjenestene.",
            "Må fortelle historien sin på nytt hver gang det kommer en ny behandler.",
            "Fastlegen og teamet snakker ikke sammen, og medisinlista var feil i flere uker.",
            "Følte seg avvist på legevakten fordi det handlet om rus.",
            "Fikk beskjed om å bli rusfri før det kunne bli snakk om psykisk helsehjelp.",
            "Det tok nesten et år å få bolig, og imens ble alt verre.",
            "Ble skrevet ut fra sengeposten uten at noen visste hvor hen skulle bo.",
            "Saksbehandleren på NAV byttes stadig, og søknader blir liggende.",
            "Mange skjemaer og brev som er vanskelige å forstå.",
            "Ingen spurte hva som var viktig i livet utenom behandlingen.",
            "Opplever at personalet snakker over hodet på en i møter.",
            "Kort tid per samtale, alt handler om medisiner.",
            "Ble kasteball mellom kommunen og spesialisthelsetjenesten.",
            "Sluttet å gå på møter fordi det føltes som kontroll, ikke hjelp.",
            "Vanskelig å nå noen på telefon sent på dagen.",
            "Mangler noen å ringe når det blir tungt i helgene.",
            "Ventelista på poliklinikken var lang, og ingen fulgte opp i mellomtiden.",
        ),
        "promotes": (
            "Opplever at teamet og fastlegen snakker sammen, slipper å fortelle alt på nytt.",
            "Den faste kontaktpersonen kjenner historien og tar seg tid.",
            "Teamet kom hjem da det var vanskelig å komme seg ut.",
            "Fikk hjelp med både bolig, økonomi og behandling på samme sted.",
            "Erfaringskonsulenten i teamet forstår hvordan det er.",
            "Ble tatt med på råd om medisinene, og det ble bedre.",
            "Teamet hjalp til med å søke jobb og følge opp avtaler.",
            "Møtene er korte, men hyppige, og det gir trygghet.",
            "Fikk komme raskt inn på avrusning da det trengtes.",
            "Blir sett som et helt menneske, ikke bare en diagnose.",
            "Kan sende melding når som helst og får svar samme dag.",
            "Ansvarsgruppemøtene fungerer, alle vet hva de skal gjøre.",
            "Teamet var med til NAV og forklarte situasjonen.",
            "Fikk støtte til å ta opp igjen en hobby og treffe folk.",
            "Personalet er ærlige og holder det de lover.",
            "Kjenner seg trygg på at teamet ikke gir opp.",
            "Overgangen fra sykehuset gikk fint fordi teamet var med fra starten.",
            "Fikk treningstilbud gjennom teamet, og det hjelper på søvnen.",
        ),
        "neutral": (
            "Har hatt kontakt med teamet i omtrent to år.",
            "Får hjelp fra teamet, fastlegen og boligkontoret.",
            "Treffer teamet en gang i uka, oftere i perioder.",
            "Beskriver kontakten som skiftende, avhengig av hvem som er på jobb.",
            "Synes det er vanskelig å svare på, må tenke litt.",
            "Sier at det har blitt bedre det siste halvåret.",
            "Nevner at det er mange å forholde seg til.",
            "Ønsker mer hjelp til hverdagen, ikke bare behandling.",
            "Tar en pause her, fortsetter etter noen minutter.",
            "Forteller om en periode med innleggelse i fjor.",
            "Har ikke så mye å legge til på dette spørsmålet.",
            "Mener at tjenestene burde samarbeide mer.",
            "Forteller at familien også har vært involvert.",
            "Understreker at det varierer mye fra uke til uke.",
        ),
        "flagged": (
            "Ba om at innkallingen sendes til deltaker@example.invalid i stedet for brev.",
            "Skrev ned nummeret 400 00 000 for å ringe tilbake etter intervjuet.",
        ),
        "comment": (
            "Deltakeren ønsket å avslutte og var tydelig på det.",
            "Ble sliten underveis, vi avtalte å ta resten en annen dag.",
            "Teamet er varslet etter avtale med deltakeren.",
            "Det ble for tungt å snakke om dette i dag.",
        ),
        "reflection": (
            "Godt intervju, deltakeren var åpen.",
            "Krevende samtale, men vi fikk snakket om det viktigste.",
            "Kjente igjen mye fra egen erfaring, trenger å snakke litt om det.",
            "Rolig intervju, gode svar på spørsmålene om samarbeid.",
            "Deltakeren var sliten mot slutten, vi tok flere pauser.",
            "Fint å høre hvor mye teamet betyr for deltakeren.",
        ),
    },
    "en": {
        "inhibits": (
            "Waited a long time for detox and was sent home twice.",
            "Feels that nobody takes responsibility when things go wrong between services.",
            "Has to tell the whole story again every time there is a new therapist.",
            "The GP and the team do not talk, and the medication list was wrong for weeks.",
            "Felt turned away at the emergency clinic because it was about substance use.",
            "Was told to get clean before there could be any talk of mental health care.",
            "It took almost a year to get housing, and meanwhile everything got worse.",
            "Was discharged from the ward without anyone knowing where they would live.",
            "The caseworker at NAV keeps changing, and applications are left lying.",
            "Lots of forms and letters that are hard to understand.",
            "Nobody asked what mattered in life outside treatment.",
            "Feels that staff talk over their head in meetings.",
            "Short appointments where everything is about medication.",
            "Was passed back and forth between the municipality and the hospital.",
            "Stopped going to meetings because it felt like control, not help.",
            "Hard to reach anyone by phone late in the day.",
            "Has nobody to call when things get heavy at weekends.",
            "The waiting list at the outpatient clinic was long, and nobody followed up.",
        ),
        "promotes": (
            "The team and the GP talk to each other, so there is no need to repeat everything.",
            "The regular contact person knows the history and takes time.",
            "The team came to the flat when it was hard to get out.",
            "Got help with housing, money and treatment in one place.",
            "The peer worker in the team understands what it is like.",
            "Was consulted about the medication, and things got better.",
            "The team helped with job applications and kept track of appointments.",
            "Meetings are short but frequent, and that feels safe.",
            "Got into detox quickly when it was needed.",
            "Feels seen as a whole person, not just a diagnosis.",
            "Can send a message at any time and gets an answer the same day.",
            "The care group meetings work, and everyone knows what to do.",
            "The team came along to NAV and explained the situation.",
            "Got support to take up a hobby again and meet people.",
            "Staff are honest and keep their promises.",
            "Trusts that the team will not give up.",
            "Leaving hospital went well because the team was there from the start.",
            "Got an exercise offer through the team, and it helps with sleep.",
        ),
        "neutral": (
            "Has been in contact with the team for about two years.",
            "Gets help from the team, the GP and the housing office.",
            "Meets the team once a week, more often in some periods.",
            "Describes the contact as changing, depending on who is at work.",
            "Finds this hard to answer and needs to think a little.",
            "Says things have improved over the last six months.",
            "Mentions that there are many people to deal with.",
            "Would like more help with everyday life, not only treatment.",
            "Takes a break here and goes on after a few minutes.",
            "Talks about a period in hospital last year.",
            "Has not much to add to this question.",
            "Thinks the services should work together more.",
            "Says the family has also been involved.",
            "Stresses that it varies a lot from week to week.",
        ),
        "flagged": (
            "Asked for the letters to go to participant@example.invalid instead of the post.",
            "Wrote down the number 400 00 000 to call back after the interview.",
        ),
        "comment": (
            "The participant wanted to stop and was clear about it.",
            "Got tired along the way; we agreed to do the rest another day.",
            "The team has been told, as agreed with the participant.",
            "It was too heavy to talk about this today.",
        ),
        "reflection": (
            "Good interview, the participant was open.",
            "A demanding talk, but we covered what mattered most.",
            "Recognised a lot from my own experience, need to talk about it a little.",
            "Calm interview, good answers on the questions about cooperation.",
            "The participant was tired towards the end, we took several breaks.",
            "Good to hear how much the team means to the participant.",
        ),
    },
}
POOL_SIZE = 300  # distinct note texts per language and polarity


class ScaleError(Exception):
    """The generator cannot run on this store (or with these numbers); the message says why."""


class _Texts:
    """Note texts drawn from fixed pools, each with the identifier kinds the guard finds."""

    def __init__(self, seed: int):
        rng = random.Random(f"{seed}:texts")
        self.pools: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        for lang, words in SENTENCES.items():
            for bucket in ("inhibits", "promotes", "neutral"):
                own, neutral = list(words[bucket]), list(words["neutral"])
                texts: list[str] = []
                attempts = 0
                while len(texts) < POOL_SIZE:
                    attempts += 1
                    parts = [rng.choice(own)]
                    for _ in range(rng.choice((0, 1, 1, 2))):
                        parts.append(rng.choice(own if rng.random() < 0.5 else neutral))
                    text = " ".join(dict.fromkeys(parts))
                    if text in texts and attempts < 20 * POOL_SIZE:
                        continue
                    texts.append(text)
                self.pools[(lang, bucket)] = [(t, _kinds(t)) for t in texts]
            flagged = []
            for sentence in words["flagged"]:
                for lead in words["neutral"][:4]:
                    text = f"{lead} {sentence}"
                    flagged.append((text, _kinds(text)))
            self.pools[(lang, "flagged")] = flagged

    def pick(self, rng: random.Random, lang: str, bucket: str) -> tuple[str, str | None]:
        """Return a text and its identifier kinds (None when the guard finds nothing)."""
        return rng.choice(self.pools[(lang, bucket)])


def _kinds(text: str) -> str | None:
    # exactly what Note.flag_identifiers stores when the text is set
    return " ".join(warning_kinds(text)) or None


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
        """Seal a value the way the model attribute does (see interview/sealed.py)."""
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


# --- the command ------------------------------------------------------------------------


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
