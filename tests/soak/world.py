"""The people and interviews the tablets work on, made with the app's own functions.

Tablets work in pairs: both peers of a pair are assigned to one shared participant whose
interview the coordinator planned (so two tablets edit the same notes and conflicts happen),
and each peer has a participant of their own whose interview the tablet plans itself (so notes
can arrive before their interview).
"""

import secrets
from datetime import timedelta

from flask_migrate import upgrade
from sqlalchemy import select, text

from devdata.demo import seed_cases
from interview.config import ROOT
from interview.participants.registry import register
from interview.store.content import guide_of, load_all
from interview.store.extensions import db
from interview.store.models import (
    Case,
    ConsentFormVersion,
    GuideVersion,
    Interview,
    Theme,
    User,
    utcnow,
)
from interview.trust.passwords import hash_password

from .tablets import Plan


def fresh_schema(app, migrate: bool) -> None:
    """Empty the store and build its tables (by the migrations, or create_all like the suite)."""
    with app.app_context():
        db.drop_all()
        _drop_versions()
        if migrate:
            upgrade(directory=str(ROOT / "migrations"))
        else:
            db.create_all()


def drop_schema(app) -> None:
    """Drop every table again (a shared test database is left as it was found)."""
    with app.app_context():
        db.session.remove()
        db.drop_all()
        _drop_versions()
        for engine in db.engines.values():
            engine.dispose()


def _drop_versions() -> None:
    # both stores carry Alembic's version table; a stale one would make `upgrade` skip all
    for engine in db.engines.values():
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def build(app, tablets: int, prefix: str = "soak") -> list[Plan]:
    """Create the peers, their participants and the shared interviews; return each tablet's plan."""
    password = secrets.token_urlsafe(16)
    with app.app_context():
        load_all(db.session)
        seed_cases()
        case = db.session.scalars(select(Case).where(Case.code == "A")).one()
        guide = db.session.scalars(
            select(GuideVersion).order_by(GuideVersion.version.desc())
        ).first()
        form = db.session.scalars(
            select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
        ).first()
        themes = sorted(db.session.scalars(select(Theme.key).where(Theme.retired.is_(False))))
        question_keys = sorted(guide_of(guide).question_keys)
        hashed = hash_password(password)
        users = [
            User(username=f"{prefix}{i:02d}", role="peer", cases=[case], password_hash=hashed)
            for i in range(tablets)
        ]
        db.session.add_all(users)
        db.session.flush()
        shared: dict[int, str] = {}
        for first in range(0, tablets, 2):
            pair = users[first : first + 2]
            if len(pair) < 2:
                continue
            participant = register(case, "nb", pair, None)
            interview = Interview(
                participant=participant,
                guide_version=guide,
                language="nb",
                place_kind="home",
                planned_at=utcnow() + timedelta(hours=1),
            )
            db.session.add(interview)
            db.session.flush()
            for user in pair:
                shared[user.id] = interview.id
        plans = []
        for i, user in enumerate(users):
            language = ("nb", "en")[i % 2]
            own = register(case, language, [user], None)
            db.session.flush()
            plans.append(
                Plan(
                    username=user.username,
                    password=password,
                    own_participant=own.id,
                    own_language=language,
                    shared_interview=shared.get(user.id),
                    question_keys=question_keys,
                    themes=themes,
                    consent_version=form.version,
                    consent_items=[item["key"] for item in form.content["items"]],
                )
            )
        db.session.commit()
        db.session.remove()
    return plans
