"""Shared fixtures: an app on a fresh store (SQLite, or PostgreSQL via DATABASE_URL)."""

import base64
import functools
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from devdata.demo import seed_cases
from interview import create_app
from interview.participants.registry import register
from interview.store.content import load_all
from interview.store.extensions import db
from interview.store.models import GuideVersion, Interview, Participant, User, utcnow
from interview.trust.passwords import hash_password

PASSWORD = "correct horse battery"


def _test_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@functools.cache
def _study_key_pem() -> bytes:
    """One RSA-3072 study key for the whole run: making one costs a tenth of a second."""
    from interview.trust.study_key import new_private_key, pem_of

    return pem_of(new_private_key())


def study_key_file(folder) -> str:
    """Put the run's study key into a folder (0600, as the app makes it) unless one is there."""
    path = Path(folder) / "study-key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_study_key_pem())
    return str(path)


def make_config(tmp_path, **overrides) -> dict:
    """The test app's configuration: a fresh store in tmp_path (or DATABASE_URL), cheap hashing."""
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "IDENTITY_KEY": _test_key(),
        "IDENTITY_KEY_FILE": str(tmp_path / "identity.key"),
        "RESEARCH_KEY_FILE": str(tmp_path / "research.key"),
        "STUDY_KEY_FILE": study_key_file(tmp_path),
        "DOCUMENT_CACHE_DIR": str(tmp_path / "documents"),
        "RECORDINGS_DIR": str(tmp_path / "recordings"),
        # tests read the desk right after changing the store: count on every view (the
        # keeping itself is tested in tests/store/test_kept.py)
        "FIGURES_FRESH_SECONDS": 0,
        "FIGURES_UNCHANGED_SECONDS": 0,
        # cheap hashing keeps the suite fast; production cost is in config.py
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
    }
    if os.environ.get("DATABASE_URL"):
        from interview.config import load_config

        cfg = load_config(str(tmp_path))
        config["SQLALCHEMY_DATABASE_URI"] = cfg["SQLALCHEMY_DATABASE_URI"]
        config["SQLALCHEMY_BINDS"] = cfg["SQLALCHEMY_BINDS"]
    else:
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'casestore.db'}"
        config["SQLALCHEMY_BINDS"] = {"identity": f"sqlite:///{tmp_path / 'identity.db'}"}
    config.update(overrides)
    return config


def app_on_empty_store(tmp_path, **overrides):
    """Yield an app on an empty store with all tables created; drop them afterwards."""
    application = create_app(make_config(tmp_path, **overrides))
    with application.app_context():
        db.drop_all()
        db.create_all()
    yield application
    with application.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def app(tmp_path):
    """An app on an empty store with all tables created."""
    yield from app_on_empty_store(tmp_path)


@pytest.fixture
def client(app):
    """A test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner."""
    return app.test_cli_runner()


@dataclass
class World:
    """Ids of the people and records every access test needs."""

    users: dict[str, int]
    participants: dict[str, str]
    interviews: dict[str, str]


def _user(username: str, role: str, cases) -> User:
    user = User(
        username=username, role=role, cases=list(cases), password_hash=hash_password(PASSWORD)
    )
    db.session.add(user)
    return user


@pytest.fixture
def world(app) -> World:
    """Cases A, B, C with guides loaded; peers, coordinators, an admin; one participant each."""
    with app.app_context():
        load_all(db.session)
        seed_cases()
        from interview.store.models import Case

        cases = {c.code: c for c in db.session.scalars(select(Case))}
        users = {
            "peer_a": _user("peer_a", "peer", [cases["A"]]),
            "peer_a2": _user("peer_a2", "peer", [cases["A"]]),
            "peer_b": _user("peer_b", "peer", [cases["B"]]),
            "coord_a": _user("coord_a", "coordinator", [cases["A"]]),
            "coord_b": _user("coord_b", "coordinator", [cases["B"]]),
            "admin": _user("admin", "admin", []),
        }
        db.session.flush()
        guide = db.session.scalars(select(GuideVersion)).first()
        participants = {
            "pa": register(cases["A"], "nb", [users["peer_a"]], users["coord_a"], "Test Person"),
            "pa2": register(cases["A"], "en", [users["peer_a2"]], users["coord_a"]),
            "pb": register(cases["B"], "nb", [users["peer_b"]], users["coord_b"]),
        }
        interviews = {}
        for key, p in participants.items():
            iv = Interview(
                participant=p,
                guide_version=guide,
                language=p.preferred_language,
                place_kind="home",
                planned_at=utcnow() + timedelta(hours=1),
            )
            db.session.add(iv)
            db.session.flush()
            interviews[key] = iv.id
        db.session.commit()
        return World(
            users={k: u.id for k, u in users.items()},
            participants={k: p.id for k, p in participants.items()},
            interviews=interviews,
        )


class AuthActions:
    """Log in and out through the real forms."""

    def __init__(self, client):
        self._client = client

    def login(self, username: str, password: str = PASSWORD):
        """Log in with the login form."""
        return self._client.post("/login", data={"username": username, "password": password})

    def logout(self):
        """Log out with a POST."""
        return self._client.post("/logout")


@pytest.fixture
def auth(client) -> AuthActions:
    """Helper to log in as one of the world's users."""
    return AuthActions(client)


def csrf_from(html: str) -> str:
    """Return the CSRF token of a page's meta tag."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "page carries no csrf-token meta tag"
    return match.group(1)


def get_row(model, key):
    """Fetch a fresh row by primary key (call inside an app context)."""
    db.session.expire_all()
    return db.session.get(model, key)


__all__ = ["PASSWORD", "World", "csrf_from", "get_row", "make_config", "Participant"]
