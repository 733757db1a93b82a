"""Configuration read from the environment, with safe defaults for a laptop."""

import os
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _psycopg(url: str | None) -> str | None:
    """Point postgres:// and postgresql:// URLs at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url and url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _iso_date(value: str | None) -> str | None:
    """Return an ISO date setting as given, None when unset; refuse anything else at start."""
    if not value or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise RuntimeError("STUDY_END_DATE must be a date written as YYYY-MM-DD") from None


def load_config(instance_path: str) -> dict:
    """Return the default configuration for an app whose instance folder is given."""
    instance = Path(instance_path)
    database_url = _psycopg(os.environ.get("DATABASE_URL")) or _sqlite_url(
        instance / "casestore.db"
    )
    identity_url = _psycopg(os.environ.get("IDENTITY_DATABASE_URL"))
    if not identity_url:
        if not database_url.startswith("sqlite"):
            # the identity key store must be a database of its own, never the case store
            raise RuntimeError(
                "DATABASE_URL is set: set IDENTITY_DATABASE_URL to a separate database "
                "for the identity key store"
            )
        identity_url = _sqlite_url(instance / "identity.db")
    return {
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_BINDS": {"identity": identity_url},
        "IDENTITY_KEY": os.environ.get("IDENTITY_KEY"),
        "IDENTITY_KEY_FILE": str(instance / "identity.key"),
        # note and debrief text and sync payloads; a file of keys, the last one sealing
        "RESEARCH_KEY": os.environ.get("RESEARCH_KEY"),
        "RESEARCH_KEY_FILE": os.environ.get("RESEARCH_KEY_FILE", str(instance / "research.key")),
        # the study key pair's private half (RSA-3072, PKCS8 PEM): it opens what tablets seal
        # to the public half (signatures, printed names, rescue copies); made when missing
        "STUDY_KEY_FILE": os.environ.get("STUDY_KEY_FILE", str(instance / "study-key.pem")),
        "BABEL_DEFAULT_LOCALE": "nb",
        "BABEL_DEFAULT_TIMEZONE": "Europe/Oslo",
        "BABEL_TRANSLATION_DIRECTORIES": str(ROOT / "translations"),
        "LANGUAGES": ("nb", "en"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": os.environ.get("SESSION_COOKIE_SECURE") == "1",
        # how many reverse proxies in front of the app set X-Forwarded-For/-Proto (0: none)
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0")),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": 12 * 3600,
        # a session ends after this long without activity, and in any case after this long;
        # the tablet keeps unsent work and sends it after the next login
        "SESSION_IDLE_MINUTES": int(os.environ.get("SESSION_IDLE_MINUTES", "45")),
        "SESSION_ABSOLUTE_HOURS": int(os.environ.get("SESSION_ABSOLUTE_HOURS", "12")),
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "WTF_CSRF_TIME_LIMIT": 12 * 3600,
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": False,
        "LOGIN_LIMIT": os.environ.get("LOGIN_LIMIT", "10 per 5 minutes"),
        "ARGON2_TIME_COST": 3,
        "ARGON2_MEMORY_COST": 65536,
        "ARGON2_PARALLELISM": 2,
        "INTERVIEW_DEFAULT_MINUTES": 75,
        # printed on guides, consent forms and reports; typed to confirm `flask study end`
        "STUDY_NAME": os.environ.get("STUDY_NAME", "INNOFACT"),
        # the day the study ends (ISO, YYYY-MM-DD; optional): the desk reminds coordinators and
        # admins from 60 days before, and `flask study end` runs from that day
        "STUDY_END_DATE": _iso_date(os.environ.get("STUDY_END_DATE")),
        # answered sync changes, silent tablet rows and superseded update-log rows older than
        # this are removed by `flask retention run` (docs/sync.md, Retention)
        "RETENTION_SYNC_DAYS": int(os.environ.get("RETENTION_SYNC_DAYS", "90")),
        # rendered guide and consent-form PDFs; safe to delete at any time
        "DOCUMENT_CACHE_DIR": os.environ.get("DOCUMENT_CACHE_DIR", str(instance / "documents")),
        # audio recordings as the tablets encrypted them, a file per chunk (docs/recordings.md);
        # a chunk, a recording and all the study's recordings at most this many bytes
        "RECORDINGS_DIR": os.environ.get("RECORDINGS_DIR", str(instance / "recordings")),
        "RECORDING_CHUNK_MAX_BYTES": int(os.environ.get("RECORDING_CHUNK_MAX_BYTES", "1000000")),
        "RECORDING_MAX_BYTES": int(os.environ.get("RECORDING_MAX_BYTES", "250000000")),
        "RECORDINGS_MAX_BYTES": int(os.environ.get("RECORDINGS_MAX_BYTES", "20000000000")),
        # lone-worker safety: an interview this long past its expected end without a check-in
        "OVERDUE_GRACE_MINUTES": int(os.environ.get("OVERDUE_GRACE_MINUTES", "30")),
        # changes kept on the server until the record they belong to arrives (docs/sync.md):
        # at most this many, and this many bytes, per user; refused after this many days
        "SYNC_WAITING_MAX": int(os.environ.get("SYNC_WAITING_MAX", "500")),
        "SYNC_WAITING_MAX_BYTES": int(os.environ.get("SYNC_WAITING_MAX_BYTES", "5000000")),
        "SYNC_WAITING_DAYS": int(os.environ.get("SYNC_WAITING_DAYS", "14")),
        # a tablet silent this long while it still holds changes is worth a phone call
        "STALE_TABLET_HOURS": int(os.environ.get("STALE_TABLET_HOURS", "24")),
        # the desk's progress figures and theme matrix are recounted at most this often while
        # the store changes, and this often when it does not (interview/store/kept.py)
        "FIGURES_FRESH_SECONDS": int(os.environ.get("FIGURES_FRESH_SECONDS", "30")),
        "FIGURES_UNCHANGED_SECONDS": int(os.environ.get("FIGURES_UNCHANGED_SECONDS", "300")),
    }
